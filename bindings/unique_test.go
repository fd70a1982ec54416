package bindings_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nopal-dev/nopal/bindings"
	"github.com/nopal-dev/nopal/session"
)

// testConn is a session.Conn that counts kicks. With closeOnKick, the first
// kick ends the session (pool.Closed), the way a frontend's agent does once
// the Kick packet is written; without it the test closes sessions itself.
type testConn struct {
	pool        *session.Pool
	sess        atomic.Pointer[session.Session]
	closeOnKick bool
	kicks       atomic.Int32
}

func (c *testConn) Push(string, any) error { return nil }

func (c *testConn) Kick(context.Context) error {
	if c.kicks.Add(1) == 1 && c.closeOnKick {
		c.pool.Closed(c.sess.Load())
	}
	return nil
}

func (c *testConn) Close() error         { return nil }
func (c *testConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// frontend stands for one frontend server: a real pool with the unique
// session module attached.
type frontend struct {
	id   string
	pool *session.Pool
}

// newSession opens a session on f.
func (f *frontend) newSession(closeOnKick bool) (*session.Session, *testConn) {
	c := &testConn{pool: f.pool, closeOnKick: closeOnKick}
	s := f.pool.New(c)
	c.sess.Store(s)
	return s, c
}

// poolKicker is an in-memory Kicker for frontends in one process: it does
// what a frontend does with a kick message from the bus, kicking the
// session only if it still exists and is bound to uid.
type poolKicker map[string]*session.Pool

func (k poolKicker) KickSession(ctx context.Context, frontendID string, sessionID int64, uid string) error {
	pool, ok := k[frontendID]
	if !ok {
		return fmt.Errorf("no frontend %q", frontendID)
	}
	s := pool.ByID(sessionID)
	if s == nil || s.UID() != uid {
		return nil
	}
	return s.Kick(ctx)
}

// newCluster returns frontends "fe-1" and "fe-2" sharing store, each with a
// UniqueSession; errors they log fail the test.
func newCluster(t *testing.T, store *bindings.Store) (fe1, fe2 *frontend) {
	t.Helper()
	logs := &logBuffer{}
	noErrorLogs(t, logs)
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	kicker := poolKicker{}
	fes := make([]*frontend, 2)
	for i := range fes {
		f := &frontend{id: fmt.Sprintf("fe-%d", i+1), pool: session.NewPool(slog.New(slog.DiscardHandler))}
		kicker[f.id] = f.pool
		bindings.NewUniqueSession(store, f.id, kicker, log).Attach(f.pool)
		fes[i] = f
	}
	return fes[0], fes[1]
}

// wantBinding checks the store's binding of uid: s on f, or none (s nil).
func wantBinding(t *testing.T, ctx context.Context, store *bindings.Store, uid string, f *frontend, s *session.Session) {
	t.Helper()
	got, err := store.Get(ctx, uid)
	if s == nil {
		if !errors.Is(err, bindings.ErrNotFound) {
			t.Fatalf("binding of %q = %v, %v; want none", uid, got, err)
		}
		return
	}
	want := bindings.Binding{FrontendID: f.id, SessionID: s.ID()}
	if err != nil || got != want {
		t.Fatalf("binding of %q = %v, %v; want %v", uid, got, err, want)
	}
}

func TestUniqueSession(t *testing.T) {
	store := newStore(t)

	type bind struct {
		fe   int    // 1 or 2
		name string // the session, named in the test
		uid  string
	}
	tests := []struct {
		name  string
		binds []bind
		kicks map[string]int    // session -> kicks it got (others: none)
		holds map[string]string // uid -> session its binding names
	}{
		{
			name:  "remote takeover",
			binds: []bind{{1, "a", "alice"}, {2, "b", "alice"}},
			kicks: map[string]int{"a": 1},
			holds: map[string]string{"alice": "b"},
		},
		{
			// The pool kicks a; the module must not kick it again.
			name:  "local takeover is the pool's kick alone",
			binds: []bind{{1, "a", "alice"}, {1, "b", "alice"}},
			kicks: map[string]int{"a": 1},
			holds: map[string]string{"alice": "b"},
		},
		{
			name:  "back and forth",
			binds: []bind{{1, "a", "alice"}, {2, "b", "alice"}, {1, "c", "alice"}, {1, "d", "alice"}, {2, "e", "alice"}},
			// Kicked sessions stay open here until the test closes
			// them, so a and b, still their pool's session for
			// alice, are kicked again by the next local bind (c, e).
			kicks: map[string]int{"a": 2, "b": 2, "c": 1, "d": 1},
			holds: map[string]string{"alice": "e"},
		},
		{
			name:  "other uids are left alone",
			binds: []bind{{1, "a", "alice"}, {2, "b", "bob"}, {2, "c", "carol"}},
			holds: map[string]string{"alice": "a", "bob": "b", "carol": "c"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			fe1, fe2 := newCluster(t, store)
			fes := map[int]*frontend{1: fe1, 2: fe2}
			type opened struct {
				fe   *frontend
				s    *session.Session
				conn *testConn
			}
			sessions := make(map[string]opened)
			uid := func(u string) string { return t.Name() + "/" + u } // fresh uids per subtest
			for _, b := range tc.binds {
				f := fes[b.fe]
				s, c := f.newSession(false)
				sessions[b.name] = opened{f, s, c}
				if err := s.Bind(ctx, uid(b.uid)); err != nil {
					t.Fatalf("bind %s: %v", b.name, err)
				}
			}

			for name, o := range sessions {
				if got, want := o.conn.kicks.Load(), int32(tc.kicks[name]); got != want {
					t.Errorf("session %s kicked %d times, want %d", name, got, want)
				}
			}
			for u, name := range tc.holds {
				wantBinding(t, ctx, store, uid(u), sessions[name].fe, sessions[name].s)
			}

			// The kicked sessions' connections end late: their
			// bindings are gone already, the newer ones stay.
			for name := range tc.kicks {
				o := sessions[name]
				o.fe.pool.Closed(o.s)
			}
			for u, name := range tc.holds {
				wantBinding(t, ctx, store, uid(u), sessions[name].fe, sessions[name].s)
			}
			// The holders leave: nothing stays bound.
			for u, name := range tc.holds {
				o := sessions[name]
				o.fe.pool.Closed(o.s)
				wantBinding(t, ctx, store, uid(u), nil, nil)
			}
		})
	}
}

// TestUniqueSessionStorm binds one uid with new sessions on alternating
// frontends, many at once, every kick ending its session at once (so closes
// and their Unbinds race with the binds). Afterwards exactly one session is
// alive, it was never kicked, the store names it and its pool finds it by uid.
func TestUniqueSessionStorm(t *testing.T) {
	store := newStore(t)
	tests := []struct {
		name   string
		rounds int
		batch  int // binds started together per round
	}{
		{"one at a time", 20, 1},
		{"pairs", 20, 2},
		{"all at once", 1, 20},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			fe1, fe2 := newCluster(t, store)
			uid := t.Name()
			type opened struct {
				fe   *frontend
				s    *session.Session
				conn *testConn
			}
			var all []opened
			for range tc.rounds {
				batch := make([]opened, tc.batch)
				for i := range batch {
					f := fe1
					if (len(all)+i)%2 == 1 {
						f = fe2
					}
					s, c := f.newSession(true)
					batch[i] = opened{f, s, c}
				}
				start := make(chan struct{})
				errs := make([]error, len(batch))
				var wg sync.WaitGroup
				for i, o := range batch {
					wg.Go(func() {
						<-start
						errs[i] = o.s.Bind(ctx, uid)
					})
				}
				close(start)
				wg.Wait()
				for i, err := range errs {
					// A session kicked before its own Bind ran is
					// closed: that bind fails, and it is fine.
					if err != nil && !(errors.Is(err, session.ErrClosed) && batch[i].conn.kicks.Load() > 0) {
						t.Fatalf("bind: %v", err)
					}
				}
				all = append(all, batch...)
			}

			var live []opened
			for _, o := range all {
				if o.conn.kicks.Load() == 0 {
					live = append(live, o)
				} else if !o.s.Closed() {
					t.Errorf("session %d on %s was kicked but is open", o.s.ID(), o.fe.id)
				}
			}
			if len(live) != 1 {
				t.Fatalf("%d sessions never kicked, want 1", len(live))
			}
			w := live[0]
			wantBinding(t, ctx, store, uid, w.fe, w.s)
			if w.fe.pool.ByUID(uid) != w.s {
				t.Fatalf("%s's pool does not find the winner by uid", w.fe.id)
			}
			if n := fe1.pool.Count() + fe2.pool.Count(); n != 1 {
				t.Fatalf("%d sessions open, want 1", n)
			}
			w.fe.pool.Closed(w.s)
			wantBinding(t, ctx, store, uid, nil, nil)
		})
	}
}

