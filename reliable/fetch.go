package reliable

// The worker's intake: pulling jobs within its free slots, taking each in
// (handle), and keeping the jobs it holds leased (in progress) until each
// is acked, nak'd or terminated. Claiming, running and finishing a job are
// in worker.go.

import (
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nopal-dev/nopal/stream"
)

// fetchLoop pulls jobs. The shared loop reserves the free slots and takes
// what is queued, and what comes in within fillWait, with a pull of that
// many, so under load no job waits in the client; when nothing came it waits
// for the next job with
// a pull of one, holding no slot (an idle worker must not sit on its slots
// while targeted jobs come in). A job that arrives by a pull of one waits
// for a slot, if none is free by then, signalling progress meanwhile. The
// targeted loop (rare jobs) always pulls one at a time that way.
func (w *Worker) fetchLoop(targeted bool) {
	defer w.loops.Done()
	delay := time.Duration(0)
	for {
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-w.stopCh:
				t.Stop()
				return
			case <-t.C:
			}
		}
		if w.stopping() {
			return
		}
		w.mu.Lock()
		cons := w.shared
		if targeted {
			cons = w.targeted
		}
		w.mu.Unlock()
		var err error
		if targeted {
			_, err = w.pull(cons, 1, w.pollWait, false)
		} else {
			n := w.reserve()
			if n == 0 {
				return // stopping
			}
			var got int
			got, err = w.pull(cons, n, fillWait, true)
			if got == 0 && err == nil {
				_, err = w.pull(cons, 1, w.pollWait, false)
			}
		}
		if err != nil {
			delay = w.fetchFailed(err, delay)
			continue
		}
		delay = 0
	}
}

// reserve waits for a free slot and takes every free one; 0 if the worker
// stops first.
func (w *Worker) reserve() int {
	select {
	case <-w.stopCh:
		return 0
	case w.sem <- struct{}{}:
	}
	n := 1
	for n < w.cfg.Concurrency {
		select {
		case w.sem <- struct{}{}:
			n++
		default:
			return n
		}
	}
	return n
}

// fillWait is how long a pull of the free slots' worth of jobs waits for
// more to come in (those that come are started at once): under a steady
// trickle, one pull takes several jobs rather than one pull (a subscription
// made and removed) per job.
const fillWait = 5 * time.Millisecond

// pull fetches up to n jobs, waiting at most wait for them, and starts
// them. With reserved, n slots are held already and the unused ones are
// released; otherwise each job first waits for a slot. It returns how many
// messages arrived.
func (w *Worker) pull(cons jetstream.Consumer, n int, wait time.Duration, reserved bool) (int, error) {
	batch, err := cons.Fetch(n, jetstream.FetchMaxWait(wait))
	if err != nil {
		if reserved {
			w.release(n)
		}
		return 0, err
	}
	got, started := 0, 0
	for msg := range batch.Messages() {
		got++
		if w.stopping() {
			_ = msg.Nak() // hand it back to another server at once
			continue
		}
		if !reserved && !w.acquire(msg) {
			_ = msg.Nak()
			continue
		}
		started++
		w.jobs.Add(1)
		go func() {
			defer w.jobs.Done()
			defer w.release(1)
			w.handle(msg)
		}()
	}
	if reserved {
		w.release(n - started) // slots of the jobs not started
	}
	return got, batch.Error()
}

// fetchFailed logs a fetch error, re-creates a consumer that was deleted,
// and returns the next back-off.
func (w *Worker) fetchFailed(err error, delay time.Duration) time.Duration {
	if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted) || stream.IsMissing(err) {
		// The consumer went, maybe with JOBS (deleted, or a NATS server
		// back with an empty store): the bus re-creates the stream, then
		// the consumers go on it again.
		ctx, cancel := opCtx()
		perr := w.provisionConsumers(ctx)
		if perr != nil && w.s.bus.RecoverMissingWait(ctx, perr) {
			perr = w.provisionConsumers(ctx)
		}
		cancel()
		if perr == nil {
			w.log.Warn("reliable: consumer was missing and has been re-created", "err", err)
			return 0
		}
	}
	if delay == 0 {
		delay = 100 * time.Millisecond
	} else {
		delay = min(2*delay, 2*time.Second)
	}
	w.log.Debug("reliable: fetch failed", "err", err, "retry_in", delay)
	return delay
}

