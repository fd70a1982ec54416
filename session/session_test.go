package session_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/nopal-dev/nopal/session"
)

// pushed is one Push a memConn received.
type pushed struct {
	route string
	v     any
}

// memConn is a session.Conn that records pushes, kicks and closes in
// memory. When gone is set, the first Kick or Close calls it, the way a
// frontend's agent calls Pool.Closed once its connection is gone.
type memConn struct {
	addr    net.Addr
	kickErr error

	mu     sync.Mutex
	pushes []pushed
	kicks  int
	closes int
	gone   func()
	once   sync.Once
}

func (c *memConn) Push(route string, v any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pushes = append(c.pushes, pushed{route, v})
	return nil
}

func (c *memConn) Kick(context.Context) error {
	c.mu.Lock()
	c.kicks++
	c.mu.Unlock()
	if c.kickErr != nil {
		return c.kickErr
	}
	c.end()
	return nil
}

func (c *memConn) Close() error {
	c.mu.Lock()
	c.closes++
	c.mu.Unlock()
	c.end()
	return nil
}

func (c *memConn) end() {
	c.mu.Lock()
	gone := c.gone
	c.mu.Unlock()
	if gone != nil {
		c.once.Do(gone)
	}
}

func (c *memConn) RemoteAddr() net.Addr {
	if c.addr == nil {
		return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 3250}
	}
	return c.addr
}

func (c *memConn) Kicks() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.kicks
}

func (c *memConn) Closes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closes
}

func (c *memConn) Pushes() []pushed {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.pushes)
}

// newPool returns a pool whose log goes to the returned buffer.
func newPool(t *testing.T) (*session.Pool, *syncBuffer) {
	t.Helper()
	var buf syncBuffer
	return session.NewPool(slog.New(slog.NewTextHandler(&buf, nil))), &buf
}

// newSession adds a session over a fresh memConn to p.
func newSession(t *testing.T, p *session.Pool) (*session.Session, *memConn) {
	t.Helper()
	c := &memConn{}
	return p.New(c), c
}

