package codec

import (
	"bytes"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"sync"
)

// MessageType is the kind of a message, bits 1–3 of its flag.
type MessageType byte

// Message types.
const (
	Request  MessageType = 0x00
	Notify   MessageType = 0x01
	Response MessageType = 0x02
	Push     MessageType = 0x03
)

func (t MessageType) String() string {
	switch t {
	case Request:
		return "Request"
	case Notify:
		return "Notify"
	case Response:
		return "Response"
	case Push:
		return "Push"
	}
	return fmt.Sprintf("MessageType(%d)", byte(t))
}

// Flag bits of a message.
const (
	flagRouteCompressed byte = 0x01
	flagZlib            byte = 0x10
	flagError           byte = 0x20
	typeMask            byte = 0x07
	flagKnown           byte = 0x3f
)

// Errors returned by the message functions; check them with errors.Is.
var (
	ErrBadMessage     = errors.New("codec: malformed message")
	ErrUnknownRoute   = errors.New("codec: unknown compressed route code")
	ErrRouteTooLong   = errors.New("codec: route longer than 255 bytes")
	ErrBadCompression = errors.New("codec: corrupt zlib payload")
)

// DefaultCompressThreshold is the payload size from which a codec tries zlib.
const DefaultCompressThreshold = 128

// Message is the body of a Data packet.
type Message struct {
	Type  MessageType
	ID    uint64 // Request and Response only
	Route string // Request, Notify and Push only
	Data  []byte
	Err   bool // the error flag: Data holds an encoded Error

	// RouteCompressed reports, after Decode, that the route came as a code.
	RouteCompressed bool
	// Compressed reports, after Decode, that Data was inflated.
	Compressed bool
}

// Reset clears m for reuse.
func (m *Message) Reset() { *m = Message{} }

func (m *Message) hasID() bool    { return m.Type == Request || m.Type == Response }
func (m *Message) hasRoute() bool { return m.Type != Response }

// MessageCodec encodes and decodes messages with a route dictionary and
// pooled zlib writers and readers. It is safe for concurrent use; configure
// it before first use.
type MessageCodec struct {
	// Dict compresses and expands routes; nil means no dictionary.
	Dict *Dictionary
	// Compress turns on zlib for outgoing payloads.
	Compress bool
	// CompressThreshold is the smallest payload that is tried with zlib;
	// 0 means DefaultCompressThreshold.
	CompressThreshold int
	// MaxInflated bounds the size of an inflated payload (a zlib bomb guard);
	// 0 means MaxPacketBody.
	MaxInflated int

	writers sync.Pool // *zlibWriter
	readers sync.Pool // io.ReadCloser implementing zlib.Resetter
}

type zlibWriter struct {
	buf bytes.Buffer
	w   *zlib.Writer
}

// Append encodes m and appends it to dst.
func (c *MessageCodec) Append(dst []byte, m *Message) ([]byte, error) {
	if m.Type > Push {
		return dst, fmt.Errorf("%w: type %d", ErrBadMessage, m.Type)
	}
	flag := byte(m.Type) << 1
	var code uint16
	compressedRoute := false
	if m.hasRoute() && c.Dict != nil {
		code, compressedRoute = c.Dict.Code(m.Route)
	}
	if compressedRoute {
		flag |= flagRouteCompressed
	} else if m.hasRoute() && len(m.Route) > 255 {
		return dst, fmt.Errorf("%w: %q", ErrRouteTooLong, m.Route)
	}
	if m.Err {
		flag |= flagError
	}
	data := m.Data
	if c.Compress && len(data) >= c.threshold() {
		if z, ok := c.deflate(data); ok {
			defer c.writers.Put(z)
			data = z.buf.Bytes()
			flag |= flagZlib
		}
	}
	dst = append(dst, flag)
	if m.hasID() {
		dst = AppendVarint(dst, m.ID)
	}
	if m.hasRoute() {
		if compressedRoute {
			dst = append(dst, byte(code>>8), byte(code))
		} else {
			dst = append(dst, byte(len(m.Route)))
			dst = append(dst, m.Route...)
		}
	}
	return append(dst, data...), nil
}

// AppendPacket encodes m as a whole Data packet and appends it to dst.
func (c *MessageCodec) AppendPacket(dst []byte, m *Message) ([]byte, error) {
	start := len(dst)
	dst = append(dst, byte(Data), 0, 0, 0)
	dst, err := c.Append(dst, m)
	if err != nil {
		return dst[:start], err
	}
	n := len(dst) - start - HeaderLength
	if n > MaxPacketBody {
		return dst[:start], fmt.Errorf("%w: %d bytes", ErrPacketTooLarge, n)
	}
	dst[start+1], dst[start+2], dst[start+3] = byte(n>>16), byte(n>>8), byte(n)
	return dst, nil
}

// Threshold is the smallest payload size that is tried with zlib.
func (c *MessageCodec) Threshold() int { return c.threshold() }

func (c *MessageCodec) threshold() int {
	if c.CompressThreshold <= 0 {
		return DefaultCompressThreshold
	}
	return c.CompressThreshold
}