// acquire waits for a free slot for msg, signalling progress meanwhile; it
// returns false if the worker stops first.
func (w *Worker) acquire(msg jetstream.Msg) bool {
	t := time.NewTicker(w.cfg.AckWait / 3)
	defer t.Stop()
	for {
		select {
		case w.sem <- struct{}{}:
			return true
		case <-w.stopCh:
			return false
		case <-t.C:
			_ = msg.InProgress()
		}
	}
}

func (w *Worker) release(n int) {
	for range n {
		<-w.sem
	}
}

// leases holds the deliveries being handled, for the progress loop: one
// goroutine and one ticker per worker signal progress for all of them,
// rather than one of each per job.
type leases struct {
	mu sync.Mutex
	m  map[*delivery]struct{}
}

// progressLoop signals progress, every AckWait/3, on each delivery handled
// for longer than that, so a running job (or one waiting for a slot) keeps
// its message however long it runs.
func (w *Worker) progressLoop() {
	t := time.NewTicker(w.cfg.AckWait / 3)
	defer t.Stop()
	for {
		select {
		case <-w.hardCtx.Done():
			return
		case now := <-t.C:
			w.leases.mu.Lock()
			due := make([]*delivery, 0, len(w.leases.m))
			for d := range w.leases.m {
				if now.Sub(d.since) >= w.cfg.AckWait/3 {
					due = append(due, d)
				}
			}
			w.leases.mu.Unlock()
			for _, d := range due {
				d.progress()
			}
		}
	}
}

// handle runs one delivery of a job message.
func (w *Worker) handle(msg jetstream.Msg) {
	md, err := msg.Metadata()
	if err != nil {
		w.log.Error("reliable: message without JetStream metadata", "subject", msg.Subject(), "err", err)
		_ = msg.Term()
		return
	}
	seq := md.Sequence.Stream
	w.mu.Lock()
	if _, dup := w.inflight[seq]; dup {
		// A redelivery of the message this worker is running (a progress
		// signal got lost): the running execution acks it.
		w.mu.Unlock()
		return
	}
	w.inflight[seq] = struct{}{}
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		delete(w.inflight, seq)
		w.mu.Unlock()
	}()
	subj := msg.Subject()
	jid := subj[strings.LastIndexByte(subj, '.')+1:]

	d := w.lease(msg)
	defer d.stop()
	r, rev, ok := w.claim(d, md, jid)
	if !ok {
		return
	}
	w.run(d, r, rev)
}

// lease registers msg with the progress loop.
func (w *Worker) lease(msg jetstream.Msg) *delivery {
	d := &delivery{Msg: msg, since: time.Now(), l: &w.leases}
	w.leases.mu.Lock()
	w.leases.m[d] = struct{}{}
	w.leases.mu.Unlock()
	return d
}

// delivery is a message being handled: its progress signals stop before it
// is acked or nak'd (a progress signal after a NakWithDelay would restart
// the AckWait clock and override the delay).
type delivery struct {
	jetstream.Msg
	since time.Time
	l     *leases

	mu      sync.Mutex
	stopped bool
}

// progress signals progress unless the delivery was acked or nak'd.
func (d *delivery) progress() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.stopped {
		_ = d.Msg.InProgress()
	}
}

// stop ends the progress signals (idempotent).
func (d *delivery) stop() {
	d.mu.Lock()
	stopped := d.stopped
	d.stopped = true
	d.mu.Unlock()
	if !stopped {
		d.l.mu.Lock()
		delete(d.l.m, d)
		d.l.mu.Unlock()
	}
}

func (d *delivery) Ack() error  { d.stop(); return d.Msg.Ack() }
func (d *delivery) Nak() error  { d.stop(); return d.Msg.Nak() }
func (d *delivery) Term() error { d.stop(); return d.Msg.Term() }
func (d *delivery) NakWithDelay(delay time.Duration) error {
	d.stop()
	return d.Msg.NakWithDelay(delay)
}
