package frontend_test

// Tests of a Frontend built on its own, without the App: frontend.New with a
// HandlerFunc and a session.Pool, real TCP and WebSocket acceptors on free
// loopback ports, and the repository's Go client. The rest of this
// package's tests drive the frontend through nopal.App; these must not.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nopal-dev/nopal/client"
	"github.com/nopal-dev/nopal/codec"
	"github.com/nopal-dev/nopal/frontend"
	"github.com/nopal-dev/nopal/session"
)

// standalone is a Frontend under test with the hooks of its pool recorded.
type standalone struct {
	fe       *frontend.Frontend
	pool     *session.Pool
	tcp, ws  string      // what client.Dial takes
	notified chan string // payloads of t.record notifies
	// Session ids, as the pool's hooks run.
	closed, suspended, resumed chan int64
	// resumeGate, when not nil, holds every resume handshake until it is
	// closed: the pushes of a suspended session are then surely missed.
	resumeGate chan struct{}
}

// standaloneHandler serves the routes of the tests:
//
//	t.echo    answers its payload
//	t.bind    binds the session to the uid in its payload (a JSON string)
//	t.record  (a notify) hands its payload to the test
//	t.fail    answers an application error, code APP-42 with metadata
//	t.crash   answers a plain error: PIT-500
//
// and PIT-404 for any other route.
func (s *standalone) handle(ctx context.Context, msg *codec.Message) ([]byte, error) {
	switch msg.Route {
	case "t.echo":
		return append([]byte(nil), msg.Data...), nil
	case "t.bind":
		var uid string
		if err := json.Unmarshal(msg.Data, &uid); err != nil {
			return nil, codec.NewError(codec.CodeBadRequest, err.Error(), nil)
		}
		sess := session.FromContext(ctx)
		if err := sess.Bind(ctx, uid); err != nil {
			return nil, err
		}
		return json.Marshal(sess.ID())
	case "t.record":
		s.notified <- string(msg.Data) // msg.Data is valid during the call only: copied
		return nil, nil
	case "t.fail":
		return nil, codec.NewError("APP-42", "not enough gold", map[string]string{"need": "7"})
	case "t.crash":
		return nil, errors.New("the handler broke")
	}
	return nil, codec.NewError(codec.CodeNotFound, "no route "+msg.Route, nil)
}