// newLiveSession is newSession whose connection calls p.Closed when it is
// kicked or closed, as the frontend does.
func newLiveSession(t *testing.T, p *session.Pool) (*session.Session, *memConn) {
	t.Helper()
	s, c := newSession(t, p)
	c.mu.Lock()
	c.gone = func() { p.Closed(s) }
	c.mu.Unlock()
	return s, c
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func mustBind(t *testing.T, s *session.Session, uid string) {
	t.Helper()
	if err := s.Bind(context.Background(), uid); err != nil {
		t.Fatalf("Bind(%q) of session %d: %v", uid, s.ID(), err)
	}
}

func ids(p *session.Pool) []int64 {
	var out []int64
	p.Range(func(s *session.Session) bool {
		out = append(out, s.ID())
		return true
	})
	slices.Sort(out)
	return out
}

func TestPoolNewByIDCountRange(t *testing.T) {
	p, _ := newPool(t)
	if p.Count() != 0 || p.ByID(1) != nil || len(ids(p)) != 0 {
		t.Fatal("new pool is not empty")
	}
	var all []*session.Session
	for range 3 {
		s, _ := newSession(t, p)
		all = append(all, s)
	}
	seen := map[int64]bool{}
	for _, s := range all {
		if seen[s.ID()] {
			t.Fatalf("id %d given twice", s.ID())
		}
		seen[s.ID()] = true
		if got := p.ByID(s.ID()); got != s {
			t.Errorf("ByID(%d) = %v, want %v", s.ID(), got, s)
		}
		if s.UID() != "" || s.Closed() {
			t.Errorf("%v: fresh session has uid or is closed", s)
		}
	}
	if p.Count() != 3 {
		t.Errorf("Count = %d, want 3", p.Count())
	}
	want := []int64{all[0].ID(), all[1].ID(), all[2].ID()}
	slices.Sort(want)
	if got := ids(p); !slices.Equal(got, want) {
		t.Errorf("Range visited %v, want %v", got, want)
	}

	visited := 0
	p.Range(func(*session.Session) bool { visited++; return false })
	if visited != 1 {
		t.Errorf("Range went on after false: %d visits", visited)
	}

	p.Closed(all[1])
	if p.ByID(all[1].ID()) != nil {
		t.Error("closed session still found by id")
	}
	if p.Count() != 2 {
		t.Errorf("Count after a close = %d, want 2", p.Count())
	}
	if got := ids(p); slices.Contains(got, all[1].ID()) || len(got) != 2 {
		t.Errorf("Range after a close visited %v", got)
	}
	if p.ByID(-1) != nil {
		t.Error("ByID of an unknown id is not nil")
	}
}

func TestSessionAccessors(t *testing.T) {
	p, _ := newPool(t)
	addr := &net.TCPAddr{IP: net.IPv4(10, 0, 0, 7), Port: 4242}
	c := &memConn{addr: addr}
	s := p.New(c)
	if s.RemoteAddr() != addr {
		t.Errorf("RemoteAddr = %v, want %v", s.RemoteAddr(), addr)
	}
	if s.Conn() != c {
		t.Error("Conn does not return the session's connection")
	}
	mustBind(t, s, "alice")
	if str := s.String(); !strings.Contains(str, fmt.Sprint(s.ID())) || !strings.Contains(str, `"alice"`) {
		t.Errorf("String() = %q lacks id or uid", str)
	}
}

func TestBindErrors(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, p *session.Pool, s *session.Session)
		uid   string
		want  error
	}{
		{name: "empty uid", uid: "", want: session.ErrIllegalUID},
		{
			name:  "second bind, same uid",
			setup: func(t *testing.T, _ *session.Pool, s *session.Session) { mustBind(t, s, "alice") },
			uid:   "alice",
			want:  session.ErrAlreadyBound,
		},
		{
			name:  "second bind, other uid",
			setup: func(t *testing.T, _ *session.Pool, s *session.Session) { mustBind(t, s, "alice") },
			uid:   "bob",
			want:  session.ErrAlreadyBound,
		},
		{
			name:  "closed session",
			setup: func(_ *testing.T, p *session.Pool, s *session.Session) { p.Closed(s) },
			uid:   "alice",
			want:  session.ErrClosed,
		},
		{
			name:  "closed session, empty uid",
			setup: func(_ *testing.T, p *session.Pool, s *session.Session) { p.Closed(s) },
			uid:   "",
			want:  session.ErrIllegalUID,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, _ := newPool(t)
			s, c := newSession(t, p)
			if tt.setup != nil {
				tt.setup(t, p, s)
			}
			before := s.UID()
			afterRan := false
			p.OnAfterSessionBind(func(context.Context, *session.Session) { afterRan = true })
			err := s.Bind(context.Background(), tt.uid)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Bind(%q) = %v, want %v", tt.uid, err, tt.want)
			}
			if s.UID() != before {
				t.Errorf("failed Bind changed uid from %q to %q", before, s.UID())
			}
			if afterRan {
				t.Error("OnAfterSessionBind ran for a failed bind")
			}
			if c.Kicks() != 0 {
				t.Error("failed Bind kicked the session")
			}
			if tt.uid != "" && before == "" && p.ByUID(tt.uid) != nil {
				t.Errorf("ByUID(%q) finds a session after a failed bind", tt.uid)
			}
		})
	}
}

