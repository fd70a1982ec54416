package frontend_test

// End-to-end tests of the frontend over real sockets: an app built with
// nopal.New serves a test component on a TCP and a WebSocket acceptor, and
// raw clients (helpers_test.go) or the Go client send the bytes. Every
// scenario whose behaviour does not depend on the transport runs over both.

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/nopal-dev/nopal"
	"github.com/nopal-dev/nopal/client"
	"github.com/nopal-dev/nopal/codec"
	"github.com/nopal-dev/nopal/frontend"
	"github.com/nopal-dev/nopal/session"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// --- 1. Handshake ----------------------------------------------------------

func TestHandshake(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		seen := make(chan codec.HandshakeRequest, 16)
		// Resume off: the handshake response is Pitaya's, byte for byte.
		s := startServer(t, nopal.Config{Heartbeat: 15 * time.Second, Resume: frontend.ResumeConfig{Off: true}}, serverOpts{setup: func(app *nopal.App) {
			// Refuses clients whose user data carries the token "bad".
			app.AddHandshakeValidator(func(_ context.Context, s *session.Session, req *codec.HandshakeRequest) error {
				if s == nil {
					return errors.New("no session")
				}
				seen <- *req
				if req.User["token"] == "bad" {
					return errors.New("bad token")
				}
				return nil
			})
		}})
		refused := packet(codec.Handshake, []byte(`{"code":400}`))

		t.Run("good", func(t *testing.T) {
			c := tr.dial(t, s)
			hello := unhex(t, "01000067 7b22737973223a7b22706c6174666f726d223a2263617074757265222c226c696256657273696f6e223a22302e31222c22636c69656e744275696c644e756d626572223a2231222c22636c69656e7456657273696f6e223a2231227d2c2275736572223a7b7d7d")
			c.write(hello)
			pkt := c.packet()
			// The bytes Pitaya sends for the same settings (protocol-vectors.md row 2).
			want := unhex(t, "01000041 7b22636f6465223a3230302c22737973223a7b2264696374223a7b7d2c22686561727462656174223a31352c2273657269616c697a6572223a226a736f6e227d7d")
			if !bytes.Equal(pkt, want) {
				t.Errorf("handshake response\n got %x\nwant %x", pkt, want)
			}
			var body struct {
				Code int `json:"code"`
				Sys  struct {
					Heartbeat  int             `json:"heartbeat"`
					Serializer string          `json:"serializer"`
					Dict       json.RawMessage `json:"dict"`
				} `json:"sys"`
			}
			if err := json.Unmarshal(pkt[codec.HeaderLength:], &body); err != nil {
				t.Fatal(err)
			}
			if body.Code != 200 || body.Sys.Heartbeat != 15 || body.Sys.Serializer != "json" || body.Sys.Dict == nil {
				t.Errorf("handshake response %s", pkt[codec.HeaderLength:])
			}
			if req := await(t, seen, "the validator"); req.Sys.Platform != "capture" || req.Sys.Version != "1" {
				t.Errorf("validator saw %+v", req)
			}
			c.write(packet(codec.HandshakeAck, nil))
			c.echo(1)
		})

		t.Run("validator accepts", func(t *testing.T) {
			c := tr.dial(t, s)
			if hs := c.handshake(map[string]any{"token": "good"}); hs.Code != 200 || hs.Sys == nil {
				t.Fatalf("handshake response %+v", hs)
			}
			if req := await(t, seen, "the validator"); req.User["token"] != "good" || req.Sys.Platform != "test" {
				t.Errorf("validator saw %+v", req)
			}
			c.write(packet(codec.HandshakeAck, nil))
			c.echo(1)
		})

		t.Run("validator refuses", func(t *testing.T) {
			failed := s.stats().HandshakeFailed.Load()
			c := tr.dial(t, s)
			c.write(packet(codec.Handshake, []byte(`{"sys":{"platform":"test"},"user":{"token":"bad"}}`)))
			c.expect("refusal", refused)
			c.expectClosed()
			await(t, seen, "the validator")
			if n := s.stats().HandshakeFailed.Load(); n != failed+1 {
				t.Errorf("HandshakeFailed %d, want %d", n, failed+1)
			}
		})

		t.Run("bad json", func(t *testing.T) {
			c := tr.dial(t, s)
			c.write(packet(codec.Handshake, []byte(`{"sys":`)))
			c.expect("refusal", refused)
			c.expectClosed()
		})

		// The validators saw exactly the three well-formed handshakes.
		select {
		case req := <-seen:
			t.Errorf("validator called once more: %+v", req)
		default:
		}
	})
}

// --- 6 and 10. Bad input closes that connection only, and is counted -------

