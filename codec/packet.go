package codec

import (
	"errors"
	"fmt"
	"io"
)

// PacketType is the first byte of a packet.
type PacketType byte

// Packet types of the Pitaya protocol.
const (
	Handshake    PacketType = 0x01 // both ways, JSON body
	HandshakeAck PacketType = 0x02 // client to server, empty
	Heartbeat    PacketType = 0x03 // both ways, empty
	Data         PacketType = 0x04 // a message
	Kick         PacketType = 0x05 // server to client, empty
)

// HeaderLength is the size of a packet header.
const HeaderLength = 4

// MaxPacketBody is the largest body the 3-byte length can describe.
const MaxPacketBody = 1<<24 - 1

// Errors returned by the packet functions; check them with errors.Is.
var (
	ErrUnknownPacketType = errors.New("codec: unknown packet type")
	ErrPacketTooLarge    = errors.New("codec: packet too large")
	ErrPacketLength      = errors.New("codec: packet length does not match")
)

// Valid reports whether t is one of the five packet types.
func (t PacketType) Valid() bool { return t >= Handshake && t <= Kick }

func (t PacketType) String() string {
	switch t {
	case Handshake:
		return "Handshake"
	case HandshakeAck:
		return "HandshakeAck"
	case Heartbeat:
		return "Heartbeat"
	case Data:
		return "Data"
	case Kick:
		return "Kick"
	}
	return fmt.Sprintf("PacketType(%#02x)", byte(t))
}

// AppendPacket appends a packet of type t with the given body to dst.
func AppendPacket(dst []byte, t PacketType, body []byte) ([]byte, error) {
	if !t.Valid() {
		return dst, fmt.Errorf("%w: %#02x", ErrUnknownPacketType, byte(t))
	}
	n := len(body)
	if n > MaxPacketBody {
		return dst, fmt.Errorf("%w: %d bytes", ErrPacketTooLarge, n)
	}
	dst = append(dst, byte(t), byte(n>>16), byte(n>>8), byte(n))
	return append(dst, body...), nil
}

// ParseHeader reads a packet header and checks its type and that its body
// length is at most maxBody (0 means MaxPacketBody).
func ParseHeader(h []byte, maxBody int) (PacketType, int, error) {
	if len(h) < HeaderLength {
		return 0, 0, fmt.Errorf("%w: header of %d bytes", io.ErrUnexpectedEOF, len(h))
	}
	t := PacketType(h[0])
	if !t.Valid() {
		return 0, 0, fmt.Errorf("%w: %#02x", ErrUnknownPacketType, h[0])
	}
	n := int(h[1])<<16 | int(h[2])<<8 | int(h[3])
	if maxBody <= 0 || maxBody > MaxPacketBody {
		maxBody = MaxPacketBody
	}
	if n > maxBody {
		return 0, 0, fmt.Errorf("%w: %d bytes, limit %d", ErrPacketTooLarge, n, maxBody)
	}
	return t, n, nil
}

// ParsePacket decodes b as exactly one packet, as a WebSocket frame must hold:
// the header's length must equal the body's. The body aliases b.
func ParsePacket(b []byte, maxBody int) (PacketType, []byte, error) {
	t, n, err := ParseHeader(b, maxBody)
	if err != nil {
		return 0, nil, err
	}
	if len(b)-HeaderLength != n {
		return 0, nil, fmt.Errorf("%w: header says %d, frame holds %d", ErrPacketLength, n, len(b)-HeaderLength)
	}
	return t, b[HeaderLength:], nil
}
