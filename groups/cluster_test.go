package groups

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nopal-dev/nopal/stream"
)

// The cluster tests share one embedded NATS server, started on first use
// and stopped by TestMain. Each test connects its own bus with its own
// subject prefix, so it gets a bucket of its own ("t17_groups").
var shared struct {
	once sync.Once
	bus  *stream.Bus
	err  error
	seq  atomic.Int64
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.bus != nil {
		shared.bus.Close() // also removes its temporary store
	}
	os.Exit(code)
}

// quiet drops the bus's logs ("bus disconnected" at every Close).
var quiet = slog.New(slog.DiscardHandler)

// sharedURL returns the client URL of the shared embedded server.
func sharedURL(tb testing.TB) string {
	tb.Helper()
	shared.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		shared.bus, shared.err = stream.Connect(ctx, stream.Config{
			ServerID: "shared",
			Logger:   quiet,
			Embedded: stream.Embedded{Listen: "127.0.0.1:0"},
		})
	})
	if shared.err != nil {
		tb.Fatal(shared.err)
	}
	return shared.bus.ClientURL()
}

// connect connects a bus to url with the given prefix, closed at the end of
// the test.
func connect(tb testing.TB, cfg stream.Config) *stream.Bus {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if cfg.ServerID == "" {
		cfg.ServerID = fmt.Sprintf("n%d", shared.seq.Add(1))
	}
	cfg.Logger = quiet
	b, err := stream.Connect(ctx, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(b.Close)
	return b
}

// newPrefix returns a subject prefix no other test uses.
func newPrefix() string { return fmt.Sprintf("t%d", shared.seq.Add(1)) }

// newCluster returns a Cluster on a bus connected to the shared server with
// the given prefix.
func newCluster(tb testing.TB, prefix string, p Pusher, opts ...ClusterOption) *Cluster {
	tb.Helper()
	bus := connect(tb, stream.Config{URL: sharedURL(tb), Prefix: prefix})
	c, err := NewCluster(context.Background(), bus, p, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// newTestCluster returns a Cluster on a bucket of its own, a fake clock and a
// recording pusher.
func newTestCluster(tb testing.TB) (*Cluster, *fakeClock, *recordingPusher) {
	tb.Helper()
	clock := newFakeClock()
	p := &recordingPusher{}
	return newCluster(tb, newPrefix(), p, WithClock(clock.Now)), clock, p
}

func newClusterEnv(t *testing.T) *env {
	c, clock, p := newTestCluster(t)
	return &env{
		Service: c,
		clock:   clock,
		pusher:  p,
		sweep: func(now time.Time) int {
			n, err := c.Sweep(t.Context(), now)
			if err != nil {
				t.Errorf("Sweep: %v", err)
			}
			return n
		},
		stored: func() []string { return storedGroups(t, c) },
	}
}

// keys returns every key of c's bucket, sorted, and checks that the bucket's
// stream holds nothing else (no delete markers, no history).
func keys(t testing.TB, c *Cluster) []string {
	t.Helper()
	info, err := c.str.Info(t.Context(), jetstream.WithSubjectFilter(c.subjPrefix+">"))
	if err != nil {
		t.Fatal(err)
	}
	var ks []string
	for subj := range info.State.Subjects {
		ks = append(ks, strings.TrimPrefix(subj, c.subjPrefix))
	}
	slices.Sort(ks)
	if info.State.Msgs != uint64(len(ks)) {
		t.Errorf("bucket stream holds %d messages for %d keys %q", info.State.Msgs, len(ks), ks)
	}
	return ks
}

// storedGroups returns the names of the groups with a meta key in c's
// bucket, expired or not, sorted.
func storedGroups(t testing.TB, c *Cluster) []string {
	t.Helper()
	var names []string
	for _, k := range keys(t, c) {
		// A meta key has two tokens; a member called "meta" has four.
		if tok, ok := strings.CutSuffix(k, ".meta"); ok && !strings.Contains(tok, ".") {
			name, ok := untoken(tok)
			if !ok {
				t.Errorf("bad group token in key %q", k)
			}
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// memberKeys returns the member keys of the group called name, any
// generation.
func memberKeys(t testing.TB, c *Cluster, name string) []string {
	t.Helper()
	var ks []string
	for _, k := range keys(t, c) {
		if strings.HasPrefix(k, token(name)+".m.") {
			ks = append(ks, k)
		}
	}
	return ks
}

func TestClusterTokens(t *testing.T) {
	validKey := regexp.MustCompile(`^[-/_=a-zA-Z0-9]+$`) // a KV key token: no '.'
	names := []string{
		"", "a", "room-1_x", "A.b", "a.b", "*", ">", "a b", "=", "=YQ", "YQ",
		"/", "日本", "\x00", "meta", "m", strings.Repeat("z", 200), "a\nb",
	}
	seen := make(map[string]string)
	for _, name := range names {
		tok := token(name)
		if !validKey.MatchString(tok) {
			t.Errorf("token(%q) = %q: not a valid key token", name, tok)
		}
		if other, dup := seen[tok]; dup {
			t.Errorf("token(%q) = token(%q) = %q", name, other, tok)
		}
		seen[tok] = name
		if got, ok := untoken(tok); !ok || got != name {
			t.Errorf("untoken(token(%q)) = %q, %v", name, got, ok)
		}
	}
	// Safe names stay readable.
	for _, name := range []string{"lobby", "room-1", "user_42", "ABC"} {
		if tok := token(name); tok != name {
			t.Errorf("token(%q) = %q, want it unchanged", name, tok)
		}
	}
	for _, bad := range []string{"", "a.b", "=%%", "a=b"} {
		if got, ok := untoken(bad); ok {
			t.Errorf("untoken(%q) = %q, true; want false", bad, got)
		}
	}
}

// TestClusterNames uses group names and uids that are not KV-safe.
func TestClusterNames(t *testing.T) {
	c, _, p := newTestCluster(t)
	groups := []string{"", "a", "a.b", "a.*", "a.>", "a b", "=YQ", "YQ", "日本"}
	uids := []string{"", "u", "u.1", "*", ">", "=dQ", "dQ", "ü", "meta"}
	for _, g := range groups {
		mustCreate(t, c, g, 0)
		mustAdd(t, c, g, uids...)
	}
	want := slices.Sorted(slices.Values(uids))
	for _, g := range groups {
		checkMembers(t, c, g, want...)
		for _, uid := range uids {
			if ok, err := c.Contains(t.Context(), g, uid); !ok || err != nil {
				t.Errorf("Contains(%q, %q) = %v, %v", g, uid, ok, err)
			}
		}
	}
	if err := c.Remove(t.Context(), "a.b", "u.1"); err != nil {
		t.Fatal(err)
	}
	checkMembers(t, c, "a", want...) // "a" is not "a.b"'s parent
	if _, err := c.Broadcast(t.Context(), "a.*", "r", "v"); err != nil {
		t.Fatal(err)
	}
	checkPushes(t, p, push{"r", "v", want})
	if got := storedGroups(t, c); !slices.Equal(got, slices.Sorted(slices.Values(groups))) {
		t.Errorf("stored groups = %q, want %q", got, groups)
	}
}

// TestClusterStorage checks that the bucket holds exactly the live keys:
// removals leave no delete markers and deleted or replaced groups leave no
// member keys.
func TestClusterStorage(t *testing.T) {
	c, clock, _ := newTestCluster(t)
	mustCreate(t, c, "g", time.Minute)
	mustAdd(t, c, "g", "a", "b", "c")
	if got := len(keys(t, c)); got != 4 {
		t.Errorf("%d keys, want 4", got)
	}
	if err := c.Remove(t.Context(), "g", "a"); err != nil {
		t.Fatal(err)
	}
	if got := memberKeys(t, c, "g"); len(got) != 2 {
		t.Errorf("member keys %q, want 2", got)
	}
	if err := c.RemoveAll(t.Context(), "g"); err != nil {
		t.Fatal(err)
	}
	if got := keys(t, c); !slices.Equal(got, []string{"g.meta"}) {
		t.Errorf("keys %q, want only g.meta", got)
	}

	// A group created over an expired one drops the old members.
	mustAdd(t, c, "g", "old")
	clock.Advance(time.Minute)
	mustCreate(t, c, "g", 0)
	if got := memberKeys(t, c, "g"); len(got) != 0 {
		t.Errorf("member keys %q after re-creation, want none", got)
	}
	mustAdd(t, c, "g", "new")
	if err := c.Delete(t.Context(), "g"); err != nil {
		t.Fatal(err)
	}
	if got := keys(t, c); len(got) != 0 {
		t.Errorf("keys %q after Delete, want none", got)
	}
}

// TestClusterPurge checks the conditional purge that Delete and Sweep use as
// a compare-and-delete, and the count that makes Remove atomic.
func TestClusterPurge(t *testing.T) {
	c, _, _ := newTestCluster(t)
	ctx := t.Context()
	rev1, err := c.kv.Create(ctx, "k", []byte("1"))
	if err != nil {
		t.Fatal(err)
	}
	rev2, err := c.kv.Update(ctx, "k", []byte("2"), rev1)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		filter string
		before uint64
		want   uint64
	}{
		{"k", rev1 + 1, 0}, // changed since rev1: kept
		{"other", 0, 0},
		{"k", rev2 + 1, 1}, // unchanged since rev2: purged
		{"k", 0, 0},        // already gone
	} {
		n, err := c.purge(ctx, tt.filter, tt.before)
		if err != nil || n != tt.want {
			t.Errorf("purge(%q, %d) = %d, %v; want %d", tt.filter, tt.before, n, err, tt.want)
		}
	}
	if got := keys(t, c); len(got) != 0 {
		t.Errorf("keys %q, want none", got)
	}
}

// TestClusterTwoNodes runs two nodes, the second connected over TCP to the
// embedded server of the first, and checks that they see each other's
// changes.
func TestClusterTwoNodes(t *testing.T) {
	ctx := t.Context()
	busA := connect(t, stream.Config{ServerID: "a", Embedded: stream.Embedded{Listen: "127.0.0.1:0", StoreDir: t.TempDir()}})
	busB := connect(t, stream.Config{ServerID: "b", URL: busA.ClientURL()})
	clock := newFakeClock()
	pa, pb := &recordingPusher{}, &recordingPusher{}
	a, err := NewCluster(ctx, busA, pa, WithClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewCluster(ctx, busB, pb, WithClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}

	mustCreate(t, a, "room", 0)
	checkErr(t, "Create on b", b.Create(ctx, "room"), ErrGroupAlreadyExists)
	mustAdd(t, a, "room", "u1", "u2")
	checkMembers(t, b, "room", "u1", "u2")
	checkErr(t, "Add on b", b.Add(ctx, "room", "u1"), ErrMemberAlreadyExists)

	mustAdd(t, b, "room", "u3")
	if err := b.Remove(ctx, "room", "u1"); err != nil {
		t.Fatal(err)
	}
	checkMembers(t, a, "room", "u2", "u3")
	checkErr(t, "Remove on a", a.Remove(ctx, "room", "u1"), ErrMemberNotFound)
	if n, err := a.Count(ctx, "room"); n != 2 || err != nil {
		t.Errorf("Count on a = %d, %v; want 2", n, err)
	}
	if _, err := b.Broadcast(ctx, "room", "r", "v"); err != nil {
		t.Fatal(err)
	}
	checkPushes(t, pb, push{"r", "v", []string{"u2", "u3"}}) // b's own Pusher
	checkPushes(t, pa)

	// TTL: created on one node, renewed on the other, expired on both.
	if err := a.CreateWithTTL(ctx, "match", time.Minute); err != nil {
		t.Fatal(err)
	}
	mustAdd(t, a, "match", "u1")
	clock.Advance(50 * time.Second)
	if err := b.RenewTTL(ctx, "match"); err != nil {
		t.Fatal(err)
	}
	clock.Advance(50 * time.Second)
	checkMembers(t, a, "match", "u1")
	clock.Advance(10 * time.Second)
	checkAllNotFound(t, a, "match")
	checkAllNotFound(t, b, "match")

	if err := a.Delete(ctx, "room"); err != nil {
		t.Fatal(err)
	}
	checkAllNotFound(t, b, "room")
}

// TestClusterConcurrentSweeps runs Sweep on several nodes at once: each
// expired group is removed exactly once, and nothing fails.
func TestClusterConcurrentSweeps(t *testing.T) {
	const (
		nodes   = 4
		expired = 20
	)
	prefix := newPrefix()
	clock := newFakeClock()
	var cs []*Cluster
	for range nodes {
		cs = append(cs, newCluster(t, prefix, &recordingPusher{}, WithClock(clock.Now)))
	}
	for i := range expired {
		g := fmt.Sprint("g", i)
		mustCreate(t, cs[i%nodes], g, time.Minute)
		mustAdd(t, cs[i%nodes], g, "u1", "u2")
	}
	mustCreate(t, cs[0], "live", time.Hour)
	mustCreate(t, cs[0], "forever", 0)
	clock.Advance(time.Minute)

	var total atomic.Int64
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Go(func() {
			n, err := c.Sweep(t.Context(), clock.Now())
			if err != nil {
				t.Errorf("Sweep: %v", err)
			}
			total.Add(int64(n))
		})
	}
	wg.Wait()
	if got := total.Load(); got != expired {
		t.Errorf("sweeps removed %d groups in all, want %d", got, expired)
	}
	if got, want := keys(t, cs[0]), []string{"forever.meta", "live.meta"}; !slices.Equal(got, want) {
		t.Errorf("keys after sweeps = %q, want %q", got, want)
	}
}

// TestClusterStart runs the sweeper with a short interval and waits for its
// report through the hook rather than sleeping.
func TestClusterStart(t *testing.T) {
	clock := newFakeClock()
	type report struct {
		n   int
		err error
	}
	reports := make(chan report, 100)
	hook := func(n int, err error) {
		select {
		case reports <- report{n, err}:
		default:
		}
	}
	c := newCluster(t, newPrefix(), &recordingPusher{},
		WithClock(clock.Now), WithSweepInterval(time.Millisecond), WithSweepHook(hook))
	mustCreate(t, c, "ttl", time.Minute)
	mustCreate(t, c, "forever", 0)
	clock.Advance(time.Minute)

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Start(ctx) }()

	timeout := time.After(10 * time.Second)
	for removed := 0; removed < 1; {
		select {
		case r := <-reports:
			if r.err != nil {
				t.Fatalf("sweep: %v", r.err)
			}
			removed += r.n
		case <-timeout:
			t.Fatal("no sweep removed the expired group in 10 s")
		}
	}
	if got, want := storedGroups(t, c), []string{"forever"}; !slices.Equal(got, want) {
		t.Errorf("stored = %q, want %q", got, want)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Start returned %v, want context.Canceled", err)
	}
}

func TestClusterOptions(t *testing.T) {
	hook := func(int, error) {}
	tests := []struct {
		name     string
		opts     []ClusterOption
		interval time.Duration
		hook     bool
	}{
		{"default", nil, DefaultSweepInterval, false},
		{"interval", []ClusterOption{WithSweepInterval(time.Second)}, time.Second, false},
		{"zero ignored", []ClusterOption{WithSweepInterval(0)}, DefaultSweepInterval, false},
		{"nil clock ignored", []ClusterOption{WithClock(nil)}, DefaultSweepInterval, false},
		{"hook", []ClusterOption{WithSweepHook(hook)}, DefaultSweepInterval, true},
		{"nil hook ignored", []ClusterOption{WithSweepHook(nil)}, DefaultSweepInterval, false},
		{"nil option ignored", []ClusterOption{nil}, DefaultSweepInterval, false},
	}
	prefix := newPrefix()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, prefix, &recordingPusher{}, tt.opts...)
			if c.sweepInterval != tt.interval {
				t.Errorf("sweep interval = %v, want %v", c.sweepInterval, tt.interval)
			}
			if c.clock == nil {
				t.Error("clock is nil")
			}
			if (c.sweepHook != nil) != tt.hook {
				t.Errorf("hook set = %v, want %v", c.sweepHook != nil, tt.hook)
			}
		})
	}
}

