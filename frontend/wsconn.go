package frontend

// WebSocket framing after the upgrade. gorilla/websocket answers the
// upgrade; the frames are then read and written here, on the hijacked
// connection, for three reasons measured at 20,000 connections (see
// BENCHMARKS.md): the library's reader parks a goroutine deep enough that
// its stack cannot shrink below 8 KiB and cannot be resumed after a read
// deadline (so an idle connection could not give its goroutine up, see
// park.go); its writer makes one system call per frame; and its buffers and
// Conn are per-connection memory. Reading here uses the same small inline
// buffer as the TCP path, resumable after a deadline, and writing frames
// a batch of packets into one writev, or one non-blocking attempt.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/nopal-dev/nopal/codec"
)

// WebSocket opcodes (RFC 6455 §5.2).
const (
	wsCont   = 0x0
	wsText   = 0x1
	wsBinary = 0x2
	wsClose  = 0x8
	wsPing   = 0x9
	wsPong   = 0xA
)

// errWSProtocol is a frame that breaks RFC 6455: bad input.
var errWSProtocol = errors.New("frontend: websocket protocol error")

// wsSmall is the inline read buffer: a frame of a small packet (most
// game packets) is read with no other buffer.
const wsSmall = 128

// wsBigSize is the size of a pooled read buffer, for larger frames.
const wsBigSize = 4096

// wsConn is a client's WebSocket after the upgrade: one binary frame per
// packet. Control frames the client sends are answered through ctl (the
// agent's send queue, so they never cut into a data frame half written).
type wsConn struct {
	conn    net.Conn     // the hijacked connection (a *tls.Conn under TLS)
	tcp     *net.TCPConn // conn when it is a plain TCP socket: non-blocking writes, parking
	addr    net.Addr     // the client's, from a trusted proxy's header; nil: the socket's
	maxBody int
	limit   int        // the largest message: maxBody + the packet header
	pool    *sync.Pool // *[]byte of wsBigSize
	ctl     func(frame []byte) error

	// Reader state (the reader goroutine only): bytes [start, end) of buf
	// are read and not yet consumed; buf is small[:], *big, or a one-off.
	small      [wsSmall]byte
	buf        []byte
	big        *[]byte
	start, end int
	frag       []byte // a fragmented message being put together
	rd         []byte // Read: the rest of the current message

	wmu sync.Mutex // one writer of frames at a time
}

func newWSConn(c net.Conn, addr net.Addr, maxBody int, pool *sync.Pool) *wsConn {
	w := &wsConn{conn: c, addr: addr, maxBody: maxBody, limit: maxBody + codec.HeaderLength, pool: pool}
	w.tcp, _ = c.(*net.TCPConn)
	w.buf = w.small[:]
	return w
}

// MaxPacketSize implements PacketLimited.
func (c *wsConn) MaxPacketSize() int { return c.maxBody }

// controlled is a connection that answers control frames of its own
// (ping, close) through the agent's send queue.
type controlled interface {
	setControl(send func(frame []byte) error)
}

// setControl implements controlled: the agent's way to send a control frame.
func (c *wsConn) setControl(f func([]byte) error) { c.ctl = f }

// fill makes sure need bytes are buffered from start on; it keeps what is
// buffered on error, so a read cut by a deadline resumes where it was.
func (c *wsConn) fill(need int) error {
	if c.end-c.start >= need {
		return nil
	}
	if c.start+need > len(c.buf) {
		if need > len(c.buf) {
			var nb *[]byte
			if need <= wsBigSize {
				nb, _ = c.pool.Get().(*[]byte)
				if nb == nil {
					b := make([]byte, wsBigSize)
					nb = &b
				}
			} else {
				b := make([]byte, need)
				nb = &b
			}
			copy(*nb, c.buf[c.start:c.end])
			c.putBig()
			c.buf = *nb
			if need <= wsBigSize {
				c.big = nb
			}
		} else {
			copy(c.buf, c.buf[c.start:c.end])
		}
		c.end -= c.start
		c.start = 0
	}
	n, err := io.ReadAtLeast(c.conn, c.buf[c.end:], need-(c.end-c.start))
	c.end += n
	if err == io.EOF && c.end > c.start {
		err = io.ErrUnexpectedEOF
	}
	return err
}

