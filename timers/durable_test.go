package timers_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nopal-dev/nopal/backend"
	"github.com/nopal-dev/nopal/codec"
	"github.com/nopal-dev/nopal/reliable"
	"github.com/nopal-dev/nopal/stream"
	"github.com/nopal-dev/nopal/timers"
)

// ran is one call of a durable timer's route.
type ran struct {
	server string
	tick   timers.Tick
	at     time.Time
}

// tickServer is one server of type "ticker": its own bus connection, jobs
// client, Durable, remote registry and reliable worker, as an App wires
// them.
type tickServer struct {
	id     string
	bus    *stream.Bus
	jobs   *reliable.Client
	d      *timers.Durable
	worker *reliable.Worker
}

func busConfig(id string) stream.Config {
	return stream.Config{ServerID: id, Logger: discard}
}

func connectBus(t *testing.T, cfg stream.Config) *stream.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b, err := stream.Connect(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// newTickServer starts a ticker server on the embedded NATS server srv
// (nil: start one). Calls of the timers' routes go to calls.
func newTickServer(t *testing.T, srv *server.Server, id string, calls chan<- ran) *tickServer {
	t.Helper()
	cfg := busConfig(id)
	if srv == nil {
		cfg.Embedded = stream.Embedded{StoreDir: t.TempDir()}
	} else {
		cfg.InProcess = srv
	}
	bus := connectBus(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	jobs, err := reliable.NewClient(ctx, bus, reliable.WithLogger(discard))
	if err != nil {
		t.Fatal(err)
	}
	s := &tickServer{id: id, bus: bus, jobs: jobs}
	s.d, err = timers.NewDurable(ctx, bus, timers.DurableConfig{
		ServerType: "ticker", ServerID: id, Jobs: jobs, Logger: discard,
		Call: func(_ context.Context, route string, tk *timers.Tick) error {
			if route != "ticker.beat.now" {
				return fmt.Errorf("unexpected route %q", route)
			}
			calls <- ran{server: id, tick: *tk, at: time.Now()}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	remote := &timers.Remote{}
	remote.Attach(s.d)
	remotes := backend.NewRegistry("ticker", codec.Auto{}, discard)
	if err := remotes.Register(remote, backend.WithName(timers.Component)); err != nil {
		t.Fatal(err)
	}
	s.worker, err = reliable.NewWorker(ctx, bus, reliable.InvokerFunc(func(ctx context.Context, route string, arg []byte) ([]byte, error) {
		out, _, err := remotes.Handle(ctx, route, arg)
		return out, err
	}), reliable.WorkerConfig{ServerType: "ticker", ServerID: id, Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.worker.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.stop(t) })
	return s
}

func (s *tickServer) stop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.worker.Stop(ctx); err != nil {
		t.Errorf("stop worker %s: %v", s.id, err)
	}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// collect reads calls until tick last of generation gen has run, and fails
// on a tick run twice, out of order, early, or of another generation.
func collect(t *testing.T, calls <-chan ran, info timers.DurableInfo, from, last uint64) (by map[string]int, lastServer string) {
	t.Helper()
	by = map[string]int{}
	deadline := time.After(time.Duration(last-from+4)*info.Interval + 20*time.Second)
	for want := from; want <= last; want++ {
		select {
		case r := <-calls:
			tk := r.tick
			switch {
			case tk.Timer != info.Name || tk.Gen != info.Gen:
				t.Fatalf("tick of %s gen %d, want %s gen %d", tk.Timer, tk.Gen, info.Name, info.Gen)
			case tk.N != want:
				t.Fatalf("tick %d ran (on %s), want tick %d: a tick twice or skipped", tk.N, r.server, want)
			case r.at.Round(0).Before(info.Due(tk.N).Round(0)):
				// Wall clocks (Round(0) drops the monotonic readings):
				// due times are wall times, shared by the cluster's
				// servers, and the machine's wall clock may be stepped
				// while the test runs.
				t.Fatalf("tick %d ran at %v, before it was due (%v)", tk.N, r.at, info.Due(tk.N))
			case !tk.At.Equal(info.Due(tk.N)):
				t.Fatalf("tick %d says due %v, want %v", tk.N, tk.At, info.Due(tk.N))
			}
			by[r.server]++
			lastServer = r.server
		case <-deadline:
			t.Fatalf("tick %d never ran", want)
		}
	}
	return by, lastServer
}

func TestDurableTimerOncePerTickAcrossServers(t *testing.T) {
	calls := make(chan ran, 256)
	a := newTickServer(t, nil, "ticker-a", calls)
	b := newTickServer(t, a.bus.Server, "ticker-b", calls)
	ctx := ctxFor(t)
	const interval = 300 * time.Millisecond

	info, err := a.d.Declare(ctx, "beat", interval, "ticker.beat.now", map[string]string{"say": "hi"})
	if err != nil {
		t.Fatal(err)
	}
	if info.Gen != 1 || info.Type != "ticker" {
		t.Fatalf("declared %+v", info)
	}
	// Every server declares it at start: the same definition again, from
	// the other server and from the first, changes nothing.
	for _, s := range []*tickServer{b, a, b} {
		again, err := s.d.Declare(ctx, "beat", interval, "ticker.beat.now", map[string]string{"say": "hi"})
		if err != nil {
			t.Fatal(err)
		}
		if again.Gen != 1 || !again.Epoch.Equal(info.Epoch) {
			t.Fatalf("re-declared: gen %d epoch %v, want gen 1 epoch %v", again.Gen, again.Epoch, info.Epoch)
		}
	}
	by, last := collect(t, calls, info, 1, 6)
	t.Logf("ticks 1-6 ran on %v", by)

	// The argument reaches the route.
	got, err := a.d.Get(ctx, "beat")
	if err != nil {
		t.Fatal(err)
	}
	var arg map[string]string
	tk := timers.Tick{Arg: got.Arg}
	if err := tk.Decode(&arg); err != nil || arg["say"] != "hi" {
		t.Fatalf("argument %v (%v)", arg, err)
	}
	if got.LastTick < 5 || got.LastServer == "" { // tick 6's may not be written yet
		t.Fatalf("last tick %d on %q, want ≥ 5", got.LastTick, got.LastServer)
	}
	// Each tick's job exists once, under its key.
	if j, err := a.jobs.Get(ctx, (&timers.Tick{Timer: "beat", Gen: 1, N: 3}).Key()); err != nil || j.State != reliable.Succeeded {
		t.Fatalf("job of tick 3: %+v, %v", j, err)
	}

	// The server that ran the last tick goes away: the other carries on,
	// with no tick lost or doubled. (A tick it had started finishes as it
	// stops: that is the next one.)
	gone, other := a, b
	if last == b.id {
		gone, other = b, a
	}
	gone.stop(t)
	if byOther, _ := collect(t, calls, info, 7, 10); byOther[gone.id] > 1 {
		t.Fatalf("a stopped server ran ticks: %v", byOther)
	}
	b = other

	// A new definition replaces the old one: gen 2 from tick 1, and the
	// old chain ends.
	info2, err := b.d.Declare(ctx, "beat", 200*time.Millisecond, "ticker.beat.now", nil)
	if err != nil {
		t.Fatal(err)
	}
	if info2.Gen != 2 {
		t.Fatalf("redefined: gen %d", info2.Gen)
	}
	// A tick of gen 1 may already have been under way: skip it.
	deadline := time.After(20 * time.Second)
	for want := uint64(1); want <= 4; {
		select {
		case r := <-calls:
			if r.tick.Gen == 1 {
				if want > 1 {
					t.Fatalf("gen 1 tick %d ran after gen 2 started", r.tick.N)
				}
				continue
			}
			if r.tick.Gen != 2 || r.tick.N != want {
				t.Fatalf("ran gen %d tick %d, want gen 2 tick %d", r.tick.Gen, r.tick.N, want)
			}
			want++
		case <-deadline:
			t.Fatalf("gen 2 tick %d never ran", want)
		}
	}

	// Stop: nothing more runs (the pending tick is a no-op).
	if err := b.d.Stop(ctx, "beat"); err != nil {
		t.Fatal(err)
	}
	for len(calls) > 0 { // a tick under way as Stop came
		<-calls
	}
	quiet(t, calls, 3*200*time.Millisecond, "a stopped durable timer")
	if _, err := b.d.Get(ctx, "beat"); !errors.Is(err, timers.ErrNotFound) {
		t.Fatalf("get after stop: %v", err)
	}
	if err := b.d.Stop(ctx, "beat"); !errors.Is(err, timers.ErrNotFound) {
		t.Fatalf("stop twice: %v", err)
	}
}

func TestDurableTimerRejectsBadDefinitions(t *testing.T) {
	for _, c := range []struct {
		name, route string
		interval    time.Duration
	}{
		{"", "a.b.c", time.Second},
		{"has.dot", "a.b.c", time.Second},
		{"ok", "b.c", time.Second},
		{"ok", "a.b.c", time.Millisecond},
	} {
		if err := timers.CheckDurable(c.name, c.interval, c.route); !errors.Is(err, timers.ErrInvalid) {
			t.Errorf("%+v: %v", c, err)
		}
	}
	if err := timers.CheckDurable("daily-reset_1", time.Second, "rewards.daily.reset"); err != nil {
		t.Error(err)
	}
}
