package reliable

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nopal-dev/nopal/propagate"
	"github.com/nopal-dev/nopal/stream"
)

// valuesRecorder is an Invoker that records the propagated values of each
// call, by jid (the argument), and fails the calls fail says to.
type valuesRecorder struct {
	mu   sync.Mutex
	seen map[string][]map[string]any
	fail func(jid string, n int) bool
}

func (v *valuesRecorder) Invoke(ctx context.Context, _ string, arg []byte) ([]byte, error) {
	jid := strings.Trim(string(arg), `"`)
	v.mu.Lock()
	defer v.mu.Unlock()
	v.seen[jid] = append(v.seen[jid], propagate.ToMap(ctx))
	if v.fail != nil && v.fail(jid, len(v.seen[jid])) {
		return nil, errors.New("attempt fails")
	}
	return []byte(`{}`), nil
}

func (v *valuesRecorder) calls(jid string) []map[string]any {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]map[string]any(nil), v.seen[jid]...)
}

// checkPlayer fails unless every call saw exactly the value player = {"id": id}.
func checkPlayer(t *testing.T, jid string, calls []map[string]any, n int, id string) {
	t.Helper()
	if len(calls) != n {
		t.Fatalf("%s: %d calls, want %d", jid, len(calls), n)
	}
	for i, vals := range calls {
		p, _ := vals["player"].(map[string]any)
		if len(vals) != 1 || p["id"] != id {
			t.Errorf("%s: call %d saw values %v, want player %s (the enqueuer's)", jid, i+1, vals, id)
		}
	}
}