func (c *wsConn) putBig() {
	if c.big != nil {
		c.pool.Put(c.big)
		c.big = nil
	}
}

// idleBuffers returns to the inline buffer once nothing is buffered, so an
// idle connection holds no pooled buffer.
func (c *wsConn) idleBuffers() {
	if c.start == c.end {
		c.putBig()
		c.buf = c.small[:]
		c.start, c.end = 0, 0
	}
}

// nextFrame reads one frame and unmasks its payload in place; the payload
// is valid until the next call.
func (c *wsConn) nextFrame() (fin bool, op byte, payload []byte, err error) {
	c.idleBuffers()
	if err = c.fill(2); err != nil {
		return
	}
	b0, b1 := c.buf[c.start], c.buf[c.start+1]
	if b0&0x70 != 0 {
		return false, 0, nil, fmt.Errorf("%w: reserved bits set", errWSProtocol)
	}
	if b1&0x80 == 0 {
		return false, 0, nil, fmt.Errorf("%w: unmasked frame from a client", errWSProtocol)
	}
	fin, op = b0&0x80 != 0, b0&0x0f
	hl := 2
	switch b1 & 0x7f {
	case 126:
		hl = 4
	case 127:
		hl = 10
	}
	if err = c.fill(hl + 4); err != nil {
		return
	}
	h := c.buf[c.start:c.end]
	n := uint64(b1 & 0x7f)
	switch hl {
	case 4:
		n = uint64(binary.BigEndian.Uint16(h[2:]))
	case 10:
		n = binary.BigEndian.Uint64(h[2:])
	}
	if op >= 8 && (!fin || n > 125) {
		return false, 0, nil, fmt.Errorf("%w: control frame fragmented or over 125 bytes", errWSProtocol)
	}
	if n > uint64(c.limit) {
		return false, 0, nil, fmt.Errorf("%w: frame of %d bytes", codec.ErrPacketLength, n)
	}
	hl += 4
	if err = c.fill(hl + int(n)); err != nil {
		return
	}
	f := c.buf[c.start : c.start+hl+int(n)]
	mask, payload := f[hl-4:hl], f[hl:]
	for i := range payload {
		payload[i] ^= mask[i&3]
	}
	c.start += len(f)
	return fin, op, payload, nil
}

// nextMessage returns the next binary message, answering control frames on
// the way. A close frame is answered and ends the connection (io.EOF).
func (c *wsConn) nextMessage() ([]byte, error) {
	for {
		fin, op, p, err := c.nextFrame()
		if err != nil {
			return nil, err
		}
		switch op {
		case wsPing:
			c.control(wsPong, p)
			continue
		case wsPong:
			continue
		case wsClose:
			code := p
			if len(code) > 2 {
				code = code[:2]
			}
			c.control(wsClose, code)
			return nil, io.EOF
		case wsText:
			return nil, ErrTextFrame
		case wsBinary:
			if c.frag != nil {
				return nil, fmt.Errorf("%w: a new message inside a fragmented one", errWSProtocol)
			}
			if fin {
				return p, nil
			}
			c.frag = append(make([]byte, 0, 2*len(p)), p...)
		case wsCont:
			if c.frag == nil {
				return nil, fmt.Errorf("%w: continuation frame out of a message", errWSProtocol)
			}
			if len(c.frag)+len(p) > c.limit {
				return nil, fmt.Errorf("%w: message over %d bytes", codec.ErrPacketLength, c.limit)
			}
			c.frag = append(c.frag, p...)
			if fin {
				b := c.frag
				c.frag = nil
				return b, nil
			}
		default:
			return nil, fmt.Errorf("%w: opcode %d", errWSProtocol, op)
		}
	}
}

