package frontend_test

// Helpers of the end-to-end tests: a server built with nopal.New around a
// test component, and a raw client that speaks the wire protocol byte by byte
// over TCP or WebSocket, so that the tests see exactly what goes on the wire.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/nopal-dev/nopal"
	"github.com/nopal-dev/nopal/backend"
	"github.com/nopal-dev/nopal/codec"
	"github.com/nopal-dev/nopal/frontend"
	"github.com/nopal-dev/nopal/session"
)

// waitTimeout bounds every wait of the tests: generous, so that a loaded
// machine (-race, -count) does not make them flaky, and still far below the
// test binary's timeout.
const waitTimeout = 10 * time.Second

// serverType is the server type of the app under test.
const serverType = "test"

// ---------------------------------------------------------------------------
// The test component (routes "t.<method>").

// PushReq asks t.push for N pushes of about Size bytes each.
type PushReq struct {
	N    int `json:"n"`
	Size int `json:"size"`
}

// PushRes says how many pushes t.push sent.
type PushRes struct {
	Sent int `json:"sent"`
}

// BindReq asks t.bind to bind the session to UID.
type BindReq struct {
	UID string `json:"uid"`
}

// BindRes is the id of the session t.bind bound.
type BindRes struct {
	Session int64 `json:"session"`
}

// pushResult is what t.push reports on testComp.pushed.
type pushResult struct {
	session int64
	sent    int
	err     error
}

type testComp struct {
	notified chan string   // t.record payloads
	entered  chan int64    // session ids entering t.slow
	release  chan struct{} // closed (by unblock) to let t.slow return
	once     sync.Once
	pushed   chan pushResult // every t.push when it ends
	closed   chan int64      // session ids whose OnClose callback (set by t.bind) ran
}

func newTestComp() *testComp {
	return &testComp{
		notified: make(chan string, 64),
		entered:  make(chan int64, 64),
		release:  make(chan struct{}),
		pushed:   make(chan pushResult, 64),
		closed:   make(chan int64, 64),
	}
}

// unblock lets every t.slow call return.
func (c *testComp) unblock() { c.once.Do(func() { close(c.release) }) }

// Echo answers the request's bytes unchanged.
func (c *testComp) Echo(_ context.Context, in []byte) ([]byte, error) { return in, nil }

// Record is a notify: it hands its payload to the test.
func (c *testComp) Record(_ context.Context, in []byte) { c.notified <- string(in) }

// Push pushes N messages "onPush" to its session, then answers how many it
// sent; it stops at the first push that fails.
func (c *testComp) Push(ctx context.Context, in *PushReq) (*PushRes, error) {
	s := session.FromContext(ctx)
	res := pushResult{session: s.ID()}
	pad := strings.Repeat("x", in.Size)
	for i := range in.N {
		if res.err = s.Push("onPush", fmt.Appendf(nil, `{"i":%d,"pad":"%s"}`, i, pad)); res.err != nil {
			break
		}
		res.sent++
	}
	c.pushed <- res
	if res.err != nil {
		return nil, res.err
	}
	return &PushRes{Sent: res.sent}, nil
}

// Panic panics.
func (c *testComp) Panic(context.Context) (*PushRes, error) { panic("test handler panics") }

// Slow blocks until the test closes release.
func (c *testComp) Slow(ctx context.Context) (map[string]string, error) {
	c.entered <- session.FromContext(ctx).ID()
	<-c.release
	return map[string]string{"slow": "done"}, nil
}

// Fail returns an application error with metadata.
func (c *testComp) Fail(context.Context) (*PushRes, error) {
	return nil, codec.NewError("GAME-042", "not enough gold", map[string]string{"need": "10", "have": "3"})
}

// Bind binds the session and reports on closed when it ends.
func (c *testComp) Bind(ctx context.Context, in *BindReq) (*BindRes, error) {
	s := session.FromContext(ctx)
	if err := s.Bind(ctx, in.UID); err != nil {
		return nil, err
	}
	id := s.ID()
	s.OnClose(func() { c.closed <- id })
	return &BindRes{Session: id}, nil
}

