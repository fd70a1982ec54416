package metrics

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"reflect"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

func newSet(t testing.TB, cfg Config, r ...Reporter) *Set {
	t.Helper()
	s, err := NewSet(cfg, r...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestResponseTimeExported(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		name      string
		namespace string
		prefix    string
	}{
		{"default namespace", "", "nopal_"},
		{"pitaya namespace", "pitaya", "pitaya_"},
		{"own namespace", "mygame", "mygame_"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSet(t, Config{Namespace: tc.namespace, Game: "g1", ServerType: "room",
				ConstLabels: map[string]string{"region": "eu"}})
			scrape := serve(t, s)
			for _, d := range []time.Duration{1 * ms, 3 * ms, 20 * ms, 700 * ms} {
				s.ObserveResponse("room.room.join", TypeHandler, d, "")
			}
			s.ObserveResponse("room.room.join", TypeHandler, 2*ms, "PIT-500")
			s.ObserveResponse("connector.auth", TypeRPC, 30*ms, "")

			got := parseExposition(t, scrape())
			base := map[string]string{"game": "g1", "serverType": "room", "region": "eu"}
			ok := with(base, "route", "room.room.join", "status", "ok", "type", "handler", "code", "")
			failed := with(base, "route", "room.room.join", "status", "failed", "type", "handler", "code", "PIT-500")
			rpc := with(base, "route", "connector.auth", "status", "ok", "type", "rpc", "code", "")

			sum := tc.prefix + ResponseTime
			hist := tc.prefix + ResponseTimeHistogram
			for _, c := range []struct {
				name string
				lbl  map[string]string
				want float64
			}{
				{sum + "_count", ok, 4},
				{sum + "_sum", ok, float64(724 * ms)},
				{sum + "_count", failed, 1},
				{sum + "_count", rpc, 1},
				{hist + "_count", ok, 4},
				{hist + "_sum", ok, float64(724 * ms)},
				{hist + "_count", failed, 1},
				{hist + "_bucket", with(ok, "le", fmt.Sprint(float64(1*ms))), 1},
				{hist + "_bucket", with(ok, "le", fmt.Sprint(float64(5*ms))), 2},
				{hist + "_bucket", with(ok, "le", fmt.Sprint(float64(25*ms))), 3},
				{hist + "_bucket", with(ok, "le", fmt.Sprint(float64(500*ms))), 3},
				{hist + "_bucket", with(ok, "le", fmt.Sprint(float64(1000*ms))), 4},
				{hist + "_bucket", with(ok, "le", "+Inf"), 4},
			} {
				if v := mustFind(t, got, c.name, c.lbl); v != c.want {
					t.Errorf("%s%s = %v, want %v", c.name, label(c.lbl), v, c.want)
				}
			}
			for _, q := range []string{"0.5", "0.7", "0.9", "0.95", "0.99"} {
				v := mustFind(t, got, sum, with(ok, "quantile", q))
				if v < float64(ms) || v > float64(700*ms) {
					t.Errorf("quantile %s = %v, outside the observed range", q, v)
				}
			}
			if v := mustFind(t, got, sum, with(ok, "quantile", "0.99")); v != float64(700*ms) {
				t.Errorf("p99 = %v, want %v", v, float64(700*ms))
			}
		})
	}
}