func baggageSetup(t *testing.T) (context.Context, *stream.Bus, *Client, *slog.Logger) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	log := slog.New(slog.DiscardHandler)
	bus, err := stream.Connect(ctx, stream.Config{ServerID: "a", Logger: log, Embedded: stream.Embedded{StoreDir: t.TempDir()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bus.Close)
	c, err := NewClient(ctx, bus, WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	return ctx, bus, c, log
}

func startBaggageWorker(t *testing.T, ctx context.Context, bus *stream.Bus, inv Invoker, log *slog.Logger, id string, sweep time.Duration) {
	t.Helper()
	w, err := NewWorker(ctx, bus, inv, WorkerConfig{ServerType: "mail", ServerID: id, SweepInterval: sweep, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Stop(context.Background()) })
}

// TestRepublishKeepsPropagatedValues: a job enqueued with propagated values
// that has a record but lost its message (a Retry killed between its record
// update and its publish, or a purge from outside) runs with those values
// when its message is published again, by a later Enqueue of its jid from
// a context with other values, or by a worker's sweeper.
func TestRepublishKeepsPropagatedValues(t *testing.T) {
	ctx, bus, c, log := baggageSetup(t)
	vctx, err := propagate.Add(ctx, "player", map[string]any{"id": "p1"})
	if err != nil {
		t.Fatal(err)
	}
	// Enqueued with values, then given a record (queued, last updated a
	// while ago), and then the message is lost.
	lose := func(jid string) {
		if _, err := c.Enqueue(vctx, "mail.mailer.send", jid, WithJID(jid)); err != nil {
			t.Fatal(err)
		}
		r, err := c.s.queued(ctx, jid)
		if err != nil || r == nil {
			t.Fatalf("message of %s: %+v, %v", jid, r, err)
		}
		r.Updated = time.Now().Add(-time.Minute)
		if _, err := c.s.kv.Create(ctx, jid, encode(r)); err != nil {
			t.Fatal(err)
		}
		if err := c.s.jobs.Purge(ctx, jetstream.WithPurgeSubject(c.s.jobSubject(r))); err != nil {
			t.Fatal(err)
		}
	}
	lose("lost-1")
	lose("lost-2")

	inv := &valuesRecorder{seen: map[string][]map[string]any{}}
	startBaggageWorker(t, ctx, bus, inv, log, "no-sweeper", -1)

	// lost-1: enqueued again by a caller with other values.
	octx, err := propagate.Add(ctx, "player", map[string]any{"id": "other"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Enqueue(octx, "mail.mailer.send", "lost-1", WithJID("lost-1")); err != nil {
		t.Fatal(err)
	}
	if j, err := c.Wait(ctx, "lost-1"); err != nil || j.State != Succeeded {
		t.Fatalf("lost-1: %+v, %v", j, err)
	}
	checkPlayer(t, "lost-1", inv.calls("lost-1"), 1, "p1")

	// lost-2: re-published by a worker's sweeper (no values of its own).
	if j, err := c.Get(ctx, "lost-2"); err != nil || j.State != Queued {
		t.Fatalf("lost-2 before the sweep: %+v, %v", j, err)
	}
	startBaggageWorker(t, ctx, bus, inv, log, "sweeper", time.Hour)
	if j, err := c.Wait(ctx, "lost-2"); err != nil || j.State != Succeeded {
		t.Fatalf("lost-2: %+v, %v", j, err)
	}
	checkPlayer(t, "lost-2", inv.calls("lost-2"), 1, "p1")
}

// TestRetryKeepsPropagatedValues: a dead job retried by a caller without
// values, or with other values, runs with the values of its Enqueue.
func TestRetryKeepsPropagatedValues(t *testing.T) {
	ctx, bus, c, log := baggageSetup(t)
	inv := &valuesRecorder{
		seen: map[string][]map[string]any{},
		fail: func(_ string, n int) bool { return n < 3 }, // calls 1 and 2 fail
	}
	startBaggageWorker(t, ctx, bus, inv, log, "w", -1)
	vctx, err := propagate.Add(ctx, "player", map[string]any{"id": "p1"})
	if err != nil {
		t.Fatal(err)
	}
	const jid = "retried"
	if _, err := c.Enqueue(vctx, "mail.mailer.send", jid, WithJID(jid), WithMaxAttempts(1)); err != nil {
		t.Fatal(err)
	}
	if j, err := c.Wait(ctx, jid); err != nil || j.State != Dead {
		t.Fatalf("first run: %+v, %v", j, err)
	}
	checkPlayer(t, jid, inv.calls(jid), 1, "p1")

	// Retried from a context without values: dead again.
	if err := c.Retry(ctx, jid); err != nil {
		t.Fatal(err)
	}
	if j, err := c.Wait(ctx, jid); err != nil || j.State != Dead || len(j.Attempts) != 1 {
		t.Fatalf("after the first Retry: %+v, %v", j, err)
	}
	checkPlayer(t, jid, inv.calls(jid), 2, "p1")

	// Retried from a context with other values: succeeds.
	octx, err := propagate.Add(ctx, "player", map[string]any{"id": "other"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Retry(octx, jid); err != nil {
		t.Fatal(err)
	}
	if j, err := c.Wait(ctx, jid); err != nil || j.State != Succeeded {
		t.Fatalf("after the second Retry: %+v, %v", j, err)
	}
	checkPlayer(t, jid, inv.calls(jid), 3, "p1")
}

// TestRecordBaggageField: the values are stored under "baggage" (in the job
// as enqueued, its message's body) only when
// there are some, and a record written before the field existed (no
// "baggage") decodes with none and is published without a baggage header,
// whatever the publisher's context holds.
func TestRecordBaggageField(t *testing.T) {
	ctx, _, c, _ := baggageSetup(t)
	vctx, err := propagate.Add(ctx, "player", map[string]any{"id": "p1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		jid  string
		ctx  context.Context
		vals bool
	}{{"with", vctx, true}, {"without", ctx, false}} {
		if _, err := c.Enqueue(tc.ctx, "mail.mailer.send", "x", WithJID(tc.jid)); err != nil {
			t.Fatal(err)
		}
		// The job as enqueued is its message's body.
		m, err := c.s.jobs.GetLastMsgForSubject(ctx, c.s.bus.JobSubject("mail", tc.jid))
		if err != nil {
			t.Fatal(err)
		}
		r, err := decodeMsg(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		h, _ := propagate.Header(tc.ctx)
		if r.Baggage != h || (h != "") != tc.vals {
			t.Errorf("%s: stored baggage %q, want %q", tc.jid, r.Baggage, h)
		}
		if rec := encode(r); !tc.vals && strings.Contains(string(rec), `"baggage"`) {
			t.Errorf("%s: record %s has a baggage field", tc.jid, rec)
		}
		if got := m.Header.Get(stream.BaggageHeader); got != h {
			t.Errorf("%s: message baggage %q, want %q", tc.jid, got, h)
		}
	}

	// A record of older code: no field.
	old := `{"jid":"old","route":"mail.mailer.send","arg":"Ingi","state":"queued","max_attempts":3,"created":"2024-01-01T00:00:00Z","updated":"2024-01-01T00:00:00Z"}`
	r, err := decode([]byte(old))
	if err != nil {
		t.Fatal(err)
	}
	if r.Baggage != "" {
		t.Fatalf("old record decoded with baggage %q", r.Baggage)
	}
	if _, err := c.s.publish(vctx, r, false); err != nil {
		t.Fatal(err)
	}
	m, err := c.s.jobs.GetLastMsgForSubject(ctx, c.s.jobSubject(r))
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Header.Get(stream.BaggageHeader); got != "" {
		t.Errorf("old record published with baggage %q", got)
	}
}
