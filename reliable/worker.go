package reliable

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nopal-dev/nopal/propagate"
	"github.com/nopal-dev/nopal/stream"
)

// Invoker runs a job: the application implements it with its remotes
// registry (backend.Registry.Handle). Errors may be *codec.Error (their
// code, message and metadata are recorded) or plain errors (PIT-500); wrap
// one with Permanent to fail the job without further attempts.
//
// Jobs run at least once: an Invoker's remotes must be idempotent.
type Invoker interface {
	Invoke(ctx context.Context, route string, arg []byte) ([]byte, error)
}

// InvokerFunc adapts a function to Invoker.
type InvokerFunc func(ctx context.Context, route string, arg []byte) ([]byte, error)

// Invoke calls f.
func (f InvokerFunc) Invoke(ctx context.Context, route string, arg []byte) ([]byte, error) {
	return f(ctx, route, arg)
}

// WorkerConfig configures a Worker.
type WorkerConfig struct {
	// ServerType whose jobs the worker runs (required): the first token of
	// their routes.
	ServerType string
	// ServerID of this server (default: the bus's ServerID); attempts are
	// recorded under it and WithTarget jobs name it.
	ServerID string
	// Concurrency is the most jobs the worker runs at once (default 16).
	Concurrency int
	// AckWait is how long a job may go without an acknowledgement before
	// JetStream gives it to another worker (default 30s). While a job runs
	// the worker signals progress every AckWait/3, so AckWait bounds how
	// long a killed worker's job waits, not how long a job may run. It is
	// a setting of the consumer shared by all servers of the type: the last
	// worker started sets it.
	AckWait time.Duration
	// MaxAckPending is the most jobs the type's consumer has delivered and
	// not yet acknowledged (default 1024). JetStream stops delivering,
	// silently, when it is reached; jobs waiting for a delay or a back-off
	// count towards it. Watch WorkerStats.AckPending against it.
	MaxAckPending int
	// SweepInterval is how often the worker looks for queued jobs whose
	// message is missing from JOBS (a Retry killed between its record
	// update and its publish, a purge from outside) and re-publishes them,
	// then removes from JOBS the messages of the jobs its consumers have
	// finished (default 1 minute; negative disables both: JOBS then keeps
	// every job ever enqueued). The first sweep at Start reads the whole
	// bucket, later ones only records updated in the last few intervals.
	SweepInterval time.Duration
	// Logger (default slog.Default()).
	Logger *slog.Logger
}

// WorkerStats are a worker's counters and its consumer's gauges, for the
// worker_* metrics.
type WorkerStats struct {
	// Jobs counts jobs this worker finished, by outcome: succeeded,
	// failed, dead, and cancelled (acked without running).
	Jobs map[State]uint64
	// Retries counts failed attempts that were scheduled to run again.
	Retries uint64
	// Running is the number of jobs running now.
	Running int
	// QueueSize is the number of jobs of the type (and of jobs targeted at
	// this server) not yet delivered to any worker (consumers' NumPending).
	QueueSize uint64
	// AckPending is the number of jobs delivered and not yet acknowledged:
	// running, or waiting for a delay or a back-off. When it reaches
	// MaxAckPending the consumer stalls.
	AckPending    int
	MaxAckPending int
	// Redelivered is the consumers' NumRedelivered.
	Redelivered int
}

// Worker runs the jobs of one server type. All servers of the type share one
// durable pull consumer ("jobs_<svtype>") on JOBS, so each job goes to one
// of them at a time; each server also has a consumer for jobs targeted at it
// ("jobsrv_<serverID>").
type Worker struct {
	s        *store
	inv      Invoker
	cfg      WorkerConfig
	log      *slog.Logger
	shared   jetstream.Consumer
	targeted jetstream.Consumer
	sweepAge time.Duration // a record must be this old to be swept
	pollWait time.Duration

	sem    chan struct{}
	leases leases // deliveries being handled, for progressLoop

	mu       sync.Mutex
	started  bool
	stopped  bool
	inflight map[uint64]struct{} // stream sequences running here
	stopCh   chan struct{}
	loops    sync.WaitGroup
	jobs     sync.WaitGroup
	hardCtx  context.Context // ends when Stop gives up waiting
	hardStop context.CancelFunc

	succeeded, failed, dead, cancelled, retries atomic.Uint64
	running                                     atomic.Int64
}

