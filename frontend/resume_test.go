package frontend_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nopal-dev/nopal"
	"github.com/nopal-dev/nopal/client"
	"github.com/nopal-dev/nopal/frontend"
	"github.com/nopal-dev/nopal/session"
)

// Session resume on one frontend, over real sockets with the Go client.

// resumeHooks records the session lifecycle hooks of an app.
type resumeHooks struct {
	suspended, resumed, closed chan int64
}

func watchSessions(app *nopal.App) *resumeHooks {
	h := &resumeHooks{suspended: make(chan int64, 64), resumed: make(chan int64, 64), closed: make(chan int64, 64)}
	app.OnSessionSuspend(func(s *session.Session) { h.suspended <- s.ID() })
	app.OnSessionResume(func(_ context.Context, s *session.Session) { h.resumed <- s.ID() })
	app.OnSessionClose(func(s *session.Session) { h.closed <- s.ID() })
	return h
}

type seqMsg struct {
	N int `json:"n"`
}

// bindVia binds c's session to uid with t.bind and returns its id.
func bindVia(t *testing.T, c *client.Client, uid string) int64 {
	t.Helper()
	var res BindRes
	if err := c.Request(context.Background(), "t.bind", &BindReq{UID: uid}, &res); err != nil {
		t.Fatal(err)
	}
	return res.Session
}

func dialResumable(t *testing.T, addr string, opts ...client.Option) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c, err := client.Dial(ctx, addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func (tr transport) clientAddr(s *testServer) string {
	if tr.ws {
		return "ws://" + s.wsAddr
	}
	return s.tcpAddr
}

// nextSeq reads the next push and returns its number.
func nextSeq(t *testing.T, c *client.Client) int {
	t.Helper()
	p := await(t, c.Pushes(), "a push")
	var m seqMsg
	if p.Route != "onSeq" || json.Unmarshal(p.Data, &m) != nil {
		t.Fatalf("push %s %s", p.Route, p.Data)
	}
	return m.N
}

// A client whose connection drops in the middle of a burst of pushes
// resumes the same session (uid, data, id) and gets every push once, in
// order; the suspend and resume hooks run and the close hook does not.
func TestResumeSameFrontend(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		var h *resumeHooks
		s := startServer(t, nopal.Config{}, serverOpts{setup: func(app *nopal.App) { h = watchSessions(app) }})
		c := dialResumable(t, tr.clientAddr(s), client.WithAutoResume(waitTimeout), client.WithPushBuffer(512))
		if c.ResumeToken() == "" {
			t.Fatal("no resume token in the handshake response")
		}
		id := bindVia(t, c, "u1")
		s.app.Sessions().ByUID("u1").Set("gold", 7)

		const total = 200
		pushed := make(chan error, 1)
		go func() {
			for i := 1; i <= total; i++ {
				if failed, err := s.app.PushToUsers(context.Background(), "onSeq", seqMsg{N: i}, []string{"u1"}); err != nil || len(failed) > 0 {
					pushed <- fmt.Errorf("push %d: failed %v, %v", i, failed, err)
					return
				}
				if i%20 == 0 {
					time.Sleep(time.Millisecond) // spread the burst around the drop
				}
			}
			pushed <- nil
		}()
		for want := 1; want <= total; want++ {
			if want == 10 {
				c.Drop()
			}
			if got := nextSeq(t, c); got != want {
				t.Fatalf("push %d, want %d", got, want)
			}
		}
		if err := <-pushed; err != nil {
			t.Fatal(err)
		}
		// The client may be back before the server sees the drop (then
		// the new connection takes over the old one, no suspension).
		select {
		case got := <-h.suspended:
			if got != id {
				t.Errorf("suspended session %d, want %d", got, id)
			}
		default:
		}
		if got := await(t, h.resumed, "OnSessionResume"); got != id {
			t.Errorf("resumed session %d, want %d", got, id)
		}
		if c.Resumes() != 1 {
			t.Errorf("client resumed %d times", c.Resumes())
		}
		sess := s.app.Sessions().ByUID("u1")
		if sess == nil || sess.ID() != id {
			t.Fatalf("u1's session after the resume: %v", sess)
		}
		if gold, _ := session.Get[int](sess, "gold"); gold != 7 {
			t.Errorf("session data after the resume: %v", sess.Data())
		}
		// The resumed connection works both ways.
		if out, err := c.RequestRaw(context.Background(), "t.echo", []byte(`"again"`)); err != nil || string(out) != `"again"` {
			t.Errorf("request after the resume: %s, %v", out, err)
		}
		if c.PushesReceived() != total {
			t.Errorf("client counts %d pushes, want %d", c.PushesReceived(), total)
		}
		select {
		case got := <-h.closed:
			t.Errorf("session %d closed", got)
		default:
		}
		if st := s.stats(); st.Resumed.Load() != 1 {
			t.Errorf("stats: resumed %d", st.Resumed.Load())
		}
	})
}

