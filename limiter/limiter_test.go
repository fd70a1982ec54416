package limiter

import (
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

// epoch returns an arbitrary start time for the tests' arrival offsets.
func epoch() time.Time { return time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC) }

// arrival is one request in a scenario: its offset from epoch and whether it
// must be accepted.
type arrival struct {
	at     time.Duration
	accept bool
}

// newLimiter returns a Limiter whose clock stands still at epoch (the tests
// use AllowAt) or fails the test.
func newLimiter(t testing.TB, limit int, interval time.Duration) *Limiter {
	t.Helper()
	l, err := New(limit, interval, WithClock(epoch))
	if err != nil {
		t.Fatalf("New(%d, %v): %v", limit, interval, err)
	}
	return l
}

// checkArrivals feeds arrivals to l in order and checks every decision.
func checkArrivals(t *testing.T, l *Limiter, arrivals []arrival) {
	t.Helper()
	for i, a := range arrivals {
		if got := l.AllowAt(epoch().Add(a.at)); got != a.accept {
			t.Errorf("arrival %d at %v: AllowAt = %v, want %v", i, a.at, got, a.accept)
		}
	}
}

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func TestAllowAt(t *testing.T) {
	tests := []struct {
		name     string
		limit    int
		interval time.Duration
		arrivals []arrival
	}{
		{
			name:  "1/s: the arrival one interval after a drop is accepted",
			limit: 1, interval: time.Second,
			arrivals: []arrival{{ms(0), true}, {ms(200), false}, {ms(1200), true}},
		},
		{
			name:  "1/s: dropped arrivals count",
			limit: 1, interval: time.Second,
			arrivals: []arrival{{ms(0), true}, {ms(200), false}, {ms(1100), false}, {ms(2200), true}},
		},
		{
			name:  "1/s: 1.0 s is only 0.8 s after the dropped 0.2 s arrival",
			limit: 1, interval: time.Second,
			arrivals: []arrival{{ms(0), true}, {ms(200), false}, {ms(1000), false}, {ms(1200), false}, {ms(2200), true}},
		},
		{
			name:  "1/s: exactly one interval apart is accepted",
			limit: 1, interval: time.Second,
			arrivals: []arrival{{ms(0), true}, {ms(1000), true}, {ms(2000), true}, {ms(2999), false}, {ms(3999), true}},
		},
		{
			name:  "1/s: simultaneous arrivals",
			limit: 1, interval: time.Second,
			arrivals: []arrival{{ms(0), true}, {ms(0), false}, {ms(1000), true}},
		},
		{
			name:  "1/s: a flooding client stays throttled until it slows down",
			limit: 1, interval: time.Second,
			arrivals: []arrival{
				{ms(0), true},
				{ms(900), false}, {ms(1800), false}, {ms(2700), false}, {ms(3600), false},
				{ms(4600), true},
			},
		},
		{
			name:  "3/s: a burst of limit is accepted, the rest dropped",
			limit: 3, interval: time.Second,
			arrivals: []arrival{
				{ms(0), true}, {ms(0), true}, {ms(0), true},
				{ms(0), false},    // remembered: 0, 0, 0
				{ms(10), false},   // remembered: 0, 0, 0 (the 2nd, 3rd and dropped 4th)
				{ms(1000), true},  // remembered: 0, 0, 10; the oldest is 1000 ms ago
				{ms(1005), true},  // remembered: 0 (dropped), 10, 1000
				{ms(1009), false}, // remembered: 10, 1000, 1005; 10 is 999 ms ago
				{ms(2009), true},  // remembered: 1000, 1005, 1009
			},
		},
		{
			name:  "3/s: arrivals spread over the interval",
			limit: 3, interval: time.Second,
			arrivals: []arrival{
				{ms(0), true}, {ms(400), true}, {ms(800), true},
				{ms(999), false},  // remembered: 0, 400, 800; 0 is 999 ms ago
				{ms(1400), true},  // remembered: 400, 800, 999; 400 is 1000 ms ago
				{ms(1500), false}, // remembered: 800, 999, 1400
				{ms(1800), false}, // remembered: 999, 1400, 1500; 999 is 801 ms ago
				{ms(2400), true},  // remembered: 1400, 1500, 1800
				{ms(2500), true},  // remembered: 1500, 1800, 2400
				{ms(2600), false}, // remembered: 1800, 2400, 2500
			},
		},
		{
			name:  "3/s: a quiet interval restores the full burst",
			limit: 3, interval: time.Second,
			arrivals: []arrival{
				{ms(0), true}, {ms(0), true}, {ms(0), true}, {ms(0), false}, {ms(0), false},
				{ms(1000), true}, {ms(1000), true}, {ms(1000), true}, {ms(1000), false},
				{ms(2000), true}, {ms(2000), true}, {ms(2000), true},
			},
		},
		{
			name:  "time going backwards is dropped",
			limit: 1, interval: time.Second,
			arrivals: []arrival{{ms(5000), true}, {ms(1000), false}, {ms(2000), true}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkArrivals(t, newLimiter(t, tt.limit, tt.interval), tt.arrivals)
		})
	}
}