// ---------------------------------------------------------------------------
// The server under test.

// serverOpts configures startServer beyond the app's Config.
type serverOpts struct {
	acceptorOpts []frontend.AcceptorOption // both acceptors (WebSocket through WithWSOptions)
	wrappers     func(t *testing.T) []frontend.Wrapper
	setup        func(app *nopal.App) // before Start: validators, hooks
}

type testServer struct {
	app     *nopal.App
	comp    *testComp
	tcpAddr string // host:port
	wsAddr  string // host:port
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// startServer builds an app around a fresh testComp with a TCP and a
// WebSocket acceptor on free loopback ports, starts it and shuts it down when
// the test ends.
func startServer(t *testing.T, cfg nopal.Config, o serverOpts) *testServer {
	t.Helper()
	cfg.ServerType = serverType
	if cfg.Logger == nil {
		cfg.Logger = discardLogger()
	}
	app, err := nopal.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	comp := newTestComp()
	if err := app.Register(comp, backend.WithName("t")); err != nil {
		t.Fatal(err)
	}
	if o.setup != nil {
		o.setup(app)
	}
	var tcp, ws frontend.Acceptor = frontend.NewTCPAcceptor("127.0.0.1:0", o.acceptorOpts...),
		frontend.NewWSAcceptor("127.0.0.1:0", frontend.WithWSOptions(o.acceptorOpts...))
	if o.wrappers != nil {
		tcp = frontend.WithWrappers(tcp, o.wrappers(t)...)
		ws = frontend.WithWrappers(ws, o.wrappers(t)...)
	}
	app.AddAcceptor(tcp)
	app.AddAcceptor(ws)
	ctx := context.Background()
	if err := app.Start(ctx); err != nil {
		t.Fatal(err)
	}
	s := &testServer{app: app, comp: comp, tcpAddr: tcp.Addr().String(), wsAddr: ws.Addr().String()}
	t.Cleanup(func() {
		comp.unblock() // no handler may stay blocked past the test
		sctx, cancel := context.WithTimeout(ctx, waitTimeout)
		defer cancel()
		if err := app.Shutdown(sctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return s
}

func (s *testServer) stats() *frontend.Stats { return s.app.Frontend().Stats() }

// ---------------------------------------------------------------------------
// Transports.

type transport struct {
	name string
	ws   bool
}

var transports = []transport{{name: "tcp"}, {name: "ws", ws: true}}

// forEachTransport runs f as a parallel subtest over TCP and over WebSocket.
func forEachTransport(t *testing.T, f func(t *testing.T, tr transport)) {
	t.Helper()
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			f(t, tr)
		})
	}
}

// addr is what client.Dial takes for this transport.
func (tr transport) addr(s *testServer) string {
	if tr.ws {
		return "ws://" + s.wsAddr + "/"
	}
	return s.tcpAddr
}

// dial opens a raw connection (for WebSocket, the upgrade is done).
func (tr transport) dial(t *testing.T, s *testServer) *rawConn {
	t.Helper()
	c, err := tr.tryDial(s)
	if err != nil {
		t.Fatalf("dial %s: %v", tr.name, err)
	}
	c.t = t
	t.Cleanup(func() { _ = c.close() })
	return c
}

// tryDial dials without failing the test, for connections that must be refused.
func (tr transport) tryDial(s *testServer) (*rawConn, error) {
	if tr.ws {
		d := websocket.Dialer{HandshakeTimeout: waitTimeout}
		ws, _, err := d.Dial("ws://"+s.wsAddr+"/", nil)
		if err != nil {
			return nil, err
		}
		return &rawConn{ws: ws}, nil
	}
	nc, err := net.DialTimeout("tcp", s.tcpAddr, waitTimeout)
	if err != nil {
		return nil, err
	}
	return &rawConn{nc: nc}, nil
}

// ---------------------------------------------------------------------------
// The raw client.

// rawConn is a client connection driven byte by byte. Its methods that fail
// the test must be called from the test's goroutine.
type rawConn struct {
	t  *testing.T
	nc net.Conn        // TCP
	ws *websocket.Conn // WebSocket
}

func (c *rawConn) close() error {
	if c.ws != nil {
		return c.ws.Close()
	}
	return c.nc.Close()
}

// write sends b: into the TCP stream as it is, or as one binary WebSocket
// frame.
func (c *rawConn) write(b []byte) {
	c.t.Helper()
	if err := c.tryWrite(b); err != nil {
		c.t.Fatalf("write %x: %v", b, err)
	}
}

func (c *rawConn) tryWrite(b []byte) error {
	if c.ws != nil {
		return c.ws.WriteMessage(websocket.BinaryMessage, b)
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(waitTimeout))
	_, err := c.nc.Write(b)
	return err
}

// writeFrame sends one WebSocket frame of type mt.
func (c *rawConn) writeFrame(mt int, b []byte) {
	c.t.Helper()
	if c.ws == nil {
		c.t.Fatal("writeFrame on a TCP connection")
	}
	if err := c.ws.WriteMessage(mt, b); err != nil {
		c.t.Fatalf("write frame: %v", err)
	}
}

// next reads one whole packet (header included) before deadline. Over
// WebSocket a frame is returned as it is.
func (c *rawConn) next(deadline time.Time) ([]byte, error) {
	if c.ws != nil {
		_ = c.ws.SetReadDeadline(deadline)
		_, b, err := c.ws.ReadMessage()
		return b, err
	}
	_ = c.nc.SetReadDeadline(deadline)
	hdr := make([]byte, codec.HeaderLength)
	if _, err := io.ReadFull(c.nc, hdr); err != nil {
		return nil, err
	}
	pkt := make([]byte, codec.HeaderLength+(int(hdr[1])<<16|int(hdr[2])<<8|int(hdr[3])))
	copy(pkt, hdr)
	if _, err := io.ReadFull(c.nc, pkt[codec.HeaderLength:]); err != nil {
		return nil, err
	}
	return pkt, nil
}

// packet reads the next packet and checks that it is one.
func (c *rawConn) packet() []byte {
	c.t.Helper()
	pkt, err := c.next(time.Now().Add(waitTimeout))
	if err != nil {
		c.t.Fatalf("read packet: %v", err)
	}
	if _, _, err := codec.ParsePacket(pkt, 0); err != nil {
		c.t.Fatalf("server sent a bad packet %x: %v", pkt, err)
	}
	return pkt
}

// expect reads the next packet and compares it with want.
func (c *rawConn) expect(what string, want []byte) {
	c.t.Helper()
	if got := c.packet(); !bytes.Equal(got, want) {
		c.t.Fatalf("%s:\n got %x\nwant %x", what, got, want)
	}
}

// msg reads the next packet, which must be a Data packet, and decodes it.
func (c *rawConn) msg() codec.Message {
	c.t.Helper()
	pkt := c.packet()
	if codec.PacketType(pkt[0]) != codec.Data {
		c.t.Fatalf("got a %v packet %x, want Data", codec.PacketType(pkt[0]), pkt)
	}
	var m codec.Message
	var mc codec.MessageCodec
	if err := mc.Decode(pkt[codec.HeaderLength:], &m); err != nil {
		c.t.Fatalf("decode %x: %v", pkt, err)
	}
	return m
}

// response reads the next packet, which must be the response to id.
func (c *rawConn) response(id uint64) codec.Message {
	c.t.Helper()
	m := c.msg()
	if m.Type != codec.Response || m.ID != id {
		c.t.Fatalf("got %v id %d (%q), want the response to %d", m.Type, m.ID, m.Data, id)
	}
	return m
}

// errorResponse reads the response to id, which must carry the error flag.
func (c *rawConn) errorResponse(id uint64) *codec.Error {
	c.t.Helper()
	m := c.response(id)
	if !m.Err {
		c.t.Fatalf("response to %d has no error flag: %q", id, m.Data)
	}
	e, err := codec.DecodeError(codec.JSON{}, m.Data)
	if err != nil {
		c.t.Fatal(err)
	}
	return e
}

// closedAfter reads until the connection ends and returns the packets that
// came first. A read timeout fails the test: the server did not close.
func (c *rawConn) closedAfter() [][]byte {
	c.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	var got [][]byte
	for {
		pkt, err := c.next(deadline)
		if err != nil {
			if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
				c.t.Fatalf("connection still open after %v (got %x)", waitTimeout, got)
			}
			return got
		}
		got = append(got, pkt)
	}
}

