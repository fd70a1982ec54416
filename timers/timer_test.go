package timers_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nopal-dev/nopal/timers"
)

var discard = slog.New(slog.DiscardHandler)

// wait receives from ch or fails the test after d.
func wait[T any](t *testing.T, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatalf("%s: nothing after %v", what, d)
		var zero T
		return zero
	}
}

// quiet fails the test if ch receives within d.
func quiet[T any](t *testing.T, ch <-chan T, d time.Duration, what string) {
	t.Helper()
	select {
	case <-ch:
		t.Fatalf("%s: fired", what)
	case <-time.After(d):
	}
}

func stopManager(t *testing.T, m *timers.Manager) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := m.Stop(ctx); err != nil {
			t.Error(err)
		}
	})
}

func TestEveryFiresOnItsGrid(t *testing.T) {
	m := timers.NewManager(discard)
	stopManager(t, m)
	const interval = 30 * time.Millisecond
	fired := make(chan time.Time, 16)
	start := time.Now()
	tm := m.NewTimer(interval, func() { fired <- time.Now() })
	for i := 1; i <= 4; i++ {
		at := wait(t, fired, 2*time.Second, "tick")
		// Never early: the n-th call comes n intervals after creation.
		if el := at.Sub(start); el < time.Duration(i)*interval {
			t.Fatalf("tick %d after %v, before %v", i, el, time.Duration(i)*interval)
		}
	}
	tm.Stop()
	wait(t, tm.Done(), 2*time.Second, "done after stop")
	for len(fired) > 0 { // at most one call decided as Stop came
		<-fired
	}
	quiet(t, fired, 4*interval, "a stopped timer")
	if n := m.Len(); n != 0 {
		t.Fatalf("%d timers left after stop", n)
	}
}

func TestCountAndAfter(t *testing.T) {
	m := timers.NewManager(discard)
	stopManager(t, m)
	var calls atomic.Int32
	count := m.NewCountTimer(10*time.Millisecond, 3, func() { calls.Add(1) })
	wait(t, count.Done(), 2*time.Second, "count timer done")
	if n := calls.Load(); n != 3 {
		t.Fatalf("count timer called %d times, want 3", n)
	}
	once := make(chan struct{}, 4)
	after := m.NewAfterTimer(20*time.Millisecond, func() { once <- struct{}{} })
	wait(t, once, 2*time.Second, "after timer")
	wait(t, after.Done(), 2*time.Second, "after timer done")
	quiet(t, once, 60*time.Millisecond, "after timer a second time")

	// Stopped before its time, an after timer never fires.
	never := make(chan struct{}, 1)
	late := m.NewAfterTimer(50*time.Millisecond, func() { never <- struct{}{} })
	late.Stop()
	wait(t, late.Done(), 2*time.Second, "stopped after timer done")
	quiet(t, never, 100*time.Millisecond, "a stopped after timer")
}

