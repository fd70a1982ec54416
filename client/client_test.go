package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nopal-dev/nopal/codec"
)

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestHandshakeAndCompressedRoutes(t *testing.T) {
	dict := map[string]uint16{"room.join": 1, "room.leave": 2, "onMessage": 3}
	forEachKind(t, func(t *testing.T, kind string) {
		type seen struct {
			req        codec.HandshakeRequest
			route      string
			compressed bool
			flag       byte
		}
		got := make(chan seen, 2)
		addr := startServer(t, kind, serverOpts{dict: dict, heartbeat: 30}, func(c *srvConn) {
			for {
				m, pkt, err := c.readMsg()
				if err != nil {
					return
				}
				got <- seen{c.req, m.Route, m.RouteCompressed, pkt[codec.HeaderLength]}
				if m.Route == "room.join" {
					// Pushed with the route's code, since the dictionary has it.
					if c.push("onMessage", []byte(`"hi"`)) != nil {
						return
					}
				}
				if c.reply(m.ID, []byte(`{}`)) != nil {
					return
				}
			}
		})
		user := map[string]any{"token": "abc"}
		c := mustDial(t, addr, WithHandshake(codec.HandshakeSys{Platform: "test", LibVersion: "1.2", BuildNumber: "7", Version: "3"}, user))

		hs := c.Handshake()
		if hs.Code != 200 || hs.Sys.Heartbeat != 30 || hs.Sys.Serializer != "json" || !maps.Equal(hs.Sys.Dict, dict) {
			t.Fatalf("Handshake() = %+v %+v", hs, hs.Sys)
		}
		hs.Sys.Dict["room.join"] = 99 // a copy
		if c.Handshake().Sys.Dict["room.join"] != 1 {
			t.Error("Handshake() shares its dictionary")
		}

		ctx := ctxT(t)
		if err := c.Request(ctx, "room.join", map[string]int{}, nil); err != nil {
			t.Fatal(err)
		}
		s := await(t, got, "room.join at the server")
		want := codec.HandshakeSys{Platform: "test", LibVersion: "1.2", BuildNumber: "7", Version: "3"}
		if s.req.Sys != want || s.req.User["token"] != "abc" {
			t.Errorf("server got handshake %+v", s.req)
		}
		if !s.compressed || s.flag&0x01 == 0 || s.route != "room.join" {
			t.Errorf("room.join: compressed=%v flag=%#x route=%q, want a compressed route", s.compressed, s.flag, s.route)
		}
		p := await(t, c.Pushes(), "push")
		if p.Route != "onMessage" || string(p.Data) != `"hi"` {
			t.Errorf("push = %q %q", p.Route, p.Data)
		}

		if err := c.Request(ctx, "room.other", nil, nil); err != nil {
			t.Fatal(err)
		}
		s = await(t, got, "room.other at the server")
		if s.compressed || s.route != "room.other" {
			t.Errorf("room.other: compressed=%v route=%q, want it plain", s.compressed, s.route)
		}
	})
}

func TestHandshakeDefaults(t *testing.T) {
	forEachKind(t, func(t *testing.T, kind string) {
		got := make(chan codec.HandshakeRequest, 1)
		addr := startServer(t, kind, serverOpts{}, func(c *srvConn) { got <- c.req })
		mustDial(t, addr)
		req := await(t, got, "handshake")
		want := codec.HandshakeSys{Platform: "go", LibVersion: "nopal", BuildNumber: "1", Version: "1"}
		if req.Sys != want || req.User != nil {
			t.Errorf("handshake = %+v, want sys %+v and no user", req, want)
		}
	})
}

func TestHandshakeZlib(t *testing.T) {
	dict := map[string]uint16{}
	for i := range 40 {
		dict[fmt.Sprintf("connector.entry.handler%02d", i)] = uint16(i + 1)
	}
	forEachKind(t, func(t *testing.T, kind string) {
		addr := startServer(t, kind, serverOpts{dict: dict, heartbeat: 15, compress: true}, echo)
		c := mustDial(t, addr)
		if hs := c.Handshake(); hs.Code != 200 || hs.Sys.Heartbeat != 15 || !maps.Equal(hs.Sys.Dict, dict) {
			t.Fatalf("Handshake() = %+v %+v", hs, hs.Sys)
		}
		out, err := c.RequestRaw(ctxT(t), "connector.entry.handler07", []byte("x"))
		if err != nil || string(out) != "x" {
			t.Fatalf("RequestRaw = %q, %v", out, err)
		}
	})
}

