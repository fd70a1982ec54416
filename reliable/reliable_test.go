package reliable_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nopal-dev/nopal/codec"
	"github.com/nopal-dev/nopal/internal/testproxy"
	"github.com/nopal-dev/nopal/reliable"
	"github.com/nopal-dev/nopal/stream"
)

func TestEnqueueRunsToSuccess(t *testing.T) {
	bus := newBus(t, "a")
	c := newClient(t, bus)
	m, inv := newMailer(t, "a")
	startWorker(t, bus, inv, reliable.WorkerConfig{ServerType: "mail"})
	ctx := testCtx(t)

	jid, err := c.Enqueue(ctx, route, &Mail{To: "ann", Body: "hi"})
	if err != nil {
		t.Fatal(err)
	}
	if len(jid) != 26 {
		t.Fatalf("jid %q is not a ULID", jid)
	}
	j, err := c.Wait(ctx, jid)
	if err != nil {
		t.Fatal(err)
	}
	if j.State != reliable.Succeeded || len(j.Attempts) != 1 || j.Attempts[0].Server != "a" || j.Attempts[0].Ended.IsZero() {
		t.Fatalf("job %+v", j)
	}
	var r Receipt
	if err := j.Decode(&r); err != nil {
		t.Fatal(err)
	}
	if r.ID != "ann#1" || m.Calls("ann") != 1 {
		t.Fatalf("receipt %+v, calls %d", r, m.Calls("ann"))
	}
	got, err := c.Get(ctx, jid)
	if err != nil || got.State != reliable.Succeeded || got.Revision == 0 {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	if _, err := c.Get(ctx, "nope"); !errors.Is(err, reliable.ErrNotFound) {
		t.Fatalf("Get unknown: %v", err)
	}
	if _, err := c.Wait(ctx, "nope"); !errors.Is(err, reliable.ErrNotFound) {
		t.Fatalf("Wait unknown: %v", err)
	}
	if _, err := c.Enqueue(ctx, "mailer.send", nil); !errors.Is(err, reliable.ErrInvalidRoute) {
		t.Fatalf("two-part route: %v", err)
	}
	if _, err := c.Enqueue(ctx, route, nil, reliable.WithJID("a.b")); !errors.Is(err, reliable.ErrInvalidJID) {
		t.Fatalf("dotted jid: %v", err)
	}
}

func TestSameJIDRunsOnce(t *testing.T) {
	bus := newBus(t, "a")
	c := newClient(t, bus)
	ctx := testCtx(t)
	// Enqueued twice before any worker runs, concurrently.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			jid, err := c.Enqueue(ctx, route, &Mail{To: "bob"}, reliable.WithJID("order-42"))
			if err == nil && jid != "order-42" {
				err = fmt.Errorf("jid %q", jid)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	m, inv := newMailer(t, "a")
	startWorker(t, bus, inv, reliable.WorkerConfig{ServerType: "mail"})
	j, err := c.Wait(ctx, "order-42")
	if err != nil || j.State != reliable.Succeeded {
		t.Fatalf("Wait = %+v, %v", j, err)
	}
	// Again after success: accepted, nothing runs, the record is untouched.
	enqueueAgain(t, c, m, "order-42", "bob", j.Revision)
}

// enqueueAgain enqueues jid (a mail to to) again after it succeeded with
// record revision rev: Enqueue accepts it, the record stays as it is, and
// once a sentinel job enqueued afterwards has run (a second message of jid,
// if any, would have been delivered first) the mail has still been sent
// once.
func enqueueAgain(t *testing.T, c *reliable.Client, m *Mailer, jid, to string, rev uint64) {
	t.Helper()
	ctx := testCtx(t)
	if got, err := c.Enqueue(ctx, route, &Mail{To: to}, reliable.WithJID(jid)); err != nil || got != jid {
		t.Fatalf("enqueue %s again: %q, %v", jid, got, err)
	}
	sentinel, err := c.Enqueue(ctx, route, &Mail{To: "sentinel"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Wait(ctx, sentinel); err != nil {
		t.Fatal(err)
	}
	if n := m.Calls(to); n != 1 {
		t.Fatalf("%s ran %d times", jid, n)
	}
	if j, err := c.Get(ctx, jid); err != nil || j.Revision != rev || j.State != reliable.Succeeded {
		t.Fatalf("record of %s: %+v, %v; want revision %d, succeeded", jid, j, err, rev)
	}
}

func TestDeadLetterThenRetry(t *testing.T) {
	bus := newBus(t, "a")
	c := newClient(t, bus)
	m, inv := newMailer(t, "a")
	m.failures = func(to string, n int) error {
		if n <= 3 {
			return codec.NewError("MAIL-503", fmt.Sprintf("smtp down (call %d)", n), map[string]string{"to": to})
		}
		return nil
	}
	startWorker(t, bus, inv, reliable.WorkerConfig{ServerType: "mail"})
	ctx := testCtx(t)

	jid, err := c.Enqueue(ctx, route, &Mail{To: "cid"}, reliable.WithMaxAttempts(3), reliable.WithBackoff(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	j, err := c.Wait(ctx, jid)
	if err != nil {
		t.Fatal(err)
	}
	if j.State != reliable.Dead || len(j.Attempts) != 3 || m.Calls("cid") != 3 {
		t.Fatalf("job %+v, calls %d", j, m.Calls("cid"))
	}
	for i, a := range j.Attempts {
		if a.N != i+1 || a.Error == nil || a.Error.Code != "MAIL-503" || a.Error.Metadata["to"] != "cid" {
			t.Fatalf("attempt %d: %+v", i, a)
		}
	}
	if j.Attempts[1].Started.Sub(j.Attempts[0].Ended) < 50*time.Millisecond {
		t.Fatalf("no back-off between attempts: %+v", j.Attempts)
	}
	if j.LastError == nil || j.LastError.Message != "smtp down (call 3)" {
		t.Fatalf("last error %+v", j.LastError)
	}

	// The dead letter, with the whole history.
	dl := nextDeadLetter(t, bus, "mail", jid)
	if dl.State != reliable.Dead || len(dl.Attempts) != 3 {
		t.Fatalf("dead letter %+v", dl)
	}
	if err := c.Cancel(ctx, jid); !errors.Is(err, reliable.ErrState) {
		t.Fatalf("cancel dead job: %v", err)
	}

	// Retry: from scratch, and the smtp server is back.
	if err := c.Retry(ctx, jid); err != nil {
		t.Fatal(err)
	}
	j, err = c.Wait(ctx, jid)
	if err != nil {
		t.Fatal(err)
	}
	if j.State != reliable.Succeeded || len(j.Attempts) != 1 || m.Calls("cid") != 4 {
		t.Fatalf("after retry: %+v, calls %d", j, m.Calls("cid"))
	}
	if err := c.Retry(ctx, jid); !errors.Is(err, reliable.ErrState) {
		t.Fatalf("retry of a succeeded job: %v", err)
	}
	dlq, err := bus.JetStream().Stream(ctx, bus.Name(reliable.DLQStream))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dlq.GetLastMsgForSubject(ctx, bus.DLQSubject("mail", jid)); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Fatalf("dead letter still there after retry: %v", err)
	}
}

func TestPermanentErrorAndDeadline(t *testing.T) {
	bus := newBus(t, "a")
	c := newClient(t, bus)
	ctx := testCtx(t)
	var calls atomic.Int32
	inv := reliable.InvokerFunc(func(ctx context.Context, route string, arg []byte) ([]byte, error) {
		calls.Add(1)
		if string(arg) == `"bad"` {
			return nil, reliable.Permanent(codec.NewError(codec.CodeBadRequest, "bad address", nil))
		}
		<-ctx.Done() // runs until its deadline
		return nil, ctx.Err()
	})
	startWorker(t, bus, inv, reliable.WorkerConfig{ServerType: "mail"})

	bad, err := c.Enqueue(ctx, route, "bad")
	if err != nil {
		t.Fatal(err)
	}
	j, err := c.Wait(ctx, bad)
	if err != nil || j.State != reliable.Failed || len(j.Attempts) != 1 || j.LastError.Code != codec.CodeBadRequest {
		t.Fatalf("permanent: %+v, %v", j, err)
	}
	slow, err := c.Enqueue(ctx, route, "slow", reliable.WithDeadline(time.Now().Add(200*time.Millisecond)))
	if err != nil {
		t.Fatal(err)
	}
	j, err = c.Wait(ctx, slow)
	if err != nil || j.State != reliable.Failed || len(j.Attempts) != 1 || j.LastError.Code != reliable.CodeDeadline {
		t.Fatalf("deadline: %+v, %v", j, err)
	}
	// Past its deadline before it runs: failed without a call.
	late, err := c.Enqueue(ctx, route, "late", reliable.WithDeadline(time.Now().Add(-time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	j, err = c.Wait(ctx, late)
	if err != nil || j.State != reliable.Failed || len(j.Attempts) != 0 {
		t.Fatalf("late: %+v, %v", j, err)
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("%d calls, want 2", n)
	}
	if err := c.Retry(ctx, late); !errors.Is(err, reliable.ErrState) {
		t.Fatalf("retry past deadline: %v", err)
	}
	if dl := nextDeadLetter(t, bus, "mail", bad); dl.State != reliable.Failed {
		t.Fatalf("dead letter of a failed job: %+v", dl)
	}
}

// nextDeadLetter waits for jid's message in JOBS_DLQ and decodes it.
func nextDeadLetter(t *testing.T, bus *stream.Bus, svtype, jid string) reliable.Job {
	t.Helper()
	ctx := testCtx(t)
	cons, err := bus.JetStream().OrderedConsumer(ctx, bus.Name(reliable.DLQStream), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{bus.DLQSubject(svtype, jid)},
	})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := cons.Next(jetstream.FetchContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	var j reliable.Job
	if err := json.Unmarshal(msg.Data(), &j); err != nil {
		t.Fatal(err)
	}
	if msg.Headers().Get(reliable.HeaderState) != string(j.State) {
		t.Fatalf("state header %q", msg.Headers().Get(reliable.HeaderState))
	}
	return j
}

func TestCancelDelayedJob(t *testing.T) {
	bus := newBus(t, "a")
	c := newClient(t, bus)
	m, inv := newMailer(t, "a")
	w := startWorker(t, bus, inv, reliable.WorkerConfig{ServerType: "mail"})
	ctx := testCtx(t)

	jid, err := c.Enqueue(ctx, route, &Mail{To: "dan"}, reliable.WithDelay(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Cancel(ctx, jid); err != nil {
		t.Fatal(err)
	}
	j, err := c.Wait(ctx, jid)
	if err != nil || j.State != reliable.Cancelled {
		t.Fatalf("Wait = %+v, %v", j, err)
	}
	if err := c.Cancel(ctx, jid); !errors.Is(err, reliable.ErrState) {
		t.Fatalf("second cancel: %v", err)
	}
	// A job due after the cancelled one runs and ends.
	sentinel, err := c.Enqueue(ctx, route, &Mail{To: "sentinel"}, reliable.WithDelay(400*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Wait(ctx, sentinel); err != nil {
		t.Fatal(err)
	}
	if n := m.Calls("dan"); n != 0 {
		t.Fatalf("cancelled job ran %d times", n)
	}
	if j, _ := c.Get(ctx, jid); j.State != reliable.Cancelled || len(j.Attempts) != 0 {
		t.Fatalf("record %+v", j)
	}
	if st := w.Stats(); st.MaxAckPending != 1024 {
		t.Fatalf("stats %+v", st)
	}
}

func TestCancelledMessageIsAckedUnrun(t *testing.T) {
	// The job is cancelled while no worker runs, with its message still in
	// JOBS (Cancel's removal of the message is best effort: here the
	// message is published again to stand for one it could not remove).
	bus := newBus(t, "a")
	c := newClient(t, bus)
	ctx := testCtx(t)
	jid, err := c.Enqueue(ctx, route, &Mail{To: "eve"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Cancel(ctx, jid); err != nil {
		t.Fatal(err)
	}
	if _, err := bus.JetStream().Publish(ctx, bus.JobSubject("mail", jid), nil); err != nil {
		t.Fatal(err)
	}
	m, inv := newMailer(t, "a")
	// One at a time, in stream order: eve's message is handled before the
	// sentinel's.
	w := startWorker(t, bus, inv, reliable.WorkerConfig{ServerType: "mail", Concurrency: 1})
	sentinel, err := c.Enqueue(ctx, route, &Mail{To: "sentinel"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Wait(ctx, sentinel); err != nil {
		t.Fatal(err)
	}
	if m.Calls("eve") != 0 || w.Stats().Jobs[reliable.Cancelled] != 1 {
		t.Fatalf("calls %d, stats %+v", m.Calls("eve"), w.Stats())
	}
}

func TestWaitWatchesUntilDone(t *testing.T) {
	bus := newBus(t, "a")
	c := newClient(t, bus)
	entered, release := make(chan struct{}), make(chan struct{})
	m, inv := newMailer(t, "a")
	m.gate = func(ctx context.Context, _ string) error {
		close(entered)
		<-release
		return nil
	}
	startWorker(t, bus, inv, reliable.WorkerConfig{ServerType: "mail"})
	ctx := testCtx(t)
	jid, err := c.Enqueue(ctx, route, &Mail{To: "fay"})
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		j   reliable.Job
		err error
	}
	done := make(chan result, 1)
	go func() {
		j, err := c.Wait(ctx, jid)
		done <- result{j, err}
	}()
	<-entered
	j, err := c.Get(ctx, jid)
	if err != nil || j.State != reliable.Running {
		t.Fatalf("while running: %+v, %v", j, err)
	}
	select {
	case r := <-done:
		t.Fatalf("Wait returned while the job runs: %+v", r)
	default:
	}
	close(release)
	r := <-done
	if r.err != nil || r.j.State != reliable.Succeeded {
		t.Fatalf("Wait = %+v, %v", r.j, r.err)
	}
}

func TestList(t *testing.T) {
	bus := newBus(t, "a")
	c := newClient(t, bus)
	ctx := testCtx(t)
	jids := enqueueMails(t, c, 5)
	other, err := c.Enqueue(ctx, "chat.room.post", "hello")
	if err != nil {
		t.Fatal(err)
	}
	_, inv := newMailer(t, "a")
	startWorker(t, bus, inv, reliable.WorkerConfig{ServerType: "mail"})
	waitAll(t, bus, jids, 20*time.Second)

	page, err := c.List(ctx, reliable.Filter{States: []reliable.State{reliable.Succeeded}})
	if err != nil || len(page.Jobs) != 5 || page.Next != "" {
		t.Fatalf("succeeded: %d jobs, next %q, %v", len(page.Jobs), page.Next, err)
	}
	page, err = c.List(ctx, reliable.Filter{States: []reliable.State{reliable.Queued}})
	if err != nil || len(page.Jobs) != 1 || page.Jobs[0].JID != other {
		t.Fatalf("queued: %+v, %v", page, err)
	}
	page, err = c.List(ctx, reliable.Filter{Route: "chat."})
	if err != nil || len(page.Jobs) != 1 || page.Jobs[0].Route != "chat.room.post" {
		t.Fatalf("by route prefix: %+v, %v", page, err)
	}
	// Pages of 2, in creation order.
	var all []string
	f := reliable.Filter{Route: route, Limit: 2}
	for {
		page, err := c.List(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range page.Jobs {
			all = append(all, j.JID)
		}
		if page.Next == "" {
			break
		}
		f.Cursor = page.Next
	}
	if fmt.Sprint(all) != fmt.Sprint(jids) {
		t.Fatalf("pages %v, want %v", all, jids)
	}
	first, _ := c.Get(ctx, jids[2])
	page, err = c.List(ctx, reliable.Filter{Route: route, Since: first.Created})
	if err != nil || len(page.Jobs) != 3 {
		t.Fatalf("since: %d jobs, %v", len(page.Jobs), err)
	}
	page, err = c.List(ctx, reliable.Filter{Route: route, Until: first.Created})
	if err != nil || len(page.Jobs) != 2 {
		t.Fatalf("until: %d jobs, %v", len(page.Jobs), err)
	}
}

func TestTwoWorkersShareTheWork(t *testing.T) {
	busA := newBus(t, "a")
	busB := joinBus(t, busA.Server, "b")
	c := newClient(t, busA)
	const n = 200
	jids := enqueueMails(t, c, n)
	// Every call waits until both workers have started one: so both must
	// have taken jobs from the shared consumer.
	var both sync.WaitGroup
	both.Add(2)
	mailers := map[string]*Mailer{}
	for _, bus := range []*stream.Bus{busA, busB} {
		m, inv := newMailer(t, bus.ServerID())
		var once sync.Once
		m.gate = func(ctx context.Context, _ string) error {
			once.Do(both.Done)
			both.Wait()
			return nil
		}
		mailers[bus.ServerID()] = m
		startWorker(t, bus, inv, reliable.WorkerConfig{ServerType: "mail", Concurrency: 4})
	}
	jobs := waitAll(t, busA, jids, 30*time.Second)
	by := map[string]int{}
	for i, jid := range jids {
		j := jobs[jid]
		if j.State != reliable.Succeeded || len(j.Attempts) != 1 {
			t.Fatalf("job %+v", j)
		}
		by[j.Attempts[0].Server]++
		to := fmt.Sprint("u", i)
		if calls := mailers["a"].Calls(to) + mailers["b"].Calls(to); calls != 1 {
			t.Fatalf("%s ran %d times", jid, calls)
		}
	}
	if by["a"] == 0 || by["b"] == 0 || by["a"]+by["b"] != n {
		t.Fatalf("jobs by server: %v", by)
	}
	t.Logf("jobs by server: %v", by)
}

func TestStopDrainsRunningJobs(t *testing.T) {
	bus := newBus(t, "a")
	c := newClient(t, bus)
	m, inv := newMailer(t, "a")
	var entered sync.WaitGroup
	entered.Add(3)
	release := make(chan struct{})
	m.gate = func(ctx context.Context, _ string) error {
		entered.Done()
		<-release
		return nil
	}
	w, err := reliable.NewWorker(testCtx(t), bus, inv, reliable.WorkerConfig{ServerType: "mail", Concurrency: 4, Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	jids := enqueueMails(t, c, 3)
	entered.Wait()
	if st := w.Stats(); st.Running != 3 || st.AckPending != 3 || st.QueueSize != 0 || st.MaxAckPending != 1024 {
		t.Fatalf("stats while running: %+v", st)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- w.Stop(ctx) }()
	close(release)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	// Stop returned after the jobs were recorded.
	for _, jid := range jids {
		if j, err := c.Get(ctx, jid); err != nil || j.State != reliable.Succeeded {
			t.Fatalf("after Stop: %+v, %v", j, err)
		}
	}
	if st := w.Stats(); st.Jobs[reliable.Succeeded] != 3 || st.Running != 0 {
		t.Fatalf("stats %+v", st)
	}
	// A stopped worker takes nothing more.
	jid, err := c.Enqueue(ctx, route, &Mail{To: "late"})
	if err != nil {
		t.Fatal(err)
	}
	if j, _ := c.Get(ctx, jid); j.State != reliable.Queued {
		t.Fatalf("late job %+v", j)
	}
}

// A worker whose Stop gives up waiting cancels its running attempt: the
// attempt is the worker's failure, not the job's. It is recorded as
// skipped, and a job with a single attempt still runs, on another worker.
func TestStopTimeoutInterruptsJobs(t *testing.T) {
	bus := newBus(t, "a")
	c := newClient(t, bus)
	entered := make(chan struct{})
	inv := reliable.InvokerFunc(func(ctx context.Context, _ string, _ []byte) ([]byte, error) {
		close(entered)
		<-ctx.Done()
		return nil, ctx.Err()
	})
	w, err := reliable.NewWorker(testCtx(t), bus, inv, reliable.WorkerConfig{ServerType: "mail", Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	jid, err := c.Enqueue(ctx, route, nil, reliable.WithMaxAttempts(1))
	if err != nil {
		t.Fatal(err)
	}
	<-entered
	sctx, cancel := context.WithCancel(ctx)
	cancel() // no patience at all
	if err := w.Stop(sctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Stop = %v", err)
	}
	// Another server of the type takes the job and runs its one attempt.
	startWorker(t, joinBus(t, bus.Server, "b"), reliable.InvokerFunc(func(context.Context, string, []byte) ([]byte, error) {
		return []byte(`"ok"`), nil
	}), reliable.WorkerConfig{ServerType: "mail"})
	j, err := c.Wait(ctx, jid)
	if err != nil {
		t.Fatal(err)
	}
	if j.State != reliable.Succeeded || len(j.Attempts) != 2 || j.Tries() != 1 {
		t.Fatalf("job %+v", j)
	}
	if a := j.Attempts[0]; !a.Skipped || a.Server != "a" || a.Error == nil || a.Error.Code != reliable.CodeUnavailable {
		t.Fatalf("the interrupted attempt: %+v", a)
	}
	if a := j.Attempts[1]; a.Skipped || a.Server != "b" || a.Error != nil {
		t.Fatalf("the attempt that ran: %+v", a)
	}
}

// An Invoker that says its server cannot run jobs now (ErrUnavailable, as
// an app that is not started or is draining does) costs the job nothing:
// a job with one attempt is not dead, it runs once the server can.
func TestUnavailableAttemptsDoNotCount(t *testing.T) {
	bus := newBus(t, "a")
	c := newClient(t, bus)
	var calls atomic.Int32
	inv := reliable.InvokerFunc(func(context.Context, string, []byte) ([]byte, error) {
		if calls.Add(1) == 1 {
			return nil, fmt.Errorf("app not started: %w", reliable.ErrUnavailable)
		}
		return []byte(`"ok"`), nil
	})
	startWorker(t, bus, inv, reliable.WorkerConfig{ServerType: "mail"})
	ctx := testCtx(t)
	jid, err := c.Enqueue(ctx, route, nil, reliable.WithMaxAttempts(1))
	if err != nil {
		t.Fatal(err)
	}
	j, err := c.Wait(ctx, jid)
	if err != nil {
		t.Fatal(err)
	}
	if j.State != reliable.Succeeded || len(j.Attempts) != 2 || j.Tries() != 1 || j.LastError != nil {
		t.Fatalf("job %+v", j)
	}
	if a := j.Attempts[0]; !a.Skipped || a.Error == nil || !strings.Contains(a.Error.Message, "app not started") {
		t.Fatalf("the skipped attempt: %+v", a)
	}
}

func TestKilledWorkerJobIsRedelivered(t *testing.T) {
	busA := newBus(t, "a")
	busB := joinBus(t, busA.Server, "b")
	c := newClient(t, busA)
	ctx := testCtx(t)

	mb, invB := newMailer(t, "b")
	entered, release := make(chan struct{}), make(chan struct{})
	mb.gate = func(ctx context.Context, _ string) error {
		close(entered)
		<-release
		return nil
	}
	startWorker(t, busB, invB, reliable.WorkerConfig{ServerType: "mail", AckWait: time.Second})
	t.Cleanup(func() { close(release) }) // runs before B's worker is stopped
	jid, err := c.Enqueue(ctx, route, &Mail{To: "gus"})
	if err != nil {
		t.Fatal(err)
	}
	<-entered
	ma, invA := newMailer(t, "a")
	startWorker(t, busA, invA, reliable.WorkerConfig{ServerType: "mail", AckWait: time.Second})
	busB.Abort() // server b dies mid-job

	start := time.Now()
	j, err := c.Wait(ctx, jid)
	if err != nil {
		t.Fatal(err)
	}
	if j.State != reliable.Succeeded || len(j.Attempts) != 2 || ma.Calls("gus") != 1 {
		t.Fatalf("job %+v, calls on a %d", j, ma.Calls("gus"))
	}
	if a := j.Attempts[0]; a.Server != "b" || a.Error == nil || a.Error.Code != reliable.CodeAbandoned {
		t.Fatalf("first attempt %+v", a)
	}
	if a := j.Attempts[1]; a.Server != "a" || a.Error != nil {
		t.Fatalf("second attempt %+v", a)
	}
	t.Logf("taken over after %v", time.Since(start))
}

func TestThousandJobs(t *testing.T) {
	bus := newBus(t, "a")
	c := newClient(t, bus)
	m, inv := newMailer(t, "a")
	w := startWorker(t, bus, inv, reliable.WorkerConfig{ServerType: "mail", Concurrency: 64})
	ctx := testCtx(t)
	const n = 1000
	jids := make([]string, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for g := range 8 {
		wg.Go(func() {
			for i := g; i < n; i += 8 {
				jid, err := c.Enqueue(ctx, route, &Mail{To: fmt.Sprint("u", i)})
				if err != nil {
					errs <- err
					return
				}
				jids[i] = jid
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	jobs := waitAll(t, bus, jids, 60*time.Second)
	for i, jid := range jids {
		if jobs[jid].State != reliable.Succeeded || m.Calls(fmt.Sprint("u", i)) != 1 {
			t.Fatalf("job %+v ran %d times", jobs[jid], m.Calls(fmt.Sprint("u", i)))
		}
	}
	if st := w.Stats(); st.Jobs[reliable.Succeeded] != n {
		t.Fatalf("stats %+v", st)
	}
}

func TestTargetedJob(t *testing.T) {
	busA := newBus(t, "a")
	busB := joinBus(t, busA.Server, "b")
	c := newClient(t, busA)
	_, invA := newMailer(t, "a")
	_, invB := newMailer(t, "b")
	startWorker(t, busA, invA, reliable.WorkerConfig{ServerType: "mail", Concurrency: 1})
	startWorker(t, busB, invB, reliable.WorkerConfig{ServerType: "mail", Concurrency: 1})
	jids := enqueueMails(t, c, 10, reliable.WithTarget("b"))
	for jid, j := range waitAll(t, busA, jids, 20*time.Second) {
		var r Receipt
		if err := j.Decode(&r); err != nil || j.Target != "b" || r.By != "b" {
			t.Fatalf("%s: %+v %+v %v", jid, j, r, err)
		}
	}
}

func TestLongJobKeepsItsLease(t *testing.T) {
	// A job that runs longer than AckWait is not redelivered: the worker
	// signals progress while it runs.
	bus := newBus(t, "a")
	c := newClient(t, bus)
	var calls atomic.Int32
	inv := reliable.InvokerFunc(func(ctx context.Context, _ string, _ []byte) ([]byte, error) {
		calls.Add(1)
		<-time.After(1500 * time.Millisecond) // the work itself
		return nil, nil
	})
	startWorker(t, bus, inv, reliable.WorkerConfig{ServerType: "mail", ServerID: "w1", AckWait: time.Second})
	startWorker(t, bus, inv, reliable.WorkerConfig{ServerType: "mail", ServerID: "w2", AckWait: time.Second})
	ctx := testCtx(t)
	jid, err := c.Enqueue(ctx, route, nil)
	if err != nil {
		t.Fatal(err)
	}
	j, err := c.Wait(ctx, jid)
	if err != nil || j.State != reliable.Succeeded || len(j.Attempts) != 1 || calls.Load() != 1 {
		t.Fatalf("job %+v, %v, %d calls", j, err, calls.Load())
	}
}

// List sees every job while a worker rewrites their records (queued,
// running, succeeded): a record rewritten during a scan loses its old
// revision and gets a new one at the stream's end, which the scan reads.
func TestListWhileJobsChange(t *testing.T) {
	bus := newBus(t, "a")
	c := newClient(t, bus)
	ctx := testCtx(t)
	const n = 300
	jids := enqueueMails(t, c, n)
	_, inv := newMailer(t, "a")
	startWorker(t, bus, inv, reliable.WorkerConfig{ServerType: "mail", Concurrency: 4})
	for round := 0; ; round++ {
		page, err := c.List(ctx, reliable.Filter{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]reliable.State{}
		for _, j := range page.Jobs {
			seen[j.JID] = j.State
		}
		done := 0
		for _, jid := range jids {
			s, ok := seen[jid]
			if !ok {
				t.Fatalf("round %d: List left out %s (%d jobs listed)", round, jid, len(page.Jobs))
			}
			if s == reliable.Succeeded {
				done++
			}
		}
		if done == n {
			return
		}
	}
}

// TestWritesPerJob counts the JetStream writes of jobs that succeed at the
// first attempt: one message in JOBS (Enqueue) and two records (the claim,
// created running, and the result), whatever the number of jobs.
func TestWritesPerJob(t *testing.T) {
	bus := newBus(t, "a")
	c := newClient(t, bus)
	_, inv := newMailer(t, "a")
	startWorker(t, bus, inv, reliable.WorkerConfig{ServerType: "mail", Concurrency: 8})
	ctx := testCtx(t)
	const n = 50
	jids := enqueueMails(t, c, n)
	waitAll(t, bus, jids, 20*time.Second)
	last := func(name string) uint64 {
		t.Helper()
		s, err := bus.JetStream().Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.LastSeq
	}
	if got := last(bus.Name(reliable.Stream)); got != n {
		t.Errorf("JOBS: %d writes for %d jobs, want %d", got, n, n)
	}
	if got := last("KV_" + bus.Name(reliable.Bucket)); got != 2*n {
		t.Errorf("bucket: %d writes for %d jobs, want %d", got, n, 2*n)
	}
}

// Finished jobs leave JOBS: each sweep purges the worker's consumer's
// subjects below its ack floor. A running job holds the floor and keeps
// its message; a finished jid enqueued again once its message is gone
// does not run again.
func TestFinishedJobsLeaveTheStream(t *testing.T) {
	bus := newBus(t, "a")
	c := newClient(t, bus)
	m, inv := newMailer(t, "a")
	release := make(chan struct{})
	var releaseOnce sync.Once
	free := func() { releaseOnce.Do(func() { close(release) }) }
	entered := make(chan struct{}, 1)
	m.gate = func(ctx context.Context, to string) error {
		if to != "slow" {
			return nil
		}
		select {
		case entered <- struct{}{}:
		default:
		}
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	startWorker(t, bus, inv, reliable.WorkerConfig{ServerType: "mail", SweepInterval: 50 * time.Millisecond})
	t.Cleanup(free) // runs before the worker's Stop, which waits for the job
	ctx := testCtx(t)
	jobs := reliable.Stream
	jids := enqueueMails(t, c, 5)
	waitAll(t, bus, jids, 20*time.Second)
	first, err := c.Get(ctx, jids[0])
	if err != nil {
		t.Fatal(err)
	}
	slow, err := c.Enqueue(ctx, route, &Mail{To: "slow"})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-entered: // claimed: its record says running
	case <-ctx.Done():
		t.Fatal("the slow job did not start")
	}
	awaitStreamMsgs(t, bus, jobs, 1, 10*time.Second)
	s, err := bus.JetStream().Stream(ctx, bus.Name(jobs))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetLastMsgForSubject(ctx, bus.JobSubject("mail", slow)); err != nil {
		t.Fatalf("the running job's message: %v", err)
	}
	if j, err := c.Get(ctx, slow); err != nil || j.State != reliable.Running {
		t.Fatalf("Get(slow) = %+v, %v; want running", j, err)
	}

	free()
	if j, err := c.Wait(ctx, slow); err != nil || j.State != reliable.Succeeded {
		t.Fatalf("Wait(slow) = %+v, %v", j, err)
	}
	awaitStreamMsgs(t, bus, jobs, 0, 10*time.Second)

	// Enqueued again with its message gone: JOBS takes it, the worker
	// acks it unrun, the record stays as it was.
	enqueueAgain(t, c, m, jids[0], "u0", first.Revision)
	awaitStreamMsgs(t, bus, jobs, 0, 10*time.Second)
}

// awaitStreamMsgs polls the stream's message count until it is want
// (JetStream has no event for it).
func awaitStreamMsgs(t testing.TB, bus *stream.Bus, name string, want uint64, timeout time.Duration) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(timeout)
	for {
		got := streamMsgs(t, bus, name)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s holds %d messages after %v, want %d", name, got, timeout, want)
		}
		<-tick.C
	}
}

// enqueueMails enqueues n mail jobs, to u0 … u<n-1>, with opts, and
// returns their jids in order.
func enqueueMails(t *testing.T, c *reliable.Client, n int, opts ...reliable.Option) []string {
	t.Helper()
	ctx := testCtx(t)
	jids := make([]string, 0, n)
	for i := range n {
		jid, err := c.Enqueue(ctx, route, &Mail{To: fmt.Sprint("u", i)}, opts...)
		if err != nil {
			t.Fatal(err)
		}
		jids = append(jids, jid)
	}
	return jids
}

// TestReadersRaceThePurge holds the reply to a reader's first read of a
// job (Get's record, Wait's watch) while the job is claimed, finished and
// purged from JOBS. The reader then finds no message either: it must read
// the record again (a worker writes it before the message goes), not
// report the job missing.
func TestReadersRaceThePurge(t *testing.T) {
	bus := connect(t, stream.Config{ServerID: "a", Logger: discard,
		Embedded: stream.Embedded{StoreDir: t.TempDir(), Listen: "127.0.0.1:0"}})
	c := newClient(t, bus)
	u, err := url.Parse(bus.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	proxy := testproxy.Start(t, u.Host)
	reader := newClient(t, connect(t, stream.Config{ServerID: "reader", Logger: discard, URL: "nats://" + proxy.Addr()}))
	_, inv := newMailer(t, "a")
	ctx := testCtx(t)
	for _, tc := range []struct {
		name  string
		read  func(jid string) (reliable.Job, error)
		reply string // in the reply to the first read
	}{
		{"Get", func(jid string) (reliable.Job, error) { return reader.Get(ctx, jid) }, "404"},
		{"Wait", func(jid string) (reliable.Job, error) { return reader.Wait(ctx, jid) }, "consumer_create_response"},
	} {
		jid, err := c.Enqueue(ctx, route, &Mail{To: tc.name})
		if err != nil {
			t.Fatal(err)
		}
		held, release := proxy.HoldNext(tc.reply)
		type result struct {
			j   reliable.Job
			err error
		}
		done := make(chan result, 1)
		go func() {
			j, err := tc.read(jid)
			done <- result{j, err}
		}()
		select {
		case <-held: // served: no record yet, and the reader does not know
		case <-ctx.Done():
			t.Fatal("the reader's first read got no reply")
		}
		// No worker runs until the reader's first read is served.
		w := startWorker(t, bus, inv, reliable.WorkerConfig{ServerType: "mail", SweepInterval: 20 * time.Millisecond})
		if j, err := c.Wait(ctx, jid); err != nil || j.State != reliable.Succeeded {
			t.Fatalf("%s: Wait = %+v, %v", tc.name, j, err)
		}
		awaitStreamMsgs(t, bus, reliable.Stream, 0, 10*time.Second)
		if err := w.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		release()
		if r := <-done; r.err != nil || r.j.State != reliable.Succeeded {
			t.Errorf("%s = %s, %v; want succeeded", tc.name, r.j.State, r.err)
		}
	}
}
