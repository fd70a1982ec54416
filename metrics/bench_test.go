package metrics

import (
	"strconv"
	"testing"
	"time"
)

// BenchmarkObserveResponse measures the request-path cost of one response:
// summary + histogram observation, and the fan-out when Reporters are set.
// Run with -benchmem; the target is 0 allocs/op.
func BenchmarkObserveResponse(b *testing.B) {
	for _, bc := range []struct {
		name      string
		reporters []Reporter
	}{
		{"prometheus", nil},
		{"prometheus+reporter", []Reporter{nopReporter{}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := newSet(b, Config{Game: "g", ServerType: "room"}, bc.reporters...)
			routes := make([]string, 16)
			for i := range routes {
				routes[i] = "room.room.action" + strconv.Itoa(i)
				s.ObserveResponse(routes[i], TypeHandler, time.Millisecond, "")
			}
			b.ReportAllocs()
			b.ResetTimer()
			i := 0
			for b.Loop() {
				s.ObserveResponse(routes[i&15], TypeHandler, time.Duration(i), "")
				i++
			}
		})
	}
	b.Run("parallel", func(b *testing.B) {
		s := newSet(b, Config{})
		s.ObserveResponse("room.room.join", TypeHandler, time.Millisecond, "")
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				s.ObserveResponse("room.room.join", TypeHandler, time.Millisecond, "")
			}
		})
	})
}

// BenchmarkStatsd is the same call with the Statsd reporter behind it
// (sending to a loopback UDP socket nobody reads).
func BenchmarkStatsd(b *testing.B) {
	sd, err := NewStatsd("127.0.0.1:9", "nopal.", map[string]string{"game": "g"}, 1)
	if err != nil {
		b.Fatal(err)
	}
	defer sd.Close()
	s := newSet(b, Config{}, sd)
	b.ReportAllocs()
	for b.Loop() {
		s.ObserveResponse("room.room.join", TypeHandler, time.Millisecond, "")
	}
}