// control sends a control frame through the agent (best effort: a client
// too slow to take it is handled by the send queue's rules).
func (c *wsConn) control(op byte, p []byte) {
	if c.ctl == nil {
		return
	}
	f := make([]byte, 0, 2+len(p))
	f = append(f, 0x80|op, byte(len(p)))
	_ = c.ctl(append(f, p...))
}

// GetNextMessage returns the next packet: the payload of one binary
// message.
func (c *wsConn) GetNextMessage() ([]byte, error) {
	b, err := c.nextMessage()
	if err != nil {
		return nil, err
	}
	if len(b) < codec.HeaderLength {
		// Bad input, not the peer going away (which an io.ErrUnexpectedEOF
		// from ParsePacket would read as).
		return nil, fmt.Errorf("%w: frame of %d bytes", codec.ErrPacketLength, len(b))
	}
	if _, _, err := codec.ParsePacket(b, c.maxBody); err != nil {
		return nil, err
	}
	return b, nil
}

// Read reads the payloads of binary messages as a byte stream.
func (c *wsConn) Read(p []byte) (int, error) {
	for len(c.rd) == 0 {
		b, err := c.nextMessage()
		if err != nil {
			return 0, err
		}
		c.rd = b
	}
	n := copy(p, c.rd)
	c.rd = c.rd[n:]
	return n, nil
}

// isFrame reports whether p is a frame already (a control frame queued by
// control) rather than a packet to frame: packet types are 1 to 5, a
// control frame's first byte has the FIN bit.
func isFrame(p []byte) bool { return len(p) > 0 && p[0]&0x80 != 0 }

// appendFrames appends the wire form of pkts to bufs: each packet behind
// its frame header, written into hdr (if hdr grows, the headers already
// in bufs stay where they were).
func (c *wsConn) appendFrames(bufs net.Buffers, hdr []byte, pkts [][]byte) (net.Buffers, []byte) {
	for _, p := range pkts {
		if isFrame(p) {
			bufs = append(bufs, p)
			continue
		}
		i := len(hdr)
		hdr = append(hdr, 0x80|wsBinary)
		switch n := len(p); {
		case n < 126:
			hdr = append(hdr, byte(n))
		case n < 1<<16:
			hdr = append(hdr, 126, byte(n>>8), byte(n))
		default:
			hdr = append(hdr, 127)
			hdr = binary.BigEndian.AppendUint64(hdr, uint64(n))
		}
		bufs = append(bufs, hdr[i:], p)
	}
	return bufs, hdr
}

// writeFrames frames pkts and writes them at once.
func (c *wsConn) writeFrames(pkts [][]byte) error {
	var small [2][]byte
	bufs := net.Buffers(small[:0])
	if len(pkts) > 1 {
		bufs = make(net.Buffers, 0, 2*len(pkts))
	}
	var hb [20]byte
	hdr := hb[:0]
	if len(pkts) > 2 {
		hdr = make([]byte, 0, 10*len(pkts))
	}
	bufs, _ = c.appendFrames(bufs, hdr, pkts)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := bufs.WriteTo(c.conn)
	return err
}

// Write sends p as one binary message (or as it is when it is a frame).
func (c *wsConn) Write(p []byte) (int, error) {
	if err := c.writeFrames([][]byte{p}); err != nil {
		return 0, err
	}
	return len(p), nil
}

// WriteBatch writes the packets, a frame each, in one write to the socket.
func (c *wsConn) WriteBatch(pkts [][]byte) error { return c.writeFrames(pkts) }

func (c *wsConn) Close() error        { return c.conn.Close() }
func (c *wsConn) LocalAddr() net.Addr { return c.conn.LocalAddr() }
func (c *wsConn) RemoteAddr() net.Addr {
	if c.addr != nil {
		return c.addr
	}
	return c.conn.RemoteAddr()
}
func (c *wsConn) SetReadDeadline(t time.Time) error  { return c.conn.SetReadDeadline(t) }
func (c *wsConn) SetWriteDeadline(t time.Time) error { return c.conn.SetWriteDeadline(t) }
func (c *wsConn) SetDeadline(t time.Time) error      { return c.conn.SetDeadline(t) }
