package groups

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// fakeClock is a clock that moves only when told to.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// push is one PushToUsers call seen by a recordingPusher.
type push struct {
	route string
	v     any
	uids  []string // sorted
}

// recordingPusher is a Pusher that records every push and fails the uids for
// which fail returns true. It is safe for concurrent use.
type recordingPusher struct {
	fail func(uid string) bool // nil: every uid is reached
	err  error                 // returned by every push

	mu     sync.Mutex
	pushes []push
}

func (p *recordingPusher) PushToUsers(_ context.Context, route string, v any, uids []string) ([]string, error) {
	sorted := slices.Sorted(slices.Values(uids))
	var failed []string
	for _, uid := range sorted {
		if p.fail != nil && p.fail(uid) {
			failed = append(failed, uid)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pushes = append(p.pushes, push{route: route, v: v, uids: sorted})
	return failed, p.err
}

func (p *recordingPusher) Pushes() []push {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.pushes)
}

// newTestMemory returns a Memory on a fake clock and a recording pusher.
func newTestMemory(t *testing.T) (*Memory, *fakeClock, *recordingPusher) {
	t.Helper()
	clock := newFakeClock()
	p := &recordingPusher{}
	return NewMemory(p, WithClock(clock.Now)), clock, p
}

// env is one implementation of Service under test, on a fake clock, with a
// recording pusher. The behavioural tests below run against every
// implementation listed in services.
type env struct {
	Service
	clock  *fakeClock
	pusher *recordingPusher
	// sweep removes from storage the groups expired at now and returns how
	// many it removed.
	sweep func(now time.Time) int
	// stored returns the names of the groups in storage, expired or not,
	// sorted.
	stored func() []string
}

// newEnvFunc returns a new, empty Service; each call is independent of the
// others.
type newEnvFunc func(t *testing.T) *env

// services are the implementations the behavioural tests run against;
// newClusterEnv is in cluster_test.go.
var services = []struct {
	name   string
	newEnv newEnvFunc
}{
	{"Memory", newMemoryEnv},
	{"Cluster", newClusterEnv},
}

// eachService runs f once per implementation, in a subtest named after it.
func eachService(t *testing.T, f func(t *testing.T, newEnv newEnvFunc)) {
	for _, svc := range services {
		t.Run(svc.name, func(t *testing.T) { f(t, svc.newEnv) })
	}
}

func newMemoryEnv(t *testing.T) *env {
	m, clock, p := newTestMemory(t)
	return &env{
		Service: m,
		clock:   clock,
		pusher:  p,
		sweep:   m.Sweep,
		stored:  func() []string { return stored(m) },
	}
}

// mustCreate creates a group, with a TTL if ttl > 0, or fails the test.
func mustCreate(t *testing.T, s Service, name string, ttl time.Duration) {
	t.Helper()
	var err error
	if ttl > 0 {
		err = s.CreateWithTTL(t.Context(), name, ttl)
	} else {
		err = s.Create(t.Context(), name)
	}
	if err != nil {
		t.Fatalf("create %q: %v", name, err)
	}
}

// mustAdd adds uids to a group or fails the test.
func mustAdd(t *testing.T, s Service, name string, uids ...string) {
	t.Helper()
	for _, uid := range uids {
		if err := s.Add(t.Context(), name, uid); err != nil {
			t.Fatalf("Add(%q, %q): %v", name, uid, err)
		}
	}
}

// checkErr fails the test unless err matches want (nil meaning no error).
func checkErr(t *testing.T, what string, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Errorf("%s: unexpected error %v", what, err)
	case want != nil && !errors.Is(err, want):
		t.Errorf("%s: error = %v, want %v", what, err, want)
	}
}

// checkMembers fails the test unless the group's members are exactly want
// (sorted).
func checkMembers(t *testing.T, s Service, name string, want ...string) {
	t.Helper()
	got, err := s.Members(t.Context(), name)
	if err != nil {
		t.Fatalf("Members(%q): %v", name, err)
	}
	if want == nil {
		want = []string{}
	}
	if !slices.Equal(got, want) {
		t.Errorf("Members(%q) = %q, want %q", name, got, want)
	}
}