func TestHandshakeRefused(t *testing.T) {
	forEachKind(t, func(t *testing.T, kind string) {
		addr := startServer(t, kind, serverOpts{code: 400}, nil)
		c, err := Dial(ctxT(t), addr)
		if !errors.Is(err, ErrHandshakeRefused) || !strings.Contains(err.Error(), "400") {
			t.Fatalf("Dial = %v, %v; want ErrHandshakeRefused with code 400", c, err)
		}
	})
}

func TestHandshakeTimeout(t *testing.T) {
	forEachKind(t, func(t *testing.T, kind string) {
		addr := startServer(t, kind, serverOpts{stall: true}, nil)
		start := time.Now()
		_, err := Dial(ctxT(t), addr, WithHandshakeTimeout(200*time.Millisecond))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Dial = %v, want DeadlineExceeded", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Dial took %v", d)
		}
	})
}

func TestHandshakeCanceled(t *testing.T) {
	forEachKind(t, func(t *testing.T, kind string) {
		addr := startServer(t, kind, serverOpts{stall: true}, nil)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := Dial(ctx, addr); !errors.Is(err, context.Canceled) {
			t.Fatalf("Dial = %v, want Canceled", err)
		}
	})
}

func TestRequest(t *testing.T) {
	type in struct {
		Name string `json:"name"`
		N    int    `json:"n"`
	}
	forEachKind(t, func(t *testing.T, kind string) {
		addr := startServer(t, kind, serverOpts{}, echo)
		c := mustDial(t, addr)
		ctx := ctxT(t)

		var out in
		if err := c.Request(ctx, "svc.echo", in{"ann", 3}, &out); err != nil || out != (in{"ann", 3}) {
			t.Errorf("struct: %+v, %v", out, err)
		}
		var raw []byte
		if err := c.Request(ctx, "svc.echo", []byte("raw bytes"), &raw); err != nil || string(raw) != "raw bytes" {
			t.Errorf("[]byte: %q, %v", raw, err)
		}
		if b, err := c.RequestRaw(ctx, "svc.echo", nil); err != nil || len(b) != 0 {
			t.Errorf("nil payload echoed as %q, %v", b, err)
		}
		if err := c.Request(ctx, "svc.echo", nil, nil); err != nil {
			t.Errorf("nil in/out: %v", err)
		}
		var bad chan int
		if err := c.Request(ctx, "svc.echo", bad, nil); err == nil {
			t.Error("marshaling a chan succeeded")
		}
		if err := c.Request(ctx, "svc.echo", []byte("not json"), &out); err == nil {
			t.Error("decoding a bad response succeeded")
		}
	})
}

// The client's packets match those captured from a Pitaya client, and it
// decodes those captured from a Pitaya server (protocol-vectors.md).
func TestProtocolVectors(t *testing.T) {
	forEachKind(t, func(t *testing.T, kind string) {
		packets := make(chan []byte, 8)
		addr := startServer(t, kind, serverOpts{}, func(c *srvConn) {
			for {
				_, pkt, err := c.read()
				if err != nil {
					return
				}
				packets <- pkt
				switch pkt[0] {
				case byte(codec.Data):
					if pkt[4] != 0 { // not a request
						continue
					}
					// rows 5, 22, 18 and 6: onMembers push, heartbeat,
					// zlib-compressed onMessage push, join response id 1.
					if c.writeRaw(unhex(t, "04000019 06096f6e4d656d62657273 7b226d656d62657273223a5b5d7d")) != nil ||
						c.writeRaw(unhex(t, "03000000")) != nil ||
						c.writeRaw(unhex(t, "0400003a 16096f6e4d657373616765 789caa56ca4bcc4d55b2524aca4f52d2514acecf2b49cd2b51b252ca48cdc9c957a03fa9540b080000fffff5ec3488")) != nil ||
						c.writeRaw(unhex(t, "0400001f 0401 7b22636f6465223a302c22726573756c74223a2273756363657373227d")) != nil {
						return
					}
				}
			}
		})
		c := mustDial(t, addr, WithHeartbeat(false))
		ctx := ctxT(t)
		var res struct {
			Code   int    `json:"code"`
			Result string `json:"result"`
		}
		if err := c.Request(ctx, "room.join", map[string]any{}, &res); err != nil || res.Result != "success" {
			t.Fatalf("join: %+v, %v", res, err)
		}
		msg := struct {
			Name    string `json:"name"`
			Content string `json:"content"`
		}{"bob", "hello"}
		if err := c.Notify(ctx, "room.message", msg); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{
			"0400000e 000109726f6f6d2e6a6f696e 7b7d", // row 4
			"03000000",                               // row 23, the heartbeat reply
			"0400002e 020c726f6f6d2e6d657373616765 7b226e616d65223a22626f62222c22636f6e74656e74223a2268656c6c6f227d", // row 14
		} {
			if got, w := await(t, packets, "a client packet"), unhex(t, want); !bytes.Equal(got, w) {
				t.Errorf("client sent %x, want %x", got, w)
			}
		}
		p := await(t, c.Pushes(), "onMembers")
		if p.Route != "onMembers" || string(p.Data) != `{"members":[]}` {
			t.Errorf("push = %s %s", p.Route, p.Data)
		}
		p = await(t, c.Pushes(), "onMessage")
		if p.Route != "onMessage" || !strings.HasPrefix(string(p.Data), `{"name":"bob","content":"hello hello `) {
			t.Errorf("push = %s %s", p.Route, p.Data)
		}
	})
}

