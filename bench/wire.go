package main

import (
	"bytes"
	"compress/zlib"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/nopal-dev/nopal/codec"
)

// The load generator speaks the Pitaya protocol over raw sockets: the point
// is to measure the server, not a client library.

// handshakeBody is the client's handshake, as a Pitaya client sends it.
const handshakeBody = `{"sys":{"platform":"bench","libVersion":"nopal-bench","clientBuildNumber":"1","clientVersion":"1"},"user":{}}`

var (
	handshakePacket = mustPacket(codec.Handshake, []byte(handshakeBody))
	ackPacket       = mustPacket(codec.HandshakeAck, nil)
)

func mustPacket(t codec.PacketType, body []byte) []byte {
	p, err := codec.AppendPacket(nil, t, body)
	if err != nil {
		panic(err)
	}
	return p
}

// maxBody bounds what the load generator accepts in one packet.
const maxBody = 1 << 20

// rawConn is one client connection read packet by packet. It is the light
// client of DESIGN §6: reads go into its own buffer, so a request costs one
// write and, most of the time, one read (a header and body read apart
// cost the client a second syscall per request, and made it the
// bottleneck before the server).
type rawConn struct {
	c    *net.TCPConn
	hdr  [codec.HeaderLength]byte
	rbuf []byte // rbuf[r:w] is read and not consumed yet
	r, w int
}

// rawReadBuffer is a connection's first read buffer: a 100-byte echo's
// answers fit many times; a bigger packet grows it.
const rawReadBuffer = 4096