// A request in flight when the link drops gets its response on the resumed
// connection.
func TestResumeDeliversResponses(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		s := startServer(t, nopal.Config{}, serverOpts{})
		c := dialResumable(t, tr.clientAddr(s), client.WithAutoResume(waitTimeout))
		bindVia(t, c, "slowpoke")
		done := make(chan error, 1)
		var out map[string]string
		go func() { done <- c.Request(context.Background(), "t.slow", nil, &out) }()
		await(t, s.comp.entered, "t.slow to start")
		c.Drop()
		// The reader of the old connection is in the handler: the server
		// sees the drop only when the new connection takes the session.
		eventually(t, "the client to resume", func() bool { return c.Resumes() == 1 })
		s.comp.unblock() // the response is made on the old connection
		if err := await(t, done, "the slow response"); err != nil || out["slow"] != "done" {
			t.Fatalf("slow request: %v, %v", out, err)
		}
	})
}

// Resumes that must not succeed give the client a fresh session, never
// someone else's, and leave the suspended session as the case says.
func TestResumeRefused(t *testing.T) {
	type setup struct {
		s      *testServer
		token  string // the suspended session's token
		pushes uint64
		id     int64
	}
	tests := []struct {
		name  string
		cfg   nopal.Config
		veto  bool
		token func(t *testing.T, st setup) (string, uint64)
	}{
		{name: "forged secret", token: func(_ *testing.T, st setup) (string, uint64) {
			tok, _ := frontend.ParseToken(st.token)
			tok.Secret = "AAAAAAAAAAAAAAAAAAAAAA"
			return tok.String(), st.pushes
		}},
		{name: "garbage", token: func(*testing.T, setup) (string, uint64) { return "not a token", 0 }},
		{name: "other frontend", token: func(_ *testing.T, st setup) (string, uint64) {
			tok, _ := frontend.ParseToken(st.token)
			tok.Frontend = "elsewhere"
			return tok.String(), st.pushes
		}},
		{name: "more pushes than sent", token: func(_ *testing.T, st setup) (string, uint64) {
			return st.token, st.pushes + 5
		}},
		{name: "used twice", token: func(t *testing.T, st setup) (string, uint64) {
			c := dialResumable(t, st.s.tcpAddr, client.WithResume(st.token, st.pushes))
			if !c.Handshake().Sys.Resumed {
				t.Fatal("the first resume failed")
			}
			return st.token, st.pushes
		}},
		{name: "expired", cfg: nopal.Config{Resume: frontend.ResumeConfig{Grace: 50 * time.Millisecond}},
			token: func(t *testing.T, st setup) (string, uint64) {
				eventually(t, "the session to expire", func() bool { return st.s.stats().Expired.Load() == 1 })
				return st.token, st.pushes
			}},
		{name: "missed too many", cfg: nopal.Config{Resume: frontend.ResumeConfig{Buffer: 4, MaxMissed: 4}},
			token: func(t *testing.T, st setup) (string, uint64) {
				for i := range 5 {
					if failed, err := st.s.app.PushToUsers(context.Background(), "onSeq", seqMsg{N: i}, []string{"u1"}); err != nil || len(failed) > 0 {
						t.Fatalf("push to the suspended session: %v, %v", failed, err)
					}
				}
				return st.token, st.pushes
			}},
		{name: "vetoed", veto: true, token: func(_ *testing.T, st setup) (string, uint64) { return st.token, st.pushes }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, tc.cfg, serverOpts{setup: func(app *nopal.App) {
				app.OnSessionBind(func(_ context.Context, s *session.Session, uid string) error {
					if tc.veto && s.Has("ban") {
						return errors.New("banned")
					}
					return nil
				})
			}})
			c := dialResumable(t, s.tcpAddr)
			id := bindVia(t, c, "u1")
			if failed, err := s.app.PushToUsers(context.Background(), "onSeq", seqMsg{N: 1}, []string{"u1"}); err != nil || len(failed) > 0 {
				t.Fatal(failed, err)
			}
			nextSeq(t, c)
			if tc.veto {
				s.app.Sessions().ByUID("u1").Set("ban", true)
			}
			st := setup{s: s, token: c.ResumeToken(), pushes: c.PushesReceived(), id: id}
			c.Drop()
			eventually(t, "the session to be suspended", func() bool { return s.stats().Suspended.Load() == 1 })

			token, pushes := tc.token(t, st)
			refused := s.stats().ResumeFailed.Load()
			c2 := dialResumable(t, s.tcpAddr, client.WithResume(token, pushes))
			if c2.Handshake().Sys.Resumed {
				t.Fatal("resumed")
			}
			if n := s.stats().ResumeFailed.Load(); n != refused+1 && tc.name != "garbage" {
				t.Errorf("ResumeFailed %d, want %d", n, refused+1)
			}
			// The client has a fresh, unbound session of its own.
			var res BindRes
			if err := c2.Request(context.Background(), "t.bind", &BindReq{UID: "fresh"}, &res); err != nil || res.Session == id {
				t.Errorf("the refused client's session: %+v, %v", res, err)
			}
			if c2.ResumeToken() == "" || c2.ResumeToken() == token {
				t.Errorf("the fresh session's token %q", c2.ResumeToken())
			}
		})
	}
}