// checkPushes fails the test unless p recorded exactly want.
func checkPushes(t *testing.T, p *recordingPusher, want ...push) {
	t.Helper()
	got := p.Pushes()
	if len(got) != len(want) {
		t.Fatalf("got %d pushes %v, want %d %v", len(got), got, len(want), want)
	}
	for i := range want {
		if got[i].route != want[i].route || got[i].v != want[i].v || !slices.Equal(got[i].uids, want[i].uids) {
			t.Errorf("push %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

// gone is a name no test creates.
const gone = "no-such-group"

// everyMethod calls each method of the Service on the group called name and
// returns the errors, by method name.
func everyMethod(ctx context.Context, s Service, name string) map[string]error {
	errs := make(map[string]error)
	errs["Add"] = s.Add(ctx, name, "u1")
	errs["Remove"] = s.Remove(ctx, name, "u1")
	errs["RemoveAll"] = s.RemoveAll(ctx, name)
	_, errs["Members"] = s.Members(ctx, name)
	_, errs["Contains"] = s.Contains(ctx, name, "u1")
	_, errs["Count"] = s.Count(ctx, name)
	_, errs["Broadcast"] = s.Broadcast(ctx, name, "r", "v")
	_, errs["Multicast"] = s.Multicast(ctx, name, "r", "v", nil)
	errs["RenewTTL"] = s.RenewTTL(ctx, name)
	errs["Delete"] = s.Delete(ctx, name)
	return errs
}

// checkAllNotFound fails the test unless every method reports that the group
// called name is not found.
func checkAllNotFound(t *testing.T, s Service, name string) {
	t.Helper()
	for method, err := range everyMethod(t.Context(), s, name) {
		checkErr(t, fmt.Sprintf("%s(%q)", method, name), err, ErrGroupNotFound)
	}
}

func TestGroupNotFound(t *testing.T) {
	eachService(t, func(t *testing.T, newEnv newEnvFunc) {
		s := newEnv(t)
		checkAllNotFound(t, s, gone)

		mustCreate(t, s, "deleted", 0)
		if err := s.Delete(t.Context(), "deleted"); err != nil {
			t.Fatal(err)
		}
		checkAllNotFound(t, s, "deleted")
		checkPushes(t, s.pusher)
	})
}

func TestErrorMessageNamesGroup(t *testing.T) {
	eachService(t, func(t *testing.T, newEnv newEnvFunc) {
		s := newEnv(t)
		err := s.Add(t.Context(), "lobby", "u1")
		if got, want := fmt.Sprint(err), `groups: "lobby": group not found`; got != want {
			t.Errorf("error = %q, want %q", got, want)
		}
	})
}

func TestDoneContext(t *testing.T) {
	eachService(t, func(t *testing.T, newEnv newEnvFunc) {
		s := newEnv(t)
		mustCreate(t, s, "g", time.Minute)
		mustAdd(t, s, "g", "u1")
		ctx, cancel := context.WithCancel(t.Context())
		cancel()

		errs := everyMethod(ctx, s, "g")
		errs["Create"] = s.Create(ctx, "new")
		errs["CreateWithTTL"] = s.CreateWithTTL(ctx, "new", time.Minute)
		for method, err := range errs {
			checkErr(t, method, err, context.Canceled)
		}
		checkMembers(t, s, "g", "u1") // nothing changed
		checkAllNotFound(t, s, "new")
		checkPushes(t, s.pusher)
	})
}

func TestCreate(t *testing.T) {
	tests := []struct {
		name    string
		exists  time.Duration // -1: no group yet; 0: group without TTL; > 0: group with that TTL
		ttl     time.Duration // 0: Create; otherwise CreateWithTTL
		wantErr error
	}{
		{"new", -1, 0, nil},
		{"new with TTL", -1, time.Minute, nil},
		{"exists", 0, 0, ErrGroupAlreadyExists},
		{"exists, with TTL", 0, time.Minute, ErrGroupAlreadyExists},
		{"exists with TTL", time.Minute, 0, ErrGroupAlreadyExists},
		{"negative TTL", -1, -time.Second, ErrInvalidTTL},
	}
	eachService(t, func(t *testing.T, newEnv newEnvFunc) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				s := newEnv(t)
				if tt.exists >= 0 {
					mustCreate(t, s, "g", tt.exists)
					mustAdd(t, s, "g", "u1")
				}
				var err error
				if tt.ttl != 0 {
					err = s.CreateWithTTL(t.Context(), "g", tt.ttl)
				} else {
					err = s.Create(t.Context(), "g")
				}
				checkErr(t, "create", err, tt.wantErr)
				if tt.exists >= 0 {
					checkMembers(t, s, "g", "u1") // the existing group is untouched
				} else if tt.wantErr == nil {
					checkMembers(t, s, "g")
				}
			})
		}
		t.Run("CreateWithTTL(0)", func(t *testing.T) {
			s := newEnv(t)
			checkErr(t, "CreateWithTTL", s.CreateWithTTL(t.Context(), "g", 0), ErrInvalidTTL)
			checkAllNotFound(t, s, "g")
		})
	})
}