// expectClosed checks that the server closes the connection without
// sending anything more.
func (c *rawConn) expectClosed() {
	c.t.Helper()
	if got := c.closedAfter(); len(got) > 0 {
		c.t.Fatalf("got %x before the close, want nothing", got)
	}
}

// handshake sends a handshake with the given user data and returns the
// server's answer.
func (c *rawConn) handshake(user map[string]any) codec.HandshakeResponse {
	c.t.Helper()
	body, err := json.Marshal(codec.HandshakeRequest{
		Sys:  codec.HandshakeSys{Platform: "test", LibVersion: "0.1", BuildNumber: "1", Version: "1"},
		User: user,
	})
	if err != nil {
		c.t.Fatal(err)
	}
	c.write(packet(codec.Handshake, body))
	return c.handshakeResponse()
}

// handshakeResponse reads the server's Handshake packet.
func (c *rawConn) handshakeResponse() codec.HandshakeResponse {
	c.t.Helper()
	pkt := c.packet()
	if codec.PacketType(pkt[0]) != codec.Handshake {
		c.t.Fatalf("got %x, want a handshake response", pkt)
	}
	var hs codec.HandshakeResponse
	if err := json.Unmarshal(pkt[codec.HeaderLength:], &hs); err != nil {
		c.t.Fatalf("handshake response %q: %v", pkt[codec.HeaderLength:], err)
	}
	return hs
}

