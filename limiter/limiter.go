package limiter

import (
	"errors"
	"fmt"
	"time"
)

// ErrInvalidConfig is returned by [New] when the limit, the interval or an
// option is invalid. It is always wrapped in an error that says which one and
// starts with "limiter: "; test for it with [errors.Is].
var ErrInvalidConfig = errors.New("invalid configuration")

// Option configures a [Limiter] created by [New].
type Option func(*config)

type config struct {
	clock func() time.Time
}

// WithClock makes the Limiter read the current time from clock instead of
// [time.Now]. It is meant for tests. [New] reads the clock once to set the
// Limiter's base time, and [Limiter.Allow] reads it once per call. A nil clock
// makes [New] fail with [ErrInvalidConfig].
func WithClock(clock func() time.Time) Option {
	return func(c *config) { c.clock = clock }
}

// Limiter is a per-connection rate limiter: it accepts at most limit requests
// per interval, counting every request, accepted or dropped (see the package
// documentation for the exact rule).
//
// A Limiter must be created with [New]. It is not safe for concurrent use.
type Limiter struct {
	// ring holds the times of the last len(ring) arrivals, in nanoseconds
	// since base.
	ring []int64
	// next is where the next arrival is written; once the ring is full it is
	// also the index of the oldest remembered arrival.
	next int
	// n is the number of arrivals remembered, up to len(ring).
	n        int
	interval int64
	base     time.Time
	clock    func() time.Time
}

// New returns a Limiter that accepts at most limit requests per interval.
// It fails with an error wrapping [ErrInvalidConfig] if limit < 1,
// interval <= 0 or an option is invalid.
func New(limit int, interval time.Duration, opts ...Option) (*Limiter, error) {
	if limit < 1 {
		return nil, fmt.Errorf("limiter: limit must be at least 1, got %d: %w", limit, ErrInvalidConfig)
	}
	if interval <= 0 {
		return nil, fmt.Errorf("limiter: interval must be positive, got %v: %w", interval, ErrInvalidConfig)
	}
	cfg := config{clock: time.Now}
	for _, opt := range opts {
		opt(&cfg)
	}
	if cfg.clock == nil {
		return nil, fmt.Errorf("limiter: WithClock: nil clock: %w", ErrInvalidConfig)
	}
	return &Limiter{
		ring:     make([]int64, limit),
		interval: int64(interval),
		base:     cfg.clock(),
		clock:    cfg.clock,
	}, nil
}

// Allow records a request arriving now (as read from the clock) and reports
// whether it is accepted. See [Limiter.AllowAt].
func (l *Limiter) Allow() bool {
	return l.AllowAt(l.clock())
}

// AllowAt records a request arriving at now and reports whether it is
// accepted: it is if fewer than limit arrivals are remembered or the oldest
// remembered one is at least interval before now. The request is remembered
// either way, evicting the oldest arrival.
func (l *Limiter) AllowAt(now time.Time) bool {
	t := int64(now.Sub(l.base))
	size := len(l.ring)
	ok := l.n < size || t-l.ring[l.next] >= l.interval
	l.ring[l.next] = t
	l.next++
	if l.next == size {
		l.next = 0
	}
	if l.n < size {
		l.n++
	}
	return ok
}
