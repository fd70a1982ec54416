package cluster

import (
	"sync"
	"sync/atomic"
)

// callPool runs the calls a server receives from the bus on goroutines that
// live on between calls. A new goroutine per call starts with a small stack
// and grows it inside every handler (the profile of a backend showed stack
// copying at 23 % of its CPU); a kept goroutine has grown it already. Calls
// never wait for a worker: when none is idle a new one starts, and beyond
// keep workers it ends after its call.
type callPool struct {
	work    chan func() // unbuffered: a send succeeds only to an idle worker
	quit    chan struct{}
	keep    int32
	workers atomic.Int32
	wg      sync.WaitGroup
	once    sync.Once
}

func newCallPool(keep int) *callPool {
	return &callPool{work: make(chan func()), quit: make(chan struct{}), keep: int32(keep)}
}

// run runs f on a worker; wait waits for every f run so far.
func (p *callPool) run(f func()) {
	p.wg.Add(1)
	g := func() {
		defer p.wg.Done()
		f()
	}
	select {
	case p.work <- g:
		return
	default:
	}
	if p.workers.Add(1) <= p.keep {
		go p.worker(g)
		return
	}
	p.workers.Add(-1)
	go g()
}

func (p *callPool) worker(f func()) {
	defer p.workers.Add(-1)
	f()
	for {
		select {
		case f := <-p.work:
			f()
		case <-p.quit:
			return
		}
	}
}

// wait returns once every call run so far has finished.
func (p *callPool) wait() { p.wg.Wait() }

// close lets the idle workers end.
func (p *callPool) close() { p.once.Do(func() { close(p.quit) }) }

// idleCapacity is how many more kept workers the pool may start.
func (p *callPool) idleCapacity() int { return int(p.keep - p.workers.Load()) }
