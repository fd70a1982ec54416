package reliable

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nopal-dev/nopal/stream"
)

// TestCrashWindowIsClosed: a queued record with no message (what a Retry
// killed between its record update and its publish leaves, or a purge from
// outside) is run when its jid is enqueued again (the new message carries
// it: the record decides what runs); a worker's sweeper publishes the
// others.
func TestCrashWindowIsClosed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	log := slog.New(slog.DiscardHandler)
	bus, err := stream.Connect(ctx, stream.Config{ServerID: "a", Logger: log, Embedded: stream.Embedded{StoreDir: t.TempDir()}})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	c, err := NewClient(ctx, bus, WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	crashed := func(jid string) {
		then := time.Now().Add(-time.Minute)
		r := &record{Job: Job{JID: jid, Route: "mail.mailer.send", Arg: []byte(`"x"`), State: Queued, MaxAttempts: 3, Created: then, Updated: then}}
		if _, err := c.s.kv.Create(ctx, jid, encode(r)); err != nil {
			t.Fatal(err)
		}
	}
	crashed("lost-1")
	crashed("lost-2")

	var mu sync.Mutex
	calls := map[string]int{}
	inv := InvokerFunc(func(ctx context.Context, route string, arg []byte) ([]byte, error) {
		mu.Lock()
		defer mu.Unlock()
		calls[route]++
		return arg, nil
	})
	start := func(id string, sweep time.Duration) *Worker {
		w, err := NewWorker(ctx, bus, inv, WorkerConfig{ServerType: "mail", ServerID: id, SweepInterval: sweep, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = w.Stop(context.Background()) })
		return w
	}
	start("no-sweeper", -1)

	// The caller enqueues lost-1 again (it never got an answer).
	if jid, err := c.Enqueue(ctx, "mail.mailer.send", "x", WithJID("lost-1")); err != nil || jid != "lost-1" {
		t.Fatalf("Enqueue = %q, %v", jid, err)
	}
	if j, err := c.Wait(ctx, "lost-1"); err != nil || j.State != Succeeded {
		t.Fatalf("lost-1: %+v, %v", j, err)
	}
	if j, err := c.Get(ctx, "lost-2"); err != nil || j.State != Queued {
		t.Fatalf("lost-2 before the sweep: %+v, %v", j, err)
	}
	// Nobody enqueues lost-2 again: a worker with a sweeper finds it at
	// Start (full scan) and publishes it.
	start("sweeper", time.Hour)
	if j, err := c.Wait(ctx, "lost-2"); err != nil || j.State != Succeeded {
		t.Fatalf("lost-2: %+v, %v", j, err)
	}
}

// TestDuplicateMessageIsDropped: two messages for one jid (enqueued twice,
// for two targets: the stream refuses a second message per subject, not
// per jid) run the job once; the second is acked unrun.
func TestDuplicateMessageIsDropped(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	log := slog.New(slog.DiscardHandler)
	bus, err := stream.Connect(ctx, stream.Config{ServerID: "a", Logger: log, Embedded: stream.Embedded{StoreDir: t.TempDir()}})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	c, err := NewClient(ctx, bus, WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	jid, err := c.Enqueue(ctx, "mail.mailer.send", "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Enqueue(ctx, "mail.mailer.send", "x", WithJID(jid), WithTarget("a")); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	n := 0
	inv := InvokerFunc(func(ctx context.Context, route string, arg []byte) ([]byte, error) {
		mu.Lock()
		defer mu.Unlock()
		n++
		return nil, nil
	})
	w, err := NewWorker(ctx, bus, inv, WorkerConfig{ServerType: "mail", Concurrency: 1, SweepInterval: -1, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop(context.Background()) }()
	// With one slot, each consumer's messages are handled one at a time in
	// stream order, so once a sentinel of each consumer (shared and
	// targeted) completed, both messages of jid were handled.
	for _, opts := range [][]Option{nil, {WithTarget("a")}} {
		sentinel, err := c.Enqueue(ctx, "mail.mailer.send", "y", opts...)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Wait(ctx, sentinel); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if n != 3 { // the job once, the sentinels once each
		t.Fatalf("%d calls, want 3", n)
	}
}
