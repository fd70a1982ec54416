package frontend

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nopal-dev/nopal/codec"
	"github.com/nopal-dev/nopal/limiter"
)

// Wrapper wraps an acceptor, typically to wrap each connection it accepts.
type Wrapper interface {
	Wrap(Acceptor) Acceptor
}

// WithWrappers applies wrappers to a in order: the first wraps a, the next
// wraps that, and so on.
func WithWrappers(a Acceptor, wrappers ...Wrapper) Acceptor {
	for _, w := range wrappers {
		a = w.Wrap(a)
	}
	return a
}

// BaseWrapper is an Acceptor that passes every connection of the acceptor
// it wraps through a function. Embed it to write a Wrapper.
type BaseWrapper struct {
	Acceptor
	wrapConn func(PlayerConn) PlayerConn
	once     sync.Once
	conns    chan PlayerConn
}

// NewBaseWrapper returns a BaseWrapper around a that applies wrapConn to
// every accepted connection.
func NewBaseWrapper(a Acceptor, wrapConn func(PlayerConn) PlayerConn) *BaseWrapper {
	return &BaseWrapper{Acceptor: a, wrapConn: wrapConn, conns: make(chan PlayerConn)}
}

// Conns delivers the wrapped connections.
func (b *BaseWrapper) Conns() <-chan PlayerConn {
	b.once.Do(func() {
		go func() {
			defer close(b.conns)
			for c := range b.Acceptor.Conns() {
				b.conns <- b.wrapConn(c)
			}
		}()
	})
	return b.conns
}

// RateLimitedError is returned by a rate-limited connection's GetNextMessage
// when a dropped request must be answered with PIT-429; Packet is that
// request. The agent answers and reads on.
type RateLimitedError struct {
	Packet []byte
}

func (e *RateLimitedError) Error() string { return "frontend: request rate limited" }

// ErrRateLimited matches a *RateLimitedError with errors.Is.
var ErrRateLimited = errors.New("frontend: request rate limited")

// Is makes errors.Is(err, ErrRateLimited) true.
func (e *RateLimitedError) Is(target error) bool { return target == ErrRateLimited }

// RateLimiter is a Wrapper that limits the Data packets each connection may
// send, before any session logic runs: at most Limit in any Interval (see
// package limiter for the exact rule). Excess packets are dropped and
// counted; with Reply set, a dropped request is answered with PIT-429 (off by
// default, as in Pitaya).
type RateLimiter struct {
	Limit    int
	Interval time.Duration
	Reply    bool
	// OnDrop, if set, is called for every dropped packet (a metric).
	OnDrop func()

	dropped atomic.Int64
}

// NewRateLimiter returns a rate-limiting wrapper; it validates the limit.
func NewRateLimiter(limit int, interval time.Duration, reply bool) (*RateLimiter, error) {
	if _, err := limiter.New(limit, interval); err != nil {
		return nil, err
	}
	return &RateLimiter{Limit: limit, Interval: interval, Reply: reply}, nil
}

// Dropped is the number of packets dropped so far.
func (r *RateLimiter) Dropped() int64 { return r.dropped.Load() }

// Wrap wraps every connection of a with its own limiter.
func (r *RateLimiter) Wrap(a Acceptor) Acceptor {
	return NewBaseWrapper(a, func(c PlayerConn) PlayerConn {
		l, err := limiter.New(r.Limit, r.Interval)
		if err != nil {
			return c // validated by NewRateLimiter
		}
		return &limitedConn{PlayerConn: c, l: l, r: r}
	})
}

type limitedConn struct {
	PlayerConn
	l *limiter.Limiter
	r *RateLimiter
}

// MaxPacketSize passes on the wrapped connection's bound (PacketLimited).
func (c *limitedConn) MaxPacketSize() int { return maxPacketSize(c.PlayerConn) }

func (c *limitedConn) GetNextMessage() ([]byte, error) {
	for {
		pkt, err := c.PlayerConn.GetNextMessage()
		if err != nil || len(pkt) == 0 || codec.PacketType(pkt[0]) != codec.Data || c.l.Allow() {
			return pkt, err
		}
		c.r.dropped.Add(1)
		if c.r.OnDrop != nil {
			c.r.OnDrop()
		}
		if c.r.Reply {
			return pkt, &RateLimitedError{Packet: pkt}
		}
	}
}

func (c *limitedConn) WriteBatch(pkts [][]byte) error {
	if bw, ok := c.PlayerConn.(BatchWriter); ok {
		return bw.WriteBatch(pkts)
	}
	for _, p := range pkts {
		if _, err := c.PlayerConn.Write(p); err != nil {
			return err
		}
	}
	return nil
}
