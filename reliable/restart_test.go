package reliable_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nopal-dev/nopal/reliable"
	"github.com/nopal-dev/nopal/stream"
)

// TestEnqueueFailureLeavesNoJob: an Enqueue whose publish does not happen
// returns the jid and an error and leaves nothing behind (a job is its
// message until a worker takes it); enqueueing the jid again works.
func TestEnqueueFailureLeavesNoJob(t *testing.T) {
	bus := newBus(t, "a")
	c := newClient(t, bus)
	ctx := testCtx(t)
	dead, cancel := context.WithCancel(ctx)
	cancel()
	jid, err := c.Enqueue(dead, route, &Mail{To: "hal"})
	if err == nil || jid == "" {
		t.Fatalf("Enqueue = %q, %v; want the jid and an error", jid, err)
	}
	if _, err := c.Get(ctx, jid); !errors.Is(err, reliable.ErrNotFound) {
		t.Fatalf("job left behind: %v", err)
	}
	if _, err := c.Enqueue(ctx, route, &Mail{To: "hal"}, reliable.WithJID(jid)); err != nil {
		t.Fatal(err)
	}
	_, inv := newMailer(t, "a")
	startWorker(t, bus, inv, reliable.WorkerConfig{ServerType: "mail"})
	if j, err := c.Wait(ctx, jid); err != nil || j.State != reliable.Succeeded {
		t.Fatalf("Wait = %+v, %v", j, err)
	}
}

// TestServerRestartLosesNoJob restarts the NATS server (file storage, same
// folder, same port) while jobs are enqueued and run by two workers that
// reach it over TCP; every job ends succeeded.
func TestServerRestartLosesNoJob(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts a NATS server")
	}
	const n = 400
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	startServer := func() *stream.Bus {
		return connect(t, stream.Config{ServerID: "nats", Logger: discard, Embedded: stream.Embedded{StoreDir: dir, Listen: addr}})
	}
	srv := startServer()
	url := "nats://" + addr
	cb := connect(t, stream.Config{ServerID: "client", Logger: discard, URL: url})
	c := newClient(t, cb)
	// Jobs just before the restart block until it is over, so some are
	// running while the server is down.
	restarted := make(chan struct{})
	var blocked atomic.Int32
	gate := func(ctx context.Context, to string) error {
		var i int
		if _, err := fmt.Sscanf(to, "job-%d", &i); err == nil && i >= n/2-20 && i < n/2 {
			select {
			case <-restarted:
			default:
				blocked.Add(1)
				<-restarted
			}
		}
		return nil
	}
	var mailers []*Mailer
	for _, id := range []string{"w1", "w2"} {
		wb := connect(t, stream.Config{ServerID: id, Logger: discard, URL: url})
		m, inv := newMailer(t, id)
		m.gate = gate
		mailers = append(mailers, m)
		startWorker(t, wb, inv, reliable.WorkerConfig{ServerType: "mail", Concurrency: 16, AckWait: 2 * time.Second})
	}

	half := make(chan struct{})
	var failures atomic.Int32
	enqueued := make(chan error, 1)
	jids := make([]string, n)
	go func() {
		for i := range n {
			jids[i] = fmt.Sprint("job-", i)
			if i == n/2 {
				close(half)
			}
			// What a caller does when Enqueue fails: enqueue the same
			// jid again (always safe), until it is accepted.
			for try := 0; ; try++ {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				_, err := c.Enqueue(ctx, route, &Mail{To: jids[i]}, reliable.WithJID(jids[i]))
				cancel()
				if err == nil {
					break
				}
				failures.Add(1)
				if try == 100 {
					enqueued <- fmt.Errorf("enqueue %s: %w", jids[i], err)
					return
				}
				<-time.After(100 * time.Millisecond) // a client's back-off between tries
			}
		}
		enqueued <- nil
	}()
	<-half
	srv.Close() // clean shutdown: stores flushed
	srv = startServer()
	close(restarted)
	if err := <-enqueued; err != nil {
		t.Fatal(err)
	}
	jobs := waitAll(t, srv, jids, 60*time.Second)
	var runs, retried int
	for _, jid := range jids {
		j := jobs[jid]
		if j.State != reliable.Succeeded {
			t.Fatalf("job %+v", j)
		}
		calls := mailers[0].Calls(jid) + mailers[1].Calls(jid)
		if calls < 1 {
			t.Fatalf("%s succeeded without a call", jid)
		}
		runs += calls
		if len(j.Attempts) > 1 {
			retried++
		}
	}
	t.Logf("%d jobs, %d runs (at least once), %d with more than one attempt; %d blocked across the restart; %d failed Enqueue calls retried",
		n, runs, retried, blocked.Load(), failures.Load())
}