// NewWorker provisions the bucket, the streams and the worker's consumers,
// and returns a Worker to Start.
//
// The consumer has no MaxDeliver (and no BackOff): attempts are counted in
// the job's KV record against the job's own MaxAttempts, which a consumer
// setting could not express, and deliveries that only wait for a delay or
// take over a killed worker's job are not attempts of their own. The worker
// that sees the last attempt fail records the job dead, copies it to
// JOBS_DLQ and acks it, so no delivery is pending past its last attempt
// and no advisory is needed.
func NewWorker(ctx context.Context, bus *stream.Bus, inv Invoker, cfg WorkerConfig) (*Worker, error) {
	if inv == nil {
		return nil, fmt.Errorf("%w: nil Invoker", ErrConfig)
	}
	if cfg.ServerID == "" && bus != nil {
		cfg.ServerID = bus.ServerID()
	}
	switch {
	case !validToken(cfg.ServerType):
		return nil, fmt.Errorf("%w: ServerType %q", ErrConfig, cfg.ServerType)
	case !validToken(cfg.ServerID):
		return nil, fmt.Errorf("%w: ServerID %q", ErrConfig, cfg.ServerID)
	case cfg.Concurrency < 0 || cfg.AckWait < 0 || cfg.MaxAckPending < 0:
		return nil, fmt.Errorf("%w: negative Concurrency, AckWait or MaxAckPending", ErrConfig)
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 16
	}
	if cfg.AckWait == 0 {
		cfg.AckWait = 30 * time.Second
	}
	if cfg.AckWait < 300*time.Millisecond {
		return nil, fmt.Errorf("%w: AckWait %v (at least 300ms)", ErrConfig, cfg.AckWait)
	}
	if cfg.MaxAckPending == 0 {
		cfg.MaxAckPending = 1024
	}
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s, err := provision(ctx, bus, clientOptions{log: cfg.Logger})
	if err != nil {
		return nil, err
	}
	w := &Worker{
		s: s, inv: inv, cfg: cfg,
		log:      cfg.Logger.With("worker", cfg.ServerType, "server", cfg.ServerID),
		sweepAge: 30 * time.Second,
		pollWait: 500 * time.Millisecond,
		sem:      make(chan struct{}, cfg.Concurrency),
		inflight: make(map[uint64]struct{}),
		stopCh:   make(chan struct{}),
		leases:   leases{m: make(map[*delivery]struct{})},
	}
	w.hardCtx, w.hardStop = context.WithCancel(context.Background())
	if err := w.provisionConsumers(ctx); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *Worker) provisionConsumers(ctx context.Context) error {
	svtype, id := w.cfg.ServerType, w.cfg.ServerID
	shared, err := w.s.jobs.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       "jobs_" + svtype,
		Description:   "nopal: jobs of server type " + svtype,
		FilterSubject: w.s.bus.JobFilter(svtype),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       w.cfg.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: w.cfg.MaxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("reliable: consumer of %s: %w", svtype, err)
	}
	targeted, err := w.s.jobs.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       "jobsrv_" + id,
		Description:   "nopal: jobs targeted at server " + id,
		FilterSubject: w.s.bus.JobTargetFilter(svtype, id),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       w.cfg.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: w.cfg.MaxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		// A server that is gone for good leaves its consumer behind for a
		// day; its jobs stay queued until cancelled. One that comes back
		// later gets a new consumer, which delivers its finished jobs'
		// messages too (JOBS keeps them): each is acked unrun, as its
		// record says.
		InactiveThreshold: 24 * time.Hour,
	})
	if err != nil {
		return fmt.Errorf("reliable: consumer of server %s: %w", id, err)
	}
	w.mu.Lock()
	w.shared, w.targeted = shared, targeted
	w.mu.Unlock()
	return nil
}