func TestBadInput(t *testing.T) {
	const maxBody = 1024
	oversized := append([]byte{byte(codec.Data), 0, 0x07, 0xd0}, make([]byte, 2000)...) // 2000 > 1024
	req := request(1, "t.echo", []byte(`{"half":"a packet"}`))

	cases := []struct {
		name   string
		only   string // "tcp" or "ws"; "" for both
		input  func(c *rawConn)
		before []byte // what the server answers before closing (nil: nothing)
		// What the frontend counts for it.
		malformed, handshakeFailed int64
	}{
		{name: "handshake is bad json", input: func(c *rawConn) {
			c.write(packet(codec.Handshake, []byte("{not json")))
		}, before: packet(codec.Handshake, []byte(`{"code":400}`)), handshakeFailed: 1},
		{name: "refused handshake with more packets behind it", input: func(c *rawConn) {
			pkts := [][]byte{packet(codec.Handshake, []byte("{not json")), packet(codec.HandshakeAck, nil), request(1, "t.echo", nil)}
			if c.ws == nil {
				c.write(bytes.Join(pkts, nil))
				return
			}
			for _, p := range pkts {
				_ = c.tryWrite(p) // the server may have closed already
			}
		}, before: packet(codec.Handshake, []byte(`{"code":400}`)), handshakeFailed: 1},
		{name: "data before the handshake", malformed: 1, input: func(c *rawConn) {
			c.request(1, "t.echo", nil)
		}},
		{name: "data before the handshake ack", malformed: 1, input: func(c *rawConn) {
			c.handshake(nil)
			c.request(1, "t.echo", nil)
		}},
		{name: "handshake ack before the handshake", malformed: 1, input: func(c *rawConn) {
			c.write(packet(codec.HandshakeAck, nil))
		}},
		{name: "second handshake", malformed: 1, input: func(c *rawConn) {
			c.ready()
			c.echo(1)
			c.write(packet(codec.Handshake, []byte(`{"sys":{}}`)))
		}},
		{name: "unknown packet type 0x07", malformed: 1, input: func(c *rawConn) {
			c.ready()
			c.write([]byte{0x07, 0, 0, 0})
		}},
		{name: "packet type 0x00", malformed: 1, input: func(c *rawConn) {
			c.ready()
			c.write([]byte{0x00, 0, 0, 1, 0})
		}},
		{name: "kick from the client", malformed: 1, input: func(c *rawConn) {
			c.ready()
			c.write(packet(codec.Kick, nil))
		}},
		{name: "oversized packet", malformed: 1, input: func(c *rawConn) {
			c.ready()
			c.write(oversized)
		}},
		{name: "empty data packet", malformed: 1, input: func(c *rawConn) {
			c.ready()
			c.write(packet(codec.Data, nil))
		}},
		{name: "unknown message type", malformed: 1, input: func(c *rawConn) {
			c.ready()
			c.write(packet(codec.Data, []byte{0x0e, 1, 't', '{', '}'}))
		}},
		{name: "response from the client", malformed: 1, input: func(c *rawConn) {
			c.ready()
			c.write(dataPacket(&codec.Message{Type: codec.Response, ID: 1, Data: []byte("{}")}))
		}},
		{name: "unknown compressed route", malformed: 1, input: func(c *rawConn) {
			c.ready()
			c.write(packet(codec.Data, []byte{0x01, 1, 0x12, 0x34, '{', '}'}))
		}},
		{name: "route past the end", malformed: 1, input: func(c *rawConn) {
			c.ready()
			c.write(packet(codec.Data, []byte{0x00, 1, 40, 't', '.'}))
		}},
		{name: "text frame", only: "ws", malformed: 1, input: func(c *rawConn) {
			c.ready()
			c.writeFrame(websocket.TextMessage, request(2, "t.echo", []byte("{}")))
		}},
		{name: "two packets in one frame", only: "ws", malformed: 1, input: func(c *rawConn) {
			c.ready()
			c.write(append(request(2, "t.echo", []byte("{}")), request(3, "t.echo", []byte("{}"))...))
		}},
		{name: "half a packet in a frame", only: "ws", malformed: 1, input: func(c *rawConn) {
			c.ready()
			c.write(req[:len(req)/2])
		}},
		{name: "frame shorter than a header", only: "ws", malformed: 1, input: func(c *rawConn) {
			c.ready()
			c.write([]byte{0x04, 0})
		}},
		{name: "empty frame", only: "ws", malformed: 1, input: func(c *rawConn) {
			c.ready()
			c.write(nil)
		}},
		{name: "frame longer than its header says", only: "ws", malformed: 1, input: func(c *rawConn) {
			c.ready()
			c.write(append(bytes.Clone(req), 0))
		}},
	}

	forEachTransport(t, func(t *testing.T, tr transport) {
		s := startServer(t, nopal.Config{}, serverOpts{
			acceptorOpts: []frontend.AcceptorOption{frontend.WithMaxPacketSize(maxBody)},
		})
		st := s.stats()
		// A client connected all along: every case must leave it working.
		bystander := tr.dial(t, s)
		bystander.ready()
		bystander.echo(1)
		id := uint64(1)

		for _, tc := range cases {
			if tc.only != "" && tc.only != tr.name {
				continue
			}
			t.Run(tc.name, func(t *testing.T) {
				malformed, hsFailed := st.Malformed.Load(), st.HandshakeFailed.Load()
				c := tr.dial(t, s)
				tc.input(c)
				got := c.closedAfter()
				var want [][]byte
				if tc.before != nil {
					want = [][]byte{tc.before}
				}
				if fmt.Sprintf("%x", got) != fmt.Sprintf("%x", want) {
					t.Errorf("before the close got %x, want %x", got, want)
				}
				// Mostly the counters move before the connection closes,
				// but gorilla/websocket sends its close frame (read limit)
				// from inside the server's read.
				eventually(t, "the counters", func() bool {
					return st.Malformed.Load()-malformed >= tc.malformed && st.HandshakeFailed.Load()-hsFailed >= tc.handshakeFailed
				})
				if n := st.Malformed.Load() - malformed; n != tc.malformed {
					t.Errorf("Malformed went up by %d, want %d", n, tc.malformed)
				}
				if n := st.HandshakeFailed.Load() - hsFailed; n != tc.handshakeFailed {
					t.Errorf("HandshakeFailed went up by %d, want %d", n, tc.handshakeFailed)
				}
				bystander.t = t
				id++
				bystander.echo(id)
			})
		}

		t.Run("largest packet allowed", func(t *testing.T) {
			c := tr.dial(t, s)
			c.ready()
			body := request(9, "t.echo", nil)[codec.HeaderLength:]
			data := []byte(`"` + strings.Repeat("y", maxBody-len(body)-2) + `"`)
			pkt := request(9, "t.echo", data)
			if len(pkt) != codec.HeaderLength+maxBody {
				t.Fatalf("packet of %d bytes", len(pkt))
			}
			c.write(pkt)
			if m := c.response(9); !bytes.Equal(m.Data, data) {
				t.Fatalf("echo of %d bytes came back as %d", len(data), len(m.Data))
			}
		})

		bystander.t = t
		bystander.echo(1000)
		eventually(t, "only the bystander to be connected", func() bool { return st.Connected.Load() == 1 })
		if st.Accepted.Load() < 2 {
			t.Errorf("Accepted %d", st.Accepted.Load())
		}
	})
}

