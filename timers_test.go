package nopal_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nopal-dev/nopal"
	"github.com/nopal-dev/nopal/backend"
	"github.com/nopal-dev/nopal/timers"
)

func TestAppTimersStopAtShutdown(t *testing.T) {
	app, err := nopal.New(nopal.Config{ServerType: "clock", Logger: clusterLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	// Created before Start, as Pitaya's components do in AfterInit.
	every := make(chan struct{}, 256)
	tm := app.NewTimer(5*time.Millisecond, func() { every <- struct{}{} })
	var panics atomic.Int32
	boom := app.NewCountTimer(5*time.Millisecond, 2, func() { panics.Add(1); panic("boom") })
	app.SetTimerPrecision(5 * time.Millisecond)
	cond, err := app.NewCondTimer(timers.ConditionFunc(func(time.Time) bool { return true }), func() {})
	if err != nil {
		t.Fatal(err)
	}
	after := app.NewAfterTimer(time.Hour, func() { t.Error("an after timer fired past shutdown") })
	if err := app.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		select {
		case <-every:
		case <-time.After(5 * time.Second):
			t.Fatal("the timer did not fire")
		}
	}
	select {
	case <-boom.Done(): // two panics, recovered: the app lives on
	case <-time.After(5 * time.Second):
		t.Fatal("the panicking count timer did not finish")
	}
	if n := panics.Load(); n != 2 {
		t.Fatalf("%d calls of the panicking timer, want 2", n)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := app.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for name, x := range map[string]*timers.Timer{"every": tm, "cond": cond, "after": after} {
		select {
		case <-x.Done():
		default:
			t.Fatalf("%s timer still running after Shutdown", name)
		}
	}
	for len(every) > 0 {
		<-every
	}
	late := app.NewTimer(time.Millisecond, func() { every <- struct{}{} })
	<-late.Done() // handed out stopped
	select {
	case <-every:
		t.Fatal("a timer fired after Shutdown")
	case <-time.After(30 * time.Millisecond):
	}
}

// Beat is the durable timer's route on the "scorer" server.
type Beat struct{ ticks chan timers.Tick }

type BeatAck struct {
	OK bool `json:"ok"`
}

func (b *Beat) Now(_ context.Context, t *timers.Tick) (*BeatAck, error) {
	b.ticks <- *t
	return &BeatAck{OK: true}, nil
}

func TestAppDurableTimer(t *testing.T) {
	standalone, err := nopal.New(nopal.Config{ServerType: "solo", Logger: clusterLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := standalone.DurableTimer(context.Background(), "x", time.Second, "a.b.c", nil); err == nil {
		t.Fatal("a standalone app declared a durable timer")
	}

	c := newTestCluster(t, clusterOpts{})
	beat := &Beat{ticks: make(chan timers.Tick, 64)}
	scorer := c.add(nodeSpec{svType: "scorer", id: "scorer-1", inProcess: true, setup: func(app *nopal.App) {
		if err := app.RegisterRemote(beat, backend.WithName("beat")); err != nil {
			t.Fatal(err)
		}
	}})
	// Two ticker servers declare the timer at start; they run its ticks and
	// call the scorer by RPC.
	const interval = 300 * time.Millisecond
	var tickers []*testNode
	for _, id := range []string{"ticker-1", "ticker-2"} {
		tickers = append(tickers, c.add(nodeSpec{svType: "ticker", id: id, inProcess: true, setup: func(app *nopal.App) {
			if err := app.DurableTimer(context.Background(), "score", interval, "scorer.beat.now", map[string]int{"points": 3}); err != nil {
				t.Fatal(err)
			}
		}}))
	}
	ctx := testCtx(t)
	info, err := scorer.app.DurableTimerInfo(ctx, "score")
	if err != nil {
		t.Fatal(err)
	}
	if info.Gen != 1 || info.Type != "ticker" || info.Interval != interval {
		t.Fatalf("timer %+v", info)
	}
	for want := uint64(1); want <= 4; want++ {
		select {
		case tk := <-beat.ticks:
			var arg map[string]int
			if tk.N != want || tk.Gen != 1 || tk.Decode(&arg) != nil || arg["points"] != 3 {
				t.Fatalf("tick %+v (arg %v), want tick %d of gen 1", tk, arg, want)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("tick %d never came", want)
		}
	}
	// Declared again after Start, by a server with a job worker: no change.
	if err := tickers[0].app.DurableTimer(ctx, "score", interval, "scorer.beat.now", map[string]int{"points": 3}); err != nil {
		t.Fatal(err)
	}
	// Declared after Start on a server with remotes (so a job worker): its
	// route names the server's own type, called here without RPC.
	if err := scorer.app.DurableTimer(ctx, "other", interval, "scorer.beat.now", nil); err != nil {
		t.Fatalf("a server with remotes declared after Start: %v", err)
	}
	last := uint64(4)
	next := func() timers.Tick {
		select {
		case tk := <-beat.ticks:
			if tk.Timer == "score" {
				if tk.N != last+1 {
					t.Fatalf("score tick %d after tick %d", tk.N, last)
				}
				last = tk.N
			}
			return tk
		case <-time.After(15 * time.Second):
			t.Fatal("no tick")
			return timers.Tick{}
		}
	}
	for next().Timer != "other" {
	}
	if err := scorer.app.StopDurableTimer(ctx, "other"); err != nil {
		t.Fatal(err)
	}
	if err := tickers[1].app.StopDurableTimer(ctx, "score"); err != nil {
		t.Fatal(err)
	}
	// Ticks under way as Stop came may still arrive; then nothing.
	for quiet := false; !quiet; {
		select {
		case <-beat.ticks:
		case <-time.After(3 * interval):
			quiet = true
		}
	}
	if _, err := scorer.app.DurableTimerInfo(ctx, "score"); !errors.Is(err, timers.ErrNotFound) {
		t.Fatalf("info after stop: %v", err)
	}
}