// ready handshakes and acknowledges: the connection can send Data.
func (c *rawConn) ready() {
	c.t.Helper()
	if hs := c.handshake(nil); hs.Code != codec.HandshakeOK {
		c.t.Fatalf("handshake code %d", hs.Code)
	}
	c.write(packet(codec.HandshakeAck, nil))
}

// request sends a request.
func (c *rawConn) request(id uint64, route string, data []byte) {
	c.t.Helper()
	c.write(request(id, route, data))
}

// echo checks a round trip on t.echo: the connection works.
func (c *rawConn) echo(id uint64) {
	c.t.Helper()
	data := fmt.Appendf(nil, `{"echo":%d}`, id)
	c.request(id, "t.echo", data)
	if m := c.response(id); m.Err || !bytes.Equal(m.Data, data) {
		c.t.Fatalf("echo %d: got %q (error flag %v)", id, m.Data, m.Err)
	}
}

// ---------------------------------------------------------------------------
// Packets.

func packet(t codec.PacketType, body []byte) []byte {
	b, err := codec.AppendPacket(nil, t, body)
	if err != nil {
		panic(err)
	}
	return b
}

func dataPacket(m *codec.Message) []byte {
	var mc codec.MessageCodec
	b, err := mc.AppendPacket(nil, m)
	if err != nil {
		panic(err)
	}
	return b
}

func request(id uint64, route string, data []byte) []byte {
	return dataPacket(&codec.Message{Type: codec.Request, ID: id, Route: route, Data: data})
}

func notify(route string, data []byte) []byte {
	return dataPacket(&codec.Message{Type: codec.Notify, Route: route, Data: data})
}

var (
	kickPacket      = []byte{0x05, 0, 0, 0}
	heartbeatPacket = []byte{0x03, 0, 0, 0}
)

// ---------------------------------------------------------------------------
// Waiting.

// await receives from ch within waitTimeout.
func await[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitTimeout):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// eventually polls cond until it holds: only for state that has no event to
// await (counters, the session pool).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
