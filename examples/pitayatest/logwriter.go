package main

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// nonBlockingWriter hands each write to a goroutine that writes it to w, and
// drops writes while that goroutine is stuck with queue of them waiting:
// a process whose stderr nobody reads any more (Pitaya's test helper stops
// after the ready line) must not block on its log. Close writes what is
// queued and says how many writes were dropped, waiting at most a second
// for a reader.
type nonBlockingWriter struct {
	w       io.Writer
	ch      chan []byte
	done    chan struct{}
	dropped atomic.Int64

	mu     sync.RWMutex
	closed bool
}

func newNonBlockingWriter(w io.Writer, queue int) *nonBlockingWriter {
	nw := &nonBlockingWriter{w: w, ch: make(chan []byte, queue), done: make(chan struct{})}
	go func() {
		defer close(nw.done)
		for b := range nw.ch {
			_, _ = nw.w.Write(b)
		}
	}()
	return nw
}

// Write queues a copy of p; it never blocks on w.
func (nw *nonBlockingWriter) Write(p []byte) (int, error) {
	nw.mu.RLock()
	defer nw.mu.RUnlock()
	if nw.closed {
		return nw.w.Write(p)
	}
	select {
	case nw.ch <- append([]byte(nil), p...):
	default:
		nw.dropped.Add(1)
	}
	return len(p), nil
}

// Close flushes the queue; later writes go straight to w.
func (nw *nonBlockingWriter) Close() {
	nw.mu.Lock()
	if nw.closed {
		nw.mu.Unlock()
		return
	}
	nw.closed = true
	close(nw.ch)
	nw.mu.Unlock()
	select {
	case <-nw.done:
	case <-time.After(time.Second):
		return
	}
	if n := nw.dropped.Load(); n > 0 {
		fmt.Fprintf(nw.w, "pitayatest: %d log lines dropped while stderr was not read\n", n)
	}
}