// TCP is a byte stream: packets may come in pieces or several at once.
func TestTCPFraming(t *testing.T) {
	tr := transports[0]
	s := startServer(t, nopal.Config{}, serverOpts{})

	t.Run("one byte per write", func(t *testing.T) {
		c := tr.dial(t, s)
		var stream []byte
		stream = append(stream, packet(codec.Handshake, []byte(`{"sys":{"platform":"test"}}`))...)
		stream = append(stream, packet(codec.HandshakeAck, nil)...)
		stream = append(stream, request(1, "t.echo", []byte(`{"byte":"by byte"}`))...)
		stream = append(stream, notify("t.record", []byte(`"dribbled"`))...)
		stream = append(stream, request(2, "t.echo", []byte(`{"n":2}`))...)
		for i := range stream {
			c.write(stream[i : i+1])
		}
		if hs := c.handshakeResponse(); hs.Code != 200 {
			t.Fatalf("handshake %+v", hs)
		}
		if m := c.response(1); string(m.Data) != `{"byte":"by byte"}` {
			t.Errorf("response 1: %q", m.Data)
		}
		if got := await(t, s.comp.notified, "the notify"); got != `"dribbled"` {
			t.Errorf("notify got %q", got)
		}
		if m := c.response(2); string(m.Data) != `{"n":2}` {
			t.Errorf("response 2: %q", m.Data)
		}
	})

	t.Run("many packets per write", func(t *testing.T) {
		c := tr.dial(t, s)
		c.handshake(nil)
		var stream []byte
		stream = append(stream, packet(codec.HandshakeAck, nil)...)
		stream = append(stream, packet(codec.Heartbeat, nil)...)
		for id := uint64(1); id <= 50; id++ {
			stream = append(stream, request(id, "t.echo", fmt.Appendf(nil, "%d", id))...)
		}
		c.write(stream)
		for id := uint64(1); id <= 50; id++ {
			if m := c.response(id); string(m.Data) != fmt.Sprint(id) {
				t.Fatalf("response %d: %q", id, m.Data)
			}
		}
	})

	t.Run("packet split inside its header", func(t *testing.T) {
		c := tr.dial(t, s)
		c.ready()
		a, b := request(1, "t.echo", []byte("11")), request(2, "t.echo", []byte("22"))
		c.write(append(bytes.Clone(a), b[:2]...))
		if m := c.response(1); string(m.Data) != "11" {
			t.Fatalf("response 1: %q", m.Data)
		}
		c.write(b[2:])
		if m := c.response(2); string(m.Data) != "22" {
			t.Fatalf("response 2: %q", m.Data)
		}
	})
}

// --- 2. Requests, notifies, pushes, errors ----------------------------------

