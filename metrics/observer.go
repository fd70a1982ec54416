package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/nopal-dev/nopal/codec"
)

// Options are where an Observer's metrics go and how often its sampled
// gauges are pushed (nopal.MetricsConfig is this type).
type Options struct {
	// Set configures the metric set: Namespace (default "nopal"), Game,
	// constant labels, histogram buckets and custom metrics. ServerType
	// defaults to the server's (an app's). Set.Exporter shares one
	// Prometheus registry and /metrics between the servers (apps) of one
	// process: give each one's Options the same NewExporter() and one of
	// them an Addr; each server's series keep their own serverType label.
	Set Config
	// Addr serves Prometheus's /metrics ("127.0.0.1:9090"; "" serves
	// nothing: use Set.Handler(), App.Metrics().Handler(), in your own
	// server). With a shared Set.Exporter it serves every server of the
	// Exporter.
	Addr string
	// Statsd sends the same metrics to a Statsd agent ("127.0.0.1:8125"),
	// with StatsdPrefix (default the namespace and "_") before each name.
	Statsd       string
	StatsdPrefix string
	// Reporters are more places metrics go (your own Reporter).
	Reporters []Reporter
	// Interval of the gauges sampled from the server (connected clients,
	// runtime, queues; default 15 s) for Statsd and the Reporters, which
	// are pushed to. A Prometheus scrape samples them afresh (waiting up
	// to ScrapeWait for the job worker's queue sizes), so /metrics is
	// current whatever the interval.
	Interval time.Duration
}

// ObserverConfig configures an Observer: its Options, and what the
// server it observes provides.
type ObserverConfig struct {
	Options
	// ServerType is the server's type: the default of Set.ServerType, and
	// the label of the worker's queue size (default Set.ServerType).
	ServerType string
	// Sample reads the gauges and counters that live elsewhere in the
	// server (nil samples nothing). Calls are serialized.
	Sample func() Sample
	// Logger logs where /metrics is served (default slog.Default()).
	Logger *slog.Logger
}

// Sample is what ObserverConfig.Sample reads: a frontend's counters since
// it started and a cluster runtime's gauges, each present only when its
// Has flag is set.
type Sample struct {
	HasFrontend bool
	Connected   int64 // connections open now
	// Running totals; the Observer adds what they gained since the last
	// Sample to its counters.
	Malformed, HandshakeFailed, HeartbeatTimeouts, SlowClients, Refused, Parked int64

	HasCluster     bool
	Dropped        int    // messages the bus subscriptions dropped
	TrafficDropped uint64 // traffic records the recorder dropped
	CallCapacity   int    // free capacity of the call workers

	HasWorker  bool
	WorkerJobs map[string]uint64 // finished jobs by state
	Retries    uint64
	QueueSize  uint64
}

// Observer feeds a Set from a server: it serves /metrics, pushes the
// sampled gauges every interval and at each scrape, and records the
// requests and calls served (Handled, Served). Its methods are no-ops on
// a nil *Observer.
type Observer struct {
	cfg    ObserverConfig
	set    *Set
	statsd *Statsd
	addr   string
	shared bool // the Set reports on an Exporter shared with other servers

	mu    sync.Mutex
	types map[string]bool // server types seen, so a vanished type reads 0

	// sampleMu serializes samples: the ticker's and the scrapes'.
	sampleMu sync.Mutex
	// The frontend's counters at the last sample: each sample adds what
	// they gained since (guarded by sampleMu).
	lastMalformed, lastHandshake, lastHeartbeat, lastSlow, lastRefused, lastParked int64
}

// NewObserver builds the Set (and the Statsd reporter). Its errors begin
// "statsd: " or "metrics: ".
func NewObserver(cfg ObserverConfig) (*Observer, error) {
	if cfg.Set.ServerType == "" {
		cfg.Set.ServerType = cfg.ServerType
	}
	if cfg.ServerType == "" {
		cfg.ServerType = cfg.Set.ServerType
	}
	reporters := append([]Reporter(nil), cfg.Reporters...)
	o := &Observer{cfg: cfg, shared: cfg.Set.Exporter != nil}
	if o.cfg.Logger == nil {
		o.cfg.Logger = slog.Default()
	}
	if cfg.Statsd != "" {
		prefix := cfg.StatsdPrefix
		if prefix == "" {
			ns := cfg.Set.Namespace
			if ns == "" {
				ns = DefaultNamespace
			}
			prefix = ns + "_"
		}
		sd, err := NewStatsd(cfg.Statsd, prefix, map[string]string{"serverType": cfg.Set.ServerType, "game": cfg.Set.Game}, 1)
		if err != nil {
			return nil, fmt.Errorf("statsd: %w", err)
		}
		o.statsd = sd
		reporters = append(reporters, sd)
	}
	set, err := NewSet(cfg.Set, reporters...)
	if err != nil {
		if o.statsd != nil {
			_ = o.statsd.Close()
		}
		return nil, fmt.Errorf("metrics: %w", err)
	}
	o.set = set
	return o, nil
}

// Set is the Observer's metric set.
func (o *Observer) Set() *Set {
	if o == nil {
		return nil
	}
	return o.set
}

// Addr is where Start serves /metrics ("" when it does not).
func (o *Observer) Addr() string {
	if o == nil {
		return ""
	}
	return o.addr
}