// Start starts fetching and running jobs, and the sweeper. The worker runs
// until Stop; ctx only bounds the start.
func (w *Worker) Start(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.started || w.stopped {
		return fmt.Errorf("%w: worker already started or stopped", ErrConfig)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	w.started = true
	w.loops.Add(2)
	go w.fetchLoop(false)
	go w.fetchLoop(true)
	// Not counted in loops: it runs until Stop returns (hardCtx), for the
	// jobs that Stop waits for.
	go w.progressLoop()
	if w.cfg.SweepInterval > 0 {
		w.loops.Add(1)
		go w.sweepLoop()
	}
	return nil
}

// Stop drains the worker: it stops fetching (messages that arrive meanwhile
// are handed back at once), waits for the running jobs to finish, and
// returns. If ctx ends first, the running jobs' contexts are cancelled (their
// attempts are recorded as skipped, not counted against the jobs, which go
// back to the queue) and Stop returns ctx's error.
func (w *Worker) Stop(ctx context.Context) error {
	w.mu.Lock()
	if !w.started || w.stopped {
		w.stopped = true
		w.mu.Unlock()
		w.hardStop()
		return nil
	}
	w.stopped = true
	close(w.stopCh)
	w.mu.Unlock()
	done := make(chan struct{})
	go func() {
		w.loops.Wait() // no job starts after this
		w.jobs.Wait()
		close(done)
	}()
	select {
	case <-done:
		w.hardStop()
		return nil
	case <-ctx.Done():
		w.hardStop()
		return fmt.Errorf("reliable: stop: %w", ctx.Err())
	}
}

// Stats returns the worker's counters and its consumers' gauges (read from
// the server, bounded by 2 s; zero gauges when it cannot be reached).
func (w *Worker) Stats() WorkerStats {
	st := WorkerStats{
		Jobs: map[State]uint64{
			Succeeded: w.succeeded.Load(), Failed: w.failed.Load(),
			Dead: w.dead.Load(), Cancelled: w.cancelled.Load(),
		},
		Retries:       w.retries.Load(),
		Running:       int(w.running.Load()),
		MaxAckPending: w.cfg.MaxAckPending,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	w.mu.Lock()
	cons := []jetstream.Consumer{w.shared, w.targeted}
	w.mu.Unlock()
	for _, c := range cons {
		info, err := c.Info(ctx)
		if err != nil {
			continue
		}
		st.QueueSize += info.NumPending
		st.AckPending += info.NumAckPending
		st.Redelivered += info.NumRedelivered
	}
	return st
}

// dueSoon is the longest a delivered job waits for its NotBefore in the
// worker, holding its slot; a job due later goes back to JetStream.
const dueSoon = 5 * time.Millisecond

// pause waits d, and reports false if Stop was called meanwhile.
func (w *Worker) pause(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-w.stopCh:
		return false
	}
}

func (w *Worker) stopping() bool {
	select {
	case <-w.stopCh:
		return true
	default:
		return false
	}
}

// claim decides what this delivery does. It returns the job's record,
// claimed as running by this worker, when the job is to run now; otherwise
// it has acked or nak'd msg itself.
//
// A job no worker has taken has no record: the message carries the job as
// enqueued, and the claim creates the record (a KV Create, which fails if
// the jid has a record: then the record decides). On a first delivery the
// claim tries that Create without reading first.
func (w *Worker) claim(msg jetstream.Msg, md *jetstream.MsgMetadata, jid string) (*record, uint64, bool) {
	seq := md.Sequence.Stream
	enq := fromMessage(msg)
	if enq != nil && enq.JID != jid {
		enq = nil
	}
	fast := enq != nil && enq.Gen == 0 && md.NumDelivered == 1
	for {
		var r *record
		var rev uint64
		if fast {
			fast = false
			c := *enq
			r = &c
		} else {
			var err error
			ctx, cancel := opCtx()
			r, rev, err = w.s.get(ctx, jid)
			cancel()
			switch {
			case errors.Is(err, ErrNotFound) && enq != nil:
				c := *enq
				r, rev = &c, 0
			case errors.Is(err, ErrNotFound):
				w.orphan(msg, jid)
				return nil, 0, false
			case err != nil:
				w.log.Warn("reliable: read job", "jid", jid, "err", err)
				_ = msg.NakWithDelay(time.Second)
				return nil, 0, false
			}
		}
		now := time.Now()
		switch r.State {
		case Succeeded, Cancelled:
			// Done, or cancelled: never run twice, never run at all.
			if r.State == Cancelled {
				w.cancelled.Add(1)
			}
			_ = msg.Ack()
			return nil, 0, false
		case Failed, Dead:
			// Recorded terminal by a worker that could not finish moving
			// it: make sure the dead letter exists, then remove it.
			ctx, cancel := opCtx()
			err := w.s.publishDLQ(ctx, r)
			cancel()
			if err != nil {
				_ = msg.NakWithDelay(time.Second)
				return nil, 0, false
			}
			_ = msg.Ack()
			return nil, 0, false
		}
		if r.Seq != 0 && r.Seq != seq {
			// A second message of a job another message owns (its jid
			// enqueued again for another target or type).
			_ = msg.Ack()
			return nil, 0, false
		}
		if a := r.openAttempt(); a != nil {
			// The worker that ran it stopped acknowledging it: take over.
			a.Ended = now
			a.Error = &ErrorInfo{Code: CodeAbandoned, Message: fmt.Sprintf("worker %s stopped acknowledging the job; it was redelivered", a.Server)}
			r.LastError = a.Error
		}
		var final State
		switch {
		case !r.Deadline.IsZero() && !now.Before(r.Deadline):
			final = Failed
			r.LastError = &ErrorInfo{Code: CodeDeadline, Message: "job deadline passed before it could run"}
		case r.Tries() >= r.MaxAttempts:
			final = Dead
		}
		if final != "" {
			r.State, r.Seq, r.Updated = final, seq, now
			if _, err := w.cas(jid, r, rev); err != nil {
				if errors.Is(err, errLost) {
					continue
				}
				_ = msg.NakWithDelay(time.Second)
				return nil, 0, false
			}
			w.finish(msg, r)
			return nil, 0, false
		}
		if wait := r.NotBefore.Sub(now); wait > 0 {
			if wait > dueSoon || !w.pause(wait) {
				// Not due: nothing to write, the message waits.
				_ = msg.NakWithDelay(wait)
				return nil, 0, false
			}
			// Due in a moment: it waited here rather than for a
			// redelivery, and does not start before NotBefore.
			now = time.Now()
		}
		r.State, r.Seq, r.Updated, r.NotBefore = Running, seq, now, time.Time{}
		r.Attempts = append(r.Attempts, Attempt{N: len(r.Attempts) + 1, Server: w.cfg.ServerID, Started: now})
		nrev, err := w.cas(jid, r, rev)
		if errors.Is(err, errLost) {
			continue // changed meanwhile (cancelled, claimed): read again
		}
		if err != nil {
			w.log.Warn("reliable: claim job", "jid", jid, "err", err)
			_ = msg.NakWithDelay(time.Second)
			return nil, 0, false
		}
		return r, nrev, true
	}
}

// orphan handles a message that carries no job and whose jid has no
// record: it was not published by Enqueue, Retry or a sweep (a message
// published from outside). It is dropped.
func (w *Worker) orphan(msg jetstream.Msg, jid string) {
	w.log.Warn("reliable: dropping a message that carries no job", "jid", jid, "subject", msg.Subject())
	_ = msg.Term()
}

// run invokes a claimed job and records the outcome.
func (w *Worker) run(msg jetstream.Msg, r *record, rev uint64) {
	w.running.Add(1)
	defer w.running.Add(-1)
	ctx := w.hardCtx
	// The enqueuer's propagated values (package propagate), as stored
	// with the job: not those of whoever published this message.
	if b := r.Baggage; b != "" {
		var err error
		if ctx, err = propagate.FromHeader(ctx, b); err != nil {
			w.log.Warn("reliable: propagated values dropped", "jid", r.JID, "err", err)
		}
	}
	if !r.Deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, r.Deadline)
		defer cancel()
	}
	out, err := w.invoke(ctx, r)
	now := time.Now()
	a := &r.Attempts[len(r.Attempts)-1]
	a.Ended, r.Updated = now, now
	var delay time.Duration
	switch {
	case err == nil:
		r.State, r.Result, r.LastError = Succeeded, out, nil
	case w.unavailable(err):
		// The worker's own failure, not the job's: the attempt stays in
		// the history, skipped, and the job goes back to the queue as it
		// was, to run again soon here or on another server of the type.
		a.Skipped = true
		a.Error = errorInfo(err)
		if !IsUnavailable(err) {
			a.Error = &ErrorInfo{Code: CodeUnavailable, Message: "the worker stopped before the attempt finished: " + err.Error()}
		}
		r.State = Queued
		if r.Tries() > 0 {
			r.State = Retrying
		}
		delay = unavailableDelay
	default:
		a.Error = errorInfo(err)
		r.LastError = a.Error
		switch {
		case IsPermanent(err):
			r.State = Failed
		case !r.Deadline.IsZero() && !now.Before(r.Deadline):
			r.State = Failed
		case r.Tries() < r.MaxAttempts:
			r.State = Retrying
			delay = r.backoffFor(r.Tries())
			r.NotBefore = now.Add(delay)
		default:
			r.State = Dead
		}
	}
	if _, err := w.cas(r.JID, r, rev); err != nil {
		// errLost: another worker took the job over (this one went past
		// AckWait without a progress signal getting through); its attempt
		// counts, this result is dropped. Otherwise the store is out of
		// reach: the message is redelivered after AckWait.
		w.log.Warn("reliable: could not record the attempt", "jid", r.JID, "state", r.State, "err", err)
		return
	}
	if a.Skipped {
		_ = msg.NakWithDelay(delay)
		return
	}
	if r.State == Retrying {
		w.retries.Add(1)
		_ = msg.NakWithDelay(delay)
		return
	}
	w.finish(msg, r)
}

