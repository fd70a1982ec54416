package reliable_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nopal-dev/nopal/reliable"
	"github.com/nopal-dev/nopal/stream"
)

// testLog logs to t.
func testLog(t *testing.T) *slog.Logger {
	t.Helper()
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// deleteAll deletes the jobs bucket and both streams, as a NATS server
// restarted with an empty store loses them.
func deleteAll(t *testing.T, ctx context.Context, bus *stream.Bus) {
	t.Helper()
	// JOBS last: a running worker notices that one at once (its consumer
	// goes with it) and has everything re-created; deleting the others
	// after that would race its recovery.
	if err := bus.JetStream().DeleteKeyValue(ctx, bus.Name(reliable.Bucket)); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{reliable.DLQStream, reliable.Stream} {
		if err := bus.JetStream().DeleteStream(ctx, bus.Name(name)); err != nil {
			t.Fatal(err)
		}
	}
}

// checkAll checks that the jobs bucket and both streams exist.
func checkAll(t *testing.T, ctx context.Context, bus *stream.Bus) {
	t.Helper()
	for _, name := range []string{reliable.Stream, reliable.DLQStream} {
		if _, err := bus.JetStream().Stream(ctx, bus.Name(name)); err != nil {
			t.Errorf("%s not re-created: %v", name, err)
		}
	}
	if _, err := bus.JetStream().KeyValue(ctx, bus.Name(reliable.Bucket)); err != nil {
		t.Errorf("bucket not re-created: %v", err)
	}
}

// TestClientRecreatesItsObjects: with the bucket and the streams deleted,
// each Client operation has the bus create them again and works (on empty
// objects), and a job enqueued then runs on a worker started afterwards.
func TestClientRecreatesItsObjects(t *testing.T) {
	tests := []struct {
		name string
		op   func(ctx context.Context, c *reliable.Client) error
	}{
		{"enqueue", func(ctx context.Context, c *reliable.Client) error {
			_, err := c.Enqueue(ctx, route, &Mail{To: "after"})
			return err
		}},
		{"list", func(ctx context.Context, c *reliable.Client) error {
			_, err := c.List(ctx, reliable.Filter{})
			return err
		}},
		{"get", func(ctx context.Context, c *reliable.Client) error {
			_, err := c.Get(ctx, "01J0000000000000000000000A")
			if err != nil && !errors.Is(err, reliable.ErrNotFound) {
				return err
			}
			return nil
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bus := newBus(t, "a")
			c := newClient(t, bus)
			ctx := testCtx(t)
			if _, err := c.Enqueue(ctx, route, &Mail{To: "before"}); err != nil {
				t.Fatal(err)
			}
			deleteAll(t, ctx, bus)
			if err := tc.op(ctx, c); err != nil {
				t.Fatalf("on deleted objects: %v", err)
			}
			checkAll(t, ctx, bus)
			jid, err := c.Enqueue(ctx, route, &Mail{To: "again"})
			if err != nil {
				t.Fatal(err)
			}
			_, inv := newMailer(t, "a")
			startWorker(t, bus, inv, reliable.WorkerConfig{ServerType: "mail"})
			if j, err := c.Wait(ctx, jid); err != nil || j.State != reliable.Succeeded {
				t.Fatalf("Wait = %+v, %v", j, err)
			}
		})
	}
}

// TestObjectsDeletedUnderWorker deletes the bucket and both streams under a
// running worker: its consumers went with JOBS, and it must create them
// again once JOBS is back to run the next job.
func TestObjectsDeletedUnderWorker(t *testing.T) {
	bus := newBus(t, "a")
	c := newClient(t, bus)
	_, inv := newMailer(t, "a")
	startWorker(t, bus, inv, reliable.WorkerConfig{ServerType: "mail", Logger: testLog(t)})
	ctx := testCtx(t)
	jid, err := c.Enqueue(ctx, route, &Mail{To: "before"})
	if err != nil {
		t.Fatal(err)
	}
	if j, err := c.Wait(ctx, jid); err != nil || j.State != reliable.Succeeded {
		t.Fatalf("before: %+v, %v", j, err)
	}
	deleteAll(t, ctx, bus)
	jid, err = c.Enqueue(ctx, route, &Mail{To: "after"})
	if err != nil {
		t.Fatalf("enqueue on deleted objects: %v", err)
	}
	checkAll(t, ctx, bus)
	if j, err := c.Wait(ctx, jid); err != nil || j.State != reliable.Succeeded {
		t.Fatalf("after: %+v, %v", j, err)
	}
}

// TestOldJobsStreamRefused: a JOBS stream left by an older version (a work
// queue) is refused with a clear error, not used: exactly-once Enqueue
// needs one message per jid with new ones refused, and JetStream cannot
// change a stream's retention.
func TestOldJobsStreamRefused(t *testing.T) {
	bus := newBus(t, "a")
	ctx := testCtx(t)
	if _, err := bus.JetStream().CreateStream(ctx, jetstream.StreamConfig{
		Name:      bus.Name(reliable.Stream),
		Subjects:  []string{bus.JobsWildcard()},
		Retention: jetstream.WorkQueuePolicy,
		Storage:   jetstream.FileStorage,
	}); err != nil {
		t.Fatal(err)
	}
	_, err := reliable.NewClient(ctx, bus, reliable.WithLogger(discard))
	if !errors.Is(err, reliable.ErrConfig) || !strings.Contains(err.Error(), "older version") {
		t.Fatalf("NewClient on an old JOBS stream: %v", err)
	}
}
