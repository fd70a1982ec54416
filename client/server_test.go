package client

// A small server speaking the protocol with codec, over real TCP and a real
// gorilla/websocket server, for the tests. Each connection does the
// handshake, then runs the test's handler; the handler returns (closing the
// connection) when a read or write fails.

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/nopal-dev/nopal/codec"
)

var kinds = []string{"tcp", "ws"}

// forEachKind runs f as a parallel subtest over TCP and over WebSocket.
func forEachKind(t *testing.T, f func(t *testing.T, kind string)) {
	t.Helper()
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f(t, kind)
		})
	}
}

type serverOpts struct {
	code       int // handshake code; 0 means 200
	dict       map[string]uint16
	heartbeat  int
	serializer string // announced; "" means json
	compress   bool   // zlib the handshake response (must shrink)
	stall      bool   // never answer the handshake
	tls        *tls.Config
	// Resume: the handshake hands out resumeToken, and a handshake that
	// asks to resume (with any token) gets Resumed, unless fresh (a fresh
	// session instead) or refuseResume (code 400).
	resume       bool
	fresh        bool
	refuseResume bool
	// earlyEnd: a connection may end before its handshake (a client that
	// gives up a resume).
	earlyEnd bool
}

// resumeToken is what a server with resume hands out.
const resumeToken = "tok"

// resumed reports whether the connection's handshake asked to resume.
func (s *srvConn) resumed() bool { return s.req.Sys.Resume != nil }

// srvConn is the server side of one connection.
type srvConn struct {
	tcp    net.Conn
	ws     *websocket.Conn
	pr     *codec.PacketReader
	mc     *codec.MessageCodec
	req    codec.HandshakeRequest // what the client sent
	remote net.Addr
	wmu    sync.Mutex
}

func (s *srvConn) conn() net.Conn {
	if s.ws != nil {
		return s.ws.UnderlyingConn()
	}
	return s.tcp
}

// read returns the next packet whole (header and body), copied.
func (s *srvConn) read() (codec.PacketType, []byte, error) {
	if s.ws != nil {
		_, b, err := s.ws.ReadMessage()
		if err != nil {
			return 0, nil, err
		}
		t, _, err := codec.ParsePacket(b, 0)
		return t, b, err
	}
	t, _, pkt, err := s.pr.Next()
	return t, bytes.Clone(pkt), err
}

// readMsg returns the next Data packet's message and raw bytes, skipping
// heartbeats.
func (s *srvConn) readMsg() (codec.Message, []byte, error) {
	for {
		t, pkt, err := s.read()
		if err != nil {
			return codec.Message{}, nil, err
		}
		if t == codec.Heartbeat {
			continue
		}
		if t != codec.Data {
			return codec.Message{}, nil, errors.New("unexpected " + t.String())
		}
		var m codec.Message
		err = s.mc.Decode(pkt[codec.HeaderLength:], &m)
		return m, pkt, err
	}
}

func (s *srvConn) writeRaw(b []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.ws != nil {
		return s.ws.WriteMessage(websocket.BinaryMessage, b)
	}
	_, err := s.tcp.Write(b)
	return err
}

func (s *srvConn) writePacket(t codec.PacketType, body []byte) error {
	b, err := codec.AppendPacket(nil, t, body)
	if err != nil {
		return err
	}
	return s.writeRaw(b)
}

func (s *srvConn) send(m *codec.Message) error {
	b, err := s.mc.AppendPacket(nil, m)
	if err != nil {
		return err
	}
	return s.writeRaw(b)
}

func (s *srvConn) reply(id uint64, data []byte) error {
	return s.send(&codec.Message{Type: codec.Response, ID: id, Data: data})
}

func (s *srvConn) push(route string, data []byte) error {
	return s.send(&codec.Message{Type: codec.Push, Route: route, Data: data})
}

func (s *srvConn) close() {
	if s.ws != nil {
		s.ws.Close()
	} else {
		s.tcp.Close()
	}
}

type testServer struct {
	t      testing.TB
	o      serverOpts
	handle func(*srvConn)
	mu     sync.Mutex
	conns  map[*srvConn]bool
	closed bool
	wg     sync.WaitGroup
}

