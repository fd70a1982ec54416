package metrics

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// newSharedSet builds a Set of server type typ on exp; Close at cleanup.
func newSharedSet(t *testing.T, exp *Exporter, typ string) *Set {
	t.Helper()
	s, err := NewSet(Config{Game: "g", ServerType: typ, Exporter: exp})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// Two servers of one process share one endpoint: each one's series are
// there under its own serverType, the runtime collectors once; a Set
// that closes takes its series away and leaves the other's.
func TestSharedExporterServesEverySet(t *testing.T) {
	exp := NewExporter()
	conn := newSharedSet(t, exp, "connector")
	room := newSharedSet(t, exp, "room")
	if conn.Exporter() != exp || room.Registry() != exp.Registry() {
		t.Fatal("the Sets do not report on the shared Exporter")
	}
	scrape := serve(t, conn) // either Set (or the Exporter) serves them all

	conn.SetConnectedClients(3)
	conn.ObserveResponse("room.room.join", TypeHandler, time.Millisecond, "")
	room.ObserveResponse("room.room.join", TypeHandler, 2*time.Millisecond, "")
	room.ObserveHandlerDelay("room.room.join", DelayRemote, time.Millisecond)
	room.SetWorkerJobs("succeeded", 4)
	room.SetWorkerQueueSize("room", 1)

	samples := parseExposition(t, scrape())
	tests := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"nopal_acceptor_connected_clients", map[string]string{"serverType": "connector"}, 3},
		{"nopal_handler_response_time_ns_count", map[string]string{"serverType": "connector", "route": "room.room.join"}, 1},
		{"nopal_handler_response_time_ns_count", map[string]string{"serverType": "room", "route": "room.room.join"}, 1},
		{"nopal_handler_response_time_ns_sum", map[string]string{"serverType": "room"}, 2e6},
		{"nopal_handler_handler_delay_ns_count", map[string]string{"serverType": "room", "type": "remote"}, 1},
		{"nopal_worker_worker_jobs_total", map[string]string{"serverType": "room", "status": "succeeded"}, 4},
		{"nopal_worker_worker_queue_size", map[string]string{"serverType": "room", "queue": "room"}, 1},
		{"nopal_acceptor_connected_clients", map[string]string{"serverType": "room"}, 0},
	}
	for _, tc := range tests {
		if got := mustFind(t, samples, tc.name, tc.labels); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	n := 0
	for _, s := range samples {
		if s.name == "go_goroutines" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("go_goroutines exported %d times, want once", n)
	}

	room.Close()
	samples = parseExposition(t, scrape())
	if _, ok := find(t, samples, "nopal_worker_worker_jobs_total", map[string]string{"serverType": "room"}); ok {
		t.Error("the closed Set's series are still served")
	}
	mustFind(t, samples, "nopal_acceptor_connected_clients", map[string]string{"serverType": "connector"})
	mustFind(t, samples, "go_goroutines", nil)
}

// Sets on one Exporter must be told apart; a custom metric two of them
// declare must agree. A server type whose Set closed may come back.
func TestSharedExporterConflicts(t *testing.T) {
	custom := func(help string) CustomConfig {
		return CustomConfig{Counters: []CustomMetric{{Subsystem: "room", Name: "joins", Help: help}}}
	}
	tests := []struct {
		name        string
		first, next Config
		ok          bool
	}{
		{"other server type", Config{ServerType: "a"}, Config{ServerType: "b"}, true},
		{"same server type", Config{ServerType: "a"}, Config{ServerType: "a"}, false},
		{"const label makes them equal", Config{ServerType: "a"},
			Config{ServerType: "b", ConstLabels: map[string]string{"serverType": "a"}}, false},
		{"same custom metric", Config{ServerType: "a", Custom: custom("joins")},
			Config{ServerType: "b", Custom: custom("joins")}, true},
		{"custom metric with another help", Config{ServerType: "a", Custom: custom("joins")},
			Config{ServerType: "b", Custom: custom("room joins")}, false},
		{"one without runtime collectors", Config{ServerType: "a", DisableRuntimeCollectors: true},
			Config{ServerType: "b"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			exp := NewExporter()
			tc.first.Exporter, tc.next.Exporter = exp, exp
			first, err := NewSet(tc.first)
			if err != nil {
				t.Fatal(err)
			}
			next, err := NewSet(tc.next)
			if (err == nil) != tc.ok {
				t.Fatalf("second Set: err %v, want ok %v", err, tc.ok)
			}
			if err == nil {
				next.Close()
			}
			// The refused Set left nothing behind: the first one's
			// series are all there, once.
			if _, err := exp.Registry().Gather(); err != nil {
				t.Fatalf("gather: %v", err)
			}
			first.Close()
			again, err := NewSet(tc.first)
			if err != nil {
				t.Fatalf("the same server type after Close: %v", err)
			}
			again.Close()
		})
	}
}

// A function given to OnScrape runs before every scrape, so the scrape
// shows what it set; one that blocks delays a scrape by ScrapeWait at most
// and is not started again while it runs.
func TestOnScrape(t *testing.T) {
	s := newSet(t, Config{DisableRuntimeCollectors: true})
	scrape := serve(t, s)
	var n atomic.Int64
	remove := s.OnScrape(func(context.Context) { s.SetWorkerJobsRetry(int(n.Add(1))) })
	for want := 1.0; want <= 3; want++ {
		if got := mustFind(t, parseExposition(t, scrape()), "nopal_worker_worker_jobs_retry_total", nil); got != want {
			t.Fatalf("scrape %v shows %v", want, got)
		}
	}
	remove()
	if got := mustFind(t, parseExposition(t, scrape()), "nopal_worker_worker_jobs_retry_total", nil); got != 3 {
		t.Fatalf("after remove: %v, want 3 (no more runs)", got)
	}

	release := make(chan struct{})
	var starts atomic.Int64
	s.OnScrape(func(ctx context.Context) {
		starts.Add(1)
		<-release
	})
	for range 2 {
		start := time.Now()
		samples := parseExposition(t, scrape())
		if took := time.Since(start); took > ScrapeWait+5*time.Second {
			t.Fatalf("a scrape waited %v for a blocked function", took)
		}
		if got := mustFind(t, samples, "nopal_worker_worker_jobs_retry_total", nil); got != 3 {
			t.Fatalf("the scrape served %v, want 3", got)
		}
	}
	if got := starts.Load(); got != 1 {
		t.Errorf("the blocked function started %d times, want once", got)
	}
	close(release)

	// After Close, no function runs and no series is served.
	s.Close()
	if strings.Contains(scrape(), "nopal_") {
		t.Error("a closed Set's series are served")
	}
	if rm := s.OnScrape(func(context.Context) { t.Error("ran after Close") }); rm == nil {
		t.Error("OnScrape after Close returned nil")
	}
	scrape()
}

// Refresh gives up when its context ends.
func TestRefreshHonoursContext(t *testing.T) {
	exp := NewExporter()
	s := newSharedSet(t, exp, "room")
	release := make(chan struct{})
	defer close(release)
	s.OnScrape(func(ctx context.Context) {
		select {
		case <-release:
		case <-ctx.Done():
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	done := make(chan struct{})
	go func() { exp.Refresh(ctx); close(done) }()
	select {
	case <-done:
	case <-time.After(ScrapeWait / 2):
		t.Fatal("Refresh did not return when its context ended")
	}
}
