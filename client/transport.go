package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/nopal-dev/nopal/codec"
)

// transport moves whole packets. read is called by one goroutine at a time;
// write is called under the client's write mutex.
type transport interface {
	// write sends one packet (or raw bytes) with the given write deadline.
	write(b []byte, deadline time.Time) error
	// read returns the next packet's type and body. If owned is false the
	// body is valid only until the next call.
	read() (t codec.PacketType, body []byte, owned bool, err error)
	// setReadDeadline sets the deadline of reads.
	setReadDeadline(d time.Time) error
	// abort makes blocked reads and writes return at once.
	abort()
	// close closes the connection, politely if graceful.
	close(graceful bool) error
}

// wsReadBufferSize is the size of gorilla's bufio reader per connection. It
// only holds frame headers and small frames: packet bodies are read straight
// into their own buffers.
const wsReadBufferSize = 512

// dial connects to addr: "host:port" or "tcp://host:port" for TCP,
// "ws://..." or "wss://..." for WebSocket.
func dial(ctx context.Context, addr string, o *options) (transport, error) {
	nd := &net.Dialer{}
	if o.localAddr != "" {
		la, err := parseLocalAddr(o.localAddr)
		if err != nil {
			return nil, err
		}
		nd.LocalAddr = la
	}
	if strings.HasPrefix(addr, "ws://") || strings.HasPrefix(addr, "wss://") {
		d := websocket.Dialer{
			NetDialContext:  nd.DialContext,
			TLSClientConfig: o.tls,
			ReadBufferSize:  wsReadBufferSize,
		}
		if o.wsWritePool != nil {
			d.WriteBufferPool = o.wsWritePool
		}
		ws, _, err := d.DialContext(ctx, addr, nil)
		if err != nil {
			return nil, err
		}
		ws.SetReadLimit(codec.HeaderLength + codec.MaxPacketBody)
		return &wsTransport{ws: ws}, nil
	}
	addr = strings.TrimPrefix(addr, "tcp://")
	var conn net.Conn
	var err error
	if o.tls != nil {
		td := &tls.Dialer{NetDialer: nd, Config: o.tls}
		conn, err = td.DialContext(ctx, "tcp", addr)
	} else {
		conn, err = nd.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	pool := o.pool
	if pool == nil {
		pool = &codec.BufferPool{}
	}
	return &tcpTransport{conn: conn, pr: codec.NewPacketReader(conn, pool, 0)}, nil
}

func parseLocalAddr(s string) (*net.TCPAddr, error) {
	if ip, err := netip.ParseAddr(s); err == nil {
		return net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, fmt.Errorf("client: local address %q: want an IP or ip:port", s)
	}
	return net.TCPAddrFromAddrPort(ap), nil
}

type tcpTransport struct {
	conn net.Conn
	pr   *codec.PacketReader
}

func (t *tcpTransport) write(b []byte, deadline time.Time) error {
	if err := t.conn.SetWriteDeadline(deadline); err != nil {
		return err
	}
	_, err := t.conn.Write(b)
	return err
}

func (t *tcpTransport) read() (codec.PacketType, []byte, bool, error) {
	typ, body, _, err := t.pr.Next()
	return typ, body, false, err
}

func (t *tcpTransport) setReadDeadline(d time.Time) error { return t.conn.SetReadDeadline(d) }
func (t *tcpTransport) abort()                            { _ = t.conn.SetDeadline(time.Unix(1, 0)) }
func (t *tcpTransport) close(bool) error                  { return t.conn.Close() }

type wsTransport struct {
	ws *websocket.Conn
}

// errTextFrame is returned for a text frame: packets travel in binary frames.
var errTextFrame = errors.New("client: websocket text frame")

func (t *wsTransport) write(b []byte, deadline time.Time) error {
	if err := t.ws.SetWriteDeadline(deadline); err != nil {
		return err
	}
	return t.ws.WriteMessage(websocket.BinaryMessage, b)
}

// read reads one frame, which must hold exactly one packet. The body gets a
// buffer of its own, of the exact size, so nothing is copied later and an
// idle connection holds no buffer.
func (t *wsTransport) read() (codec.PacketType, []byte, bool, error) {
	mt, r, err := t.ws.NextReader()
	if err != nil {
		return 0, nil, false, wsReadError(err)
	}
	if mt != websocket.BinaryMessage {
		return 0, nil, false, errTextFrame
	}
	var hdr [codec.HeaderLength]byte
	if n, err := io.ReadFull(r, hdr[:]); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return 0, nil, false, fmt.Errorf("%w: frame of %d bytes", codec.ErrPacketLength, n)
		}
		return 0, nil, false, wsReadError(err)
	}
	typ, n, err := codec.ParseHeader(hdr[:], 0)
	if err != nil {
		return 0, nil, false, err
	}
	var body []byte
	if n > 0 {
		body = make([]byte, n)
		if k, err := io.ReadFull(r, body); err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return 0, nil, false, fmt.Errorf("%w: header says %d, frame holds %d", codec.ErrPacketLength, n, k)
			}
			return 0, nil, false, wsReadError(err)
		}
	}
	var one [1]byte
	if k, err := io.ReadFull(r, one[:]); k > 0 {
		return 0, nil, false, fmt.Errorf("%w: header says %d, frame holds more", codec.ErrPacketLength, n)
	} else if err != io.EOF {
		return 0, nil, false, wsReadError(err)
	}
	return typ, body, true, nil
}

// wsReadError makes the end of a WebSocket connection read like the end of a
// TCP one: a close frame with a normal code, or the socket closing without
// one, wraps io.EOF (the *websocket.CloseError stays reachable with
// errors.As).
func wsReadError(err error) error {
	if websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway,
		websocket.CloseNoStatusReceived, websocket.CloseAbnormalClosure) {
		return fmt.Errorf("%w: %w", io.EOF, err)
	}
	return err
}

func (t *wsTransport) setReadDeadline(d time.Time) error { return t.ws.SetReadDeadline(d) }
func (t *wsTransport) abort()                            { _ = t.ws.UnderlyingConn().SetDeadline(time.Unix(1, 0)) }

func (t *wsTransport) close(graceful bool) error {
	if graceful {
		msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
		_ = t.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
	}
	return t.ws.Close()
}