func TestCondTimer(t *testing.T) {
	m := timers.NewManager(discard)
	stopManager(t, m)
	if _, err := m.NewCondTimer(nil, func() {}); !errors.Is(err, timers.ErrNilCondition) {
		t.Fatalf("nil condition: %v", err)
	}
	m.SetPrecision(5 * time.Millisecond)
	var open atomic.Bool
	fired := make(chan struct{}, 64)
	tm, err := m.NewCondTimer(timers.ConditionFunc(func(time.Time) bool { return open.Load() }), func() { fired <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	quiet(t, fired, 50*time.Millisecond, "condition false")
	open.Store(true)
	wait(t, fired, 2*time.Second, "condition true")
	wait(t, fired, 2*time.Second, "condition still true")
	tm.Stop()
	wait(t, tm.Done(), 2*time.Second, "done")
}

func TestStopFromCallback(t *testing.T) {
	m := timers.NewManager(discard)
	stopManager(t, m)
	var calls atomic.Int32
	var tm *timers.Timer
	ready := make(chan struct{})
	tm = m.NewTimer(5*time.Millisecond, func() {
		<-ready
		if calls.Add(1) == 2 {
			tm.Stop()
		}
	})
	close(ready)
	wait(t, tm.Done(), 2*time.Second, "done")
	if n := calls.Load(); n != 2 {
		t.Fatalf("%d calls, want 2", n)
	}
}

// syncBuffer is a log sink the timers' goroutines write to.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestPanicIsRecoveredAndLogged(t *testing.T) {
	var logs syncBuffer
	m := timers.NewManager(slog.New(slog.NewTextHandler(&logs, nil)))
	stopManager(t, m)
	fired := make(chan int32, 16)
	var calls atomic.Int32
	tm := m.NewCountTimer(5*time.Millisecond, 3, func() {
		n := calls.Add(1)
		fired <- n
		if n == 1 {
			panic("boom")
		}
	})
	// The timer goes on after the panic.
	for want := int32(1); want <= 3; want++ {
		if got := wait(t, fired, 2*time.Second, "call"); got != want {
			t.Fatalf("call %d, want %d", got, want)
		}
	}
	wait(t, tm.Done(), 2*time.Second, "done")
	out := logs.String()
	if !strings.Contains(out, "timer function panicked") || !strings.Contains(out, "boom") {
		t.Fatalf("panic not logged: %q", out)
	}

	// A panicking condition counts as false, and is logged too.
	logs2 := &syncBuffer{}
	m2 := timers.NewManager(slog.New(slog.NewTextHandler(logs2, nil)))
	stopManager(t, m2)
	m2.SetPrecision(2 * time.Millisecond)
	checked := make(chan struct{}, 64)
	ctm, err := m2.NewCondTimer(timers.ConditionFunc(func(time.Time) bool {
		checked <- struct{}{}
		panic("bad condition")
	}), func() { t.Error("called on a panicking condition") })
	if err != nil {
		t.Fatal(err)
	}
	wait(t, checked, 2*time.Second, "check")
	wait(t, checked, 2*time.Second, "check again")
	ctm.Stop()
	wait(t, ctm.Done(), 2*time.Second, "done")
	if !strings.Contains(logs2.String(), "condition panicked") {
		t.Fatalf("condition panic not logged: %q", logs2.String())
	}
}

func TestManagerStopEndsEveryTimerAndWaits(t *testing.T) {
	m := timers.NewManager(discard)
	inside := make(chan struct{})
	release := make(chan struct{})
	var returned atomic.Bool
	slow := m.NewAfterTimer(time.Millisecond, func() {
		close(inside)
		<-release
		returned.Store(true)
	})
	fired := make(chan struct{}, 64)
	every := m.NewTimer(5*time.Millisecond, func() { fired <- struct{}{} })
	wait(t, inside, 2*time.Second, "slow call")
	wait(t, fired, 2*time.Second, "every")

	// Stop waits for the call under way, within its context.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	if err := m.Stop(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stop with a call under way: %v", err)
	}
	cancel()
	close(release)
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if !returned.Load() {
		t.Fatal("Stop returned before the call under way")
	}
	wait(t, slow.Done(), time.Second, "slow done")
	wait(t, every.Done(), time.Second, "every done")
	for len(fired) > 0 {
		<-fired
	}
	quiet(t, fired, 30*time.Millisecond, "a timer after Manager.Stop")

	// A stopped Manager hands out stopped timers.
	lateFired := make(chan struct{}, 1)
	late := m.NewTimer(time.Millisecond, func() { lateFired <- struct{}{} })
	wait(t, late.Done(), time.Second, "late done")
	quiet(t, lateFired, 20*time.Millisecond, "a timer of a stopped manager")
}

func TestBadArgumentsPanic(t *testing.T) {
	m := timers.NewManager(discard)
	stopManager(t, m)
	for name, f := range map[string]func(){
		"nil fn":         func() { m.NewTimer(time.Second, nil) },
		"zero interval":  func() { m.NewTimer(0, func() {}) },
		"zero count":     func() { m.NewCountTimer(time.Second, 0, func() {}) },
		"precision 1µs":  func() { m.SetPrecision(time.Microsecond) },
		"negative after": func() { m.NewAfterTimer(-time.Second, func() {}) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}