// unavailableDelay is how long a job whose attempt was skipped waits before
// it is delivered again: long enough for a draining server's fetch loops to
// stop, so another server of the type takes it.
const unavailableDelay = time.Second

// unavailable reports whether an attempt failed for a reason of the
// worker's own: the Invoker said its server cannot run jobs now, or Stop
// gave up waiting and cancelled the attempt.
func (w *Worker) unavailable(err error) bool {
	return IsUnavailable(err) || w.hardCtx.Err() != nil
}

// finish acks a job recorded terminal, moving failed and dead ones to
// JOBS_DLQ first.
func (w *Worker) finish(msg jetstream.Msg, r *record) {
	switch r.State {
	case Succeeded:
		w.succeeded.Add(1)
	case Failed, Dead:
		ctx, cancel := opCtx()
		err := w.s.publishDLQ(ctx, r)
		cancel()
		if err != nil {
			// Not acked: the next delivery sees the terminal record and
			// publishes the dead letter again.
			w.log.Warn("reliable: could not publish dead letter", "jid", r.JID, "err", err)
			_ = msg.NakWithDelay(time.Second)
			return
		}
		if r.State == Failed {
			w.failed.Add(1)
		} else {
			w.dead.Add(1)
		}
		w.log.Info("reliable: job "+string(r.State), "jid", r.JID, "route", r.Route, "attempts", r.Tries(), "err", r.LastError)
	}
	_ = msg.Ack()
}