func TestRequestResponse(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		s := startServer(t, nopal.Config{}, serverOpts{})
		c := tr.dial(t, s)
		c.ready()

		t.Run("ids are echoed", func(t *testing.T) {
			c.t = t
			// id 300 is the two-byte varint ac 02.
			c.request(300, "t.echo", []byte(`{"a":1}`))
			c.expect("response 300", unhex(t, "0400000a 04ac02 7b2261223a317d"))
			for _, id := range []uint64{0, 1, 127, 128, 1 << 21, 1<<40 + 5, 1<<64 - 1} {
				c.request(id, "test.t.echo", fmt.Appendf(nil, "%d", id)) // three-part route
				if m := c.response(id); string(m.Data) != fmt.Sprint(id) || m.Err {
					t.Errorf("response %d: %q", id, m.Data)
				}
			}
		})

		t.Run("pipelined requests answered in order", func(t *testing.T) {
			c.t = t
			for id := uint64(10); id < 20; id++ {
				c.request(id, "t.echo", fmt.Appendf(nil, "%d", id))
			}
			for id := uint64(10); id < 20; id++ {
				if m := c.response(id); string(m.Data) != fmt.Sprint(id) {
					t.Errorf("response %d: %q", id, m.Data)
				}
			}
		})

		t.Run("notify reaches its handler and gets no response", func(t *testing.T) {
			c.t = t
			c.write(notify("t.record", []byte(`{"note":1}`)))
			if got := await(t, s.comp.notified, "the notify"); got != `{"note":1}` {
				t.Errorf("handler got %q", got)
			}
			// A notify to an unknown route gets no error either.
			c.write(notify("t.nosuch", []byte(`{}`)))
			// Requests of one connection are handled in order: the next
			// packet is the echo's response, so nothing answered the notifies.
			c.echo(21)
		})

		t.Run("pushes arrive before the response", func(t *testing.T) {
			c.t = t
			c.request(22, "t.push", []byte(`{"n":3,"size":1}`))
			// Flag 0x06 (Push), the route in full, the payload.
			c.expect("push 0", unhex(t, "04000019 06 066f6e50757368 7b2269223a302c22706164223a2278227d"))
			for i := 1; i < 3; i++ {
				want := dataPacket(&codec.Message{Type: codec.Push, Route: "onPush", Data: fmt.Appendf(nil, `{"i":%d,"pad":"x"}`, i)})
				c.expect(fmt.Sprintf("push %d", i), want)
			}
			if m := c.response(22); string(m.Data) != `{"sent":3}` {
				t.Errorf("response: %q", m.Data)
			}
		})

		t.Run("unknown route", func(t *testing.T) {
			c.t = t
			for id, route := range map[uint64]string{23: "t.nosuch", 24: "other.t.echo", 25: "nodots", 26: "test.nosuch.echo"} {
				c.request(id, route, []byte(`{}`))
				pkt := c.packet()
				if !bytes.Equal(pkt[4:6], []byte{0x24, byte(id)}) {
					t.Fatalf("%s: response %x, want flag 0x24 and id %d", route, pkt, id)
				}
				e, err := codec.DecodeError(codec.JSON{}, pkt[6:])
				if err != nil || e.Code != codec.CodeNotFound || !strings.Contains(e.Message, route) || e.Metadata != nil {
					t.Errorf("%s: error %+v, %v", route, e, err)
				}
			}
			c.echo(27) // still open
		})

		t.Run("application error keeps code, message and metadata", func(t *testing.T) {
			c.t = t
			c.request(28, "t.fail", nil)
			e := c.errorResponse(28)
			if e.Code != "GAME-042" || e.Message != "not enough gold" || !maps.Equal(e.Metadata, map[string]string{"need": "10", "have": "3"}) {
				t.Errorf("error %+v", e)
			}
			c.echo(29)
		})

		t.Run("bad argument", func(t *testing.T) {
			c.t = t
			c.request(30, "t.push", []byte(`not json`))
			if e := c.errorResponse(30); e.Code != codec.CodeBadRequest {
				t.Errorf("error %+v", e)
			}
			c.echo(31)
		})

		t.Run("handler panic", func(t *testing.T) {
			c.t = t
			c.request(32, "t.panic", nil)
			if e := c.errorResponse(32); e.Code != codec.CodeInternal || strings.Contains(e.Message, "panics") {
				t.Errorf("error %+v (the panic value must not leak)", e)
			}
			c.echo(33)
			// As a notify: no reply at all.
			c.write(notify("t.panic", nil))
			c.echo(34)
		})
	})
}

// A handler that panics answers PIT-500 to its client only: other clients'
// requests, running at the same time, are not disturbed.
func TestHandlerPanicIsolated(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		s := startServer(t, nopal.Config{}, serverOpts{})
		ctx := context.Background()
		other, err := client.Dial(ctx, tr.addr(s))
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()

		stop := make(chan struct{})
		otherErr := make(chan error, 1)
		otherDone := make(chan int, 1)
		go func() {
			n := 0
			defer func() { otherDone <- n }()
			for {
				select {
				case <-stop:
					return
				default:
				}
				in := fmt.Appendf(nil, `{"n":%d}`, n)
				out, err := other.RequestRaw(ctx, "t.echo", in)
				if err == nil && !bytes.Equal(out, in) {
					err = fmt.Errorf("echo %s came back %s", in, out)
				}
				if err != nil {
					otherErr <- err
					return
				}
				n++
			}
		}()

		c := tr.dial(t, s)
		c.ready()
		for id := uint64(1); id <= 20; id++ {
			c.request(id, "t.panic", nil)
			if e := c.errorResponse(id); e.Code != codec.CodeInternal {
				t.Fatalf("panic %d: %+v", id, e)
			}
		}
		c.echo(21)
		close(stop)
		if n := await(t, otherDone, "the other client"); n == 0 {
			t.Error("the other client made no request")
		}
		select {
		case err := <-otherErr:
			t.Fatalf("other client: %v", err)
		default:
		}
		if err := other.Request(ctx, "t.echo", map[string]int{"after": 1}, nil); err != nil {
			t.Fatal(err)
		}
	})
}

