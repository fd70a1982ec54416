package frontend

// WebSocket framing after the upgrade. gorilla/websocket answers the
// upgrade; the frames are then read and written on the hijacked
// connection, for three reasons measured at 20,000 connections (see
// BENCHMARKS.md): gorilla's reader parks a goroutine deep enough that its
// stack cannot shrink below 8 KiB and cannot be resumed after a read
// deadline (so an idle connection could not give its goroutine up, see
// park.go); its writer makes one system call per frame; and its buffers and
// Conn are per-connection memory.
//
// What is the library's and what is ours. RFC 6455 is
// github.com/gobwas/ws, a low-level library that works on buffers its
// caller owns: it parses each frame header (ws.ReadHeaderBuffer, over the
// bytes buffered here), checks it against the RFC's rules for a server
// (ws.CheckHeader: masking, reserved bits and opcodes, control frames,
// the order of fragments), unmasks payloads (ws.Cipher), encodes the
// headers of the frames written (ws.WriteHeaderBuffer) and the control
// frames that answer a client's (ws.CompileFrame, with its close body).
// Ours is what the library leaves to its caller: the read buffer (the
// same small inline buffer as the TCP path, a pooled one for larger
// frames), resumable after a deadline anywhere in a frame, so that a
// parked connection's next reader goes on where the last one stopped; the
// size limit, checked on a frame's declared length before its payload is
// read; putting fragments together; answering control frames through the
// agent's send queue; and writing a batch of packets, a frame each, with
// one writev (or one non-blocking attempt, socket.go).

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/gobwas/ws"

	"github.com/nopal-dev/nopal/codec"
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
	// hr and hb are where ws.ReadHeaderBuffer reads a header from: held
	// here rather than made per frame, since as the arguments of an
	// io.Reader they would each cost an allocation per frame.
	hr bytes.Reader
	hb [ws.MaxHeaderSize - 2]byte

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
// is valid until the next call. Its header is checked, and a data frame's
// declared length held to the limit (a control frame's is 125 bytes at
// most), before any of its payload is waited for.
func (c *wsConn) nextFrame() (h ws.Header, payload []byte, err error) {
	c.idleBuffers()
	if err = c.fill(ws.MinHeaderSize); err != nil {
		return h, nil, err
	}
	var hl int // the header's length
	for {
		c.hr.Reset(c.buf[c.start:c.end])
		h, err = ws.ReadHeaderBuffer(&c.hr, c.hb[:])
		hl = c.end - c.start - c.hr.Len()
		c.hr.Reset(nil) // no hold on a buffer that may go back to the pool
		if err == nil {
			break
		}
		if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			return h, nil, fmt.Errorf("%w: %w", errWSProtocol, err)
		}
		// Part of a header (at most 14 bytes): read on, and parse again.
		if err = c.fill(c.end - c.start + 1); err != nil {
			return h, nil, err
		}
	}
	st := ws.StateServerSide
	if c.frag != nil {
		st = st.Set(ws.StateFragmented)
	}
	if err = ws.CheckHeader(h, st); err != nil {
		return h, nil, fmt.Errorf("%w: %w", errWSProtocol, err)
	}
	if h.OpCode.IsData() && h.Length > int64(c.limit) {
		return h, nil, fmt.Errorf("%w: frame of %d bytes", codec.ErrPacketLength, h.Length)
	}
	n := hl + int(h.Length)
	if err = c.fill(n); err != nil {
		return h, nil, err
	}
	payload = c.buf[c.start+hl : c.start+n]
	ws.Cipher(payload, h.Mask, 0)
	c.start += n
	return h, payload, nil
}

// nextMessage returns the next binary message, answering control frames on
// the way. A close frame is answered and ends the connection (io.EOF).
// Opcodes, and the order of fragments, are checked by nextFrame.
func (c *wsConn) nextMessage() ([]byte, error) {
	for {
		h, p, err := c.nextFrame()
		if err != nil {
			return nil, err
		}
		switch h.OpCode {
		case ws.OpPing:
			c.control(ws.NewPongFrame(p))
		case ws.OpPong:
		case ws.OpClose:
			// Echo the client's status code, if it gave one.
			var body []byte
			if code, _ := ws.ParseCloseFrameData(p); !code.Empty() {
				body = ws.NewCloseFrameBody(code, "")
			}
			c.control(ws.NewCloseFrame(body))
			return nil, io.EOF
		case ws.OpText:
			return nil, ErrTextFrame
		case ws.OpBinary:
			if h.Fin {
				return p, nil
			}
			c.frag = append(make([]byte, 0, 2*len(p)), p...)
		case ws.OpContinuation:
			if len(c.frag)+len(p) > c.limit {
				return nil, fmt.Errorf("%w: message over %d bytes", codec.ErrPacketLength, c.limit)
			}
			c.frag = append(c.frag, p...)
			if h.Fin {
				b := c.frag
				c.frag = nil
				return b, nil
			}
		}
	}
}

// control sends a control frame through the agent (best effort: a client
// too slow to take it is handled by the send queue's rules). The frame is
// compiled into bytes of its own: f's payload is in the read buffer.
func (c *wsConn) control(f ws.Frame) {
	if c.ctl == nil {
		return
	}
	b, err := ws.CompileFrame(f)
	if err != nil {
		return // a payload over 125 bytes, which nextFrame refuses
	}
	_ = c.ctl(b)
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
		var h []byte
		hdr, h = appendHeader(hdr, ws.Header{Fin: true, OpCode: ws.OpBinary, Length: int64(len(p))})
		bufs = append(bufs, h, p)
	}
	return bufs, hdr
}

// appendHeader appends the header h to hdr, encoded by the library, and
// returns hdr and the header's bytes. ws.WriteHeaderBuffer encodes into the
// buffer it is given, here hdr's spare capacity, and then writes that to
// its io.Writer, here io.Discard: an io.Writer of ours that appended would
// be an allocation per frame (it escapes through the interface), and the
// bytes are where they belong already. ws.HeaderSize is how many it encoded.
func appendHeader(hdr []byte, h ws.Header) ([]byte, []byte) {
	i := len(hdr)
	hdr = slices.Grow(hdr, ws.MaxHeaderSize)
	if err := ws.WriteHeaderBuffer(io.Discard, h, hdr[i:i+ws.MaxHeaderSize]); err != nil {
		// Only a length over 2^63-1, which no slice has.
		panic(fmt.Sprintf("frontend: websocket header %+v: %v", h, err))
	}
	hdr = hdr[:i+ws.HeaderSize(h)]
	return hdr, hdr[i:]
}

// writeFrames frames pkts and writes them at once.
func (c *wsConn) writeFrames(pkts [][]byte) error {
	var small [2][]byte
	bufs := net.Buffers(small[:0])
	if len(pkts) > 1 {
		bufs = make(net.Buffers, 0, 2*len(pkts))
	}
	// Room for the headers, 10 bytes at most each, and for the library to
	// encode the last one in 14 (appendHeader).
	var hb [10 + ws.MaxHeaderSize]byte
	hdr := hb[:0]
	if len(pkts) > 2 {
		hdr = make([]byte, 0, 10*(len(pkts)-1)+ws.MaxHeaderSize)
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