func TestBindHooks(t *testing.T) {
	errBanned := errors.New("banned")
	p, _ := newPool(t)
	var events []string
	p.OnSessionBind(func(ctx context.Context, s *session.Session, uid string) error {
		events = append(events, fmt.Sprintf("check %s (bound %q, in pool %v)", uid, s.UID(), p.ByUID(uid) != nil))
		if uid == "mallory" {
			return errBanned
		}
		return nil
	})
	p.OnSessionBind(func(ctx context.Context, s *session.Session, uid string) error {
		events = append(events, "second check "+uid)
		return nil
	})
	p.OnAfterSessionBind(func(ctx context.Context, s *session.Session) {
		events = append(events, fmt.Sprintf("bound %s (in pool %v)", s.UID(), p.ByUID(s.UID()) == s))
	})

	s, _ := newSession(t, p)
	err := s.Bind(context.Background(), "mallory")
	if !errors.Is(err, errBanned) {
		t.Fatalf("vetoed Bind = %v, want an error wrapping %v", err, errBanned)
	}
	if s.UID() != "" || p.ByUID("mallory") != nil {
		t.Fatalf("vetoed uid got bound: UID %q, ByUID %v", s.UID(), p.ByUID("mallory"))
	}

	// The veto left the session free to bind another uid.
	mustBind(t, s, "alice")
	want := []string{
		`check mallory (bound "", in pool false)`,
		`check alice (bound "", in pool false)`,
		"second check alice",
		"bound alice (in pool true)",
	}
	if !slices.Equal(events, want) {
		t.Errorf("hooks ran as\n%q\nwant\n%q", events, want)
	}
}

func TestBindSameUIDKicksOlder(t *testing.T) {
	p, buf := newPool(t)
	var afterBinds []int64
	p.OnAfterSessionBind(func(_ context.Context, s *session.Session) { afterBinds = append(afterBinds, s.ID()) })
	older, olderConn := newSession(t, p)
	newer, newerConn := newSession(t, p)

	mustBind(t, older, "alice")
	mustBind(t, newer, "alice")

	if olderConn.Kicks() != 1 {
		t.Errorf("older session kicked %d times, want 1", olderConn.Kicks())
	}
	if newerConn.Kicks() != 0 {
		t.Errorf("newer session kicked %d times, want 0", newerConn.Kicks())
	}
	if got := p.ByUID("alice"); got != newer {
		t.Fatalf("ByUID = %v, want the newer %v", got, newer)
	}
	if !slices.Equal(afterBinds, []int64{older.ID(), newer.ID()}) {
		t.Errorf("OnAfterSessionBind ran for %v", afterBinds)
	}
	if !strings.Contains(buf.String(), "kicking the older session") {
		t.Errorf("the kick is not logged:\n%s", buf)
	}

	// The frontend learns late that the older connection is gone: this
	// must not unbind the newer session (Pitaya's reconnect race).
	p.Closed(older)
	if got := p.ByUID("alice"); got != newer {
		t.Fatalf("after the older session closed, ByUID = %v, want %v", got, newer)
	}
	if newer.UID() != "alice" {
		t.Errorf("newer UID = %q", newer.UID())
	}

	p.Closed(newer)
	if got := p.ByUID("alice"); got != nil {
		t.Fatalf("after both closed, ByUID = %v", got)
	}
	if p.Count() != 0 {
		t.Errorf("Count = %d", p.Count())
	}
}

func TestBindKickFailureCloses(t *testing.T) {
	p, _ := newPool(t)
	oc := &memConn{kickErr: errors.New("write: broken pipe")}
	older := p.New(oc)
	newer, _ := newSession(t, p)
	mustBind(t, older, "alice")
	mustBind(t, newer, "alice")
	if oc.Kicks() != 1 || oc.Closes() != 1 {
		t.Errorf("older conn: %d kicks, %d closes; want a kick, then a close since it failed", oc.Kicks(), oc.Closes())
	}
	if p.ByUID("alice") != newer {
		t.Error("ByUID does not return the newer session")
	}
}

// TestBindRaceOneUID races many sessions binding one uid. Each connection
// reports its end to the pool when kicked, like a frontend, so a kicked
// session's Closed races the later binds too.
func TestBindRaceOneUID(t *testing.T) {
	const n = 64
	for round := range 20 {
		p, _ := newPool(t)
		sessions := make([]*session.Session, n)
		conns := make([]*memConn, n)
		for i := range n {
			sessions[i], conns[i] = newLiveSession(t, p)
		}
		start := make(chan struct{})
		errs := make(chan error, n)
		var wg sync.WaitGroup
		for _, s := range sessions {
			wg.Go(func() {
				<-start
				errs <- s.Bind(context.Background(), "alice")
			})
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("round %d: Bind: %v", round, err)
			}
		}

		winner := p.ByUID("alice")
		if winner == nil {
			t.Fatalf("round %d: no session holds the uid", round)
		}
		for i, s := range sessions {
			want := 1
			if s == winner {
				want = 0
			}
			if got := conns[i].Kicks(); got != want {
				t.Errorf("round %d: session %d (winner %v) kicked %d times, want %d", round, s.ID(), s == winner, got, want)
			}
			if s.Closed() == (s == winner) {
				t.Errorf("round %d: session %d closed=%v, winner=%v", round, s.ID(), s.Closed(), s == winner)
			}
		}
		if p.Count() != 1 {
			t.Errorf("round %d: Count = %d, want 1", round, p.Count())
		}
	}
}