// deflate compresses data and reports whether that made it shorter. On
// success the caller returns z to the pool once it is done with z.buf.
func (c *MessageCodec) deflate(data []byte) (*zlibWriter, bool) {
	z, _ := c.writers.Get().(*zlibWriter)
	if z == nil {
		z = &zlibWriter{}
		z.w = zlib.NewWriter(&z.buf)
	}
	z.buf.Reset()
	z.w.Reset(&z.buf)
	if _, err := z.w.Write(data); err != nil || z.w.Close() != nil || z.buf.Len() >= len(data) {
		c.writers.Put(z)
		return nil, false
	}
	return z, true
}

// Deflate zlib-compresses data if that makes it shorter, as for a handshake
// response, and reports whether it did. The result is a new slice.
func (c *MessageCodec) Deflate(data []byte) ([]byte, bool) {
	z, ok := c.deflate(data)
	if !ok {
		return data, false
	}
	out := bytes.Clone(z.buf.Bytes())
	c.writers.Put(z)
	return out, true
}

// Decode parses b into m. m.Data aliases b unless the payload was inflated.
// Decoding does not allocate for uncompressed payloads with a route the
// dictionary knows.
func (c *MessageCodec) Decode(b []byte, m *Message) error { return c.DecodeLimit(b, m, 0) }

// DecodeLimit is Decode with a bound on the inflated payload tighter than
// MaxInflated (when maxInflated > 0): a connection whose packets may not
// exceed n bytes may not send a payload inflating past n either.
func (c *MessageCodec) DecodeLimit(b []byte, m *Message, maxInflated int) error {
	if len(b) < 1 {
		return fmt.Errorf("%w: empty", ErrBadMessage)
	}
	flag := b[0]
	if flag&^flagKnown != 0 {
		return fmt.Errorf("%w: flag %#02x", ErrBadMessage, flag)
	}
	t := MessageType((flag >> 1) & typeMask)
	if t > Push {
		return fmt.Errorf("%w: type %d", ErrBadMessage, t)
	}
	*m = Message{Type: t, Err: flag&flagError != 0}
	off := 1
	if m.hasID() {
		id, n := Varint(b[off:])
		if n <= 0 {
			return fmt.Errorf("%w: bad id varint", ErrBadMessage)
		}
		m.ID = id
		off += n
	}
	if m.hasRoute() {
		if flag&flagRouteCompressed != 0 {
			if len(b) < off+2 {
				return fmt.Errorf("%w: short route code", ErrBadMessage)
			}
			code := uint16(b[off])<<8 | uint16(b[off+1])
			off += 2
			route, ok := c.Dict.Route(code)
			if !ok {
				return fmt.Errorf("%w: %d", ErrUnknownRoute, code)
			}
			m.Route = route
			m.RouteCompressed = true
		} else {
			if len(b) < off+1 {
				return fmt.Errorf("%w: no route length", ErrBadMessage)
			}
			n := int(b[off])
			off++
			if len(b) < off+n {
				return fmt.Errorf("%w: route length %d past end", ErrBadMessage, n)
			}
			m.Route = c.Dict.intern(b[off : off+n])
			off += n
		}
	} else if flag&flagRouteCompressed != 0 {
		return fmt.Errorf("%w: response with route flag", ErrBadMessage)
	}
	m.Data = b[off:]
	if flag&flagZlib != 0 {
		data, err := c.inflate(m.Data, maxInflated)
		if err != nil {
			return err
		}
		m.Data = data
		m.Compressed = true
	}
	return nil
}

func (c *MessageCodec) inflate(data []byte, tighter int) ([]byte, error) {
	limit := c.MaxInflated
	if limit <= 0 {
		limit = MaxPacketBody
	}
	if tighter > 0 && tighter < limit {
		limit = tighter
	}
	src := bytes.NewReader(data)
	var r io.ReadCloser
	if pr, ok := c.readers.Get().(io.ReadCloser); ok {
		if err := pr.(zlib.Resetter).Reset(src, nil); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadCompression, err)
		}
		r = pr
	} else {
		nr, err := zlib.NewReader(src)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadCompression, err)
		}
		r = nr
	}
	out, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadCompression, err)
	}
	if len(out) > limit {
		return nil, fmt.Errorf("%w: inflates past %d bytes", ErrBadCompression, limit)
	}
	c.readers.Put(r)
	return out, nil
}

// AppendVarint appends v as an unsigned base-128 varint, low group first.
func AppendVarint(dst []byte, v uint64) []byte {
	for v >= 0x80 {
		dst = append(dst, byte(v)|0x80)
		v >>= 7
	}
	return append(dst, byte(v))
}

// Varint decodes an unsigned base-128 varint from the start of b and returns
// it with the number of bytes read; n <= 0 means b was truncated or the value
// overflows 64 bits.
func Varint(b []byte) (v uint64, n int) {
	var shift uint
	for i, c := range b {
		if i == 10 || (i == 9 && c > 1) {
			return 0, -1
		}
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return v, i + 1
		}
		shift += 7
	}
	return 0, 0
}