func TestAddRemove(t *testing.T) {
	tests := []struct {
		name    string
		op      func(ctx context.Context, s Service) error
		wantErr error
		want    []string
	}{
		{"add", func(ctx context.Context, s Service) error { return s.Add(ctx, "g", "c") }, nil, []string{"a", "b", "c"}},
		{"add existing", func(ctx context.Context, s Service) error { return s.Add(ctx, "g", "a") }, ErrMemberAlreadyExists, []string{"a", "b"}},
		{"remove", func(ctx context.Context, s Service) error { return s.Remove(ctx, "g", "a") }, nil, []string{"b"}},
		{"remove missing", func(ctx context.Context, s Service) error { return s.Remove(ctx, "g", "c") }, ErrMemberNotFound, []string{"a", "b"}},
		{"remove all", func(ctx context.Context, s Service) error { return s.RemoveAll(ctx, "g") }, nil, nil},
	}
	eachService(t, func(t *testing.T, newEnv newEnvFunc) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				s := newEnv(t)
				mustCreate(t, s, "g", 0)
				mustAdd(t, s, "g", "b", "a")
				checkErr(t, tt.name, tt.op(t.Context(), s), tt.wantErr)
				checkMembers(t, s, "g", tt.want...)
			})
		}
	})
}

func TestRemoveLastMemberKeepsGroup(t *testing.T) {
	eachService(t, func(t *testing.T, newEnv newEnvFunc) {
		s := newEnv(t)
		mustCreate(t, s, "g", 0)
		mustAdd(t, s, "g", "a")
		if err := s.Remove(t.Context(), "g", "a"); err != nil {
			t.Fatal(err)
		}
		checkMembers(t, s, "g")
		mustAdd(t, s, "g", "a")
		checkMembers(t, s, "g", "a")
	})
}

func TestMembersContainsCount(t *testing.T) {
	eachService(t, func(t *testing.T, newEnv newEnvFunc) {
		s := newEnv(t)
		mustCreate(t, s, "g", 0)
		mustCreate(t, s, "empty", 0)
		mustAdd(t, s, "g", "u3", "u10", "u1", "u2")

		checkMembers(t, s, "g", "u1", "u10", "u2", "u3")
		checkMembers(t, s, "empty")

		// Members returns a copy the caller owns.
		got, _ := s.Members(t.Context(), "g")
		got[0] = "changed"
		checkMembers(t, s, "g", "u1", "u10", "u2", "u3")

		for _, tt := range []struct {
			group, uid string
			want       bool
		}{
			{"g", "u1", true},
			{"g", "u10", true},
			{"g", "u4", false},
			{"empty", "u1", false},
		} {
			ok, err := s.Contains(t.Context(), tt.group, tt.uid)
			if err != nil || ok != tt.want {
				t.Errorf("Contains(%q, %q) = %v, %v; want %v, nil", tt.group, tt.uid, ok, err, tt.want)
			}
		}
		for _, tt := range []struct {
			group string
			want  int
		}{
			{"g", 4},
			{"empty", 0},
		} {
			n, err := s.Count(t.Context(), tt.group)
			if err != nil || n != tt.want {
				t.Errorf("Count(%q) = %d, %v; want %d, nil", tt.group, n, err, tt.want)
			}
		}
	})
}

