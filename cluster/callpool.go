package cluster

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"
)

// callPool runs the calls a server receives from the bus on goroutines that
// live on between calls. A new goroutine per call starts with a small stack
// and grows it inside every handler (the profile of a backend showed stack
// copying at 23 % of its CPU); a kept goroutine has grown it already.
//
// Calls come on msgs, a channel subscription's channel, which the workers
// read themselves: NATS's reader hands a call straight to a waiting worker.
// A handler subscription cost one more goroutine hand-off per call (NATS's
// reader, the subscription's goroutine, a worker). Calls never wait for a
// worker: the worker that takes a call when no other is waiting starts
// another, and beyond keep workers a worker ends after its call when
// another is waiting. Other work (run) goes to an idle worker the same way.
type callPool struct {
	msgs  chan *nats.Msg // calls; a nil one is Stop's marker (finish)
	serve func(*nats.Msg)
	work  chan func() // unbuffered: a send succeeds only to an idle worker
	quit  chan struct{}
	keep  int32

	workers atomic.Int32
	idle    atomic.Int32 // workers waiting for a call or work
	running sync.WaitGroup
	work1   sync.WaitGroup // run's functions
	seen    chan struct{}  // closed when a worker takes Stop's marker
	once    sync.Once      // closes seen
	quitted sync.Once      // closes quit: finish may run more than once
}

// callBacklog bounds the calls NATS's reader may queue for the workers:
// past it NATS drops them (a slow consumer, logged). A worker is always
// waiting, so calls queue only while every worker is starting.
const callBacklog = 1 << 16

func newCallPool(keep int, serve func(*nats.Msg)) *callPool {
	p := &callPool{
		msgs: make(chan *nats.Msg, callBacklog), serve: serve,
		work: make(chan func()), quit: make(chan struct{}), keep: int32(keep),
		seen: make(chan struct{}),
	}
	p.start(nil)
	return p
}

// start starts a worker, which first runs f if it is not nil.
func (p *callPool) start(f func()) {
	p.workers.Add(1)
	p.running.Add(1)
	go p.worker(f)
}

// run runs f on a worker; wait waits for every f run so far.
func (p *callPool) run(f func()) {
	p.work1.Add(1)
	g := func() {
		defer p.work1.Done()
		f()
	}
	select {
	case p.work <- g:
	default:
		p.start(g)
	}
}

func (p *callPool) worker(f func()) {
	defer p.running.Done()
	defer p.workers.Add(-1)
	if f != nil {
		f()
	}
	for {
		p.idle.Add(1)
		select {
		case m := <-p.msgs:
			if p.idle.Add(-1) == 0 {
				p.start(nil) // the next call must find a worker waiting
			}
			if m == nil {
				p.once.Do(func() { close(p.seen) })
				continue
			}
			p.serve(m)
		case f := <-p.work:
			p.idle.Add(-1)
			f()
		case <-p.quit:
			p.idle.Add(-1)
			return
		}
		if p.workers.Load() > p.keep && p.idle.Load() > 0 {
			return // one too many, and another is waiting
		}
	}
}

// finish serves every call already queued and waits for the workers to
// end, or for ctx. Call it once no more calls can come (the subscriptions
// are closed): the marker it queues comes after every call, and the
// workers end only between calls.
func (p *callPool) finish(ctx context.Context) {
	select {
	case p.msgs <- nil:
		select {
		case <-p.seen:
		case <-ctx.Done():
		}
	case <-ctx.Done():
	}
	p.quitted.Do(func() { close(p.quit) })
	ended := make(chan struct{})
	go func() { p.running.Wait(); close(ended) }()
	select {
	case <-ended:
	case <-ctx.Done():
	}
}

// wait returns once every function run so far has finished.
func (p *callPool) wait() { p.work1.Wait() }

// idleCapacity is how many more kept workers the pool may start.
func (p *callPool) idleCapacity() int { return int(p.keep - p.workers.Load()) }