// with returns a copy of m with the given key/value pairs set.
func with(m map[string]string, kv ...string) map[string]string {
	out := maps.Clone(m)
	if out == nil {
		out = map[string]string{}
	}
	for i := 0; i < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

func TestBuiltinGaugesAndCounters(t *testing.T) {
	type check struct {
		name string
		lbl  map[string]string
		want float64
	}
	for _, tc := range []struct {
		name  string
		do    func(s *Set)
		check []check
	}{
		{"server count follows calls", func(s *Set) {
			s.SetServerCount("room", 3)
			s.SetServerCount("connector", 2)
			s.SetServerCount("room", 1)
		}, []check{
			{"nopal_service_discovery_count_servers", map[string]string{"type": "room"}, 1},
			{"nopal_service_discovery_count_servers", map[string]string{"type": "connector"}, 2},
		}},
		{"server count back to zero", func(s *Set) {
			s.SetServerCount("room", 5)
			s.SetServerCount("room", 0)
		}, []check{
			{"nopal_service_discovery_count_servers", map[string]string{"type": "room"}, 0},
		}},
		{"rate limiting counter moves", func(s *Set) {
			for range 3 {
				s.IncRateLimited()
			}
		}, []check{{"nopal_acceptor_exceeded_rate_limiting", nil, 3}}},
		{"acceptor abuse counters add what they are given", func(s *Set) {
			s.AddMalformedPackets(2)
			s.AddMalformedPackets(3)
			s.AddHandshakeFailures(1)
			s.AddHeartbeatTimeouts(4)
			s.AddSlowClients(5)
			s.AddSlowClients(0)  // nothing new since the last sample
			s.AddSlowClients(-1) // counters never go down
			s.AddParkedConnections(6)
		}, []check{
			{"nopal_acceptor_parked_connections", nil, 6},
			{"nopal_acceptor_malformed_packets", nil, 5},
			{"nopal_acceptor_handshake_failures", nil, 1},
			{"nopal_acceptor_heartbeat_timeouts", nil, 4},
			{"nopal_acceptor_slow_clients", nil, 5},
		}},
		{"connected clients", func(s *Set) {
			s.SetConnectedClients(10)
			s.SetConnectedClients(7)
		}, []check{{"nopal_acceptor_connected_clients", nil, 7}}},
		{"dropped messages total", func(s *Set) {
			s.IncDroppedMessages()
			s.IncDroppedMessages()
		}, []check{{"nopal_rpc_server_dropped_messages", nil, 2}}},
		{"channel capacity", func(s *Set) {
			s.SetChannelCapacity("rpc_server_subchan", 90)
		}, []check{{"nopal_channel_channel_capacity", map[string]string{"channel": "rpc_server_subchan"}, 90}}},
		{"worker", func(s *Set) {
			s.SetWorkerJobs("ok", 12)
			s.SetWorkerJobs("failed", 2)
			s.SetWorkerJobsRetry(4)
			s.SetWorkerQueueSize("default", 8)
		}, []check{
			{"nopal_worker_worker_jobs_total", map[string]string{"status": "ok"}, 12},
			{"nopal_worker_worker_jobs_total", map[string]string{"status": "failed"}, 2},
			{"nopal_worker_worker_jobs_retry_total", nil, 4},
			{"nopal_worker_worker_queue_size", map[string]string{"queue": "default"}, 8},
		}},
		{"handler delay", func(s *Set) {
			s.ObserveHandlerDelay("room.room.join", DelayLocal, time.Millisecond)
			s.ObserveHandlerDelay("room.room.join", DelayLocal, 3*time.Millisecond)
			s.ObserveHandlerDelay("room.room.join", DelayRemote, time.Millisecond)
		}, []check{
			{"nopal_handler_handler_delay_ns_count", map[string]string{"route": "room.room.join", "type": "local"}, 2},
			{"nopal_handler_handler_delay_ns_sum", map[string]string{"route": "room.room.join", "type": "local"}, 4e6},
			{"nopal_handler_handler_delay_ns_count", map[string]string{"route": "room.room.join", "type": "remote"}, 1},
			{"nopal_handler_handler_delay_ns", map[string]string{"route": "room.room.join", "type": "local", "quantile": "0.99"}, 3e6},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSet(t, Config{ServerType: "room"})
			scrape := serve(t, s)
			tc.do(s)
			got := parseExposition(t, scrape())
			for _, c := range tc.check {
				lbl := with(c.lbl, "serverType", "room", "game", "")
				if v := mustFind(t, got, c.name, lbl); v != c.want {
					t.Errorf("%s%s = %v, want %v", c.name, label(lbl), v, c.want)
				}
			}
		})
	}
}

func TestEveryBuiltinRegistered(t *testing.T) {
	s := newSet(t, Config{Namespace: "pitaya", DisableRuntimeCollectors: true})
	// Exercise every metric once so each vector has a child to export.
	s.ObserveResponse("r", TypeHandler, 1, "")
	s.ObserveHandlerDelay("r", DelayLocal, 1)
	s.SetConnectedClients(1)
	s.IncRateLimited()
	s.AddMalformedPackets(1)
	s.AddHandshakeFailures(1)
	s.AddHeartbeatTimeouts(1)
	s.AddSlowClients(1)
	s.SetServerCount("t", 1)
	s.IncDroppedMessages()
	s.SetChannelCapacity("c", 1)
	s.SetWorkerJobs("ok", 1)
	s.SetWorkerJobsRetry(1)
	s.SetWorkerQueueSize("q", 1)
	s.StartSysMetrics(t.Context(), time.Hour)

	mfs, err := s.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, mf := range mfs {
		got[mf.GetName()] = mf.GetType().String()
	}
	want := map[string]string{
		"pitaya_handler_response_time_ns":        "SUMMARY",
		"pitaya_handler_response_time_ns_hist":   "HISTOGRAM",
		"pitaya_handler_handler_delay_ns":        "SUMMARY",
		"pitaya_acceptor_connected_clients":      "GAUGE",
		"pitaya_acceptor_exceeded_rate_limiting": "COUNTER",
		"pitaya_acceptor_malformed_packets":      "COUNTER",
		"pitaya_acceptor_handshake_failures":     "COUNTER",
		"pitaya_acceptor_heartbeat_timeouts":     "COUNTER",
		"pitaya_acceptor_slow_clients":           "COUNTER",
		"pitaya_acceptor_parked_connections":     "COUNTER",
		"pitaya_acceptor_refused_connections":    "COUNTER",
		"pitaya_service_discovery_count_servers": "GAUGE",
		"pitaya_rpc_server_dropped_messages":     "GAUGE",
		"pitaya_channel_channel_capacity":        "GAUGE",
		"pitaya_sys_goroutines":                  "GAUGE",
		"pitaya_sys_heapsize":                    "GAUGE",
		"pitaya_sys_heapobjects":                 "GAUGE",
		"pitaya_worker_worker_jobs_total":        "GAUGE",
		"pitaya_worker_worker_jobs_retry_total":  "GAUGE",
		"pitaya_worker_worker_queue_size":        "GAUGE",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("registered metrics:\n got %v\nwant %v", got, want)
	}
}

func TestRuntimeCollectors(t *testing.T) {
	for _, tc := range []struct {
		disable bool
		want    bool
	}{{false, true}, {true, false}} {
		t.Run(strconv.FormatBool(tc.disable), func(t *testing.T) {
			s := newSet(t, Config{DisableRuntimeCollectors: tc.disable})
			got := parseExposition(t, serve(t, s)())
			_, ok := find(t, got, "go_goroutines", nil)
			if ok != tc.want {
				t.Errorf("go_goroutines exported = %v, want %v", ok, tc.want)
			}
		})
	}
}

func TestSysMetrics(t *testing.T) {
	s := newSet(t, Config{})
	scrape := serve(t, s)
	rec := &recorder{}
	s2 := newSet(t, Config{}, rec)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.StartSysMetrics(ctx, time.Hour)
	s2.StartSysMetrics(ctx, time.Hour)

	got := parseExposition(t, scrape())
	for _, name := range []string{"nopal_sys_goroutines", "nopal_sys_heapsize", "nopal_sys_heapobjects"} {
		if v := mustFind(t, got, name, nil); v <= 0 {
			t.Errorf("%s = %v, want > 0", name, v)
		}
	}
	seen := map[string]bool{}
	for _, c := range rec.take() {
		if c.method != "gauge" || c.v <= 0 {
			t.Errorf("unexpected call %+v", c)
		}
		seen[c.name] = true
	}
	if want := map[string]bool{Goroutines: true, HeapSize: true, HeapObjects: true}; !reflect.DeepEqual(seen, want) {
		t.Errorf("reporter saw %v, want %v", seen, want)
	}
}

func TestSysMetricsTicks(t *testing.T) {
	// A reporter that signals each sys report lets the test wait for the
	// ticker without sleeping.
	tick := make(chan struct{}, 16)
	r := &signalReporter{name: Goroutines, ch: tick}
	s := newSet(t, Config{}, r)
	ctx, cancel := context.WithCancel(context.Background())
	s.StartSysMetrics(ctx, time.Millisecond)
	for range 3 { // the synchronous report plus two ticks
		select {
		case <-tick:
		case <-time.After(10 * time.Second):
			t.Fatal("no periodic sys report")
		}
	}
	cancel()
}

type signalReporter struct {
	nopReporter
	name string
	ch   chan struct{}
}

func (r *signalReporter) ReportGauge(name string, _ map[string]string, _ float64) error {
	if name == r.name {
		select {
		case r.ch <- struct{}{}:
		default:
		}
	}
	return nil
}

func customConfig() CustomConfig {
	return CustomConfig{
		Counters: []CustomMetric{{Subsystem: "room", Name: "joins_total", Help: "room joins", Labels: []string{"mode"}}},
		Gauges:   []CustomMetric{{Subsystem: "room", Name: "players", Labels: []string{"mode", "map"}}},
		Summaries: []CustomMetric{{Name: "match_duration_seconds", Labels: []string{"mode"},
			Objectives: map[float64]float64{0.5: 0.05, 0.99: 0.001}}},
		Histograms: []CustomMetric{{Subsystem: "room", Name: "wait_seconds", Labels: []string{"mode"},
			Buckets: []float64{1, 5, 10}}},
	}
}

func TestCustomMetrics(t *testing.T) {
	rec := &recorder{}
	s := newSet(t, Config{Namespace: "pitaya", Custom: customConfig()}, rec)
	scrape := serve(t, s)

	for _, tc := range []struct {
		name    string
		do      func() error
		method  string
		metric  string
		tags    map[string]string
		v       float64
		samples map[string]float64 // sample name + label() -> value; checked below
	}{
		{"counter", func() error { return s.Count("room_joins_total", map[string]string{"mode": "duel"}, 2) },
			"count", "room_joins_total", map[string]string{"mode": "duel"}, 2, nil},
		{"gauge", func() error {
			return s.Gauge("room_players", map[string]string{"mode": "duel", "map": "dust"}, 6)
		}, "gauge", "room_players", map[string]string{"mode": "duel", "map": "dust"}, 6, nil},
		{"gauge missing label reports empty", func() error {
			return s.Gauge("room_players", map[string]string{"mode": "ffa"}, 3)
		}, "gauge", "room_players", map[string]string{"mode": "ffa"}, 3, nil},
		{"summary", func() error { return s.Observe("match_duration_seconds", map[string]string{"mode": "duel"}, 42) },
			"summary", "match_duration_seconds", map[string]string{"mode": "duel"}, 42, nil},
		{"histogram", func() error { return s.Observe("room_wait_seconds", map[string]string{"mode": "duel"}, 3) },
			"histogram", "room_wait_seconds", map[string]string{"mode": "duel"}, 3, nil},
		{"histogram through ReportHistogram", func() error {
			return s.ReportHistogram("room_wait_seconds", map[string]string{"mode": "duel"}, 7)
		}, "histogram", "room_wait_seconds", map[string]string{"mode": "duel"}, 7, nil},
		{"built-in gauge by name", func() error {
			return s.Gauge(CountServers, map[string]string{"type": "room"}, 4)
		}, "gauge", CountServers, map[string]string{"type": "room"}, 4, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.do(); err != nil {
				t.Fatal(err)
			}
			calls := rec.take()
			want := []call{{tc.method, tc.metric, tc.tags, tc.v}}
			if !reflect.DeepEqual(calls, want) {
				t.Errorf("reporter got %+v, want %+v", calls, want)
			}
		})
	}

	got := parseExposition(t, scrape())
	for _, c := range []struct {
		name string
		lbl  map[string]string
		want float64
	}{
		{"pitaya_room_joins_total", map[string]string{"mode": "duel"}, 2},
		{"pitaya_room_players", map[string]string{"mode": "duel", "map": "dust"}, 6},
		{"pitaya_room_players", map[string]string{"mode": "ffa", "map": ""}, 3},
		{"pitaya_match_duration_seconds", map[string]string{"mode": "duel", "quantile": "0.5"}, 42},
		{"pitaya_match_duration_seconds", map[string]string{"mode": "duel", "quantile": "0.99"}, 42},
		{"pitaya_match_duration_seconds_count", map[string]string{"mode": "duel"}, 1},
		{"pitaya_room_wait_seconds_bucket", map[string]string{"mode": "duel", "le": "1"}, 0},
		{"pitaya_room_wait_seconds_bucket", map[string]string{"mode": "duel", "le": "5"}, 1},
		{"pitaya_room_wait_seconds_bucket", map[string]string{"mode": "duel", "le": "10"}, 2},
		{"pitaya_room_wait_seconds_count", map[string]string{"mode": "duel"}, 2},
		{"pitaya_service_discovery_count_servers", map[string]string{"type": "room"}, 4},
	} {
		lbl := with(c.lbl, "game", "", "serverType", "")
		if v := mustFind(t, got, c.name, lbl); v != c.want {
			t.Errorf("%s%s = %v, want %v", c.name, label(lbl), v, c.want)
		}
	}
	if _, ok := find(t, got, "pitaya_match_duration_seconds", map[string]string{"quantile": "0.9"}); ok {
		t.Error("custom objectives ignored: quantile 0.9 exported")
	}
}

