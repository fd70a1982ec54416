package main

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"

	"github.com/nopal-dev/nopal/codec"
)

// frameBuf is a connection's read buffer: bytes [r, w) of buf have been
// read and not consumed yet. One read from the socket may bring several
// packets (or WebSocket frames); they are parsed in place, without
// allocating.
type frameBuf struct {
	buf  []byte
	r, w int
}

// fill reads once from c, first making room for need bytes from r (the
// whole unit being parsed): the unconsumed bytes move to the front, and
// the buffer grows only for a unit larger than itself.
func (b *frameBuf) fill(c net.Conn, need int) error {
	if b.r == b.w {
		b.r, b.w = 0, 0
	}
	if need > len(b.buf)-b.r || (b.r > 0 && len(b.buf)-b.w < 512) {
		if need > len(b.buf) {
			nb := make([]byte, max(need, 2*len(b.buf)))
			copy(nb, b.buf[b.r:b.w])
			b.buf = nb
		} else {
			copy(b.buf, b.buf[b.r:b.w])
		}
		b.w -= b.r
		b.r = 0
	}
	n, err := c.Read(b.buf[b.w:])
	b.w += n
	if n > 0 {
		return nil // an error comes back on the next read
	}
	return err
}

// nextPacket returns the next whole packet, header included, valid until
// the next call. ws: the stream is WebSocket frames from a server
// (unmasked), each holding exactly one packet; control frames are skipped.
func (b *frameBuf) nextPacket(c net.Conn, ws bool) ([]byte, error) {
	for {
		var pkt []byte
		var need int
		var err error
		if ws {
			pkt, need, err = b.parseWS()
		} else {
			pkt, need, err = b.parsePacket()
		}
		if err != nil || pkt != nil {
			return pkt, err
		}
		if err := b.fill(c, need); err != nil {
			return nil, err
		}
	}
}

// parsePacket consumes one packet if it is whole; otherwise it returns
// how many bytes from r it needs.
func (b *frameBuf) parsePacket() (pkt []byte, need int, err error) {
	avail := b.buf[b.r:b.w]
	if len(avail) < codec.HeaderLength {
		return nil, codec.HeaderLength, nil
	}
	n := int(avail[1])<<16 | int(avail[2])<<8 | int(avail[3])
	if n > maxBody {
		return nil, 0, fmt.Errorf("packet of %d bytes", n)
	}
	if len(avail) < codec.HeaderLength+n {
		return nil, codec.HeaderLength + n, nil
	}
	b.r += codec.HeaderLength + n
	return avail[:codec.HeaderLength+n], 0, nil
}

// errWSClosed is a close frame from the server.
var errWSClosed = errors.New("websocket: close frame from the server")

// parseWS consumes WebSocket frames until a binary one, whose packet it
// returns; otherwise it returns how many bytes from r it needs.
func (b *frameBuf) parseWS() (pkt []byte, need int, err error) {
	for {
		avail := b.buf[b.r:b.w]
		if len(avail) < 2 {
			return nil, 2, nil
		}
		b0, b1 := avail[0], avail[1]
		if b1&0x80 != 0 {
			return nil, 0, errors.New("websocket: masked frame from the server")
		}
		hl, n := 2, int(b1&0x7f)
		switch n {
		case 126:
			if hl = 4; len(avail) < hl {
				return nil, hl, nil
			}
			n = int(binary.BigEndian.Uint16(avail[2:]))
		case 127:
			if hl = 10; len(avail) < hl {
				return nil, hl, nil
			}
			u := binary.BigEndian.Uint64(avail[2:])
			if u > maxBody+codec.HeaderLength {
				return nil, 0, fmt.Errorf("websocket: frame of %d bytes", u)
			}
			n = int(u)
		}
		if len(avail) < hl+n {
			return nil, hl + n, nil
		}
		b.r += hl + n
		payload := avail[hl : hl+n]
		switch b0 & 0x0f {
		case 0x2: // binary
			if b0&0x80 == 0 {
				return nil, 0, errors.New("websocket: fragmented message")
			}
			if len(payload) < codec.HeaderLength ||
				codec.HeaderLength+(int(payload[1])<<16|int(payload[2])<<8|int(payload[3])) != len(payload) {
				return nil, 0, fmt.Errorf("websocket: a frame of %d bytes is not one packet", len(payload))
			}
			return payload, 0, nil
		case 0x8:
			return nil, 0, errWSClosed
		case 0x9, 0xa: // ping, pong: skipped
		default:
			return nil, 0, fmt.Errorf("websocket: frame opcode %#x", b0&0x0f)
		}
	}
}

// appendWSFrame appends p as one final binary frame from a client. The
// masking key is zero, so the payload goes as it is: servers must unmask
// but do not judge the key, and the load generator saves XORing every
// byte.
func appendWSFrame(dst, p []byte) []byte {
	dst = append(dst, 0x82)
	switch n := len(p); {
	case n < 126:
		dst = append(dst, 0x80|byte(n))
	case n < 1<<16:
		dst = append(dst, 0x80|126, byte(n>>8), byte(n))
	default:
		dst = append(dst, 0x80|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	dst = append(dst, 0, 0, 0, 0)
	return append(dst, p...)
}

// wsGUID is RFC 6455's key suffix.
const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// wsUpgrade sends the HTTP upgrade request on c and reads the answer into
// b, leaving in b whatever follows the response head. It checks the 101
// status and Sec-WebSocket-Accept.
func wsUpgrade(c net.Conn, b *frameBuf, host string) error {
	var key [16]byte
	binary.LittleEndian.PutUint64(key[:], rand.Uint64())
	binary.LittleEndian.PutUint64(key[8:], rand.Uint64())
	k := base64.StdEncoding.EncodeToString(key[:])
	req := "GET / HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " +
		k + "\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		return fmt.Errorf("websocket upgrade: %w", err)
	}
	for {
		if i := bytes.Index(b.buf[b.r:b.w], []byte("\r\n\r\n")); i >= 0 {
			head := string(b.buf[b.r : b.r+i])
			b.r += i + 4
			return checkUpgrade(head, k)
		}
		if b.w-b.r >= 8192 {
			return errors.New("websocket upgrade: response head too long")
		}
		if err := b.fill(c, b.w-b.r+1); err != nil {
			return fmt.Errorf("websocket upgrade: %w", err)
		}
	}
}

func checkUpgrade(head, key string) error {
	lines := strings.Split(head, "\r\n")
	if !strings.HasPrefix(lines[0], "HTTP/1.1 101 ") {
		return fmt.Errorf("websocket upgrade: %q", lines[0])
	}
	sum := sha1.Sum([]byte(key + wsGUID))
	want := base64.StdEncoding.EncodeToString(sum[:])
	for _, l := range lines[1:] {
		name, v, ok := strings.Cut(l, ":")
		if ok && strings.EqualFold(strings.TrimSpace(name), "Sec-WebSocket-Accept") {
			if got := strings.TrimSpace(v); got != want {
				return fmt.Errorf("websocket upgrade: Sec-WebSocket-Accept %q, want %q", got, want)
			}
			return nil
		}
	}
	return errors.New("websocket upgrade: no Sec-WebSocket-Accept")
}