func TestErrorResponse(t *testing.T) {
	for _, ser := range []codec.Serializer{codec.JSON{}, codec.Protobuf{}} {
		t.Run(ser.Name(), func(t *testing.T) {
			t.Parallel()
			forEachKind(t, func(t *testing.T, kind string) {
				sent := codec.NewError("PIT-404", "no such route", map[string]string{"route": "a.b", "x": "y"})
				addr := startServer(t, kind, serverOpts{serializer: ser.Name()}, func(c *srvConn) {
					for {
						m, _, err := c.readMsg()
						if err != nil {
							return
						}
						data, _ := codec.EncodeError(ser, sent)
						if c.send(&codec.Message{Type: codec.Response, ID: m.ID, Data: data, Err: true}) != nil {
							return
						}
					}
				})
				// No WithSerializer: the client picks the announced one.
				c := mustDial(t, addr)
				err := c.Request(ctxT(t), "a.b", nil, nil)
				var e *codec.Error
				if !errors.As(err, &e) {
					t.Fatalf("Request = %v, want a *codec.Error", err)
				}
				if e.Code != "PIT-404" || e.Message != "no such route" || !maps.Equal(e.Metadata, sent.Metadata) {
					t.Errorf("error = %+v", e)
				}
				if !errors.Is(err, &codec.Error{Code: codec.CodeNotFound}) {
					t.Error("errors.Is by code fails")
				}
			})
		})
	}
}

func TestConcurrentRequests(t *testing.T) {
	forEachKind(t, func(t *testing.T, kind string) {
		// The server answers each request from its own goroutine, so the
		// answers come back out of order.
		addr := startServer(t, kind, serverOpts{}, func(c *srvConn) {
			var wg sync.WaitGroup
			defer wg.Wait()
			for {
				m, _, err := c.readMsg()
				if err != nil {
					return
				}
				data := bytes.Clone(m.Data)
				wg.Go(func() { c.reply(m.ID, data) })
			}
		})
		c := mustDial(t, addr)
		ctx := ctxT(t)
		var wg sync.WaitGroup
		for g := range 16 {
			wg.Go(func() {
				for i := range 50 {
					want := fmt.Sprintf("%d/%d", g, i)
					var got string
					if err := c.Request(ctx, "svc.echo", want, &got); err != nil || got != want {
						t.Errorf("got %q, %v; want %q", got, err, want)
						return
					}
				}
			})
		}
		wg.Wait()
		if n := pendingCount(c); n != 0 {
			t.Errorf("%d requests still pending", n)
		}
	})
}

func pendingCount(c *Client) int {
	c.pendMu.Lock()
	defer c.pendMu.Unlock()
	return len(c.pending)
}