func TestDelete(t *testing.T) {
	eachService(t, func(t *testing.T, newEnv newEnvFunc) {
		s := newEnv(t)
		mustCreate(t, s, "g", 0)
		mustAdd(t, s, "g", "u1")
		if err := s.Delete(t.Context(), "g"); err != nil {
			t.Fatal(err)
		}
		checkErr(t, "second Delete", s.Delete(t.Context(), "g"), ErrGroupNotFound)
		// The name can be reused, and the new group starts empty.
		mustCreate(t, s, "g", 0)
		checkMembers(t, s, "g")
	})
}

func TestTTLExpiry(t *testing.T) {
	eachService(t, func(t *testing.T, newEnv newEnvFunc) {
		s := newEnv(t)
		mustCreate(t, s, "ttl", time.Minute)
		mustCreate(t, s, "forever", 0)
		mustAdd(t, s, "ttl", "u1")
		mustAdd(t, s, "forever", "u1")

		s.clock.Advance(time.Minute - time.Nanosecond)
		checkMembers(t, s, "ttl", "u1")
		// Membership changes do not renew the TTL.
		mustAdd(t, s, "ttl", "u2")

		s.clock.Advance(time.Nanosecond) // exactly the TTL: expired
		checkAllNotFound(t, s, "ttl")
		checkMembers(t, s, "forever", "u1")

		s.clock.Advance(365 * 24 * time.Hour)
		checkMembers(t, s, "forever", "u1")
	})
}

func TestCreateOverExpiredGroup(t *testing.T) {
	eachService(t, func(t *testing.T, newEnv newEnvFunc) {
		for _, ttl := range []time.Duration{0, time.Hour} {
			t.Run(fmt.Sprint("new TTL ", ttl), func(t *testing.T) {
				s := newEnv(t)
				mustCreate(t, s, "g", time.Minute)
				mustAdd(t, s, "g", "u1")
				s.clock.Advance(time.Minute)
				mustCreate(t, s, "g", ttl)
				checkMembers(t, s, "g") // a new, empty group
				s.clock.Advance(30 * time.Minute)
				checkMembers(t, s, "g")
			})
		}
	})
}

func TestRenewTTL(t *testing.T) {
	eachService(t, func(t *testing.T, newEnv newEnvFunc) {
		s := newEnv(t)
		mustCreate(t, s, "g", time.Minute)
		mustAdd(t, s, "g", "u1")

		for range 5 { // renewing every 50 s keeps the group alive for ever
			s.clock.Advance(50 * time.Second)
			if err := s.RenewTTL(t.Context(), "g"); err != nil {
				t.Fatalf("RenewTTL at %v: %v", s.clock.Now(), err)
			}
		}
		s.clock.Advance(time.Minute - time.Nanosecond)
		checkMembers(t, s, "g", "u1")
		s.clock.Advance(time.Nanosecond)
		checkAllNotFound(t, s, "g")
		checkErr(t, "RenewTTL after expiry", s.RenewTTL(t.Context(), "g"), ErrGroupNotFound)
	})
}