// With resume off the handshake carries no token and a session ends with
// its connection.
func TestResumeOff(t *testing.T) {
	var h *resumeHooks
	s := startServer(t, nopal.Config{Resume: frontend.ResumeConfig{Off: true}}, serverOpts{setup: func(app *nopal.App) { h = watchSessions(app) }})
	c := dialResumable(t, s.tcpAddr)
	if c.ResumeToken() != "" {
		t.Errorf("token %q with resume off", c.ResumeToken())
	}
	id := bindVia(t, c, "u1")
	c.Drop()
	if got := await(t, h.closed, "OnSessionClose"); got != id {
		t.Errorf("closed %d, want %d", got, id)
	}
}

// An auto-resuming client that cannot get its session back (here a bind
// hook vetoes the resume) ends with ErrSessionLost.
func TestAutoResumeSessionLost(t *testing.T) {
	s := startServer(t, nopal.Config{}, serverOpts{setup: func(app *nopal.App) {
		app.OnSessionBind(func(_ context.Context, s *session.Session, _ string) error {
			if s.Has("ban") {
				return errors.New("banned")
			}
			return nil
		})
	}})
	c := dialResumable(t, s.tcpAddr, client.WithAutoResume(waitTimeout))
	bindVia(t, c, "u1")
	s.app.Sessions().ByUID("u1").Set("ban", true)
	c.Drop()
	await(t, c.Done(), "the client to end")
	if !errors.Is(c.Err(), client.ErrSessionLost) {
		t.Errorf("client ended with %v", c.Err())
	}
}