// reference is a straightforward model of the documented rule: it keeps every
// arrival and accepts a request if fewer than limit earlier arrivals (accepted
// or dropped) happened in the interval that ends with it.
type reference struct {
	limit    int
	interval time.Duration
	arrivals []time.Duration
}

func (r *reference) allow(at time.Duration) bool {
	recent := 0
	for _, a := range r.arrivals {
		if at-a < r.interval {
			recent++
		}
	}
	r.arrivals = append(r.arrivals, at)
	return recent < r.limit
}

// TestAllowAtMatchesReference checks the ring against the model on random
// non-decreasing arrival times, bursty and sparse.
func TestAllowAtMatchesReference(t *testing.T) {
	tests := []struct {
		limit    int
		interval time.Duration
		maxGap   time.Duration
	}{
		{1, time.Second, 1500 * time.Millisecond},
		{2, time.Second, 700 * time.Millisecond},
		{5, 100 * time.Millisecond, 40 * time.Millisecond},
		{20, time.Second, 100 * time.Millisecond},
		{7, time.Millisecond, time.Millisecond},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tt := range tests {
		l := newLimiter(t, tt.limit, tt.interval)
		ref := &reference{limit: tt.limit, interval: tt.interval}
		var at time.Duration
		accepted := 0
		for i := range 2000 {
			if rng.IntN(4) > 0 { // a quarter of arrivals are simultaneous
				at += time.Duration(rng.Int64N(int64(tt.maxGap) + 1))
			}
			want := ref.allow(at)
			if got := l.AllowAt(epoch().Add(at)); got != want {
				t.Fatalf("limit %d per %v, arrival %d at %v: AllowAt = %v, reference says %v",
					tt.limit, tt.interval, i, at, got, want)
			}
			if want {
				accepted++
			}
		}
		if accepted == 0 || accepted == 2000 {
			t.Errorf("limit %d per %v: %d of 2000 accepted; the case does not exercise both outcomes",
				tt.limit, tt.interval, accepted)
		}
	}
}

func TestAllowUsesClock(t *testing.T) {
	now := epoch()
	l, err := New(2, time.Second, WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		advance time.Duration
		want    bool
	}{
		{0, true},
		{ms(100), true},
		{ms(100), false}, // at 200 ms: remembered 0 and 100 ms
		{ms(900), true},  // at 1100 ms: the 100 ms arrival is 1 s old
		{ms(50), false},  // at 1150 ms: the dropped 200 ms arrival is 950 ms old
		{ms(1000), true}, // at 2150 ms: remembered 1100 and 1150 ms
		{ms(1), true},    // at 2151 ms: the 1150 ms arrival is 1001 ms old
		{ms(1), false},   // at 2152 ms: remembered 2150 and 2151 ms
	}
	for i, s := range steps {
		now = now.Add(s.advance)
		if got := l.Allow(); got != s.want {
			t.Errorf("step %d at %v: Allow = %v, want %v", i, now.Sub(epoch()), got, s.want)
		}
	}
}

func TestAllowDefaultClock(t *testing.T) {
	l, err := New(1, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !l.Allow() {
		t.Error("first Allow = false, want true")
	}
	if l.Allow() {
		t.Error("second Allow within the hour = true, want false")
	}
}

func TestNewInvalid(t *testing.T) {
	tests := []struct {
		name     string
		limit    int
		interval time.Duration
		opts     []Option
	}{
		{"zero limit", 0, time.Second, nil},
		{"negative limit", -1, time.Second, nil},
		{"zero interval", 1, 0, nil},
		{"negative interval", 1, -time.Second, nil},
		{"nil clock", 1, time.Second, []Option{WithClock(nil)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := New(tt.limit, tt.interval, tt.opts...)
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("New(%d, %v) error = %v, want ErrInvalidConfig", tt.limit, tt.interval, err)
			}
			if l != nil {
				t.Errorf("New(%d, %v) returned a Limiter with an error", tt.limit, tt.interval)
			}
		})
	}
}

func TestAllowDoesNotAllocate(t *testing.T) {
	l := newLimiter(t, 10, time.Second)
	at := epoch()
	allocs := testing.AllocsPerRun(1000, func() {
		at = at.Add(time.Millisecond)
		l.AllowAt(at)
		l.Allow()
	})
	if allocs != 0 {
		t.Errorf("Allow and AllowAt allocate %v times per call, want 0", allocs)
	}
}

func BenchmarkAllow(b *testing.B) {
	l, err := New(10, time.Second)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		l.Allow()
	}
}

func BenchmarkAllowAt(b *testing.B) {
	l := newLimiter(b, 10, time.Second)
	at := epoch()
	b.ReportAllocs()
	for b.Loop() {
		at = at.Add(time.Millisecond)
		l.AllowAt(at)
	}
}