func (w *Worker) invoke(ctx context.Context, r *record) (out []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			w.log.Error("reliable: invoker panicked", "jid", r.JID, "route", r.Route, "panic", p)
			err = fmt.Errorf("reliable: invoker panicked: %v", p)
		}
	}()
	return w.inv.Invoke(ctx, r.Route, r.Arg)
}

// errLost: the record changed under a compare-and-set, by someone else.
var errLost = errors.New("reliable: record changed by another writer")

// cas writes r over revision rev. When the write fails, it reads the record
// back: if the stored record is this write (an update that timed out but was
// applied), it succeeded; if it is another, errLost. A store out of reach is
// retried until AckWait has passed.
func (w *Worker) cas(jid string, r *record, rev uint64) (uint64, error) {
	until := time.Now().Add(w.cfg.AckWait)
	delay := 50 * time.Millisecond
	for {
		ctx, cancel := opCtx()
		nrev, err := w.s.put(ctx, jid, r, rev)
		cancel()
		if err == nil {
			return nrev, nil
		}
		ctx, cancel = opCtx()
		cur, crev, gerr := w.s.get(ctx, jid)
		cancel()
		switch {
		case errors.Is(gerr, ErrNotFound) && rev == 0:
			// The Create failed and there is still no record: the
			// store is out of reach, or was re-created empty.
		case errors.Is(gerr, ErrNotFound):
			return 0, errLost
		case gerr == nil && crev != rev:
			if cur.State == r.State && cur.Updated.Equal(r.Updated) && len(cur.Attempts) == len(r.Attempts) {
				return crev, nil
			}
			return 0, errLost
		}
		if time.Now().After(until) {
			return 0, fmt.Errorf("reliable: write %s: %w", jid, err)
		}
		time.Sleep(delay)
		delay = min(2*delay, time.Second)
	}
}