func TestRenewTTLWithoutTTL(t *testing.T) {
	eachService(t, func(t *testing.T, newEnv newEnvFunc) {
		s := newEnv(t)
		mustCreate(t, s, "g", 0)
		checkErr(t, "RenewTTL", s.RenewTTL(t.Context(), "g"), ErrNoTTL)
		s.clock.Advance(time.Hour)
		checkMembers(t, s, "g") // still there, still without TTL
	})
}

// stored returns the names of the groups held in memory, expired or not.
func stored(m *Memory) []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var names []string
	for name := range m.groups {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

func TestSweep(t *testing.T) {
	eachService(t, func(t *testing.T, newEnv newEnvFunc) {
		s := newEnv(t)
		mustCreate(t, s, "forever", 0)
		mustCreate(t, s, "short", time.Minute)
		mustCreate(t, s, "long", time.Hour)
		mustCreate(t, s, "renewed", time.Minute)
		start := s.clock.Now()

		tests := []struct {
			at          time.Duration // since start
			wantRemoved int
			wantStored  []string
		}{
			{0, 0, []string{"forever", "long", "renewed", "short"}},
			{time.Minute - 1, 0, []string{"forever", "long", "renewed", "short"}},
			{time.Minute, 1, []string{"forever", "long", "renewed"}},
			{time.Minute, 0, []string{"forever", "long", "renewed"}},
			{time.Hour + time.Second, 2, []string{"forever"}},
		}
		s.clock.Advance(59 * time.Second)
		if err := s.RenewTTL(t.Context(), "renewed"); err != nil { // now expires at 1m59s
			t.Fatal(err)
		}
		for _, tt := range tests {
			if got := s.sweep(start.Add(tt.at)); got != tt.wantRemoved {
				t.Errorf("Sweep(start+%v) removed %d groups, want %d", tt.at, got, tt.wantRemoved)
			}
			if got := s.stored(); !slices.Equal(got, tt.wantStored) {
				t.Errorf("after Sweep(start+%v), stored groups = %q, want %q", tt.at, got, tt.wantStored)
			}
		}
	})
}

// TestStart runs the sweeper in a synctest bubble, whose clock is virtual:
// time.Sleep there advances it instantly once every goroutine is blocked, so
// the test neither waits nor depends on scheduling.
func TestStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := NewMemory(&recordingPusher{}, WithSweepInterval(10*time.Second))
		mustCreate(t, m, "ttl", 25*time.Second)
		mustCreate(t, m, "forever", 0)

		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- m.Start(ctx) }()

		time.Sleep(25 * time.Second) // sweeps at 10 s and 20 s: nothing expired
		synctest.Wait()
		if got, want := stored(m), []string{"forever", "ttl"}; !slices.Equal(got, want) {
			t.Errorf("at 25 s, stored = %q, want %q", got, want)
		}
		checkAllNotFound(t, m, "ttl") // expired, though not swept yet

		time.Sleep(10 * time.Second) // sweep at 30 s
		synctest.Wait()
		if got, want := stored(m), []string{"forever"}; !slices.Equal(got, want) {
			t.Errorf("at 35 s, stored = %q, want %q", got, want)
		}

		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Start returned %v, want context.Canceled", err)
		}
	})
}

func TestOptions(t *testing.T) {
	tests := []struct {
		name string
		opts []MemoryOption
		want time.Duration
	}{
		{"default", nil, DefaultSweepInterval},
		{"set", []MemoryOption{WithSweepInterval(time.Second)}, time.Second},
		{"zero ignored", []MemoryOption{WithSweepInterval(0)}, DefaultSweepInterval},
		{"negative ignored", []MemoryOption{WithSweepInterval(-time.Second)}, DefaultSweepInterval},
		{"nil clock ignored", []MemoryOption{WithClock(nil)}, DefaultSweepInterval},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMemory(&recordingPusher{}, tt.opts...)
			if m.sweepInterval != tt.want {
				t.Errorf("sweep interval = %v, want %v", m.sweepInterval, tt.want)
			}
			if m.clock == nil {
				t.Error("clock is nil")
			}
		})
	}
}