// startStandalone starts a Frontend with cfg (its Handler, Pool, Logger and
// HandshakeValidators set here) on a TCP and a WebSocket acceptor, and
// shuts it down when the test ends, checking that no session is left.
func startStandalone(t *testing.T, cfg frontend.Config, gateResumes bool) *standalone {
	t.Helper()
	s := &standalone{
		notified:  make(chan string, 16),
		closed:    make(chan int64, 16),
		suspended: make(chan int64, 16),
		resumed:   make(chan int64, 16),
	}
	if gateResumes {
		s.resumeGate = make(chan struct{})
	}
	s.pool = session.NewPool(discardLogger())
	s.pool.OnSessionClose(func(ss *session.Session) { s.closed <- ss.ID() })
	s.pool.OnSessionSuspend(func(ss *session.Session) { s.suspended <- ss.ID() })
	s.pool.OnSessionResume(func(_ context.Context, ss *session.Session) { s.resumed <- ss.ID() })
	cfg.Handler = frontend.HandlerFunc(s.handle)
	cfg.Pool = s.pool
	cfg.Logger = discardLogger()
	cfg.HandshakeValidators = append(cfg.HandshakeValidators,
		func(ctx context.Context, _ *session.Session, req *codec.HandshakeRequest) error {
			if req.Sys.Resume == nil || s.resumeGate == nil {
				return nil
			}
			select {
			case <-s.resumeGate:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	fe, err := frontend.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.fe = fe
	tcp, ws := frontend.NewTCPAcceptor("127.0.0.1:0"), frontend.NewWSAcceptor("127.0.0.1:0")
	fe.AddAcceptor(tcp)
	fe.AddAcceptor(ws)
	if err := fe.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.tcp, s.ws = tcp.Addr().String(), "ws://"+ws.Addr().String()+"/"
	t.Cleanup(func() {
		s.openGate()
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := fe.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if n := fe.Stats().Connected.Load(); n != 0 {
			t.Errorf("%d connections after the shutdown", n)
		}
		if n := s.pool.Count(); n != 0 {
			t.Errorf("%d sessions in the pool after the shutdown", n)
		}
		if n := frontend.LinkCount(fe); n != 0 {
			t.Errorf("%d links in the frontend after the shutdown", n)
		}
	})
	return s
}

// openGate lets resume handshakes through; it is idempotent.
func (s *standalone) openGate() {
	if s.resumeGate == nil {
		return
	}
	select {
	case <-s.resumeGate:
	default:
		close(s.resumeGate)
	}
}

// dial connects a client over transport tr ("tcp" or "ws") with automatic
// resume, as a game client would; it is closed when the test ends.
func (s *standalone) dial(t *testing.T, tr string) *client.Client {
	t.Helper()
	addr := s.tcp
	if tr == "ws" {
		addr = s.ws
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c, err := client.Dial(ctx, addr, client.WithAutoResume(waitTimeout))
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// bind binds c's session to uid (t.bind) and returns the session's id.
func bind(t *testing.T, c *client.Client, uid string) int64 {
	t.Helper()
	var id int64
	if err := c.Request(testCtx(t), "t.bind", uid, &id); err != nil {
		t.Fatalf("bind %q: %v", uid, err)
	}
	return id
}

// testCtx is a context that ends with the test, or after waitTimeout.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

// pushN pushes {"n": n} on route "onSeq" to uid, which must be reached.
func (s *standalone) pushN(t *testing.T, uid string, n int) {
	t.Helper()
	failed, err := s.fe.PushToUsers(testCtx(t), "onSeq", map[string]int{"n": n}, []string{uid})
	if err != nil || len(failed) != 0 {
		t.Fatalf("push %d to %s: failed %v, %v", n, uid, failed, err)
	}
}

// expectSeq reads the next push of c, which must be onSeq number want.
func expectSeq(t *testing.T, c *client.Client, want int) {
	t.Helper()
	p := await(t, c.Pushes(), fmt.Sprintf("push %d", want))
	var m struct {
		N int `json:"n"`
	}
	if p.Route != "onSeq" || json.Unmarshal(p.Data, &m) != nil || m.N != want {
		t.Fatalf("push %s %s, want onSeq %d", p.Route, p.Data, want)
	}
}

// expectNoPush checks that c has no push waiting. Call it after a request
// answered: a push sent before the response has been delivered by then.
func expectNoPush(t *testing.T, c *client.Client) {
	t.Helper()
	select {
	case p := <-c.Pushes():
		t.Fatalf("unexpected push %s %s", p.Route, p.Data)
	default:
	}
}

// echo round-trips a request, which must be answered with its payload.
func echo(t *testing.T, c *client.Client, text string) {
	t.Helper()
	var out string
	if err := c.Request(testCtx(t), "t.echo", text, &out); err != nil || out != text {
		t.Fatalf("t.echo %q: %q, %v", text, out, err)
	}
}

// expectKicked waits for c to end with a Kick, without resuming.
func expectKicked(t *testing.T, c *client.Client) {
	t.Helper()
	await(t, c.Done(), "the client to end")
	if !c.Kicked() {
		t.Fatalf("client ended with %v, want a kick", c.Err())
	}
	if n := c.Resumes(); n != 0 {
		t.Errorf("client resumed %d times after a kick", n)
	}
}

func TestStandaloneFrontend(t *testing.T) {
	cases := []struct {
		name string
		cfg  frontend.Config
		// gateResumes holds resume handshakes until the test opens the gate.
		gateResumes bool
		run         func(t *testing.T, s *standalone, c *client.Client)
	}{
		{
			name: "handshake",
			cfg:  frontend.Config{Heartbeat: 5 * time.Second},
			run: func(t *testing.T, s *standalone, c *client.Client) {
				hs := c.Handshake()
				if hs.Code != codec.HandshakeOK || hs.Sys.Heartbeat != 5 || hs.Sys.Serializer != "json" {
					t.Errorf("handshake response: code %d, sys %+v", hs.Code, *hs.Sys)
				}
				if hs.Sys.Resumed {
					t.Error("a fresh session says resumed")
				}
				tok, err := frontend.ParseToken(c.ResumeToken())
				if err != nil {
					t.Fatalf("resume token %q: %v", c.ResumeToken(), err)
				}
				if s.pool.ByID(tok.Session) == nil {
					t.Errorf("the token names session %d, not in the pool", tok.Session)
				}
				if got, ok := s.fe.TokenOf(s.pool.ByID(tok.Session)); !ok || got.String() != c.ResumeToken() {
					t.Errorf("TokenOf: %v %v, want %s", got, ok, c.ResumeToken())
				}
			},
		},
		{
			name: "request",
			run: func(t *testing.T, s *standalone, c *client.Client) {
				for i := range 3 {
					echo(t, c, fmt.Sprintf("hello %d", i))
				}
			},
		},
		{
			name: "notify",
			run: func(t *testing.T, s *standalone, c *client.Client) {
				if err := c.Notify(testCtx(t), "t.record", "fire and forget"); err != nil {
					t.Fatal(err)
				}
				if got := await(t, s.notified, "the notify"); got != `"fire and forget"` {
					t.Errorf("handler got %s", got)
				}
			},
		},
		{
			name: "handler error",
			run: func(t *testing.T, s *standalone, c *client.Client) {
				for _, tc := range []struct {
					route, code, msg string
					metadata         map[string]string
				}{
					{"t.fail", "APP-42", "not enough gold", map[string]string{"need": "7"}},
					{"t.crash", codec.CodeInternal, "", nil},
					{"t.nowhere", codec.CodeNotFound, "no route t.nowhere", nil},
				} {
					err := c.Request(testCtx(t), tc.route, nil, nil)
					var ce *codec.Error
					if !errors.As(err, &ce) {
						t.Fatalf("%s: %v, want a *codec.Error", tc.route, err)
					}
					if ce.Code != tc.code || (tc.msg != "" && ce.Message != tc.msg) || fmt.Sprint(ce.Metadata) != fmt.Sprint(tc.metadata) {
						t.Errorf("%s: %q %q %v, want %q %q %v", tc.route, ce.Code, ce.Message, ce.Metadata, tc.code, tc.msg, tc.metadata)
					}
				}
				echo(t, c, "the connection lives on")
			},
		},
		{
			name: "push to uid",
			run: func(t *testing.T, s *standalone, c *client.Client) {
				bind(t, c, "u1")
				failed, err := s.fe.PushToUsers(testCtx(t), "onSeq", map[string]int{"n": 1}, []string{"u1", "nobody"})
				if err != nil || len(failed) != 1 || failed[0] != "nobody" {
					t.Fatalf("PushToUsers: failed %v, %v; want [nobody]", failed, err)
				}
				expectSeq(t, c, 1)
				if err := s.pool.ByUID("u1").Push("onSeq", map[string]int{"n": 2}); err != nil {
					t.Fatal(err)
				}
				expectSeq(t, c, 2)
				echo(t, c, "after the pushes")
				expectNoPush(t, c)
			},
		},
		{
			name: "kick",
			run: func(t *testing.T, s *standalone, c *client.Client) {
				id := bind(t, c, "u1")
				if err := s.pool.ByUID("u1").Kick(testCtx(t)); err != nil {
					t.Fatal(err)
				}
				expectKicked(t, c)
				if got := await(t, s.closed, "OnSessionClose"); got != id {
					t.Errorf("closed session %d, want %d", got, id)
				}
				if s.pool.ByUID("u1") != nil {
					t.Error("u1 still bound after the kick")
				}
			},
		},
		{
			name: "drain",
			run: func(t *testing.T, s *standalone, c *client.Client) {
				id := bind(t, c, "u1")
				if err := s.fe.Shutdown(testCtx(t)); err != nil {
					t.Fatal(err)
				}
				expectKicked(t, c)
				// Shutdown returns once the sessions' close hooks have run.
				select {
				case got := <-s.closed:
					if got != id {
						t.Errorf("closed session %d, want %d", got, id)
					}
				default:
					t.Error("Shutdown returned before OnSessionClose ran")
				}
				select {
				case got := <-s.suspended:
					t.Errorf("session %d suspended by a drain", got)
				default:
				}
			},
		},
		{
			name:        "resume",
			gateResumes: true,
			run: func(t *testing.T, s *standalone, c *client.Client) {
				id := bind(t, c, "u1")
				s.pool.ByUID("u1").Set("gold", 7)
				s.pushN(t, "u1", 1)
				expectSeq(t, c, 1)

				c.Drop()
				if got := await(t, s.suspended, "OnSessionSuspend"); got != id {
					t.Fatalf("suspended session %d, want %d", got, id)
				}
				// The client is knocking, held at the gate: these pushes
				// are kept for it.
				for n := 2; n <= 4; n++ {
					s.pushN(t, "u1", n)
				}
				s.openGate()
				if got := await(t, s.resumed, "OnSessionResume"); got != id {
					t.Fatalf("resumed session %d, want %d", got, id)
				}
				s.pushN(t, "u1", 5)
				for n := 2; n <= 5; n++ {
					expectSeq(t, c, n)
				}
				echo(t, c, "after the resume")
				expectNoPush(t, c)
				if c.PushesReceived() != 5 || c.Resumes() != 1 {
					t.Errorf("client: %d pushes, %d resumes; want 5, 1", c.PushesReceived(), c.Resumes())
				}
				sess := s.pool.ByUID("u1")
				if sess == nil || sess.ID() != id {
					t.Fatalf("u1's session after the resume: %v", sess)
				}
				if gold, _ := session.Get[int](sess, "gold"); gold != 7 {
					t.Errorf("session data after the resume: %v", sess.Data())
				}
				select {
				case got := <-s.closed:
					t.Errorf("session %d closed", got)
				default:
				}
				st := s.fe.Stats()
				if st.Suspended.Load() != 1 || st.Resumed.Load() != 1 || st.ResumeFailed.Load() != 0 {
					t.Errorf("stats: suspended %d, resumed %d, failed %d", st.Suspended.Load(), st.Resumed.Load(), st.ResumeFailed.Load())
				}
			},
		},
	}
	for _, tr := range []string{"tcp", "ws"} {
		for _, tc := range cases {
			t.Run(tr+"/"+strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
				t.Parallel()
				s := startStandalone(t, tc.cfg, tc.gateResumes)
				tc.run(t, s, s.dial(t, tr))
			})
		}
	}
}

// Resolved fills the resume defaults once, for the frontend and for a
// cluster that must agree with it on the grace.
func TestResumeConfigResolved(t *testing.T) {
	cases := []struct {
		name    string
		in      frontend.ResumeConfig
		want    frontend.ResumeConfig
		wantErr bool
	}{
		{"zero", frontend.ResumeConfig{},
			frontend.ResumeConfig{Grace: frontend.DefaultResumeGrace, Buffer: frontend.DefaultResumeBuffer, MaxMissed: frontend.DefaultResumeMaxMissed}, false},
		{"set", frontend.ResumeConfig{Grace: time.Second, Buffer: 8, MaxMissed: 16, Durable: true},
			frontend.ResumeConfig{Grace: time.Second, Buffer: 8, MaxMissed: 16, Durable: true}, false},
		{"off keeps the rest", frontend.ResumeConfig{Off: true},
			frontend.ResumeConfig{Off: true, Grace: frontend.DefaultResumeGrace, Buffer: frontend.DefaultResumeBuffer, MaxMissed: frontend.DefaultResumeMaxMissed}, false},
		{"missed at least the buffer", frontend.ResumeConfig{Buffer: 2000},
			frontend.ResumeConfig{Grace: frontend.DefaultResumeGrace, Buffer: 2000, MaxMissed: 2000}, false},
		{"negative grace", frontend.ResumeConfig{Grace: -time.Second}, frontend.ResumeConfig{}, true},
		{"negative buffer", frontend.ResumeConfig{Buffer: -1}, frontend.ResumeConfig{}, true},
		{"negative missed", frontend.ResumeConfig{MaxMissed: -1}, frontend.ResumeConfig{}, true},
	}
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			got, err := tc.in.Resolved()
			if tc.wantErr {
				if err == nil {
					t.Fatalf("Resolved(%+v) = %+v, want an error", tc.in, got)
				}
				if _, err := frontend.New(frontend.Config{Handler: frontend.HandlerFunc(nil), Resume: tc.in}); err == nil {
					t.Error("frontend.New accepts it")
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Resolved(%+v) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			}
			if again, err := got.Resolved(); err != nil || again != got {
				t.Errorf("resolved twice: %+v, %v", again, err)
			}
		})
	}
}

// unhashableConn is a session.Conn of a type that cannot key a map.
type unhashableConn struct{ _ []string }

func (unhashableConn) Push(string, any) error     { return nil }
func (unhashableConn) Kick(context.Context) error { return nil }
func (unhashableConn) Close() error               { return nil }
func (unhashableConn) RemoteAddr() net.Addr       { return nil }

// A session of the frontend's pool that is not the frontend's own (made by
// someone else with another Conn) is not found as one of its sessions:
// TokenOf has none, a push to its uid fails, and nothing panics.
func TestForeignSessionInPool(t *testing.T) {
	pool := session.NewPool(discardLogger())
	fe, err := frontend.New(frontend.Config{
		Handler: frontend.HandlerFunc(func(context.Context, *codec.Message) ([]byte, error) { return nil, nil }),
		Pool:    pool,
		Logger:  discardLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, conn := range []session.Conn{unhashableConn{}, &unhashableConn{}} {
		s := pool.New(conn)
		uid := fmt.Sprintf("foreign-%d", s.ID())
		if err := s.Bind(t.Context(), uid); err != nil {
			t.Fatal(err)
		}
		if tok, ok := fe.TokenOf(s); ok {
			t.Errorf("%T: TokenOf = %v", conn, tok)
		}
		failed, err := fe.PushToUsers(t.Context(), "onSeq", 1, []string{uid})
		if err != nil || len(failed) != 1 {
			t.Errorf("%T: PushToUsers failed %v, %v; want the uid", conn, failed, err)
		}
		if fe.PushPacket(uid, frontend.MissedPush{Pkt: []byte{4, 0, 0, 0}}) {
			t.Errorf("%T: PushPacket reached a foreign session", conn)
		}
	}
}