// Several connections send requests at the same time, over both transports,
// with the Go client.
func TestConcurrentClients(t *testing.T) {
	t.Parallel()
	s := startServer(t, nopal.Config{}, serverOpts{})
	ctx := context.Background()
	const clients, workers, requests = 6, 4, 25
	errs := make(chan error, clients*workers)
	var wg sync.WaitGroup
	for i := range clients {
		c, err := client.Dial(ctx, transports[i%2].addr(s))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for w := range workers {
			wg.Go(func() {
				for r := range requests {
					type msg struct{ C, W, R int }
					var out msg
					if err := c.Request(ctx, "t.echo", msg{i, w, r}, &out); err != nil {
						errs <- err
						return
					}
					if out != (msg{i, w, r}) {
						errs <- fmt.Errorf("client %d worker %d request %d: got %+v", i, w, r, out)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := s.stats().Connected.Load(); n != clients {
		t.Errorf("Connected %d, want %d", n, clients)
	}
}

// --- 3. Kick ---------------------------------------------------------------

func TestKick(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		hook := make(chan int64, 4)
		s := startServer(t, nopal.Config{}, serverOpts{setup: func(app *nopal.App) {
			app.OnSessionClose(func(s *session.Session) { hook <- s.ID() })
		}})
		c := tr.dial(t, s)
		c.ready()
		c.request(1, "t.bind", []byte(`{"uid":"kick-me"}`))
		var bound BindRes
		if err := json.Unmarshal(c.response(1).Data, &bound); err != nil {
			t.Fatal(err)
		}
		sess := s.app.Sessions().ByUID("kick-me")
		if sess == nil || sess.ID() != bound.Session {
			t.Fatalf("ByUID: %v, want session %d", sess, bound.Session)
		}
		if err := sess.Kick(context.Background()); err != nil {
			t.Fatal(err)
		}
		c.expect("kick", kickPacket)
		c.expectClosed()
		if id := await(t, s.comp.closed, "the session's OnClose callback"); id != bound.Session {
			t.Errorf("OnClose ran for session %d", id)
		}
		if id := await(t, hook, "the OnSessionClose hook"); id != bound.Session {
			t.Errorf("OnSessionClose ran for session %d", id)
		}
		if !sess.Closed() || s.app.Sessions().ByUID("kick-me") != nil {
			t.Error("the kicked session is still in the pool")
		}
		if err := sess.Push("late", "x"); !errors.Is(err, session.ErrClosed) {
			t.Errorf("push to a kicked session: %v", err)
		}
		eventually(t, "the frontend to forget the connection", func() bool { return s.stats().Connected.Load() == 0 })
		if n := s.stats().Malformed.Load(); n != 0 {
			t.Errorf("Malformed %d", n)
		}
	})
}

// --- 4. Heartbeats and the handshake timeout --------------------------------

func TestHeartbeat(t *testing.T) {
	const interval = 200 * time.Millisecond
	forEachTransport(t, func(t *testing.T, tr transport) {
		s := startServer(t, nopal.Config{Heartbeat: interval}, serverOpts{})

		t.Run("announced in whole seconds", func(t *testing.T) {
			t.Parallel()
			c := tr.dial(t, s)
			if hs := c.handshake(nil); hs.Sys == nil || hs.Sys.Heartbeat != 1 {
				t.Fatalf("handshake response %+v", hs)
			}
		})

		t.Run("silent client is closed", func(t *testing.T) {
			t.Parallel()
			c := tr.dial(t, s)
			c.handshake(nil)
			start := time.Now() // before the server last hears from the client
			c.write(packet(codec.HandshakeAck, nil))
			got := c.closedAfter()
			took := time.Since(start)
			if len(got) == 0 {
				t.Error("no heartbeat before the close")
			}
			for _, p := range got {
				if !bytes.Equal(p, heartbeatPacket) {
					t.Errorf("got %x, want only heartbeats", p)
				}
			}
			// Closed once silent for more than 2 intervals, at the tick after.
			if took < 2*interval || took > 2*interval+waitTimeout/2 {
				t.Errorf("closed after %v, want about %v", took, 2*interval)
			}
			if s.stats().HeartbeatTimeouts.Load() == 0 {
				t.Error("HeartbeatTimeouts not counted")
			}
		})

		t.Run("client answering heartbeats stays", func(t *testing.T) {
			t.Parallel()
			c := tr.dial(t, s)
			c.ready()
			w := &talker{c: c, interval: interval, last: time.Now()}
			start := time.Now()
			beats := 0
			// Answer every heartbeat for 6 intervals: 3 times the timeout.
			for time.Since(start) < 6*interval {
				pkt, err := c.next(time.Now().Add(waitTimeout))
				if err != nil {
					w.closed(t, err)
				}
				if !bytes.Equal(pkt, heartbeatPacket) {
					t.Fatalf("got %x, want a heartbeat", pkt)
				}
				if err := w.write(heartbeatPacket); err != nil {
					w.closed(t, err)
				}
				beats++
			}
			if beats < 3 {
				t.Errorf("%d heartbeats in %v", beats, time.Since(start))
			}
			c.echo(1)
		})

		t.Run("requests count as traffic", func(t *testing.T) {
			t.Parallel()
			c := tr.dial(t, s)
			c.ready()
			w := &talker{c: c, interval: interval, last: time.Now()}
			start := time.Now()
			for id := uint64(1); time.Since(start) < 6*interval; id++ {
				if err := w.write(request(id, "t.echo", []byte("{}"))); err != nil {
					w.closed(t, err)
				}
				// Skip the heartbeats that come in between.
				for {
					m, err := c.next(time.Now().Add(waitTimeout))
					if err != nil {
						w.closed(t, err)
					}
					if bytes.Equal(m, heartbeatPacket) {
						continue
					}
					if !bytes.Equal(m[4:6], []byte{0x04, byte(id)}) {
						t.Fatalf("got %x, want the response to %d", m, id)
					}
					break
				}
				// Requests every quarter interval, and nothing else.
				<-time.After(interval / 4)
			}
		})
	})
}

// talker writes for a client that must not be closed for silence. If the
// server closes it anyway, closed tells a server fault from a test machine
// so loaded that the client itself stayed silent too long.
type talker struct {
	c        *rawConn
	interval time.Duration
	last     time.Time
	maxGap   time.Duration
}

func (w *talker) write(b []byte) error {
	now := time.Now()
	w.maxGap = max(w.maxGap, now.Sub(w.last))
	w.last = now
	return w.c.tryWrite(b)
}

func (w *talker) closed(t *testing.T, err error) {
	t.Helper()
	// A well-behaved client here writes at least once per interval.
	if gap := max(w.maxGap, time.Since(w.last)); gap > w.interval*3/2 {
		t.Skipf("the test client itself was silent for %v (machine overloaded); the server closed it: %v", gap, err)
	}
	t.Fatalf("closed although the client was never silent for more than %v: %v", w.maxGap, err)
}

func TestHandshakeTimeout(t *testing.T) {
	const timeout = 200 * time.Millisecond
	forEachTransport(t, func(t *testing.T, tr transport) {
		s := startServer(t, nopal.Config{HandshakeTimeout: timeout}, serverOpts{})
		good := tr.dial(t, s)
		good.ready()
		start := time.Now() // before the server accepts the socket
		mute := tr.dial(t, s)
		mute.expectClosed()
		if took := time.Since(start); took < timeout {
			t.Errorf("closed after %v, want at least %v", took, timeout)
		}
		// The timeout does not touch a client that did handshake in time.
		good.echo(1)
		if n := s.stats().Malformed.Load(); n != 0 {
			t.Errorf("Malformed %d", n)
		}
	})
}

// --- 5. Rate limiting -------------------------------------------------------

func TestRateLimit(t *testing.T) {
	for _, reply := range []bool{false, true} {
		t.Run(fmt.Sprintf("reply=%v", reply), func(t *testing.T) {
			t.Parallel()
			forEachTransport(t, func(t *testing.T, tr transport) {
				const interval = time.Second
				rl, err := frontend.NewRateLimiter(1, interval, reply)
				if err != nil {
					t.Fatal(err)
				}
				s := startServer(t, nopal.Config{}, serverOpts{
					wrappers: func(*testing.T) []frontend.Wrapper { return []frontend.Wrapper{rl} },
				})
				c := tr.dial(t, s)
				c.ready() // handshake packets are not limited
				for id := uint64(1); id <= 3; id++ {
					c.request(id, "t.echo", fmt.Appendf(nil, "%d", id))
				}
				if m := c.response(1); string(m.Data) != "1" || m.Err {
					t.Fatalf("response 1: %q", m.Data)
				}

				if reply {
					for id := uint64(2); id <= 3; id++ {
						if e := c.errorResponse(id); e.Code != codec.CodeRateLimited {
							t.Errorf("response %d: %+v", id, e)
						}
					}
					if n := rl.Dropped(); n != 2 {
						t.Errorf("Dropped %d, want 2", n)
					}
					if n := s.stats().RateLimited.Load(); n != 2 {
						t.Errorf("Stats.RateLimited %d, want 2", n)
					}
					// A dropped notify gets no reply; heartbeats are not limited.
					c.write(notify("t.record", []byte(`"dropped"`)))
					c.write(packet(codec.Heartbeat, nil))
					eventually(t, "the notify to be dropped", func() bool { return rl.Dropped() == 3 })
					if n := s.stats().RateLimited.Load(); n != 2 {
						t.Errorf("Stats.RateLimited %d, want 2 (notifies get no reply)", n)
					}
				} else {
					eventually(t, "2 requests dropped", func() bool { return rl.Dropped() == 2 })
					// The limiter counts every arrival, dropped or not: the
					// next request is allowed one interval after the last
					// dropped one. Only time passing is awaited here.
					<-time.After(interval + interval/10)
					c.request(4, "t.echo", []byte("4"))
					// The next packet is the response to 4: 2 and 3 got none.
					if m := c.response(4); string(m.Data) != "4" || m.Err {
						t.Fatalf("response 4: %q", m.Data)
					}
					if n := rl.Dropped(); n != 2 {
						t.Errorf("Dropped %d after the quiet interval, want 2", n)
					}
					if n := s.stats().RateLimited.Load(); n != 0 {
						t.Errorf("Stats.RateLimited %d without reply", n)
					}
				}
				select {
				case got := <-s.comp.notified:
					t.Errorf("a dropped notify reached its handler: %q", got)
				default:
				}
				// Limits are per connection: another client is not throttled.
				other := tr.dial(t, s)
				other.ready()
				other.echo(1)
			})
		})
	}
}

// --- 7. Slow clients --------------------------------------------------------

func TestSlowClient(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		s := startServer(t, nopal.Config{SendQueueSize: 16, Resume: frontend.ResumeConfig{Off: true}}, serverOpts{})
		const size = 64 << 10

		slow := tr.dial(t, s)
		slow.ready()
		slow.request(1, "t.bind", []byte(`{"uid":"slow"}`))
		var bound BindRes
		if err := json.Unmarshal(slow.response(1).Data, &bound); err != nil {
			t.Fatal(err)
		}
		fast := tr.dial(t, s)
		fast.ready()

		// burst has the fast client ask for 10 big pushes (fewer than the
		// send queue holds) and read them all.
		id := uint64(0)
		burst := func() {
			t.Helper()
			id++
			fast.request(id, "t.push", fmt.Appendf(nil, `{"n":10,"size":%d}`, size))
			for range 10 {
				if m := fast.msg(); m.Type != codec.Push || len(m.Data) < size {
					t.Fatalf("got %v of %d bytes, want a push", m.Type, len(m.Data))
				}
			}
			if m := fast.response(id); string(m.Data) != `{"sent":10}` {
				t.Fatalf("burst %d: %q", id, m.Data)
			}
		}

		// The slow client asks for far more than the socket buffers hold, and
		// never reads.
		slow.request(2, "t.push", fmt.Appendf(nil, `{"n":5000,"size":%d}`, size))
		var flood *pushResult
		bursts := 0
		for flood == nil {
			burst() // while the slow client is being flooded
			bursts++
			for drained := false; !drained; {
				select {
				case r := <-s.comp.pushed:
					if r.session == bound.Session {
						flood = &r
					}
				default:
					drained = true
				}
			}
		}
		if !errors.Is(flood.err, frontend.ErrSlowClient) && !errors.Is(flood.err, frontend.ErrConnClosed) {
			t.Errorf("flood ended with %v after %d pushes", flood.err, flood.sent)
		}
		if flood.sent >= 5000 {
			t.Error("the slow client took every push")
		}
		if n := s.stats().SlowClients.Load(); n != 1 {
			t.Errorf("SlowClients %d, want 1", n)
		}
		// The slow client gets some pushes, then the end of the connection.
		got := slow.closedAfter()
		for _, p := range got {
			if p[0] != byte(codec.Data) || p[4] != 0x06 {
				t.Fatalf("slow client got %x…, want only pushes", p[:8])
			}
		}
		if len(got) >= flood.sent+1 {
			t.Errorf("slow client read %d packets of %d pushes", len(got), flood.sent)
		}
		t.Logf("%d bursts during the flood; slow client disconnected after %d pushes, read %d", bursts, flood.sent, len(got))
		burst()
		if s.app.Sessions().ByUID("slow") != nil {
			t.Error("the slow client's session is still bound")
		}
		eventually(t, "the slow connection to be forgotten", func() bool { return s.stats().Connected.Load() == 1 })
	})
}

// --- 8. Drain ----------------------------------------------------------------

func TestDrain(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		s := startServer(t, nopal.Config{}, serverOpts{})
		busy := tr.dial(t, s)
		busy.ready()
		busy.request(1, "t.bind", []byte(`{"uid":"busy"}`))
		busy.response(1)
		busy.request(2, "t.slow", nil)
		await(t, s.comp.entered, "the slow handler")
		// Queued behind the one in flight: never handled, the client is
		// kicked after its current request.
		busy.request(3, "t.echo", []byte("3"))
		idle := tr.dial(t, s)
		idle.ready()
		idle.request(1, "t.bind", []byte(`{"uid":"idle"}`))
		idle.response(1)

		done := make(chan error, 1)
		go func() { done <- s.app.Shutdown(context.Background()) }()

		idle.expect("kick of the idle client", kickPacket)
		idle.expectClosed()
		if _, err := tr.tryDial(s); err == nil {
			t.Error("a new connection was accepted during the drain")
		}
		select {
		case err := <-done:
			t.Fatalf("Shutdown returned (%v) with a request in flight", err)
		default:
		}

		s.comp.unblock()
		if m := busy.response(2); string(m.Data) != `{"slow":"done"}` || m.Err {
			t.Errorf("in-flight response: %q", m.Data)
		}
		busy.expect("kick after the in-flight response", kickPacket)
		busy.expectClosed()
		if err := await(t, done, "Shutdown"); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if n := s.stats().Connected.Load(); n != 0 {
			t.Errorf("Connected %d after Shutdown", n)
		}
		if n := s.app.Sessions().Count(); n != 0 {
			t.Errorf("%d sessions after Shutdown", n)
		}
		// Shutdown returned after the sessions' close callbacks ran.
		for range 2 {
			select {
			case <-s.comp.closed:
			default:
				t.Error("Shutdown returned before a session's OnClose callback ran")
			}
		}
	})
}