func TestClosed(t *testing.T) {
	p, buf := newPool(t)
	var events []string
	p.OnSessionClose(func(s *session.Session) {
		events = append(events, fmt.Sprintf("pool hook 1 (closed %v, in pool %v)", s.Closed(), p.ByID(s.ID()) != nil))
	})
	p.OnSessionClose(func(*session.Session) { panic("pool hook 2 fails") })
	p.OnSessionClose(func(*session.Session) { events = append(events, "pool hook 3") })

	s, _ := newSession(t, p)
	mustBind(t, s, "alice")
	s.OnClose(func() { events = append(events, "callback 1") })
	s.OnClose(func() { panic("callback 2 fails") })
	s.OnClose(func() { events = append(events, "callback 3") })

	p.Closed(s)
	want := []string{"callback 1", "callback 3", "pool hook 1 (closed true, in pool false)", "pool hook 3"}
	if !slices.Equal(events, want) {
		t.Fatalf("close ran\n%q\nwant\n%q", events, want)
	}
	if !s.Closed() || p.ByUID("alice") != nil || p.ByID(s.ID()) != nil || p.Count() != 0 {
		t.Fatal("session not removed from the pool")
	}
	for _, msg := range []string{"callback 2 fails", "pool hook 2 fails", "callback=OnClose", "callback=OnSessionClose", "uid=alice"} {
		if !strings.Contains(buf.String(), msg) {
			t.Errorf("log lacks %q:\n%s", msg, buf)
		}
	}

	// A second Closed is a no-op.
	events = nil
	p.Closed(s)
	if len(events) != 0 || p.Count() != 0 {
		t.Errorf("second Closed ran %q, Count %d", events, p.Count())
	}

	// A callback added after the end runs at once, exactly once.
	ran := 0
	s.OnClose(func() { ran++ })
	if ran != 1 {
		t.Errorf("OnClose after close ran %d times, want 1", ran)
	}
	p.Closed(s)
	if ran != 1 {
		t.Errorf("late callback ran again: %d", ran)
	}
}

