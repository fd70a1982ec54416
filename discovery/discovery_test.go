package discovery

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nopal-dev/nopal/stream"
)

// hb is the heartbeat of the tests: the TTL is 750 ms.
const hb = 250 * time.Millisecond

// testLogger logs to t until the test's cleanups have run.
func testLogger(t *testing.T) *slog.Logger {
	t.Helper()
	w := &testWriter{t: t}
	t.Cleanup(w.close) // registered first, so it runs last
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Logf("%s", p)
	}
	return len(p), nil
}

func (w *testWriter) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = true
}

func connectBus(t *testing.T, cfg stream.Config) *stream.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if cfg.URL == "" && cfg.Embedded.StoreDir == "" {
		cfg.Embedded.StoreDir = t.TempDir()
	}
	b, err := stream.Connect(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// cluster starts an embedded server listening on a TCP port (its bus is
// node "a"'s) and returns a function connecting more nodes to it over TCP.
func cluster(t *testing.T) (first *stream.Bus, join func(id string) *stream.Bus) {
	t.Helper()
	log := testLogger(t)
	first = connectBus(t, stream.Config{ServerID: "a", Logger: log, Embedded: stream.Embedded{Listen: "127.0.0.1:0"}})
	return first, func(id string) *stream.Bus {
		t.Helper()
		return connectBus(t, stream.Config{ServerID: id, URL: first.ClientURL(), Logger: log})
	}
}

func srv(id, typ string) Server {
	return Server{ID: id, Type: typ, Hostname: "host-" + id, Version: "1"}
}

// start creates and starts a Discovery, stopped at cleanup.
func start(t *testing.T, bus *stream.Bus, self Server, beforeStart ...func(*Discovery)) *Discovery {
	t.Helper()
	d, err := New(bus, self, Config{Heartbeat: hb, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range beforeStart {
		f(d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = d.Stop(ctx) // fails for nodes whose connection a test closed
	})
	return d
}

type timedEvent struct {
	Event
	at time.Time
}

// recorder collects a Discovery's events with the time its callback ran.
type recorder struct{ ch chan timedEvent }

func record(t *testing.T, d *Discovery) *recorder {
	t.Helper()
	r := &recorder{ch: make(chan timedEvent, 1024)}
	cancel := d.Subscribe(func(e Event) {
		select {
		case r.ch <- timedEvent{e, time.Now()}:
		default: // the test will miss it and fail on a timeout
		}
	})
	t.Cleanup(cancel)
	return r
}

// next returns the next event, failing after timeout.
func (r *recorder) next(t *testing.T, timeout time.Duration) timedEvent {
	t.Helper()
	select {
	case e := <-r.ch:
		return e
	case <-time.After(timeout):
		t.Fatalf("no event in %v", timeout)
		return timedEvent{}
	}
}

// expect checks that the next events are exactly want (kind and server id).
func (r *recorder) expect(t *testing.T, timeout time.Duration, want ...string) []timedEvent {
	t.Helper()
	var got []timedEvent
	for _, w := range want {
		e := r.next(t, timeout)
		if s := e.Kind.String() + " " + e.Server.ID; s != w {
			t.Fatalf("event %q, want %q (after %v)", s, w, got)
		}
		got = append(got, e)
	}
	return got
}

// expectNone checks that no event is waiting.
func (r *recorder) expectNone(t *testing.T) {
	t.Helper()
	select {
	case e := <-r.ch:
		t.Fatalf("unexpected event %s %s", e.Kind, e.Server.ID)
	default:
	}
}

// awaitPuts waits until n more puts of key are in the bucket, seen by a
// watcher of the test's own: a barrier for "heartbeats happened".
func awaitPuts(t *testing.T, bus *stream.Bus, key string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := bus.JetStream().KeyValue(ctx, bus.Name(Bucket))
	if err != nil {
		t.Fatal(err)
	}
	w, err := kv.Watch(ctx, key, jetstream.UpdatesOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop() }()
	for n > 0 {
		select {
		case e := <-w.Updates():
			if e != nil && e.Operation() == jetstream.KeyValuePut {
				n--
			}
		case <-ctx.Done():
			t.Fatalf("key %s: %d puts missing", key, n)
		}
	}
}

func ids(list []Server) []string {
	var out []string
	for _, s := range list {
		out = append(out, s.ID)
	}
	return out
}

func TestNewValidates(t *testing.T) {
	bus := connectBus(t, stream.Config{ServerID: "a"})
	good := srv("a", "room")
	tests := []struct {
		name string
		srv  Server
		cfg  Config
	}{
		{"empty id", Server{Type: "room"}, Config{}},
		{"dotted id", Server{ID: "a.b", Type: "room"}, Config{}},
		{"wildcard id", Server{ID: "a*", Type: "room"}, Config{}},
		{"slash id", Server{ID: "a/b", Type: "room"}, Config{}},
		{"empty type", Server{ID: "a"}, Config{}},
		{"spaced type", Server{ID: "a", Type: "my room"}, Config{}},
		{"short heartbeat", good, Config{Heartbeat: time.Millisecond}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(bus, tc.srv, tc.cfg); !errors.Is(err, ErrConfig) {
				t.Fatalf("err = %v, want ErrConfig", err)
			}
		})
	}
	d, err := New(bus, Server{ID: "Room_1-a", Type: "room-2_B"}, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if d.heartbeat != DefaultHeartbeat || d.ttl != 3*time.Second || d.kvCfg.LimitMarkerTTL != 3*time.Second {
		t.Fatalf("defaults: heartbeat %v ttl %v marker %v", d.heartbeat, d.ttl, d.kvCfg.LimitMarkerTTL)
	}
	if d.Self().Hostname == "" {
		t.Fatal("hostname not filled")
	}
}

func TestMarkerTTL(t *testing.T) {
	for _, tc := range []struct{ ttl, want time.Duration }{
		{300 * time.Millisecond, time.Second},
		{750 * time.Millisecond, time.Second},
		{time.Second, time.Second},
		{1500 * time.Millisecond, 2 * time.Second},
		{3 * time.Second, 3 * time.Second},
	} {
		if got := markerTTL(tc.ttl); got != tc.want {
			t.Errorf("markerTTL(%v) = %v, want %v", tc.ttl, got, tc.want)
		}
	}
}

func TestEventKindString(t *testing.T) {
	for k, want := range map[EventKind]string{Joined: "joined", Updated: "updated", Left: "left", Died: "died", 0: "EventKind(0)"} {
		if k.String() != want {
			t.Errorf("%d: %q, want %q", int(k), k.String(), want)
		}
	}
}

func TestJoin(t *testing.T) {
	busA, join := cluster(t)
	var ra *recorder
	a := start(t, busA, Server{ID: "a", Type: "connector", Frontend: true, Metadata: map[string]string{"zone": "eu"}},
		func(d *Discovery) { ra = record(t, d) })
	// The initial load reports the servers already there: only a itself.
	ra.expect(t, 5*time.Second, "joined a")

	b := start(t, join("b"), srv("b", "room"))
	// b's view is complete as soon as Start returns: no waiting.
	if got := ids(b.Servers()); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("b sees %v", got)
	}
	ev := ra.expect(t, 5*time.Second, "joined b")[0]
	if ev.Server.Type != "room" || ev.Server.Hostname != "host-b" || ev.Server.Version != "1" {
		t.Fatalf("joined %+v", ev.Server)
	}
	start(t, join("c"), srv("c", "room"))
	ra.expect(t, 5*time.Second, "joined c")

	for name, d := range map[string]*Discovery{"a": a, "b": b} {
		if name == "b" {
			// b may not have processed c's join yet; await it the same way.
			awaitServer(t, d, "c")
		}
		if got := ids(d.Servers()); !slices.Equal(got, []string{"a", "b", "c"}) {
			t.Errorf("%s: Servers %v", name, got)
		}
		if got := ids(d.ServersByType("room")); !slices.Equal(got, []string{"b", "c"}) {
			t.Errorf("%s: rooms %v", name, got)
		}
		if got := d.ServersByType("nope"); len(got) != 0 {
			t.Errorf("%s: unknown type %v", name, got)
		}
		if got := d.CountByType(); !maps.Equal(got, map[string]int{"connector": 1, "room": 2}) {
			t.Errorf("%s: counts %v", name, got)
		}
		s, ok := d.ServerByID("a")
		if !ok || !s.Frontend || s.Metadata["zone"] != "eu" || s.Type != "connector" {
			t.Errorf("%s: ServerByID(a) = %+v, %v", name, s, ok)
		}
		if _, ok := d.ServerByID("zz"); ok {
			t.Errorf("%s: found zz", name)
		}
	}
	if got := a.Self(); got.ID != "a" || !got.Frontend {
		t.Fatalf("Self %+v", got)
	}
	// Results are copies.
	list := a.Servers()
	list[0].ID = "mutated"
	if a.Servers()[0].ID != "a" {
		t.Fatal("Servers shares its slice")
	}
}

// awaitServer waits until d knows id, through d's own events.
func awaitServer(t *testing.T, d *Discovery, id string) {
	t.Helper()
	found := make(chan struct{}, 1)
	cancel := d.Subscribe(func(e Event) {
		if e.Server.ID == id && e.Kind == Joined {
			select {
			case found <- struct{}{}:
			default:
			}
		}
	})
	defer cancel()
	if _, ok := d.ServerByID(id); ok {
		return
	}
	select {
	case <-found:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s never joined", id)
	}
}

func TestUpdateMetadata(t *testing.T) {
	busA, join := cluster(t)
	a := start(t, busA, srv("a", "connector"))
	ra := record(t, a)
	busB := join("b")
	b := start(t, busB, srv("b", "room"))
	ra.expect(t, 5*time.Second, "joined b")

	ctx := context.Background()
	if err := b.SetMetadata(ctx, map[string]string{"load": "10"}); err != nil {
		t.Fatal(err)
	}
	ev := ra.expect(t, 5*time.Second, "updated b")[0]
	if ev.Server.Metadata["load"] != "10" {
		t.Fatalf("updated %+v", ev.Server)
	}
	if s, _ := a.ServerByID("b"); s.Metadata["load"] != "10" {
		t.Fatalf("a sees %+v", s)
	}
	// Heartbeats repeat the same value: no events. Let several go by, then
	// change again: the very next event must be that change.
	awaitPuts(t, busB, "b", 4)
	if err := b.SetMetadata(ctx, map[string]string{"load": "20"}); err != nil {
		t.Fatal(err)
	}
	ev = ra.expect(t, 5*time.Second, "updated b")[0]
	if ev.Server.Metadata["load"] != "20" || b.Self().Metadata["load"] != "20" {
		t.Fatalf("updated %+v, self %+v", ev.Server, b.Self())
	}
	ra.expectNone(t)
}

func TestGracefulStopIsFast(t *testing.T) {
	busA, join := cluster(t)
	a := start(t, busA, srv("a", "connector"))
	ra := record(t, a)
	b := start(t, join("b"), srv("b", "room"))
	ra.expect(t, 5*time.Second, "joined b")

	begin := time.Now()
	if err := b.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	ev := ra.expect(t, 5*time.Second, "left b")[0]
	delay := ev.at.Sub(begin)
	t.Logf("Left seen %v after Stop began", delay)
	if delay > time.Second {
		t.Errorf("Left took %v", delay)
	}
	if ev.Server.Type != "room" {
		t.Errorf("left %+v", ev.Server)
	}
	if _, ok := a.ServerByID("b"); ok {
		t.Error("a still knows b")
	}
	if got := a.CountByType(); !maps.Equal(got, map[string]int{"connector": 1}) {
		t.Errorf("counts %v", got)
	}
	if err := b.Stop(context.Background()); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestDeathByTTL(t *testing.T) {
	busA, join := cluster(t)
	a := start(t, busA, srv("a", "connector"))
	ra := record(t, a)
	busB := join("b")
	b := start(t, busB, srv("b", "room"))
	ra.expect(t, 5*time.Second, "joined b")

	// A watcher of the test's own gives the server's timestamps of b's
	// beats: the last one stored is where the TTL starts.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	kv, err := busA.JetStream().KeyValue(ctx, busA.Name(Bucket))
	if err != nil {
		t.Fatal(err)
	}
	w, err := kv.Watch(ctx, "b", jetstream.UpdatesOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop() }()
	var lastStored time.Time
	for n := 2; n > 0; { // b is beating
		select {
		case e := <-w.Updates():
			if e != nil {
				lastStored = e.Created()
				n--
			}
		case <-ctx.Done():
			t.Fatal("b does not beat")
		}
	}

	// b dies: its connection drops without a word, its key stays.
	busB.Abort()
	ev := ra.expect(t, 10*time.Second, "died b")[0]
	var marker jetstream.KeyValueEntry
	for marker == nil { // b's beats still on the way, then the marker
		select {
		case e := <-w.Updates():
			switch {
			case e == nil:
			case e.Operation() == jetstream.KeyValuePut:
				lastStored = e.Created()
			default:
				marker = e
			}
		case <-ctx.Done():
			t.Fatal("no marker")
		}
	}
	ttl := 3 * hb
	delay := ev.at.Sub(lastStored)
	t.Logf("Died seen %v after b's last stored heartbeat (TTL %v; marker %s stamped at +%v)",
		delay.Round(time.Millisecond), ttl, marker.Operation(), marker.Created().Sub(lastStored).Round(time.Millisecond))
	if marker.Operation() != jetstream.KeyValuePurge {
		t.Errorf("marker %s, want a purge", marker.Operation())
	}
	if delay < ttl {
		t.Errorf("Died after %v, sooner than the TTL %v", delay, ttl)
	}
	// b's own record of its last successful beat is no later than the
	// server's (an acknowledgement can be lost in the crash).
	if last := time.Unix(0, b.lastBeat.Load()); ev.at.Sub(last) < ttl {
		t.Errorf("Died %v after b's last acknowledged beat", ev.at.Sub(last))
	}
	if _, ok := a.ServerByID("b"); ok {
		t.Error("a still knows b")
	}
	if got := ids(a.Servers()); !slices.Equal(got, []string{"a"}) {
		t.Errorf("servers %v", got)
	}
}

func TestRestartWithSameID(t *testing.T) {
	crash := func(t *testing.T, d *Discovery, bus *stream.Bus) { bus.Abort() }
	graceful := func(t *testing.T, d *Discovery, bus *stream.Bus) {
		if err := d.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name    string
		end     func(*testing.T, *Discovery, *stream.Bus)
		gone    string // event awaited before the restart ("" restarts at once)
		version string
		want    []string // events after the restart
	}{
		{"graceful stop then start", graceful, "left b", "1", []string{"joined b"}},
		{"crash, death, start", crash, "died b", "1", []string{"joined b"}},
		// The new process replaces the old value before the TTL: no
		// death, only the changed value.
		{"crash and quick restart", crash, "", "2", []string{"updated b"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			busA, join := cluster(t)
			a := start(t, busA, srv("a", "connector"))
			ra := record(t, a)
			b := start(t, join("b"), srv("b", "room"))
			ra.expect(t, 5*time.Second, "joined b")

			tc.end(t, b, b.bus)
			if tc.gone != "" {
				ra.expect(t, 10*time.Second, tc.gone)
			}
			again := srv("b", "room")
			again.Version = tc.version
			busB2 := join("b2")
			b2 := start(t, busB2, again)
			ra.expect(t, 5*time.Second, tc.want...)
			if s, ok := a.ServerByID("b"); !ok || s.Version != tc.version {
				t.Fatalf("a sees %+v, %v", s, ok)
			}
			if got := ids(b2.Servers()); !slices.Equal(got, []string{"a", "b"}) {
				t.Fatalf("b2 sees %v", got)
			}
			// Barrier: beats go by, then a change; nothing (no late death)
			// may come in between.
			awaitPuts(t, busB2, "b", 5)
			if err := b2.SetMetadata(context.Background(), map[string]string{"x": "y"}); err != nil {
				t.Fatal(err)
			}
			ra.expect(t, 5*time.Second, "updated b")
		})
	}
}

func TestOwnKeyPurgedRejoins(t *testing.T) {
	busA, join := cluster(t)
	a := start(t, busA, srv("a", "connector"))
	ra := record(t, a)
	busB := join("b")
	b := start(t, busB, srv("b", "room"))
	rb := record(t, b)
	ra.expect(t, 5*time.Second, "joined b")

	// What the TTL does to a node paused too long: its key is purged while
	// the node lives on. Its next heartbeat puts it back.
	ctx := context.Background()
	kv, err := busA.JetStream().KeyValue(ctx, busA.Name(Bucket))
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Purge(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	ra.expect(t, 5*time.Second, "died b", "joined b")
	evs := rb.expect(t, 5*time.Second, "died b", "joined b")
	t.Logf("b back %v after its death was seen", evs[1].at.Sub(evs[0].at))
	if _, ok := b.ServerByID("b"); !ok {
		t.Fatal("b does not see itself")
	}
}

func TestSubscribeCancel(t *testing.T) {
	busA, join := cluster(t)
	a := start(t, busA, srv("a", "connector"))
	var mu sync.Mutex
	var got []string
	cancel := a.Subscribe(func(e Event) {
		mu.Lock()
		got = append(got, e.Kind.String()+" "+e.Server.ID)
		mu.Unlock()
	})
	ra := record(t, a) // subscribed after: sees the same events, later
	start(t, join("b"), srv("b", "room"))
	ra.expect(t, 5*time.Second, "joined b")
	cancel()
	start(t, join("c"), srv("c", "room"))
	ra.expect(t, 5*time.Second, "joined c")
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(got, []string{"joined b"}) {
		t.Fatalf("cancelled subscriber got %v", got)
	}
}

func TestStartTwice(t *testing.T) {
	bus := connectBus(t, stream.Config{ServerID: "a"})
	d := start(t, bus, srv("a", "room"))
	if err := d.Start(context.Background()); !errors.Is(err, ErrState) {
		t.Fatalf("second Start: %v", err)
	}
}

func TestList(t *testing.T) {
	busA, join := cluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	list, err := List(ctx, busA)
	if err != nil || len(list) != 0 {
		t.Fatalf("before any server: %v, %v", list, err)
	}
	start(t, busA, srv("b", "room"))
	d := start(t, join("x"), srv("a", "connector"))
	if err := d.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	start(t, join("y"), srv("c", "room"))
	list, err = List(ctx, busA)
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(list); !slices.Equal(got, []string{"b", "c"}) {
		t.Fatalf("list %v", got)
	}
}

// TestServerRestart restarts the NATS server under two nodes: the memory
// bucket is lost, the connections come back, the nodes provision the bucket
// and put their keys again, and their watchers see each other's changes.
func TestServerRestart(t *testing.T) {
	dir := t.TempDir()
	var mu sync.Mutex
	var ns *server.Server
	t.Cleanup(func() { // registered before the buses: runs after they close
		mu.Lock()
		defer mu.Unlock()
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	run := func(port int) {
		t.Helper()
		s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
		if err != nil {
			t.Fatal(err)
		}
		s.Start()
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatal("nats server not ready")
		}
		mu.Lock()
		ns = s
		mu.Unlock()
	}
	run(-1)
	port := ns.Addr().(*net.TCPAddr).Port
	log := testLogger(t)
	a := start(t, connectBus(t, stream.Config{ServerID: "a", URL: ns.ClientURL(), Logger: log}), srv("a", "connector"))
	ra := record(t, a)
	b := start(t, connectBus(t, stream.Config{ServerID: "b", URL: ns.ClientURL(), Logger: log}), srv("b", "room"))
	rb := record(t, b)
	ra.expect(t, 5*time.Second, "joined b")

	ns.Shutdown()
	ns.WaitForShutdown()
	begin := time.Now()
	run(port)

	// b changes its metadata once it can put again.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for {
		err := b.SetMetadata(ctx, map[string]string{"after": "restart"})
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("b cannot put after the restart: %v", err)
		}
		// Not an event wait: the bus is reconnecting; try again shortly.
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Logf("b put again %v after the restart", time.Since(begin).Round(time.Millisecond))
	// a sees it. On the way it may see the loss and return of servers (its
	// reload can run before a node has put its key again).
	awaitChange(t, ra, "b", "after", "restart", 15*time.Second)
	t.Logf("a saw b's change %v after the restart", time.Since(begin).Round(time.Millisecond))
	if err := a.SetMetadata(ctx, map[string]string{"after": "restart"}); err != nil {
		t.Fatal(err)
	}
	awaitChange(t, rb, "a", "after", "restart", 15*time.Second)
	for name, d := range map[string]*Discovery{"a": a, "b": b} {
		if got := ids(d.Servers()); !slices.Equal(got, []string{"a", "b"}) {
			t.Errorf("%s sees %v", name, got)
		}
	}
}

// awaitChange waits for a Joined or Updated of id carrying metadata k=v,
// allowing any membership churn before it.
func awaitChange(t *testing.T, r *recorder, id, k, v string, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case e := <-r.ch:
			t.Logf("event %s %s %v", e.Kind, e.Server.ID, e.Server.Metadata)
			if e.Server.ID == id && (e.Kind == Joined || e.Kind == Updated) && e.Server.Metadata[k] == v {
				return
			}
		case <-deadline:
			t.Fatalf("no change of %s to %s=%s in %v", id, k, v, timeout)
		}
	}
}