// startServer starts a server of the given kind on 127.0.0.1:0 and returns
// the address to dial. handle runs after each successful handshake. The
// server and its connections are closed when the test ends.
func startServer(t testing.TB, kind string, o serverOpts, handle func(*srvConn)) string {
	t.Helper()
	s := &testServer{t: t, o: o, handle: handle, conns: map[*srvConn]bool{}}
	var addr string
	var stop func()
	switch kind {
	case "tcp":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if o.tls != nil {
			ln = tls.NewListener(ln, o.tls)
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				s.wg.Add(1)
				go func() {
					defer s.wg.Done()
					s.serve(&srvConn{tcp: c, pr: codec.NewPacketReader(c, nil, 0), remote: c.RemoteAddr()})
				}()
			}
		}()
		addr, stop = ln.Addr().String(), func() { ln.Close() }
	case "ws":
		up := websocket.Upgrader{}
		hs := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.wg.Add(1)
			defer s.wg.Done()
			ws, err := up.Upgrade(w, r, nil)
			if err != nil {
				return
			}
			s.serve(&srvConn{ws: ws, remote: ws.RemoteAddr()})
		}))
		scheme := "ws://"
		if o.tls != nil {
			hs.TLS = o.tls
			hs.StartTLS()
			scheme = "wss://"
		} else {
			hs.Start()
		}
		addr, stop = scheme+hs.Listener.Addr().String()+"/ws", hs.Close
	default:
		t.Fatalf("unknown kind %q", kind)
	}
	t.Cleanup(func() {
		stop()
		s.mu.Lock()
		s.closed = true
		for c := range s.conns {
			c.close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return addr
}

// stopped reports whether the test has ended and closed the server.
func (s *testServer) stopped() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *testServer) serve(c *srvConn) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.close()
		return
	}
	s.conns[c] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.close()
	}()

	typ, pkt, err := c.read()
	if err != nil || typ != codec.Handshake {
		if s.stopped() || s.o.earlyEnd && err != nil {
			return // the test or the client ended first
		}
		s.t.Errorf("server: want a handshake, got %v %v", typ, err)
		return
	}
	if err := json.Unmarshal(pkt[codec.HeaderLength:], &c.req); err != nil {
		s.t.Errorf("server: handshake body %q: %v", pkt[codec.HeaderLength:], err)
		return
	}
	if s.o.stall {
		c.read() // until the client gives up
		return
	}
	code := s.o.code
	if code == 0 {
		code = codec.HandshakeOK
	}
	if c.resumed() && s.o.refuseResume {
		code = codec.HandshakeFailed
	}
	resp := codec.HandshakeResponse{Code: code}
	if code == codec.HandshakeOK {
		ser := s.o.serializer
		if ser == "" {
			ser = "json"
		}
		resp.Sys = &codec.HandshakeResponseSys{Dict: s.o.dict, Heartbeat: s.o.heartbeat, Serializer: ser}
		if s.o.resume {
			resp.Sys.Resume = resumeToken
			resp.Sys.Resumed = c.resumed() && !s.o.fresh
		}
	}
	body, err := json.Marshal(resp)
	if err != nil {
		s.t.Error(err)
		return
	}
	if s.o.compress {
		var ok bool
		if body, ok = (&codec.MessageCodec{}).Deflate(body); !ok {
			s.t.Error("server: handshake response does not compress")
			return
		}
	}
	if err := c.writePacket(codec.Handshake, body); err != nil || code != codec.HandshakeOK {
		return
	}
	if typ, _, err := c.read(); err != nil || typ != codec.HandshakeAck {
		if s.stopped() || s.o.earlyEnd && err != nil {
			return // the test or the client ended first
		}
		s.t.Errorf("server: want a handshake ack, got %v %v", typ, err)
		return
	}
	dict, err := codec.NewDictionary(s.o.dict)
	if err != nil {
		s.t.Error(err)
		return
	}
	c.mc = &codec.MessageCodec{Dict: dict}
	if s.handle != nil {
		s.handle(c)
	}
}

// serveRequests answers each request with answer(m) until the connection
// ends; answer returning nil data sends an empty payload.
func serveRequests(answer func(c *srvConn, m codec.Message) []byte) func(*srvConn) {
	return func(c *srvConn) {
		for {
			m, _, err := c.readMsg()
			if err != nil {
				return
			}
			if m.Type == codec.Request {
				if c.reply(m.ID, answer(c, m)) != nil {
					return
				}
			}
		}
	}
}

// echo answers every request with its own payload.
var echo = serveRequests(func(_ *srvConn, m codec.Message) []byte { return bytes.Clone(m.Data) })

// mustDial connects to addr and closes the client when the test ends.
func mustDial(t testing.TB, addr string, opts ...Option) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, addr, opts...)
	if err != nil {
		t.Fatalf("Dial(%s): %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// await receives from ch or fails the test after a generous timeout.
func await[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}