func TestNotify(t *testing.T) {
	forEachKind(t, func(t *testing.T, kind string) {
		got := make(chan codec.Message, 1)
		addr := startServer(t, kind, serverOpts{dict: map[string]uint16{"chat.say": 5}}, func(c *srvConn) {
			m, _, err := c.readMsg()
			if err == nil {
				m.Data = bytes.Clone(m.Data)
				got <- m
			}
			c.read() // until the client closes
		})
		c := mustDial(t, addr)
		if err := c.Notify(ctxT(t), "chat.say", map[string]string{"text": "hello"}); err != nil {
			t.Fatal(err)
		}
		m := await(t, got, "notify")
		if m.Type != codec.Notify || m.Route != "chat.say" || !m.RouteCompressed || string(m.Data) != `{"text":"hello"}` {
			t.Errorf("server got %+v", m)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := c.Notify(ctx, "chat.say", nil); !errors.Is(err, context.Canceled) {
			t.Errorf("Notify with a canceled ctx = %v", err)
		}
	})
}

func TestPushesInOrder(t *testing.T) {
	const n = 50
	forEachKind(t, func(t *testing.T, kind string) {
		addr := startServer(t, kind, serverOpts{}, func(c *srvConn) {
			for i := range n {
				if c.push("onTick", fmt.Appendf(nil, "%d", i)) != nil {
					return
				}
			}
			c.read() // until the client closes
		})
		c := mustDial(t, addr, WithPushBuffer(n))
		for i := range n {
			p := await(t, c.Pushes(), "push")
			if p.Route != "onTick" || string(p.Data) != fmt.Sprint(i) {
				t.Fatalf("push %d = %s %s", i, p.Route, p.Data)
			}
		}
		if d := c.DroppedPushes(); d != 0 {
			t.Errorf("dropped %d", d)
		}
	})
}

func TestPushesDroppedWhenFull(t *testing.T) {
	forEachKind(t, func(t *testing.T, kind string) {
		// On a request the server pushes 10 messages, then answers: once the
		// answer is in, the reader has handled all pushes.
		addr := startServer(t, kind, serverOpts{}, func(c *srvConn) {
			for {
				m, _, err := c.readMsg()
				if err != nil {
					return
				}
				for i := range 10 {
					c.push("onTick", fmt.Appendf(nil, "%d", i))
				}
				c.reply(m.ID, nil)
			}
		})
		c := mustDial(t, addr, WithPushBuffer(2))
		if err := c.Request(ctxT(t), "svc.sync", nil, nil); err != nil {
			t.Fatal(err)
		}
		if d := c.DroppedPushes(); d != 8 {
			t.Errorf("DroppedPushes = %d, want 8", d)
		}
		for i := range 2 {
			if p := <-c.Pushes(); string(p.Data) != fmt.Sprint(i) {
				t.Errorf("kept push %q, want %d", p.Data, i)
			}
		}
	})
}

func TestKick(t *testing.T) {
	forEachKind(t, func(t *testing.T, kind string) {
		addr := startServer(t, kind, serverOpts{}, func(c *srvConn) {
			if _, _, err := c.readMsg(); err == nil {
				c.writePacket(codec.Kick, nil) // then the connection closes
			}
		})
		c := mustDial(t, addr)
		err := c.Request(ctxT(t), "svc.wait", nil, nil)
		if !errors.Is(err, ErrClosed) || !errors.Is(err, ErrKicked) {
			t.Errorf("pending request: %v, want ErrClosed and ErrKicked", err)
		}
		await(t, c.Done(), "Done")
		if c.Err() != ErrKicked || !c.Kicked() {
			t.Errorf("Err() = %v, Kicked() = %v", c.Err(), c.Kicked())
		}
		if _, ok := <-c.Pushes(); ok {
			t.Error("Pushes() not closed")
		}
		if err := c.Notify(ctxT(t), "svc.x", nil); !errors.Is(err, ErrClosed) || !errors.Is(err, ErrKicked) {
			t.Errorf("Notify after kick: %v", err)
		}
		if err := c.Close(); err != nil {
			t.Errorf("Close after kick: %v", err)
		}
	})
}

func TestServerHeartbeatAnswered(t *testing.T) {
	forEachKind(t, func(t *testing.T, kind string) {
		answered := make(chan error, 1)
		addr := startServer(t, kind, serverOpts{}, func(c *srvConn) {
			for range 3 {
				if err := c.writePacket(codec.Heartbeat, nil); err != nil {
					answered <- err
					return
				}
				typ, pkt, err := c.read()
				if err == nil && (typ != codec.Heartbeat || len(pkt) != codec.HeaderLength) {
					err = fmt.Errorf("got %v %x", typ, pkt)
				}
				if err != nil {
					answered <- err
					return
				}
			}
			answered <- nil
			c.read()
		})
		mustDial(t, addr, WithHeartbeat(false))
		if err := await(t, answered, "heartbeat replies"); err != nil {
			t.Fatal(err)
		}
	})
}

func TestClientHeartbeatWhenIdle(t *testing.T) {
	forEachKind(t, func(t *testing.T, kind string) {
		// The server announces 1 s and sends no heartbeat itself: an idle
		// client sends one about 1 s after its last write (the ack).
		beats := make(chan time.Duration, 4)
		addr := startServer(t, kind, serverOpts{heartbeat: 1}, func(c *srvConn) {
			start := time.Now()
			for {
				typ, _, err := c.read()
				if err != nil {
					return
				}
				if typ == codec.Heartbeat {
					beats <- time.Since(start)
					start = time.Now()
				}
			}
		})
		mustDial(t, addr)
		if d := await(t, beats, "a client heartbeat"); d < 800*time.Millisecond {
			t.Errorf("first heartbeat after %v, want about 1 s", d)
		}
	})
}

func TestClientHeartbeatOff(t *testing.T) {
	forEachKind(t, func(t *testing.T, kind string) {
		got := make(chan error, 1)
		addr := startServer(t, kind, serverOpts{heartbeat: 1}, func(c *srvConn) {
			c.conn().SetReadDeadline(time.Now().Add(1500 * time.Millisecond))
			typ, _, err := c.read()
			if err == nil {
				err = fmt.Errorf("client sent a %v", typ)
			} else {
				err = nil // the deadline passed, or the client closed
			}
			got <- err
		})
		c := mustDial(t, addr, WithHeartbeat(false))
		if err := await(t, got, "the server's verdict"); err != nil {
			t.Error(err)
		}
		c.Close()
	})
}

func TestRequestContextTimeout(t *testing.T) {
	forEachKind(t, func(t *testing.T, kind string) {
		// "svc.never" is answered only after "svc.ping" arrives, just before
		// ping's own answer: by then the client has forgotten it.
		addr := startServer(t, kind, serverOpts{}, func(c *srvConn) {
			var never uint64
			for {
				m, _, err := c.readMsg()
				if err != nil {
					return
				}
				switch m.Route {
				case "svc.never":
					never = m.ID
				case "svc.ping":
					c.reply(never, []byte(`"late"`))
					c.reply(12345, []byte(`"unknown id"`))
					c.reply(m.ID, []byte(`"pong"`))
				}
			}
		})
		c := mustDial(t, addr)
		ctx, cancel := context.WithTimeout(ctxT(t), 100*time.Millisecond)
		defer cancel()
		err := c.Request(ctx, "svc.never", nil, nil)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Request = %v, want DeadlineExceeded", err)
		}
		if n := pendingCount(c); n != 0 {
			t.Errorf("%d requests still pending after the timeout", n)
		}
		var s string
		if err := c.Request(ctxT(t), "svc.ping", nil, &s); err != nil || s != "pong" {
			t.Fatalf("ping = %q, %v", s, err)
		}
		select {
		case <-c.Done():
			t.Fatalf("connection ended: %v", c.Err())
		default:
		}
	})
}