// A drain that outlives its context closes the remaining connections and
// returns the context's error, even while a handler is still running.
func TestDrainTimeout(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		s := startServer(t, nopal.Config{}, serverOpts{})
		busy := tr.dial(t, s)
		busy.ready()
		busy.request(1, "t.slow", nil)
		await(t, s.comp.entered, "the slow handler")

		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- s.app.Shutdown(ctx) }()
		busy.expectClosed()
		if err := await(t, done, "Shutdown"); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown: %v, want a deadline error", err)
		}
		// The handler still runs; it is let go by the test's cleanup.
	})
}

// --- 9. One uid, two connections ---------------------------------------------

func TestBindTwice(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		hook := make(chan int64, 4)
		s := startServer(t, nopal.Config{}, serverOpts{setup: func(app *nopal.App) {
			app.OnSessionClose(func(s *session.Session) { hook <- s.ID() })
		}})
		bind := func(c *rawConn) int64 {
			t.Helper()
			c.request(1, "t.bind", []byte(`{"uid":"twice"}`))
			var res BindRes
			if err := json.Unmarshal(c.response(1).Data, &res); err != nil {
				t.Fatal(err)
			}
			return res.Session
		}
		older := tr.dial(t, s)
		older.ready()
		olderID := bind(older)
		newer := tr.dial(t, s)
		newer.ready()
		newerID := bind(newer)
		if olderID == newerID {
			t.Fatal("same session twice")
		}

		older.expect("kick of the older session", kickPacket)
		older.expectClosed()
		if id := await(t, s.comp.closed, "the older session's OnClose"); id != olderID {
			t.Errorf("OnClose ran for %d, want %d", id, olderID)
		}
		if id := await(t, hook, "OnSessionClose"); id != olderID {
			t.Errorf("OnSessionClose ran for %d, want %d", id, olderID)
		}
		// The older session's close left the newer one bound.
		if got := s.app.Sessions().ByUID("twice"); got == nil || got.ID() != newerID || got.UID() != "twice" {
			t.Fatalf("ByUID: %v, want session %d", got, newerID)
		}
		newer.echo(2)
		if _, err := s.app.PushToUsers(context.Background(), "onHello", map[string]string{"to": "newer"}, []string{"twice"}); err != nil {
			t.Fatal(err)
		}
		if m := newer.msg(); m.Type != codec.Push || m.Route != "onHello" || string(m.Data) != `{"to":"newer"}` {
			t.Errorf("push to the newer session: %+v", m)
		}
		select {
		case id := <-hook:
			t.Errorf("session %d closed too", id)
		default:
		}
	})
}