// TestUniqueSessionPerType: with PerType, a bind kicks the session it
// replaced only on a frontend of the same type; the binding names the
// latest session either way.
func TestUniqueSessionPerType(t *testing.T) {
	store := newStore(t)
	tests := []struct {
		name         string
		type1, type2 string
		kicks        int32
	}{
		{"same type", "connector", "connector", 1},
		{"other type", "connector", "gate", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			types := map[string]string{"fe-1": tc.type1, "fe-2": tc.type2}
			typeOf := func(id string) (string, bool) { typ, ok := types[id]; return typ, ok }
			kicker := poolKicker{}
			var fes [2]*frontend
			for i := range fes {
				f := &frontend{id: fmt.Sprintf("fe-%d", i+1), pool: session.NewPool(slog.New(slog.DiscardHandler))}
				kicker[f.id] = f.pool
				bindings.NewUniqueSession(store, f.id, kicker, slog.New(slog.DiscardHandler)).
					PerType(types[f.id], typeOf).Attach(f.pool)
				fes[i] = f
			}
			uid := "per-type-" + strings.ReplaceAll(tc.name, " ", "-")
			s1, c1 := fes[0].newSession(false)
			if err := s1.Bind(ctx, uid); err != nil {
				t.Fatal(err)
			}
			s2, _ := fes[1].newSession(false)
			if err := s2.Bind(ctx, uid); err != nil {
				t.Fatal(err)
			}
			if got := c1.kicks.Load(); got != tc.kicks {
				t.Errorf("the first session was kicked %d times, want %d", got, tc.kicks)
			}
			wantBinding(t, ctx, store, uid, fes[1], s2)
		})
	}
}