func TestPush(t *testing.T) {
	p, _ := newPool(t)
	s, c := newSession(t, p)
	type chat struct{ Text string }
	if err := s.Push("chat.onMessage", chat{"hi"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Push("chat.onRaw", []byte{1, 2}); err != nil {
		t.Fatal(err)
	}
	p.Closed(s)
	if err := s.Push("chat.onMessage", chat{"late"}); !errors.Is(err, session.ErrClosed) {
		t.Errorf("Push after close = %v, want ErrClosed", err)
	}
	got := c.Pushes()
	if len(got) != 2 || got[0].route != "chat.onMessage" || got[0].v != (chat{"hi"}) || got[1].route != "chat.onRaw" {
		t.Errorf("conn received %+v", got)
	}
}

func TestKickAndClosePassThrough(t *testing.T) {
	p, _ := newPool(t)
	s, c := newLiveSession(t, p)
	if err := s.Kick(context.Background()); err != nil {
		t.Fatal(err)
	}
	if c.Kicks() != 1 || !s.Closed() || p.Count() != 0 {
		t.Errorf("Kick: %d kicks, closed %v, count %d", c.Kicks(), s.Closed(), p.Count())
	}
	s2, c2 := newLiveSession(t, p)
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	if c2.Kicks() != 0 || c2.Closes() != 1 || !s2.Closed() {
		t.Errorf("Close: %d kicks, %d closes, closed %v", c2.Kicks(), c2.Closes(), s2.Closed())
	}
}

func TestData(t *testing.T) {
	type op func(s *session.Session)
	set := func(k string, v any) op { return func(s *session.Session) { s.Set(k, v) } }
	remove := func(k string) op { return func(s *session.Session) { s.Remove(k) } }
	clearAll := func(s *session.Session) { s.Clear() }
	setData := func(m map[string]any) op { return func(s *session.Session) { s.SetData(m) } }

	tests := []struct {
		name string
		ops  []op
		want map[string]any
	}{
		{name: "empty", want: map[string]any{}},
		{name: "set", ops: []op{set("level", 3), set("name", "alice")}, want: map[string]any{"level": 3, "name": "alice"}},
		{name: "overwrite", ops: []op{set("level", 3), set("level", 4)}, want: map[string]any{"level": 4}},
		{name: "remove", ops: []op{set("level", 3), set("name", "alice"), remove("level")}, want: map[string]any{"name": "alice"}},
		{name: "remove missing", ops: []op{remove("nothing")}, want: map[string]any{}},
		{name: "clear", ops: []op{set("level", 3), clearAll}, want: map[string]any{}},
		{name: "set after clear", ops: []op{set("level", 3), clearAll, set("hp", 10)}, want: map[string]any{"hp": 10}},
		{name: "set data", ops: []op{set("level", 3), setData(map[string]any{"hp": 10})}, want: map[string]any{"hp": 10}},
		{name: "set nil data, then set", ops: []op{set("level", 3), setData(nil), set("hp", 10)}, want: map[string]any{"hp": 10}},
		{name: "nil value", ops: []op{set("none", nil)}, want: map[string]any{"none": nil}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, _ := newPool(t)
			s, _ := newSession(t, p)
			for _, o := range tt.ops {
				o(s)
			}
			got := s.Data()
			if len(got) != len(tt.want) {
				t.Fatalf("Data = %v, want %v", got, tt.want)
			}
			for k, want := range tt.want {
				v, ok := s.Get(k)
				if !ok || v != want || !s.Has(k) || got[k] != want {
					t.Errorf("key %q: Get = %v, %v; Has %v; Data %v; want %v", k, v, ok, s.Has(k), got[k], want)
				}
			}
			for _, k := range []string{"level", "name", "hp", "none"} {
				if _, in := tt.want[k]; in {
					continue
				}
				if v, ok := s.Get(k); ok || s.Has(k) {
					t.Errorf("key %q should be absent, Get = %v", k, v)
				}
			}
		})
	}
}

func TestDataCopies(t *testing.T) {
	p, _ := newPool(t)
	s, _ := newSession(t, p)

	in := map[string]any{"level": 3}
	s.SetData(in)
	in["level"] = 99
	in["extra"] = true
	if v, _ := s.Get("level"); v != 3 || s.Has("extra") {
		t.Errorf("SetData aliases its argument: level %v, extra %v", v, s.Has("extra"))
	}

	out := s.Data()
	out["level"] = 42
	delete(out, "level")
	out["injected"] = 1
	if v, _ := s.Get("level"); v != 3 || s.Has("injected") {
		t.Errorf("Data returns an alias: level %v, injected %v", v, s.Has("injected"))
	}

	s.Set("hp", 10)
	if _, ok := out["hp"]; ok {
		t.Error("a later Set shows in an earlier Data copy")
	}
}

func TestGetTyped(t *testing.T) {
	p, _ := newPool(t)
	s, _ := newSession(t, p)
	s.Set("level", 3)
	s.Set("name", "alice")
	s.Set("addr", net.Addr(&net.TCPAddr{Port: 1}))

	t.Run("int", func(t *testing.T) {
		tests := []struct {
			key    string
			want   int
			wantOK bool
		}{
			{"level", 3, true},
			{"name", 0, false},    // holds a string
			{"missing", 0, false}, // absent
		}
		for _, tt := range tests {
			got, ok := session.Get[int](s, tt.key)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("Get[int](%q) = %v, %v; want %v, %v", tt.key, got, ok, tt.want, tt.wantOK)
			}
		}
	})
	t.Run("string", func(t *testing.T) {
		if got, ok := session.Get[string](s, "name"); got != "alice" || !ok {
			t.Errorf("Get[string] = %q, %v", got, ok)
		}
		if got, ok := session.Get[string](s, "level"); got != "" || ok {
			t.Errorf("Get[string] of an int = %q, %v", got, ok)
		}
	})
	t.Run("interface", func(t *testing.T) {
		if got, ok := session.Get[net.Addr](s, "addr"); !ok || got.String() != ":1" {
			t.Errorf("Get[net.Addr] = %v, %v", got, ok)
		}
		if _, ok := session.Get[fmt.Stringer](s, "level"); ok {
			t.Error("Get[fmt.Stringer] of an int reports true")
		}
	})
}