// Start serves /metrics (ObserverConfig.Addr) and samples the gauges
// until ctx ends: the system metrics and ObserverConfig.Sample every
// interval, and Sample before each scrape. Its error begins "metrics: ".
func (o *Observer) Start(ctx context.Context) error {
	if o == nil {
		return nil
	}
	if o.cfg.Addr != "" {
		addr, err := o.set.Serve(ctx, o.cfg.Addr)
		if err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		o.addr = addr.String()
		o.cfg.Logger.Info("serving metrics", "addr", "http://"+o.addr+"/metrics")
	}
	interval := o.cfg.Interval
	if interval <= 0 {
		interval = 15 * time.Second
	}
	go o.set.StartSysMetrics(ctx, interval)
	go o.sample(ctx, interval)
	// A scrape reads the sampled values afresh: a job that just finished
	// is in the very next scrape, not one interval later.
	context.AfterFunc(ctx, o.set.OnScrape(func(context.Context) { o.sampleOnce() }))
	return nil
}

// SetServerCounts sets the number of servers by type (a discovery
// snapshot); a type seen before and missing from counts reads 0.
func (o *Observer) SetServerCounts(counts map[string]int) {
	if o == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.types == nil {
		o.types = map[string]bool{}
	}
	for typ := range counts {
		o.types[typ] = true
	}
	for typ := range o.types {
		o.set.SetServerCount(typ, counts[typ])
	}
}

func (o *Observer) sample(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		o.sampleOnce()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sampleOnce reads the gauges that live elsewhere (the job worker's may
// take a bus round trip).
func (o *Observer) sampleOnce() {
	if o.cfg.Sample == nil {
		return
	}
	o.sampleMu.Lock()
	defer o.sampleMu.Unlock()
	st := o.cfg.Sample()
	if st.HasFrontend {
		o.set.SetConnectedClients(int(st.Connected))
		o.set.AddMalformedPackets(delta(&o.lastMalformed, st.Malformed))
		o.set.AddHandshakeFailures(delta(&o.lastHandshake, st.HandshakeFailed))
		o.set.AddHeartbeatTimeouts(delta(&o.lastHeartbeat, st.HeartbeatTimeouts))
		o.set.AddSlowClients(delta(&o.lastSlow, st.SlowClients))
		o.set.AddRefusedConnections(delta(&o.lastRefused, st.Refused))
		o.set.AddParkedConnections(delta(&o.lastParked, st.Parked))
	}
	if st.HasCluster {
		_ = o.set.Gauge(DroppedMessages, nil, float64(st.Dropped))
		_ = o.set.Gauge(TrafficDropped, nil, float64(st.TrafficDropped))
		o.set.SetChannelCapacity("bus_calls", st.CallCapacity)
		if st.HasWorker {
			for state, n := range st.WorkerJobs {
				o.set.SetWorkerJobs(state, int(n))
			}
			o.set.SetWorkerJobsRetry(int(st.Retries))
			o.set.SetWorkerQueueSize(o.cfg.ServerType, int(st.QueueSize))
		}
	}
}

// StateCounts converts counts keyed by a string type (a job state) for
// Sample.WorkerJobs.
func StateCounts[K ~string](m map[K]uint64) map[string]uint64 {
	out := make(map[string]uint64, len(m))
	for k, n := range m {
		out[string(k)] = n
	}
	return out
}

// delta returns what a counter gained since *last and stores its value.
func delta(last *int64, now int64) int {
	d := now - *last
	*last = now
	return int(d)
}

// Handled records a client request or notify that a frontend served.
// The route of a failed one is "unknown" when it names nothing (the
// client chose it: it must not mint series) or is not UTF-8.
func (o *Observer) Handled(route string, took time.Duration, err error) {
	if o == nil {
		return
	}
	code := ""
	if err != nil {
		code = codec.AsError(err).Code
		// Client-chosen routes must not mint series; nor may a route that
		// is not UTF-8 reach a label (Prometheus panics on one).
		if code == codec.CodeNotFound || code == codec.CodeServiceMissing || !utf8.ValidString(route) {
			route = "unknown"
		}
	}
	o.set.ObserveResponse(route, TypeHandler, took, code)
}

// Served records a call a backend served from the bus: a forwarded
// client request, or an RPC when rpc; sentUnixNano (0 if unknown) gives
// the remote delay. It satisfies the cluster runtime's Observer.
func (o *Observer) Served(route string, rpc bool, sentUnixNano int64, started time.Time, err error) {
	if o == nil {
		return
	}
	typ := TypeHandler
	if rpc {
		typ = TypeRPC
	}
	code := ""
	var ce *codec.Error
	if err != nil {
		code = codec.AsError(err).Code
		if errors.As(err, &ce) && ce.Code == codec.CodeNotFound {
			route = "unknown"
		}
	}
	if sentUnixNano > 0 {
		if d := started.Sub(time.Unix(0, sentUnixNano)); d >= 0 {
			o.set.ObserveHandlerDelay(route, DelayRemote, d)
		}
	}
	o.set.ObserveResponse(route, typ, time.Since(started), code)
}

// Close takes the Set's series off a shared Exporter (a Set with its own
// keeps them: Set.Handler still serves the last values) and flushes
// Statsd.
func (o *Observer) Close() {
	if o == nil {
		return
	}
	if o.shared {
		o.set.Close()
	}
	if o.statsd != nil {
		_ = o.statsd.Close()
	}
}