func TestNewMemoryNilPusher(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("NewMemory(nil) did not panic")
		}
	}()
	NewMemory(nil)
}

var errPush = errors.New("push failed")

func TestBroadcast(t *testing.T) {
	tests := []struct {
		name       string
		members    []string
		fail       func(string) bool
		pushErr    error
		wantPushes []push
		wantFailed []string
		wantErr    error
	}{
		{
			name:       "all reached",
			members:    []string{"u2", "u1", "u3"},
			wantPushes: []push{{"r", "v", []string{"u1", "u2", "u3"}}},
		},
		{
			name:       "failed uids propagated",
			members:    []string{"u1", "u2", "u3"},
			fail:       func(uid string) bool { return uid != "u2" },
			wantPushes: []push{{"r", "v", []string{"u1", "u2", "u3"}}},
			wantFailed: []string{"u1", "u3"},
		},
		{
			name:       "pusher error propagated",
			members:    []string{"u1", "u2"},
			fail:       func(uid string) bool { return uid == "u1" },
			pushErr:    errPush,
			wantPushes: []push{{"r", "v", []string{"u1", "u2"}}},
			wantFailed: []string{"u1"},
			wantErr:    errPush,
		},
		{
			name:    "empty group pushes nothing",
			members: nil,
			pushErr: errPush, // not returned: the pusher is not called
		},
	}
	eachService(t, func(t *testing.T, newEnv newEnvFunc) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				s := newEnv(t)
				p := s.pusher
				p.fail, p.err = tt.fail, tt.pushErr
				mustCreate(t, s, "g", 0)
				mustAdd(t, s, "g", tt.members...)

				failed, err := s.Broadcast(t.Context(), "g", "r", "v")
				checkErr(t, "Broadcast", err, tt.wantErr)
				if !slices.Equal(failed, tt.wantFailed) {
					t.Errorf("failed = %q, want %q", failed, tt.wantFailed)
				}
				checkPushes(t, p, tt.wantPushes...)
			})
		}
	})
}

func TestMulticast(t *testing.T) {
	members := []string{"a1", "a2", "b1", "b2"}
	prefix := func(p string) func(string) bool {
		return func(uid string) bool { return uid[:1] == p }
	}
	tests := []struct {
		name       string
		keep       func(string) bool
		fail       func(string) bool
		pushErr    error
		wantPushes []push
		wantFailed []string
		wantErr    error
	}{
		{
			name:       "subset",
			keep:       prefix("a"),
			wantPushes: []push{{"r", 7, []string{"a1", "a2"}}},
		},
		{
			name:       "nil keep keeps everyone",
			keep:       nil,
			wantPushes: []push{{"r", 7, members}},
		},
		{
			name:    "empty subset pushes nothing",
			keep:    prefix("c"),
			pushErr: errPush, // not returned: the pusher is not called
		},
		{
			name:       "failed uids and error propagated",
			keep:       prefix("b"),
			fail:       func(uid string) bool { return uid == "b2" },
			pushErr:    errPush,
			wantPushes: []push{{"r", 7, []string{"b1", "b2"}}},
			wantFailed: []string{"b2"},
			wantErr:    errPush,
		},
	}
	eachService(t, func(t *testing.T, newEnv newEnvFunc) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				s := newEnv(t)
				p := s.pusher
				p.fail, p.err = tt.fail, tt.pushErr
				mustCreate(t, s, "g", 0)
				mustAdd(t, s, "g", members...)

				var asked []string
				keep := tt.keep
				if keep != nil {
					keep = func(uid string) bool {
						asked = append(asked, uid)
						return tt.keep(uid)
					}
				}
				failed, err := s.Multicast(t.Context(), "g", "r", 7, keep)
				checkErr(t, "Multicast", err, tt.wantErr)
				if !slices.Equal(failed, tt.wantFailed) {
					t.Errorf("failed = %q, want %q", failed, tt.wantFailed)
				}
				checkPushes(t, p, tt.wantPushes...)
				if keep != nil {
					if slices.Sort(asked); !slices.Equal(asked, members) {
						t.Errorf("keep called for %q, want once for each of %q", asked, members)
					}
				}
			})
		}
	})
}

