package timers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// LoopForever as the count of NewCountTimer makes a timer that never ends
// by itself (NewTimer).
const LoopForever = -1

// DefaultPrecision is how often condition timers check their condition, as
// in Pitaya.
const DefaultPrecision = time.Second

// ErrNilCondition is returned by NewCondTimer for a nil condition.
var ErrNilCondition = errors.New("timers: nil condition")

// Func is a timer's callback.
type Func func()

// Condition tells a condition timer when to call its callback.
type Condition interface {
	Check(now time.Time) bool
}

// ConditionFunc adapts a function to Condition.
type ConditionFunc func(now time.Time) bool

// Check calls f.
func (f ConditionFunc) Check(now time.Time) bool { return f(now) }

// Manager runs timers and stops them all at once. Its zero value is not
// usable: use NewManager. It is safe for concurrent use.
type Manager struct {
	log       *slog.Logger
	precision atomic.Int64 // time.Duration

	mu      sync.Mutex
	nextID  int64
	timers  map[int64]*Timer
	stopped bool
	wg      sync.WaitGroup
}

// NewManager returns a Manager that logs with log (nil: slog.Default()).
func NewManager(log *slog.Logger) *Manager {
	if log == nil {
		log = slog.Default()
	}
	m := &Manager{log: log, timers: map[int64]*Timer{}}
	m.precision.Store(int64(DefaultPrecision))
	return m
}

// SetPrecision sets how often condition timers created from now on check
// their condition (default DefaultPrecision). It panics below a
// millisecond, as Pitaya's SetTimerPrecision does.
func (m *Manager) SetPrecision(d time.Duration) {
	if d < time.Millisecond {
		panic("timers: precision below a millisecond")
	}
	m.precision.Store(int64(d))
}

// Precision is how often new condition timers check their condition.
func (m *Manager) Precision() time.Duration { return time.Duration(m.precision.Load()) }

// Timer is a timer of a Manager.
type Timer struct {
	id       int64
	m        *Manager
	fn       Func
	interval time.Duration // the period, or the check period of a condition timer
	count    int           // calls left, LoopForever for no limit
	cond     Condition

	stopped  atomic.Bool
	stopOnce sync.Once
	stopCh   chan struct{}
	done     chan struct{}
}

// ID is the timer's id, unique within its Manager.
func (t *Timer) ID() int64 { return t.id }

// Stop ends the timer: no call begins after Stop returns (a call already
// under way, or decided at that very moment, completes). It may be called
// from the timer's own callback, and more than once.
func (t *Timer) Stop() {
	t.stopOnce.Do(func() {
		t.stopped.Store(true)
		close(t.stopCh)
	})
}

// Done is closed when the timer has ended (stopped, its count reached, or
// its Manager stopped) and its last call has returned.
func (t *Timer) Done() <-chan struct{} { return t.done }

// NewTimer calls fn every interval until the timer is stopped. It panics
// when fn is nil or interval is not positive (as Pitaya's does).
func (m *Manager) NewTimer(interval time.Duration, fn Func) *Timer {
	return m.NewCountTimer(interval, LoopForever, fn)
}

// NewCountTimer calls fn every interval, count times (LoopForever: until
// stopped). It panics when fn is nil, interval is not positive, or count
// is neither positive nor LoopForever.
func (m *Manager) NewCountTimer(interval time.Duration, count int, fn Func) *Timer {
	switch {
	case fn == nil:
		panic("timers: nil timer function")
	case interval <= 0:
		panic("timers: non-positive interval")
	case count <= 0 && count != LoopForever:
		panic("timers: count must be positive or LoopForever")
	}
	return m.start(&Timer{fn: fn, interval: interval, count: count})
}

// NewAfterTimer calls fn once, after d. It panics when fn is nil or d is
// not positive.
func (m *Manager) NewAfterTimer(d time.Duration, fn Func) *Timer {
	return m.NewCountTimer(d, 1, fn)
}

// NewCondTimer checks cond every Precision and calls fn whenever it holds,
// until the timer is stopped. A nil cond returns ErrNilCondition; a nil fn
// panics.
func (m *Manager) NewCondTimer(cond Condition, fn Func) (*Timer, error) {
	if cond == nil {
		return nil, ErrNilCondition
	}
	if fn == nil {
		panic("timers: nil timer function")
	}
	return m.start(&Timer{fn: fn, interval: m.Precision(), count: LoopForever, cond: cond}), nil
}

func (m *Manager) start(t *Timer) *Timer {
	t.m = m
	t.stopCh = make(chan struct{})
	t.done = make(chan struct{})
	m.mu.Lock()
	m.nextID++
	t.id = m.nextID
	if m.stopped {
		m.mu.Unlock()
		t.Stop()
		close(t.done)
		return t
	}
	m.timers[t.id] = t
	m.wg.Add(1)
	m.mu.Unlock()
	go t.run()
	return t
}

// Len is the number of timers running.
func (m *Manager) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.timers)
}

// Stop stops every timer, refuses new ones (they are handed out stopped)
// and waits until the calls under way have returned, or ctx ends.
func (m *Manager) Stop(ctx context.Context) error {
	m.mu.Lock()
	m.stopped = true
	list := make([]*Timer, 0, len(m.timers))
	for _, t := range m.timers {
		list = append(list, t)
	}
	m.mu.Unlock()
	for _, t := range list {
		t.Stop()
	}
	done := make(chan struct{})
	go func() { m.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("timers: waiting for timer callbacks: %w", ctx.Err())
	}
}

func (t *Timer) run() {
	defer t.m.wg.Done()
	defer close(t.done)
	defer func() {
		t.m.mu.Lock()
		delete(t.m.timers, t.id)
		t.m.mu.Unlock()
	}()
	if t.cond != nil {
		t.runCond()
		return
	}
	next := time.Now().Add(t.interval)
	tm := time.NewTimer(t.interval)
	defer tm.Stop()
	for {
		select {
		case <-t.stopCh:
			return
		case <-tm.C:
		}
		if !t.fire() {
			return
		}
		if t.count > 0 {
			if t.count--; t.count == 0 {
				return
			}
		}
		// The next tick on the timer's grid; ticks a slow call made us
		// miss are skipped.
		next = next.Add(t.interval)
		if now := time.Now(); !next.After(now) {
			next = next.Add((now.Sub(next)/t.interval + 1) * t.interval)
		}
		tm.Reset(time.Until(next))
	}
}

func (t *Timer) runCond() {
	tk := time.NewTicker(t.interval)
	defer tk.Stop()
	for {
		select {
		case <-t.stopCh:
			return
		case now := <-tk.C:
			if t.check(now) && !t.fire() {
				return
			}
		}
	}
}

// check runs the condition; a panic counts as false.
func (t *Timer) check(now time.Time) (ok bool) {
	defer func() {
		if p := recover(); p != nil {
			t.m.log.Error("timers: condition panicked", "timer", t.id, "panic", p, "stack", string(debug.Stack()))
			ok = false
		}
	}()
	return t.cond.Check(now)
}

// fire calls fn, unless the timer has stopped (then it returns false). A
// panic is recovered and logged.
func (t *Timer) fire() (ok bool) {
	if t.stopped.Load() {
		return false
	}
	ok = true // a panic below leaves the timer running
	defer func() {
		if p := recover(); p != nil {
			t.m.log.Error("timers: timer function panicked", "timer", t.id, "panic", p, "stack", string(debug.Stack()))
		}
	}()
	t.fn()
	return ok
}