func TestServerClosesConnection(t *testing.T) {
	forEachKind(t, func(t *testing.T, kind string) {
		// The server closes the socket once it holds 3 requests.
		addr := startServer(t, kind, serverOpts{}, func(c *srvConn) {
			for range 3 {
				if _, _, err := c.readMsg(); err != nil {
					return
				}
			}
		})
		c := mustDial(t, addr)
		errs := make(chan error, 3)
		for range 3 {
			go func() { errs <- c.Request(ctxT(t), "svc.wait", nil, nil) }()
		}
		for range 3 {
			if err := await(t, errs, "a request to fail"); !errors.Is(err, ErrClosed) || !errors.Is(err, io.EOF) {
				t.Errorf("Request = %v, want ErrClosed wrapping io.EOF", err)
			}
		}
		await(t, c.Done(), "Done")
		if err := c.Err(); !errors.Is(err, io.EOF) {
			t.Errorf("Err() = %v, want io.EOF", err)
		}
		if _, err := c.RequestRaw(ctxT(t), "svc.x", nil); !errors.Is(err, ErrClosed) {
			t.Errorf("request after the end: %v", err)
		}
	})
}

func TestClose(t *testing.T) {
	forEachKind(t, func(t *testing.T, kind string) {
		arrived := make(chan struct{}, 1)
		addr := startServer(t, kind, serverOpts{}, func(c *srvConn) {
			for {
				if _, _, err := c.readMsg(); err != nil {
					return
				}
				arrived <- struct{}{}
			}
		})
		c := mustDial(t, addr)
		errc := make(chan error, 1)
		go func() { errc <- c.Request(ctxT(t), "svc.wait", nil, nil) }()
		await(t, arrived, "the request at the server")
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := await(t, errc, "the request to fail"); !errors.Is(err, ErrClosed) {
			t.Errorf("Request = %v, want ErrClosed", err)
		}
		if c.Err() != ErrClosed {
			t.Errorf("Err() = %v", c.Err())
		}
		if err := c.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})
}