func TestNewClusterErrors(t *testing.T) {
	if _, err := NewCluster(t.Context(), nil, &recordingPusher{}); err == nil {
		t.Error("NewCluster(nil bus) did not fail")
	}
	bus := connect(t, stream.Config{URL: sharedURL(t), Prefix: newPrefix()})
	if _, err := NewCluster(t.Context(), bus, nil); err == nil {
		t.Error("NewCluster(nil Pusher) did not fail")
	}
}

// TestClusterConcurrentAdd adds 200 distinct uids from 8 goroutines.
func TestClusterConcurrentAdd(t *testing.T) {
	const (
		workers = 8
		uids    = 200
	)
	c, _, _ := newTestCluster(t)
	mustCreate(t, c, "g", 0)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < uids; i += workers {
				if err := c.Add(t.Context(), "g", fmt.Sprint("u", i)); err != nil {
					t.Errorf("Add: %v", err)
				}
			}
		})
	}
	wg.Wait()
	if n, err := c.Count(t.Context(), "g"); n != uids || err != nil {
		t.Errorf("Count = %d, %v; want %d", n, err, uids)
	}
}

// TestClusterAddDuringDelete races Adds against Delete and then Create of
// the same name: the new group starts empty, and no member key outlives the
// group it was added to.
func TestClusterAddDuringDelete(t *testing.T) {
	c, _, _ := newTestCluster(t)
	for round := range 20 {
		mustCreate(t, c, "g", 0)
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() {
				err := c.Add(t.Context(), "g", fmt.Sprint("u", i))
				if err != nil && !errors.Is(err, ErrGroupNotFound) {
					t.Errorf("Add: %v", err)
				}
			})
		}
		wg.Go(func() {
			if err := c.Delete(t.Context(), "g"); err != nil {
				t.Errorf("Delete: %v", err)
			}
		})
		wg.Wait()
		if got := keys(t, c); len(got) != 0 {
			t.Fatalf("round %d: keys %q left after Delete", round, got)
		}
	}
}

