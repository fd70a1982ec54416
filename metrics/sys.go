package metrics

import (
	"context"
	"runtime"
	"time"
)

// DefaultSysInterval is StartSysMetrics' period when given 0.
const DefaultSysInterval = 15 * time.Second

// StartSysMetrics reports the sys metrics (Goroutines, HeapSize,
// HeapObjects) once before returning, then every interval (default
// DefaultSysInterval) from a goroutine, until ctx ends.
func (s *Set) StartSysMetrics(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultSysInterval
	}
	s.reportSys()
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				s.reportSys()
			}
		}
	}()
}

func (s *Set) reportSys() {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	g := float64(runtime.NumGoroutine())
	s.goroutines.Set(g)
	s.heapSize.Set(float64(m.Alloc))
	s.heapObjects.Set(float64(m.HeapObjects))
	s.forward(kindGauge, Goroutines, nil, g)
	s.forward(kindGauge, HeapSize, nil, float64(m.Alloc))
	s.forward(kindGauge, HeapObjects, nil, float64(m.HeapObjects))
}