// --- 10. Stats ----------------------------------------------------------------

func TestStatsConnected(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		// Resume off: sessions end with their connections.
		s := startServer(t, nopal.Config{Resume: frontend.ResumeConfig{Off: true}}, serverOpts{})
		st := s.stats()
		var conns []*rawConn
		for i := range 3 {
			c := tr.dial(t, s)
			c.ready() // the server counts a connection before it answers the handshake
			conns = append(conns, c)
			if n := st.Connected.Load(); n != int64(i+1) {
				t.Errorf("Connected %d, want %d", n, i+1)
			}
		}
		if n := st.Accepted.Load(); n != 3 {
			t.Errorf("Accepted %d, want 3", n)
		}
		// A WebSocket client may say goodbye with a close frame.
		if tr.ws {
			msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye")
			if err := conns[0].ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(waitTimeout)); err != nil {
				t.Fatal(err)
			}
		}
		for i, c := range conns {
			_ = c.close()
			want := int64(len(conns) - i - 1)
			eventually(t, fmt.Sprintf("Connected to drop to %d", want), func() bool { return st.Connected.Load() == want })
		}
		// Clients that leave are not bad input.
		if n := st.Malformed.Load(); n != 0 {
			t.Errorf("Malformed %d after clean closes", n)
		}
		eventually(t, "the sessions to close", func() bool { return s.app.Sessions().Count() == 0 })
	})
}