func TestContext(t *testing.T) {
	p, _ := newPool(t)
	s, _ := newSession(t, p)
	tests := []struct {
		name string
		ctx  context.Context
		want *session.Session
	}{
		{"with session", session.NewContext(context.Background(), s), s},
		{"without", context.Background(), nil},
		{"derived", context.WithValue(session.NewContext(context.Background(), s), struct{}{}, 1), s},
		{"typed nil", session.NewContext(context.Background(), nil), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := session.FromContext(tt.ctx); got != tt.want {
				t.Errorf("FromContext = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestConcurrentUse hammers one pool from many goroutines; run it with -race.
func TestConcurrentUse(t *testing.T) {
	p, _ := newPool(t)
	var closedHooks sync.Map
	p.OnSessionClose(func(s *session.Session) {
		if _, dup := closedHooks.LoadOrStore(s.ID(), true); dup {
			t.Errorf("OnSessionClose ran twice for %d", s.ID())
		}
	})
	const workers, uids = 16, 4
	sessions := make([]*session.Session, workers*4)
	for i := range sessions {
		sessions[i], _ = newLiveSession(t, p)
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			<-start
			ctx := context.Background()
			for i := range 200 {
				s := sessions[(w*7+i)%len(sessions)]
				key := fmt.Sprintf("k%d", i%5)
				s.Set(key, i)
				_, _ = session.Get[int](s, key)
				s.Has(key)
				_ = s.Data()
				if i%50 == 0 {
					s.SetData(map[string]any{"w": w})
					s.Clear()
				}
				s.Remove(key)
				_ = s.Push("r", i)
				s.OnClose(func() {})
				_ = s.UID()
				_ = s.String()
				switch i % 20 {
				case 3:
					_ = s.Bind(ctx, fmt.Sprintf("u%d", (w+i)%uids))
				case 11:
					if w%4 == 0 {
						p.Closed(s)
					}
				}
				_ = p.ByUID(fmt.Sprintf("u%d", i%uids))
				_ = p.ByID(s.ID())
				_ = p.Count()
				p.Range(func(*session.Session) bool { return true })
			}
		})
	}
	close(start)
	wg.Wait()

	// Whatever happened, the pool's indexes agree with the sessions.
	live := 0
	for _, s := range sessions {
		if s.Closed() {
			if p.ByID(s.ID()) != nil {
				t.Errorf("closed session %d still in the pool", s.ID())
			}
			if _, ok := closedHooks.Load(s.ID()); !ok {
				t.Errorf("OnSessionClose did not run for %d", s.ID())
			}
			continue
		}
		live++
		if p.ByID(s.ID()) != s {
			t.Errorf("live session %d not found by id", s.ID())
		}
		// A bound session that was not kicked is its uid's holder.
		if uid := s.UID(); uid != "" && p.ByUID(uid) != s {
			t.Errorf("live session %d bound to %q, but ByUID returns %v", s.ID(), uid, p.ByUID(uid))
		}
	}
	if p.Count() != live {
		t.Errorf("Count = %d, %d sessions live", p.Count(), live)
	}
	for u := range uids {
		uid := fmt.Sprintf("u%d", u)
		if s := p.ByUID(uid); s != nil && (s.Closed() || s.UID() != uid) {
			t.Errorf("ByUID(%q) = %v, closed %v", uid, s, s.Closed())
		}
	}
}
