package frontend

// Parking: an idle connection gives its reader goroutine back. At 20,000
// connections the reader goroutines' stacks were the largest part of the
// frontend's memory (132 MB of 258 MB: 4 KiB per TCP reader, 8 KiB per
// WebSocket one), for connections that mostly wait. A connection that has
// sent nothing for Config.ParkIdle is woken from its read by a deadline in
// the past; its reader, between packets or in the middle of one (the
// readers keep what they have read), hands the socket to the frontend's
// poller (epoll, one-shot) and ends. The next byte from the client starts
// a reader again. Connections whose reads go through a buffer of their
// own (TLS, the PROXY protocol reader, a custom PlayerConn) are not parked.

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// parkable is a connection whose reads come from a TCP socket with no
// buffer in between that the agent cannot see: when its reader is waiting
// for bytes, the socket's readiness says when there are more.
type parkable interface {
	readSocket() *net.TCPConn
}

// readSocketOf returns the socket c's reads come from, looking through
// unwrappers, or nil when c cannot be parked.
func readSocketOf(c PlayerConn) *net.TCPConn {
	for {
		if p, ok := c.(parkable); ok {
			return p.readSocket()
		}
		u, ok := c.(unwrapper)
		if !ok {
			return nil
		}
		c = u.unwrapConn()
	}
}

func (c *tcpConn) readSocket() *net.TCPConn {
	s, _ := c.Conn.(*net.TCPConn)
	return s
}

func (c *wsConn) readSocket() *net.TCPConn { return c.tcp }

// aLongTimeAgo is a read deadline that has passed: it wakes a reader.
var aLongTimeAgo = time.Unix(1, 0)

// parkSweep asks the readers of the connections silent for ParkIdle to
// park; it runs every ParkIdle/2 until ctx ends.
func (f *Frontend) parkSweep(ctx context.Context) {
	every := max(f.cfg.ParkIdle/2, 10*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			idle := now.Add(-f.cfg.ParkIdle).UnixNano()
			f.mu.Lock()
			for a := range f.agents {
				if a.sock != nil && a.state.Load() == stateWorking && a.lastSeen.Load() < idle {
					a.askPark()
				}
			}
			f.mu.Unlock()
		}
	}
}

// askPark wakes a's reader with a deadline in the past, unless it is
// parked or asked already. The request and the deadline change together,
// under mu, with park's clearing them: a deadline is never left set
// without the request that explains it, nor a request without a deadline.
func (a *agent) askPark() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.parked || a.closed || a.parkReq.Load() {
		return
	}
	a.parkReq.Store(true)
	_ = a.sock.SetReadDeadline(aLongTimeAgo)
}

// parkable reports whether a read error is the sweep's deadline.
func (a *agent) parkWanted(err error) bool {
	return a.parkReq.Load() && errors.Is(err, os.ErrDeadlineExceeded)
}

// park hands the connection to the poller; it reports whether it did, in
// which case the reader goroutine ends (without cleanup: the connection
// lives on). Otherwise the reader reads on.
func (a *agent) park() bool {
	p, err := a.f.poller()
	a.mu.Lock()
	a.parkReq.Store(false)
	derr := a.sock.SetReadDeadline(time.Time{})
	if err != nil || derr != nil || a.closed || a.draining {
		a.mu.Unlock()
		return false
	}
	a.parked = true
	a.mu.Unlock()
	if err := p.arm(a); err != nil {
		a.mu.Lock()
		still := a.parked
		a.parked = false
		a.mu.Unlock()
		if !still {
			// Closed meanwhile: Close saw it parked and cleans up.
			return true
		}
		a.f.log.Debug("cannot park a connection", "err", err)
		return false
	}
	a.f.stats.Parked.Add(1)
	return true
}

// unpark is called by the poller when a parked connection has bytes (or
// has ended): a reader starts again, unless the connection closed first.
func (a *agent) unpark() {
	a.mu.Lock()
	if !a.parked {
		a.mu.Unlock()
		return
	}
	a.parked = false
	a.mu.Unlock()
	go a.read()
}

// closeParked ends a parked connection that was closed (Close): no reader
// is there to see the end and clean up.
func (a *agent) closeParked() {
	if p := a.f.park.p.Load(); p != nil {
		p.disarm(a)
	}
	go a.cleanup()
}

// unpoll forgets a connection that is closing in the poller, if it ever
// parked.
func (a *agent) unpoll() {
	if p := a.f.park.p.Load(); p != nil {
		p.disarm(a)
	}
}

// parking is the frontend's parking state: the poller, made on first use.
type parking struct {
	once sync.Once
	p    atomic.Pointer[poller]
	err  error
	ctx  context.Context
}

// poller returns the frontend's poller, starting it on first use.
func (f *Frontend) poller() (*poller, error) {
	f.park.once.Do(func() {
		var p *poller
		if p, f.park.err = newPoller(f.log); f.park.err == nil {
			f.park.p.Store(p)
			go p.run(f.park.ctx)
		}
	})
	return f.park.p.Load(), f.park.err
}