func TestCustomErrors(t *testing.T) {
	rec := &recorder{}
	s := newSet(t, Config{Custom: customConfig()}, rec)
	for _, tc := range []struct {
		name string
		do   func() error
		want error
	}{
		{"unknown counter", func() error { return s.Count("nope", nil, 1) }, ErrUnknownMetric},
		{"unknown gauge", func() error { return s.Gauge("nope", nil, 1) }, ErrUnknownMetric},
		{"unknown observe", func() error { return s.Observe("nope", nil, 1) }, ErrUnknownMetric},
		{"name without subsystem", func() error { return s.Count("joins_total", nil, 1) }, ErrUnknownMetric},
		{"counter as gauge", func() error { return s.Gauge("room_joins_total", nil, 1) }, ErrUnknownMetric},
		{"gauge as counter", func() error { return s.Count("room_players", nil, 1) }, ErrUnknownMetric},
		{"histogram as summary", func() error { return s.ReportSummary("room_wait_seconds", nil, 1) }, ErrUnknownMetric},
		{"summary as histogram", func() error { return s.ReportHistogram("match_duration_seconds", nil, 1) }, ErrUnknownMetric},
		{"unknown label", func() error {
			return s.Count("room_joins_total", map[string]string{"mode": "x", "zone": "y"}, 1)
		}, ErrUnknownLabel},
		{"negative count", func() error { return s.Count("room_joins_total", nil, -1) }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.do()
			if err == nil {
				t.Fatal("no error")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("error %v, want %v", err, tc.want)
			}
			if c := rec.take(); len(c) != 0 {
				t.Errorf("failed call forwarded: %+v", c)
			}
		})
	}
}

func TestNewSetErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"buckets not increasing", Config{Buckets: []float64{1, 3, 2}}},
		{"buckets NaN", Config{Buckets: []float64{1, math.NaN()}}},
		{"reserved const label", Config{ConstLabels: map[string]string{"le": "x"}}},
		{"bad const label name", Config{ConstLabels: map[string]string{"1bad": "x"}}},
		{"bad namespace", Config{Namespace: "no-dash"}},
		{"summary age buckets negative", Config{SummaryAgeBuckets: -1}},
		{"summary age buckets too many", Config{SummaryAgeBuckets: maxSummaryAgeBuckets + 1}},
		{"custom collides with built-in", Config{Custom: CustomConfig{Gauges: []CustomMetric{{Subsystem: "sys", Name: "goroutines"}}}}},
		{"custom duplicate across kinds", Config{Custom: CustomConfig{
			Counters: []CustomMetric{{Name: "x"}}, Gauges: []CustomMetric{{Name: "x"}}}}},
		{"custom without name", Config{Custom: CustomConfig{Counters: []CustomMetric{{Subsystem: "a"}}}}},
		{"custom summary quantile label", Config{Custom: CustomConfig{Summaries: []CustomMetric{{Name: "s", Labels: []string{"quantile"}}}}}},
		{"custom histogram le label", Config{Custom: CustomConfig{Histograms: []CustomMetric{{Name: "h", Labels: []string{"le"}}}}}},
		{"custom histogram bad buckets", Config{Custom: CustomConfig{Histograms: []CustomMetric{{Name: "h", Buckets: []float64{2, 2}}}}}},
		{"custom summary bad objective", Config{Custom: CustomConfig{Summaries: []CustomMetric{{Name: "s", Objectives: map[float64]float64{1.5: 0.1}}}}}},
		{"custom label clashes with const label", Config{Custom: CustomConfig{Counters: []CustomMetric{{Name: "c", Labels: []string{"game"}}}}}},
		{"custom bad name", Config{Custom: CustomConfig{Gauges: []CustomMetric{{Name: "a b"}}}}},
		{"custom reserved label name", Config{Custom: CustomConfig{Gauges: []CustomMetric{{Name: "g", Labels: []string{"__x"}}}}}},
		{"custom bad label name", Config{Custom: CustomConfig{Counters: []CustomMetric{{Name: "c", Labels: []string{"a-b"}}}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewSet(tc.cfg); err == nil {
				t.Error("NewSet accepted a bad config")
			}
		})
	}
	if _, err := NewSet(Config{}, nil); err == nil {
		t.Error("NewSet accepted a nil Reporter")
	}
	for _, ages := range []int{1, 5, maxSummaryAgeBuckets} { // 5: Pitaya's
		if _, err := NewSet(Config{SummaryAgeBuckets: ages}); err != nil {
			t.Errorf("SummaryAgeBuckets %d: %v", ages, err)
		}
	}
}