// countingPusher counts calls and uids; it is safe for concurrent use.
type countingPusher struct {
	calls, uids atomic.Int64
}

func (p *countingPusher) PushToUsers(_ context.Context, _ string, _ any, uids []string) ([]string, error) {
	p.calls.Add(1)
	p.uids.Add(int64(len(uids)))
	return nil, nil
}

// addMany adds uids u0 … u(n-1) to the group from a few goroutines.
func addMany(tb testing.TB, s Service, name string, n int) {
	tb.Helper()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				if err := s.Add(context.Background(), name, fmt.Sprint("u", i)); err != nil {
					tb.Errorf("Add: %v", err)
				}
			}
		})
	}
	wg.Wait()
}

// TestClusterBroadcast1000 checks that a broadcast to 1,000 members is one
// call to the Pusher with every uid.
func TestClusterBroadcast1000(t *testing.T) {
	const members = 1000
	p := &recordingPusher{}
	c := newCluster(t, newPrefix(), p)
	mustCreate(t, c, "big", 0)
	addMany(t, c, "big", members)

	if _, err := c.Broadcast(t.Context(), "big", "r", "v"); err != nil {
		t.Fatal(err)
	}
	pushes := p.Pushes()
	if len(pushes) != 1 {
		t.Fatalf("%d pushes, want 1", len(pushes))
	}
	uids := pushes[0].uids
	if len(uids) != members || len(slices.Compact(slices.Clone(uids))) != members {
		t.Errorf("push to %d uids (%d distinct), want %d", len(uids), len(slices.Compact(uids)), members)
	}
}

// BenchmarkClusterBroadcast1000 measures a Broadcast to a group of 1,000
// members: reading the group, listing its members and one Pusher call.
func BenchmarkClusterBroadcast1000(b *testing.B) {
	const members = 1000
	p := &countingPusher{}
	c := newCluster(b, newPrefix(), p)
	if err := c.Create(context.Background(), "big"); err != nil {
		b.Fatal(err)
	}
	addMany(b, c, "big", members)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Broadcast(ctx, "big", "r", "v"); err != nil {
			b.Fatal(err)
		}
	}
	if calls, uids := p.calls.Load(), p.uids.Load(); uids != calls*members {
		b.Fatalf("%d uids in %d calls, want %d per call", uids, calls, members)
	}
}