// lockCheckingPusher fails the test if the Memory's lock is held while it
// pushes: it tries to take the write lock, which Broadcast must not hold even
// for reading.
type lockCheckingPusher struct {
	t *testing.T
	m *Memory
}

func (p *lockCheckingPusher) PushToUsers(context.Context, string, any, []string) ([]string, error) {
	if !p.m.mu.TryLock() {
		p.t.Error("PushToUsers called with the groups lock held")
		return nil, nil
	}
	p.m.mu.Unlock()
	return nil, nil
}

func TestPushOutsideLock(t *testing.T) {
	p := &lockCheckingPusher{t: t}
	m := NewMemory(p)
	p.m = m
	mustCreate(t, m, "g", 0)
	mustAdd(t, m, "g", "u1")
	if _, err := m.Broadcast(t.Context(), "g", "r", nil); err != nil {
		t.Fatal(err)
	}
	keep := func(string) bool {
		if !m.mu.TryLock() {
			t.Error("keep called with the groups lock held")
			return true
		}
		m.mu.Unlock()
		return true
	}
	if _, err := m.Multicast(t.Context(), "g", "r", nil, keep); err != nil {
		t.Fatal(err)
	}
}

// TestConcurrent runs Add, Remove, Broadcast and the readers from many
// goroutines; run it with -race.
func TestConcurrent(t *testing.T) {
	const (
		writers = 8
		perUser = 50
	)
	eachService(t, func(t *testing.T, newEnv newEnvFunc) {
		s := newEnv(t)
		p := s.pusher
		mustCreate(t, s, "g", 0)
		ctx := t.Context()

		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				for i := range perUser {
					uid := fmt.Sprintf("w%d-%d", w, i)
					if err := s.Add(ctx, "g", uid); err != nil {
						t.Errorf("Add(%q): %v", uid, err)
					}
					if i%2 == 0 { // remove the even ones again
						if err := s.Remove(ctx, "g", uid); err != nil {
							t.Errorf("Remove(%q): %v", uid, err)
						}
					}
				}
			})
			wg.Go(func() {
				for range perUser {
					if _, err := s.Broadcast(ctx, "g", "r", w); err != nil {
						t.Errorf("Broadcast: %v", err)
					}
					if _, err := s.Multicast(ctx, "g", "r", w, func(uid string) bool { return len(uid)%2 == 0 }); err != nil {
						t.Errorf("Multicast: %v", err)
					}
					if _, err := s.Members(ctx, "g"); err != nil {
						t.Errorf("Members: %v", err)
					}
					if _, err := s.Count(ctx, "g"); err != nil {
						t.Errorf("Count: %v", err)
					}
					if _, err := s.Contains(ctx, "g", "w0-1"); err != nil {
						t.Errorf("Contains: %v", err)
					}
				}
			})
		}
		wg.Go(func() {
			for range perUser {
				if err := s.CreateWithTTL(ctx, "other", time.Hour); err != nil {
					t.Errorf("CreateWithTTL: %v", err)
				}
				if err := s.RenewTTL(ctx, "other"); err != nil {
					t.Errorf("RenewTTL: %v", err)
				}
				s.sweep(s.clock.Now())
				if err := s.Delete(ctx, "other"); err != nil {
					t.Errorf("Delete: %v", err)
				}
			}
		})
		wg.Wait()

		var want []string
		for w := range writers {
			for i := 1; i < perUser; i += 2 {
				want = append(want, fmt.Sprintf("w%d-%d", w, i))
			}
		}
		slices.Sort(want)
		checkMembers(t, s, "g", want...)
		for _, push := range p.Pushes() {
			if len(push.uids) == 0 {
				t.Errorf("empty push %+v", push)
			}
		}
	})
}
