package cluster

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// TestCallPoolNeverWaits: calls blocked in their handlers do not hold up
// the next call, and finish serves every call queued before it.
func TestCallPoolNeverWaits(t *testing.T) {
	const blocked = 300 // more than the kept workers
	release := make(chan struct{})
	var served atomic.Int32
	var wg sync.WaitGroup
	wg.Add(blocked)
	p := newCallPool(8, func(m *nats.Msg) {
		if m.Subject == "block" {
			wg.Done()
			<-release
		}
		served.Add(1)
	})
	for range blocked {
		p.msgs <- &nats.Msg{Subject: "block"}
	}
	wg.Wait() // every blocked call runs at once: none waited for a worker
	if got := p.workers.Load(); got <= blocked {
		t.Fatalf("%d workers for %d blocked calls: none is left waiting", got, blocked)
	}
	for range 100 {
		p.msgs <- &nats.Msg{Subject: "quick"}
	}
	close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p.finish(ctx)
	if ctx.Err() != nil {
		t.Fatal("finish did not end")
	}
	if got := served.Load(); got != blocked+100 {
		t.Fatalf("served %d calls, want %d", got, blocked+100)
	}
	if got := p.workers.Load(); got != 0 {
		t.Fatalf("%d workers left after finish", got)
	}
}

// TestCallPoolRun: run's functions go to the workers too, and wait waits
// for them.
func TestCallPoolRun(t *testing.T) {
	p := newCallPool(2, func(*nats.Msg) {})
	var n atomic.Int32
	for range 50 {
		p.run(func() { n.Add(1) })
	}
	p.wait()
	if n.Load() != 50 {
		t.Fatalf("%d of 50 functions ran", n.Load())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p.finish(ctx)
	if ctx.Err() != nil {
		t.Fatal("finish did not end")
	}
}

// TestCallPoolFinishTwice: a Stop that runs twice finishes the pool twice.
func TestCallPoolFinishTwice(t *testing.T) {
	p := newCallPool(2, func(*nats.Msg) {})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p.finish(ctx)
	p.finish(ctx)
	if ctx.Err() != nil {
		t.Fatal("finish did not end")
	}
}