func TestSendRaw(t *testing.T) {
	forEachKind(t, func(t *testing.T, kind string) {
		got := make(chan error, 2)
		addr := startServer(t, kind, serverOpts{}, func(c *srvConn) {
			typ, _, err := c.read()
			if err == nil && typ != codec.Heartbeat {
				err = fmt.Errorf("got %v", typ)
			}
			got <- err
			_, _, err = c.read()
			got <- err
		})
		c := mustDial(t, addr, WithHeartbeat(false))
		if err := c.SendRaw([]byte{byte(codec.Heartbeat), 0, 0, 0}); err != nil {
			t.Fatal(err)
		}
		if err := await(t, got, "a raw heartbeat"); err != nil {
			t.Fatal(err)
		}
		if err := c.SendRaw([]byte{0x09, 0, 0, 0}); err != nil {
			t.Fatal(err)
		}
		if err := await(t, got, "a malformed packet"); !errors.Is(err, codec.ErrUnknownPacketType) {
			t.Errorf("server read %v, want ErrUnknownPacketType", err)
		}
	})
}

func TestLocalAddr(t *testing.T) {
	forEachKind(t, func(t *testing.T, kind string) {
		remote := make(chan net.Addr, 1)
		addr := startServer(t, kind, serverOpts{}, func(c *srvConn) { remote <- c.remote; c.read() })
		mustDial(t, addr, WithLocalAddr("127.0.0.2"))
		if a := await(t, remote, "a connection"); a.(*net.TCPAddr).IP.String() != "127.0.0.2" {
			t.Errorf("server sees %v, want 127.0.0.2", a)
		}
	})
	if _, err := Dial(ctxT(t), "127.0.0.1:1", WithLocalAddr("not an ip")); err == nil {
		t.Error("Dial with a bad local address succeeded")
	}
}

func TestTLS(t *testing.T) {
	// httptest's certificate is valid for 127.0.0.1.
	hs := httptest.NewUnstartedServer(http.NotFoundHandler())
	hs.StartTLS()
	srvTLS := &tls.Config{Certificates: hs.TLS.Certificates}
	roots := x509.NewCertPool()
	roots.AddCert(hs.Certificate())
	hs.Close()

	forEachKind(t, func(t *testing.T, kind string) {
		addr := startServer(t, kind, serverOpts{tls: srvTLS}, echo)
		if kind == "ws" && !strings.HasPrefix(addr, "wss://") {
			t.Fatalf("addr %s", addr)
		}
		c := mustDial(t, addr, WithTLS(&tls.Config{RootCAs: roots}))
		out, err := c.RequestRaw(ctxT(t), "svc.echo", []byte("secret"))
		if err != nil || string(out) != "secret" {
			t.Fatalf("RequestRaw = %q, %v", out, err)
		}
	})
}

func TestWebSocketFrameChecks(t *testing.T) {
	for _, tc := range []struct {
		name  string
		frame string
	}{
		{"short body", "04000005 0201"},
		{"two packets", "03000000 03000000"},
		{"short header", "0300"},
		{"bad type", "09000000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addr := startServer(t, "ws", serverOpts{}, func(c *srvConn) {
				c.writeRaw(unhex(t, tc.frame))
				c.read()
			})
			c := mustDial(t, addr)
			await(t, c.Done(), "Done")
			if err := c.Err(); !errors.Is(err, codec.ErrPacketLength) && !errors.Is(err, codec.ErrUnknownPacketType) {
				t.Errorf("Err() = %v", err)
			}
		})
	}
}

func BenchmarkRequest(b *testing.B) {
	for _, kind := range kinds {
		b.Run(kind, func(b *testing.B) {
			addr := startServer(b, kind, serverOpts{}, echo)
			c := mustDial(b, addr, WithHeartbeat(false))
			ctx := context.Background()
			payload := []byte(`{"name":"ann","n":3}`)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.RequestRaw(ctx, "svc.echo", payload); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