// sweepLoop re-publishes jobs whose message is missing; see
// WorkerConfig.SweepInterval.
func (w *Worker) sweepLoop() {
	defer w.loops.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-w.stopCh:
			cancel()
		case <-ctx.Done():
		}
	}()
	interval := w.cfg.SweepInterval
	var since time.Time // the first sweep reads everything
	purged := map[string]uint64{}
	for {
		start := time.Now()
		if err := w.sweep(ctx, since); err != nil && ctx.Err() == nil {
			w.log.Warn("reliable: sweep", "err", err)
		} else if err == nil {
			since = start.Add(-2*interval - w.sweepAge)
		}
		if err := w.compact(ctx, purged); err != nil && ctx.Err() == nil {
			w.log.Warn("reliable: removing finished jobs' messages", "err", err)
		}
		jitter := time.Duration(float64(interval) * (0.8 + 0.4*rand.Float64()))
		t := time.NewTimer(jitter)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// sweep re-publishes the non-terminal jobs of the worker's type, last
// updated more than sweepAge ago, whose message of their generation is not
// in JOBS (missing, or the one a Retry did not get to replace).
func (w *Worker) sweep(ctx context.Context, since time.Time) error {
	now := time.Now()
	var todo []*record
	err := w.s.scan(ctx, since, false, func(r *record) bool {
		if r.ServerType() == w.cfg.ServerType && !r.State.Terminal() && now.Sub(r.Updated) >= w.sweepAge {
			todo = append(todo, r)
		}
		return true
	})
	if err != nil {
		return err
	}
	for _, r := range todo {
		m, err := w.s.jobs.GetLastMsgForSubject(ctx, w.s.jobSubject(r))
		if err == nil {
			if q, derr := decodeMsg(m.Data); derr == nil && q.JID == r.JID && q.Gen == r.Gen {
				continue // its message is there
			}
		} else if !errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // the store is out of reach
		}
		cur, rev, err := w.s.get(ctx, r.JID)
		if err != nil || rev != r.Revision {
			continue // changed since the scan: not stuck
		}
		if cur.Seq != 0 {
			// Its message was removed from outside (a purge): let the
			// next message claim it.
			cur.Seq, cur.Updated = 0, time.Now()
			nrev, err := w.s.kv.Update(ctx, cur.JID, encode(cur), rev)
			if err != nil {
				continue
			}
			cur.Revision = nrev
		}
		if err := w.s.ensurePublished(ctx, cur); err != nil {
			w.log.Warn("reliable: sweep", "jid", cur.JID, "err", err)
		}
	}
	return nil
}

// compact removes from JOBS the messages of the jobs this worker's
// consumers are done with. A consumer's ack floor is the stream sequence
// up to which it has acknowledged every message of its filter, and a job's
// message is acknowledged only once its record says it is finished
// (succeeded, failed, dead or cancelled) or once the record says it
// belongs to another message: so a purge of the filter's subjects below
// the floor + 1 removes no job that still has to run, and the records keep
// a purged jid from running again if it is enqueued once more. Without
// it, JOBS (a limits stream, whose acks remove nothing) would keep every
// job ever enqueued. A job waiting for a retry is not acknowledged: it
// holds the floor, and the messages after it wait for it to finish.
// purged holds, per filter, the floor of the last purge.
func (w *Worker) compact(ctx context.Context, purged map[string]uint64) error {
	w.mu.Lock()
	cons := []jetstream.Consumer{w.shared, w.targeted}
	w.mu.Unlock()
	filters := []string{w.s.bus.JobFilter(w.cfg.ServerType), w.s.bus.JobTargetFilter(w.cfg.ServerType, w.cfg.ServerID)}
	var errs []error
	for i, c := range cons {
		info, err := c.Info(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("consumer %s: %w", c.CachedInfo().Name, err))
			continue
		}
		floor, filter := info.AckFloor.Stream, filters[i]
		if floor == 0 || floor <= purged[filter] {
			continue
		}
		if err := w.s.jobs.Purge(ctx, jetstream.WithPurgeSubject(filter), jetstream.WithPurgeSequence(floor+1)); err != nil {
			errs = append(errs, fmt.Errorf("purge %s below %d: %w", filter, floor+1, err))
			continue
		}
		purged[filter] = floor
	}
	return errors.Join(errs...)
}