// dialRaw connects to addr, from local (nil: any) as the source address.
func dialRaw(addr string, local net.IP, timeout time.Duration) (*rawConn, error) {
	d := net.Dialer{Timeout: timeout}
	if local != nil {
		d.LocalAddr = &net.TCPAddr{IP: local}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &rawConn{c: c.(*net.TCPConn)}, nil
}

// fill reads until at least n bytes are buffered, in as few reads as the
// peer's writes allow.
func (r *rawConn) fill(n int) error {
	if r.w-r.r >= n {
		return nil
	}
	if r.r == r.w {
		r.r, r.w = 0, 0
	}
	if len(r.rbuf)-r.r < n { // no room after r: move the rest to the front, or grow
		buf := r.rbuf
		if n > len(buf) {
			buf = make([]byte, max(n, rawReadBuffer))
		}
		r.w = copy(buf, r.rbuf[r.r:r.w])
		r.r, r.rbuf = 0, buf
	}
	for r.w-r.r < n {
		m, err := r.c.Read(r.rbuf[r.w:])
		r.w += m
		if err != nil && r.w-r.r < n {
			if err == io.EOF && r.w > r.r {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// readPacket reads one whole packet: the 4-byte header, then the body. The
// body is valid until the next call.
func (r *rawConn) readPacket() (codec.PacketType, []byte, error) {
	if err := r.fill(codec.HeaderLength); err != nil {
		return 0, nil, err
	}
	h := r.rbuf[r.r:]
	n := int(h[1])<<16 | int(h[2])<<8 | int(h[3])
	if n > maxBody {
		return 0, nil, fmt.Errorf("packet of %d bytes", n)
	}
	if err := r.fill(codec.HeaderLength + n); err != nil {
		return 0, nil, err
	}
	t := codec.PacketType(r.rbuf[r.r])
	b := r.rbuf[r.r+codec.HeaderLength : r.r+codec.HeaderLength+n]
	r.r += codec.HeaderLength + n
	return t, b, nil
}

// handshake performs the Pitaya handshake: Handshake, the server's answer
// (code 200), HandshakeAck.
func (r *rawConn) handshake(timeout time.Duration) error {
	_ = r.c.SetDeadline(time.Now().Add(timeout))
	defer func() { _ = r.c.SetDeadline(time.Time{}) }()
	if _, err := r.c.Write(handshakePacket); err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	t, body, err := r.readPacket()
	if err != nil {
		return fmt.Errorf("handshake response: %w", err)
	}
	if err := checkHandshakeResponse(t, body); err != nil {
		return err
	}
	if _, err := r.c.Write(ackPacket); err != nil {
		return fmt.Errorf("handshake ack: %w", err)
	}
	return nil
}

// checkHandshakeResponse checks the server's answer to the handshake: a
// Handshake packet whose JSON (zlib-compressed without a flag, as Pitaya
// does, when it starts with 0x78) has code 200.
func checkHandshakeResponse(t codec.PacketType, body []byte) error {
	if t != codec.Handshake {
		return fmt.Errorf("handshake response: packet %s", t)
	}
	if len(body) > 0 && body[0] == 0x78 {
		zr, err := zlib.NewReader(bytes.NewReader(body))
		if err != nil {
			return fmt.Errorf("handshake response: %w", err)
		}
		if body, err = io.ReadAll(io.LimitReader(zr, maxBody)); err != nil {
			return fmt.Errorf("handshake response: %w", err)
		}
	}
	var resp codec.HandshakeResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		return fmt.Errorf("handshake response: %w", err)
	}
	if resp.Code != codec.HandshakeOK {
		return fmt.Errorf("handshake refused: code %d", resp.Code)
	}
	return nil
}

// ping is the floor's counterpart of the handshake: one byte echoed, so the
// server has accepted the connection and is reading it.
func (r *rawConn) ping(timeout time.Duration) error {
	_ = r.c.SetDeadline(time.Now().Add(timeout))
	defer func() { _ = r.c.SetDeadline(time.Time{}) }()
	if _, err := r.c.Write([]byte{0}); err != nil {
		return err
	}
	_, err := io.ReadFull(r.c, r.hdr[:1])
	return err
}

// alive reports whether the peer has not closed the connection, without
// blocking or consuming anything (recv with MSG_PEEK|MSG_DONTWAIT).
func (r *rawConn) alive() bool {
	if r.w > r.r { // read already: a heartbeat, say
		return true
	}
	sc, err := r.c.SyscallConn()
	if err != nil {
		return false
	}
	ok := false
	var b [1]byte
	cerr := sc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case n > 0: // something to read (a heartbeat): alive
			ok = true
		case err == syscall.EAGAIN || err == syscall.EWOULDBLOCK: // nothing, open
			ok = true
		}
		return true // never wait
	})
	return ok && cerr == nil
}

func (r *rawConn) Close() error { return r.c.Close() }

// exchange is what one request/response costs the load generator: a
// precomputed request written whole, and the expected answer.
type exchange struct {
	req   []byte
	nopal bool // answers are Nopal Responses (else: the echoed bytes)
	id    byte // the request id (one varint byte)
	// respBody is the expected body length of the answer packet.
	respBody int
}

const (
	flagTypeMask = 0x0e
	flagResponse = byte(codec.Response) << 1
	flagZlib     = 0x10
	flagError    = 0x20
)

// newExchange builds the request packet for route echo.echo with payload:
// the Nopal server answers with a Response; the echo floor sends the same
// bytes back.
func newExchange(payload []byte, nopal bool) (*exchange, error) {
	return newRouteExchange(echoRoute, payload, nopal)
}

// newRouteExchange is newExchange for a route whose handler echoes its
// payload (clusterEchoRoute).
func newRouteExchange(route string, payload []byte, nopal bool) (*exchange, error) {
	const id = 1
	req, err := buildRequest(route, id, payload)
	if err != nil {
		return nil, err
	}
	e := &exchange{req: req, nopal: nopal, id: id, respBody: len(req) - codec.HeaderLength}
	if nopal {
		e.respBody = 1 + 1 + len(payload) // flag, id, data
	}
	return e, nil
}

// roundTrip sends the request and reads its answer, skipping heartbeats.
func (r *rawConn) roundTrip(e *exchange) error {
	if _, err := r.c.Write(e.req); err != nil {
		return err
	}
	for range 1000 { // a few heartbeats at most; bounded anyway
		t, body, err := r.readPacket()
		if err != nil {
			return err
		}
		if ok, err := e.check(t, body); ok || err != nil {
			return err
		}
	}
	return fmt.Errorf("no response among 1000 packets")
}

// buildRequest returns a whole Request packet for route.
func buildRequest(route string, id uint64, data []byte) ([]byte, error) {
	mc := &codec.MessageCodec{}
	return mc.AppendPacket(nil, &codec.Message{Type: codec.Request, ID: id, Route: route, Data: data})
}

// flagPush is the flag of an uncompressed Push message.
const flagPush = byte(codec.Push) << 1

// readResponse reads packets until the Response to request id (a one-byte
// varint) and returns its data, valid until the next read. Heartbeats are
// skipped; a push or an error response is an error.
func (r *rawConn) readResponse(id byte) ([]byte, error) {
	for range 1000 {
		t, body, err := r.readPacket()
		if err != nil {
			return nil, err
		}
		switch t {
		case codec.Heartbeat:
			continue
		case codec.Data:
		default:
			return nil, fmt.Errorf("unexpected packet %s", t)
		}
		if len(body) < 2 || body[0]&flagTypeMask != flagResponse || body[1] != id {
			return nil, fmt.Errorf("not the response to request %d: % x", id, body[:min(len(body), 16)])
		}
		if body[0]&flagError != 0 {
			return nil, fmt.Errorf("error response: %q", body[2:])
		}
		if body[0]&flagZlib != 0 {
			return nil, errors.New("compressed response")
		}
		return body[2:], nil
	}
	return nil, errors.New("no response among 1000 packets")
}

// call writes a request packet and returns the data of its response.
func (r *rawConn) call(req []byte, id byte) ([]byte, error) {
	if _, err := r.c.Write(req); err != nil {
		return nil, err
	}
	return r.readResponse(id)
}

// readPush reads packets until a Push and returns its route and data, valid
// until the next read. Heartbeats are skipped; anything else is an error.
func (r *rawConn) readPush() (route, data []byte, err error) {
	for range 1000 {
		t, body, err := r.readPacket()
		if err != nil {
			return nil, nil, err
		}
		switch t {
		case codec.Heartbeat:
			continue
		case codec.Data:
		default:
			return nil, nil, fmt.Errorf("unexpected packet %s", t)
		}
		route, data, err := parsePush(body)
		return route, data, err
	}
	return nil, nil, errors.New("no push among 1000 packets")
}

// parsePush splits the body of a Push message with an uncompressed route
// and payload into its route and data.
func parsePush(body []byte) (route, data []byte, err error) {
	if len(body) < 2 || body[0] != flagPush {
		return nil, nil, fmt.Errorf("not an uncompressed push: % x", body[:min(len(body), 16)])
	}
	n := int(body[1])
	if len(body) < 2+n {
		return nil, nil, fmt.Errorf("push route of %d bytes past the end", n)
	}
	return body[2 : 2+n], body[2+n:], nil
}