func TestReporterReceivesEveryCall(t *testing.T) {
	rec := &recorder{}
	s := newSet(t, Config{}, rec, nopReporter{}) // several reporters at once
	ms := time.Millisecond
	for _, tc := range []struct {
		name string
		do   func()
		want []call
	}{
		{"response ok", func() { s.ObserveResponse("a.b.c", TypeHandler, 2*ms, "") },
			[]call{{"summary", ResponseTime, map[string]string{"route": "a.b.c", "status": "ok", "type": "handler", "code": ""}, 2e6}}},
		{"response failed", func() { s.ObserveResponse("a.b.c", TypeRPC, ms, "PIT-404") },
			[]call{{"summary", ResponseTime, map[string]string{"route": "a.b.c", "status": "failed", "type": "rpc", "code": "PIT-404"}, 1e6}}},
		{"handler delay", func() { s.ObserveHandlerDelay("a.b.c", DelayRemote, ms) },
			[]call{{"summary", ProcessDelay, map[string]string{"route": "a.b.c", "type": "remote"}, 1e6}}},
		{"connected", func() { s.SetConnectedClients(5) }, []call{{"gauge", ConnectedClients, nil, 5}}},
		{"rate limited", func() { s.IncRateLimited() }, []call{{"count", ExceededRateLimiting, nil, 1}}},
		{"malformed", func() { s.AddMalformedPackets(3) }, []call{{"count", MalformedPackets, nil, 3}}},
		{"handshake failures", func() { s.AddHandshakeFailures(1) }, []call{{"count", HandshakeFailures, nil, 1}}},
		{"heartbeat timeouts", func() { s.AddHeartbeatTimeouts(2) }, []call{{"count", HeartbeatTimeouts, nil, 2}}},
		{"slow clients", func() { s.AddSlowClients(1); s.AddSlowClients(0) }, []call{{"count", SlowClients, nil, 1}}},
		{"servers", func() { s.SetServerCount("room", 2) },
			[]call{{"gauge", CountServers, map[string]string{"type": "room"}, 2}}},
		{"dropped", func() { s.IncDroppedMessages(); s.IncDroppedMessages() },
			[]call{{"gauge", DroppedMessages, nil, 1}, {"gauge", DroppedMessages, nil, 2}}},
		{"channel", func() { s.SetChannelCapacity("ch", 9) },
			[]call{{"gauge", ChannelCapacity, map[string]string{"channel": "ch"}, 9}}},
		{"jobs", func() { s.SetWorkerJobs("failed", 3) },
			[]call{{"gauge", WorkerJobsTotal, map[string]string{"status": "failed"}, 3}}},
		{"retries", func() { s.SetWorkerJobsRetry(4) }, []call{{"gauge", WorkerJobsRetry, nil, 4}}},
		{"queue", func() { s.SetWorkerQueueSize("q", 6) },
			[]call{{"gauge", WorkerQueueSize, map[string]string{"queue": "q"}, 6}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.do()
			got := rec.take()
			for i := range got { // nil and empty tags are the same to a reader
				if len(got[i].tags) == 0 {
					got[i].tags = nil
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

type failingReporter struct{ nopReporter }

var errBackend = errors.New("backend down")

func (failingReporter) ReportGauge(string, map[string]string, float64) error { return errBackend }

func TestErrorHandler(t *testing.T) {
	var mu sync.Mutex
	var got []string
	s := newSet(t, Config{ErrorHandler: func(name string, err error) {
		mu.Lock()
		defer mu.Unlock()
		if errors.Is(err, errBackend) {
			got = append(got, name)
		}
	}}, failingReporter{})
	s.SetConnectedClients(1)
	s.IncRateLimited() // counts succeed
	if !reflect.DeepEqual(got, []string{ConnectedClients}) {
		t.Errorf("error handler saw %v", got)
	}
}

func TestServeStopsWithContext(t *testing.T) {
	s := newSet(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	addr, err := s.Serve(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	cancel()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr.String())
		if err != nil {
			break // listener closed
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("server still accepting after its context ended")
		}
		runtime.Gosched()
	}
	if _, err := s.Serve(context.Background(), "127.0.0.1:bad"); err == nil {
		t.Error("Serve accepted a bad address")
	}
}

// TestConcurrentUse runs the request path, custom metrics and scrapes at
// once; run with -race.
func TestConcurrentUse(t *testing.T) {
	rec := &recorder{}
	s := newSet(t, Config{Custom: customConfig()}, rec)
	scrape := serve(t, s)
	const workers, each = 8, 200
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			route := "r" + strconv.Itoa(w%3)
			for i := range each {
				s.ObserveResponse(route, TypeHandler, time.Duration(i), "")
				s.ObserveHandlerDelay(route, DelayLocal, time.Duration(i))
				s.SetServerCount(route, i)
				s.IncRateLimited()
				if err := s.Count("room_joins_total", map[string]string{"mode": route}, 1); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for range 5 {
			scrape()
		}
	})
	wg.Wait()
	got := parseExposition(t, scrape())
	if v := mustFind(t, got, "nopal_acceptor_exceeded_rate_limiting", nil); v != workers*each {
		t.Errorf("rate limited = %v, want %d", v, workers*each)
	}
	var n float64
	for r := range 3 {
		n += mustFind(t, got, "nopal_handler_response_time_ns_count", map[string]string{"route": "r" + strconv.Itoa(r)})
	}
	if n != workers*each {
		t.Errorf("responses = %v, want %d", n, workers*each)
	}
	if c := len(rec.take()); c != workers*each*5 {
		t.Errorf("reporter got %d calls, want %d", c, workers*each*5)
	}
}

func TestObserveResponseAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts")
	}
	for _, tc := range []struct {
		name      string
		reporters []Reporter
	}{
		{"prometheus only", nil},
		{"with a reporter", []Reporter{nopReporter{}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSet(t, Config{}, tc.reporters...)
			s.ObserveResponse("room.room.join", TypeHandler, time.Millisecond, "")
			if a := testing.AllocsPerRun(1000, func() {
				s.ObserveResponse("room.room.join", TypeHandler, time.Millisecond, "")
			}); a != 0 {
				t.Errorf("ObserveResponse allocates %v per call", a)
			}
		})
	}
}

// A route that is not UTF-8 (a client may send any bytes) must not panic
// in Prometheus: it is exported with U+FFFD in place of its bad bytes, and
// the Reporters get it as it came.
func TestLabelValuesNotUTF8(t *testing.T) {
	rec := &recorder{}
	s := newSet(t, Config{}, rec)
	scrape := serve(t, s)
	bad := "room.\xff.join"
	for range 2 {
		s.ObserveResponse(bad, TypeHandler, time.Millisecond, "PIT-500")
		s.ObserveHandlerDelay(bad, DelayRemote, time.Millisecond)
	}
	s.ObserveResponse("room.\xfe.join", TypeHandler, time.Millisecond, "PIT-500\xff")
	got := parseExposition(t, scrape())
	want := map[string]string{"route": "room.\uFFFD.join", "code": "PIT-500"}
	if v := mustFind(t, got, "nopal_handler_response_time_ns_count", want); v != 2 {
		t.Errorf("responses = %v, want 2", v)
	}
	if v := mustFind(t, got, "nopal_handler_response_time_ns_count", map[string]string{"code": "PIT-500\uFFFD"}); v != 1 {
		t.Errorf("responses with a bad code = %v, want 1", v)
	}
	if v := mustFind(t, got, "nopal_handler_handler_delay_ns_count", map[string]string{"route": "room.\uFFFD.join"}); v != 2 {
		t.Errorf("delays = %v, want 2", v)
	}
	if calls := rec.take(); len(calls) != 5 || calls[0].tags["route"] != bad {
		t.Errorf("reporter got %+v", calls)
	}
}
