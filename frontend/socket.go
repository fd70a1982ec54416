package frontend

// Writes that cannot block, for the built-in connections over a plain TCP
// socket. A connection with something to write joins the line of the
// frontend's writer pool (a few goroutines, started with the frontend):
// a pool writer writes everything queued with one non-blocking writev,
// and leaves to a writer goroutine of the connection's own only what the
// socket does not take. No goroutine is started per push burst (that cost
// 3.5–7.5 % of the server's CPU at 20,000 chat connections), a broadcast
// never waits for a slow client, and under load the pushes that arrive
// while a connection waits in line leave together. Writing each push
// inline on the pusher's goroutine was tried: one system call per push
// cut an overloaded frontend's throughput by 2.5–6× (2,000 chat
// connections, 300,000 pushes/s asked).

import (
	"context"
	"net"
	"runtime"
)

// socketConn is a PlayerConn whose bytes go to a TCP socket unchanged,
// once framed: the agent may write frames to the socket itself.
type socketConn interface {
	// socket is the TCP socket, or nil (TLS: writes must go through the
	// connection).
	socket() *net.TCPConn
	// appendFrames appends to bufs what goes on the wire for pkts,
	// writing any frame headers into hdr.
	appendFrames(bufs net.Buffers, hdr []byte, pkts [][]byte) (net.Buffers, []byte)
}

// unwrapper is a connection wrapper that adds nothing to what is written:
// the agent may write to the connection it wraps (the rate limiter's).
type unwrapper interface {
	unwrapConn() PlayerConn
}

// socketOf returns c's socketConn, looking through unwrappers, or nil.
func socketOf(c PlayerConn) socketConn {
	for {
		if s, ok := c.(socketConn); ok && s.socket() != nil {
			return s
		}
		u, ok := c.(unwrapper)
		if !ok {
			return nil
		}
		c = u.unwrapConn()
	}
}

func (c *tcpConn) socket() *net.TCPConn {
	s, _ := c.w.(*net.TCPConn)
	return s
}

func (c *tcpConn) appendFrames(bufs net.Buffers, hdr []byte, pkts [][]byte) (net.Buffers, []byte) {
	return append(bufs, pkts...), hdr
}

func (c *wsConn) socket() *net.TCPConn { return c.tcp }

func (c *limitedConn) unwrapConn() PlayerConn { return c.PlayerConn }

// writers is how many writers the pool has: as many as there are
// processors, since a writer never waits for a socket.
func writers() int { return max(2, runtime.GOMAXPROCS(0)) }

// schedule hands a, which has something to write and whose write turn
// the caller has just taken, to a writer: one of the pool's when a's bytes
// go to a socket, else a goroutine of its own (TLS, custom connections, or
// a pool so far behind that its line is full).
func (f *Frontend) schedule(a *agent) {
	if a.raw != nil {
		select {
		case f.wq <- a:
			return
		default:
		}
	}
	go a.write()
}

// writer is one of the pool's writers; it runs until ctx ends.
func (f *Frontend) writer(ctx context.Context) {
	fl := &flusher{}
	fl.fn = fl.do
	for {
		select {
		case <-ctx.Done():
			return
		case a := <-f.wq:
			a.flush(fl)
		}
	}
}

// flushRounds is how many batches of one connection a pool writer writes
// before putting it back in line behind the others.
const flushRounds = 4

// flush writes a's queue without blocking, on a writer of the pool, which
// holds a's write turn. What the socket does not take goes to a writer
// goroutine of a's own, which waits for the socket.
func (a *agent) flush(fl *flusher) {
	for range flushRounds {
		a.mu.Lock()
		if a.closed {
			a.writing = false
			a.mu.Unlock()
			return
		}
		if len(a.queue) == 0 && len(a.rest) == 0 {
			a.writing = false
			closing := a.closing
			a.mu.Unlock()
			if closing {
				_ = a.Close()
			}
			return
		}
		batch, rest := a.queue, a.rest
		a.queue, a.spare, a.rest = a.spare[:0], nil, nil
		held := a.queued
		a.mu.Unlock()

		// No wait, but a write deadline all the same: the runtime refuses
		// any write, blocking or not, once the last one set has passed.
		err := a.armWrite()
		var left net.Buffers
		if err == nil {
			left, err = fl.write(a, rest, batch)
		}
		clear(batch)
		a.mu.Lock()
		if !a.closed {
			a.account(-held)
			if len(left) > 0 {
				a.rest = left
				a.account(buffersLen(left))
			}
		}
		a.keepSpare(batch)
		a.mu.Unlock()
		if err != nil {
			a.f.log.Debug("write failed: closing", "session", a.session().ID(), "err", err)
			_ = a.Close()
			continue
		}
		if len(left) > 0 {
			go a.write() // the socket is full: this one may wait for it
			return
		}
	}
	a.f.schedule(a)
}

// flusher is a pool writer's scratch space, reused from one connection to
// the next.
type flusher struct {
	fn   func(fd uintptr) bool // do, made once
	bufs net.Buffers           // being written by fn
	hdr  []byte
	iov  iovScratch
	n    int
	err  error
}

// write writes rest, then batch framed, as far as a's socket takes them
// now, and returns what it did not take.
func (fl *flusher) write(a *agent, rest net.Buffers, batch [][]byte) (left net.Buffers, err error) {
	if a.rc == nil {
		if a.rc, err = a.raw.socket().SyscallConn(); err != nil {
			return nil, err
		}
	}
	bufs := append(fl.bufs[:0], rest...)
	bufs, fl.hdr = a.raw.appendFrames(bufs, fl.hdr[:0], batch)
	fl.bufs, fl.n, fl.err = bufs, 0, nil
	err = a.rc.Write(fl.fn)
	n := fl.n
	if err == nil {
		err = fl.err
	}
	i := 0
	for i < len(bufs) && n >= len(bufs[i]) {
		n -= len(bufs[i])
		i++
	}
	if i < len(bufs) && err == nil {
		left = append(make(net.Buffers, 0, len(bufs)-i), bufs[i:]...)
		left[0] = left[0][n:]
		fl.hdr = nil // frame headers in left live in it: the next write takes a new one
	}
	clear(bufs)
	fl.bufs = bufs[:0]
	if cap(fl.hdr) > 64<<10 {
		fl.hdr = nil
	}
	return left, err
}

// do is the raw write: never a wait for the socket.
func (fl *flusher) do(fd uintptr) bool {
	fl.n, fl.err = writevNB(fd, fl.bufs, &fl.iov)
	return true
}
