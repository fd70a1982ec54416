package metrics

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultNamespace is the namespace of every metric when Config.Namespace is
// empty. Set it to "pitaya" to keep Pitaya dashboards working.
const DefaultNamespace = "nopal"

// Config describes a Set.
type Config struct {
	// Namespace prefixes every Prometheus metric ("<ns>_<name>"); default
	// DefaultNamespace ("nopal"). "pitaya" reproduces Pitaya's names.
	Namespace string
	// Game and ServerType are the values of the "game" and "serverType"
	// const labels that every metric carries, as in Pitaya. Both labels are
	// always present (empty when unset) so label sets match Pitaya's.
	Game       string
	ServerType string
	// ConstLabels are added to every metric; they may override game and
	// serverType. "quantile" and "le" are not allowed.
	ConstLabels map[string]string
	// Buckets are the upper bounds, in nanoseconds, of the response-time
	// histogram; default DefaultBuckets(). Strictly increasing.
	Buckets []float64
	// SummaryAgeBuckets is how many age buckets each summary keeps over
	// its 10-minute window: a summary's quantiles cover the last 10
	// minutes less at most one bucket's span, and each observation is
	// inserted into every bucket. Default DefaultSummaryAgeBuckets (2: the
	// quantiles cover 5 to 10 minutes); Pitaya's summaries kept 5 (8 to 10
	// minutes), at two and a half times the cost per observation.
	SummaryAgeBuckets int
	// Custom declares the application's own metrics.
	Custom CustomConfig
	// DisableRuntimeCollectors leaves out the Go runtime (go_*) and process
	// (process_*) collectors that Pitaya's default registry exported.
	DisableRuntimeCollectors bool
	// ErrorHandler, when set, receives the errors returned by the extra
	// Reporters (the request path cannot return them). nil drops them.
	ErrorHandler func(name string, err error)
	// Exporter, when set, is the registry and /metrics handler the Set
	// reports on, shared with other Sets (the servers of one process on
	// one endpoint); nil gives the Set an Exporter of its own. Sets sharing
	// an Exporter must differ in their const labels (ServerType), and a
	// custom metric two of them declare must have the same help and labels
	// in both. The runtime collectors are registered once per Exporter.
	Exporter *Exporter
}

// CustomConfig declares custom metrics, registered next to the built-in
// ones and reached through Set.Count, Set.Gauge and Set.Observe by the name
// "subsystem_name" (just "name" when Subsystem is empty).
type CustomConfig struct {
	Counters   []CustomMetric
	Gauges     []CustomMetric
	Summaries  []CustomMetric
	Histograms []CustomMetric
}

// CustomMetric is one custom metric; Prometheus exports it as
// "<namespace>_<subsystem>_<name>".
type CustomMetric struct {
	Subsystem string
	Name      string
	Help      string
	// Labels are the variable label names; tags passed when reporting may
	// hold only these (a missing one reports as "").
	Labels []string
	// Objectives of a summary (quantile -> allowed error); default
	// DefaultObjectives().
	Objectives map[float64]float64
	// Buckets of a histogram; default prometheus.DefBuckets.
	Buckets []float64
}

// DefaultBuckets returns the default response-time histogram buckets, in
// nanoseconds: 100µs to 10s.
func DefaultBuckets() []float64 {
	ms := float64(time.Millisecond)
	return []float64{
		0.1 * ms, 0.25 * ms, 0.5 * ms,
		1 * ms, 2.5 * ms, 5 * ms,
		10 * ms, 25 * ms, 50 * ms,
		100 * ms, 250 * ms, 500 * ms,
		1000 * ms, 2500 * ms, 5000 * ms, 10000 * ms,
	}
}

// DefaultSummaryAgeBuckets is the default of Config.SummaryAgeBuckets.
const DefaultSummaryAgeBuckets = 2

// summaryMaxAge is the window of every summary's quantiles, Pitaya's.
const summaryMaxAge = 10 * time.Minute

// maxSummaryAgeBuckets bounds Config.SummaryAgeBuckets: every bucket
// costs a quantile stream per series and an insert per observation.
const maxSummaryAgeBuckets = 60

// DefaultObjectives returns the objectives of the built-in summaries and the
// default of custom ones: the 0.5, 0.9, 0.95 and 0.99 quantiles, plus 0.7
// that Pitaya's summaries exported.
func DefaultObjectives() map[float64]float64 {
	return map[float64]float64{0.5: 0.05, 0.7: 0.02, 0.9: 0.01, 0.95: 0.005, 0.99: 0.001}
}

type kind uint8

const (
	kindCounter kind = iota
	kindGauge
	kindSummary
	kindHistogram
)

func (k kind) String() string {
	return [...]string{"counter", "gauge", "summary", "histogram"}[k]
}

type observerVec interface {
	GetMetricWithLabelValues(lvs ...string) (prometheus.Observer, error)
}

// entry is one reportable metric, built-in or custom.
type entry struct {
	name    string
	kind    kind
	labels  []string
	counter *prometheus.CounterVec
	gauge   *prometheus.GaugeVec
	obs     []observerVec // a summary, plus its histogram twin for ResponseTime
}

type respKey struct{ route, typ, code string }

type respObs struct{ sum, hist prometheus.Observer }

type delayKey struct{ route, typ string }

// Set is the metric set of one server: every built-in metric plus the
// custom ones, on the Prometheus registry of its Exporter (its own, or one
// shared with other servers' Sets), fanned out to any number of extra
// Reporters. It is safe for concurrent use. A Set is itself a Reporter over
// all its metrics.
type Set struct {
	ns         string
	exp        *Exporter
	reg        *prometheus.Registry
	consts     map[string]string
	ageBuckets uint32 // of every summary
	reporters  []Reporter
	onError    func(string, error)
	tagPool    sync.Pool // map[string]string, cleared

	entries    map[string]*entry
	collectors []prometheus.Collector // registered on exp.reg

	hmu       sync.Mutex
	unhooks   []func() // remove the OnScrape functions
	closed    bool
	closeOnce sync.Once

	respSum  *prometheus.SummaryVec
	respHist *prometheus.HistogramVec
	delay    *prometheus.SummaryVec
	servers  *prometheus.GaugeVec
	chanCap  *prometheus.GaugeVec
	jobs     *prometheus.GaugeVec
	queue    *prometheus.GaugeVec

	connected   prometheus.Gauge
	rateLimited prometheus.Counter
	malformed   prometheus.Counter
	hsFailures  prometheus.Counter
	hbTimeouts  prometheus.Counter
	slowClients prometheus.Counter
	parked      prometheus.Counter
	refused     prometheus.Counter
	dropped     prometheus.Gauge
	droppedN    atomic.Int64
	goroutines  prometheus.Gauge
	heapSize    prometheus.Gauge
	heapObjects prometheus.Gauge
	jobsRetry   prometheus.Gauge

	mu     sync.RWMutex
	resp   map[respKey]respObs
	delays map[delayKey]prometheus.Observer
}

// NewSet builds the metric set described by cfg, registers it on
// cfg.Exporter's registry (a new one when nil), and fans every report out
// to reporters as well.
func NewSet(cfg Config, reporters ...Reporter) (*Set, error) {
	ns := cfg.Namespace
	if ns == "" {
		ns = DefaultNamespace
	}
	consts := map[string]string{LabelGame: cfg.Game, LabelServerType: cfg.ServerType}
	maps.Copy(consts, cfg.ConstLabels)
	if !validName(ns, false) {
		return nil, fmt.Errorf("metrics: bad namespace %q", ns)
	}
	for k := range consts {
		if k == "quantile" || k == "le" || !validName(k, true) {
			return nil, fmt.Errorf("metrics: bad const label name %q", k)
		}
	}
	buckets := cfg.Buckets
	if len(buckets) == 0 {
		buckets = DefaultBuckets()
	}
	if err := checkBuckets(buckets); err != nil {
		return nil, fmt.Errorf("metrics: Buckets: %w", err)
	}
	ages := cfg.SummaryAgeBuckets
	if ages == 0 {
		ages = DefaultSummaryAgeBuckets
	}
	if ages < 0 || ages > maxSummaryAgeBuckets {
		return nil, fmt.Errorf("metrics: SummaryAgeBuckets %d: want 1 to %d (0: the default)", cfg.SummaryAgeBuckets, maxSummaryAgeBuckets)
	}
	for _, r := range reporters {
		if r == nil {
			return nil, fmt.Errorf("metrics: nil Reporter")
		}
	}

	exp := cfg.Exporter
	if exp == nil {
		exp = NewExporter()
	}
	s := &Set{
		ns:         ns,
		exp:        exp,
		reg:        exp.reg,
		consts:     consts,
		ageBuckets: uint32(ages),
		reporters:  slices.Clone(reporters),
		onError:    cfg.ErrorHandler,
		entries:    make(map[string]*entry),
		resp:       make(map[respKey]respObs),
		delays:     make(map[delayKey]prometheus.Observer),
	}
	s.tagPool.New = func() any { return make(map[string]string, 4) }

	respLabels := []string{"route", "status", "type", "code"}
	s.respSum = s.summaryVec("", ResponseTime, "the time to process a msg in nanoseconds",
		DefaultObjectives(), respLabels)
	s.respHist = s.histogramVec("", ResponseTimeHistogram, "the time to process a msg in nanoseconds (histogram)",
		buckets, respLabels)
	s.delay = s.summaryVec("", ProcessDelay, "the delay to start processing a msg in nanoseconds",
		DefaultObjectives(), []string{"route", "type"})
	s.entries[ResponseTime] = &entry{name: ResponseTime, kind: kindSummary, labels: respLabels,
		obs: []observerVec{s.respSum, s.respHist}}
	s.entries[ResponseTimeHistogram] = &entry{name: ResponseTimeHistogram, kind: kindHistogram, labels: respLabels,
		obs: []observerVec{s.respHist}}
	s.entries[ProcessDelay] = &entry{name: ProcessDelay, kind: kindSummary, labels: []string{"route", "type"},
		obs: []observerVec{s.delay}}

	s.servers = s.builtinGauge(CountServers, "the number of discovered servers by service discovery", []string{"type"})
	s.chanCap = s.builtinGauge(ChannelCapacity, "the available capacity of the channel", []string{"channel"})
	s.jobs = s.builtinGauge(WorkerJobsTotal, "the total executed jobs", []string{"status"})
	s.queue = s.builtinGauge(WorkerQueueSize, "the current queue size", []string{"queue"})
	s.connected = s.builtinGauge(ConnectedClients, "the number of clients connected right now", nil).WithLabelValues()
	s.dropped = s.builtinGauge(DroppedMessages, "the number of rpc server dropped messages (messages that are not handled)", nil).WithLabelValues()
	s.builtinGauge(TrafficDropped, "the number of traffic records dropped by the recorder (running total)", nil)
	s.goroutines = s.builtinGauge(Goroutines, "the current number of goroutines", nil).WithLabelValues()
	s.heapSize = s.builtinGauge(HeapSize, "the current heap size", nil).WithLabelValues()
	s.heapObjects = s.builtinGauge(HeapObjects, "the current number of allocated heap objects", nil).WithLabelValues()
	s.jobsRetry = s.builtinGauge(WorkerJobsRetry, "the current number of job retries", nil).WithLabelValues()
	s.rateLimited = s.builtinCounter(ExceededRateLimiting, "the number of blocked requests by exceeded rate limiting", nil).WithLabelValues()
	s.malformed = s.builtinCounter(MalformedPackets, "the number of client connections closed for malformed input", nil).WithLabelValues()
	s.hsFailures = s.builtinCounter(HandshakeFailures, "the number of client handshakes refused", nil).WithLabelValues()
	s.hbTimeouts = s.builtinCounter(HeartbeatTimeouts, "the number of client connections closed for missing heartbeats", nil).WithLabelValues()
	s.slowClients = s.builtinCounter(SlowClients, "the number of clients disconnected because their send queue filled", nil).WithLabelValues()
	s.parked = s.builtinCounter(ParkedConnections, "the number of times an idle client connection gave its reader goroutine back", nil).WithLabelValues()
	s.refused = s.builtinCounter(RefusedConnections, "the number of connections refused because the frontend held its maximum", nil).WithLabelValues()

	if err := s.addCustom(cfg.Custom); err != nil {
		return nil, err
	}
	if err := exp.register(s.collectors); err != nil {
		if cfg.Exporter != nil {
			return nil, fmt.Errorf("metrics: register on the shared Exporter (each Set needs its own serverType): %w", err)
		}
		return nil, fmt.Errorf("metrics: register: %w", err)
	}
	if !cfg.DisableRuntimeCollectors {
		if err := exp.addRuntime(); err != nil {
			s.unregister()
			return nil, fmt.Errorf("metrics: register: %w", err)
		}
	}
	return s, nil
}

func (s *Set) unregister() {
	for _, c := range s.collectors {
		s.reg.Unregister(c)
	}
}

// OnScrape runs f before every scrape of Handler (see Exporter.Refresh),
// for values read from elsewhere that must be current when scraped: f sets
// them with the Set's methods. f gets a context that ends when the scrape
// stops waiting for it (ScrapeWait); a scrape waits for an f still running
// from an earlier one rather than start it again. Set's methods also
// forward to the extra Reporters, so those get the values at each scrape
// too. The returned function removes f; Close removes them all.
func (s *Set) OnScrape(f func(ctx context.Context)) (remove func()) {
	s.hmu.Lock()
	defer s.hmu.Unlock()
	if s.closed {
		return func() {}
	}
	rm := s.exp.onScrape(f)
	s.unhooks = append(s.unhooks, rm)
	return rm
}

// Close removes the Set's metrics and OnScrape functions from its
// Exporter, so that a shared endpoint stops serving the series of a
// server that has stopped (the runtime collectors stay). The Set keeps
// accepting values, which reach the extra Reporters only.
func (s *Set) Close() {
	s.closeOnce.Do(func() {
		s.hmu.Lock()
		s.closed = true
		unhooks := s.unhooks
		s.unhooks = nil
		s.hmu.Unlock()
		for _, rm := range unhooks {
			rm()
		}
		s.unregister()
	})
}

// builtinGauge and builtinCounter build a built-in vector and its entry.
func (s *Set) builtinGauge(name, help string, labels []string) *prometheus.GaugeVec {
	v := s.gaugeVec("", name, help, labels)
	s.entries[name] = &entry{name: name, kind: kindGauge, labels: labels, gauge: v}
	return v
}

func (s *Set) builtinCounter(name, help string, labels []string) *prometheus.CounterVec {
	v := s.counterVec("", name, help, labels)
	s.entries[name] = &entry{name: name, kind: kindCounter, labels: labels, counter: v}
	return v
}

// counterVec, gaugeVec, summaryVec and histogramVec build a vector and queue
// it for registration.
func (s *Set) counterVec(sub, name, help string, labels []string) *prometheus.CounterVec {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: s.ns, Subsystem: sub, Name: name,
		Help: help, ConstLabels: s.consts}, labels)
	s.collectors = append(s.collectors, v)
	return v
}

func (s *Set) gaugeVec(sub, name, help string, labels []string) *prometheus.GaugeVec {
	v := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: s.ns, Subsystem: sub, Name: name,
		Help: help, ConstLabels: s.consts}, labels)
	s.collectors = append(s.collectors, v)
	return v
}

func (s *Set) summaryVec(sub, name, help string, obj map[float64]float64, labels []string) *prometheus.SummaryVec {
	v := prometheus.NewSummaryVec(prometheus.SummaryOpts{Namespace: s.ns, Subsystem: sub, Name: name,
		Help: help, ConstLabels: s.consts, Objectives: obj,
		MaxAge: summaryMaxAge, AgeBuckets: s.ageBuckets}, labels)
	s.collectors = append(s.collectors, v)
	return v
}

func (s *Set) histogramVec(sub, name, help string, buckets []float64, labels []string) *prometheus.HistogramVec {
	v := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: s.ns, Subsystem: sub, Name: name,
		Help: help, ConstLabels: s.consts, Buckets: buckets}, labels)
	s.collectors = append(s.collectors, v)
	return v
}

func (s *Set) addCustom(c CustomConfig) error {
	groups := []struct {
		k  kind
		ms []CustomMetric
	}{{kindCounter, c.Counters}, {kindGauge, c.Gauges}, {kindSummary, c.Summaries}, {kindHistogram, c.Histograms}}
	for _, g := range groups {
		for _, m := range g.ms {
			key := m.Name
			if m.Subsystem != "" {
				key = m.Subsystem + "_" + m.Name
			}
			if m.Name == "" {
				return fmt.Errorf("metrics: custom %s with no name", g.k)
			}
			if !validName(key, false) {
				return fmt.Errorf("metrics: custom %s %q: bad name", g.k, key)
			}
			for _, l := range m.Labels {
				if !validName(l, true) {
					return fmt.Errorf("metrics: custom %s %q: bad label name %q", g.k, key, l)
				}
			}
			if _, dup := s.entries[key]; dup {
				return fmt.Errorf("metrics: custom %s %q: name already used", g.k, key)
			}
			help := m.Help
			if help == "" {
				help = key
			}
			labels := slices.Clone(m.Labels)
			e := &entry{name: key, kind: g.k, labels: labels}
			switch g.k {
			case kindCounter:
				e.counter = s.counterVec(m.Subsystem, m.Name, help, labels)
			case kindGauge:
				e.gauge = s.gaugeVec(m.Subsystem, m.Name, help, labels)
			case kindSummary:
				if slices.Contains(labels, "quantile") {
					return fmt.Errorf("metrics: custom summary %q: label \"quantile\" is reserved", key)
				}
				obj := m.Objectives
				if len(obj) == 0 {
					obj = DefaultObjectives()
				}
				for q, err := range obj {
					if !(q > 0 && q < 1) || !(err >= 0 && err < 1) {
						return fmt.Errorf("metrics: custom summary %q: bad objective %v:%v", key, q, err)
					}
				}
				e.obs = []observerVec{s.summaryVec(m.Subsystem, m.Name, help, maps.Clone(obj), labels)}
			case kindHistogram:
				if slices.Contains(labels, "le") {
					return fmt.Errorf("metrics: custom histogram %q: label \"le\" is reserved", key)
				}
				b := m.Buckets
				if len(b) == 0 {
					b = prometheus.DefBuckets
				}
				if err := checkBuckets(b); err != nil {
					return fmt.Errorf("metrics: custom histogram %q: %w", key, err)
				}
				e.obs = []observerVec{s.histogramVec(m.Subsystem, m.Name, help, slices.Clone(b), labels)}
			}
			s.entries[key] = e
		}
	}
	return nil
}

// validName reports whether s is a metric name (label: a label name) in the
// classic character set, which every Prometheus version and the text
// exposition format accept unquoted.
func validName(s string, label bool) bool {
	if s == "" || (label && strings.HasPrefix(s, "__")) {
		return false
	}
	for i, c := range s {
		switch {
		case c == '_', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case c == ':' && !label:
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

func checkBuckets(b []float64) error {
	for i := range b {
		if math.IsNaN(b[i]) || (i > 0 && b[i] <= b[i-1]) {
			return fmt.Errorf("buckets must be strictly increasing: %v", b)
		}
	}
	return nil
}

// Registry is the registry of the Set's Exporter (never the global default
// one); more collectors may be registered on it.
func (s *Set) Registry() *prometheus.Registry { return s.reg }

// Exporter is the Exporter the Set reports on: Config.Exporter, or the
// Set's own.
func (s *Set) Exporter() *Exporter { return s.exp }

// Namespace is the namespace the Prometheus names carry.
func (s *Set) Namespace() string { return s.ns }

// ConstLabels returns a copy of the const labels every metric carries
// (game, serverType and Config.ConstLabels), e.g. to give NewStatsd the
// same tags.
func (s *Set) ConstLabels() map[string]string { return maps.Clone(s.consts) }

// ---- request path ---------------------------------------------------------

func (s *Set) tags() map[string]string { return s.tagPool.Get().(map[string]string) }

func (s *Set) putTags(m map[string]string) {
	clear(m)
	s.tagPool.Put(m)
}

// forward hands one report to every extra Reporter.
func (s *Set) forward(k kind, name string, tags map[string]string, v float64) {
	for _, r := range s.reporters {
		var err error
		switch k {
		case kindCounter:
			err = r.ReportCount(name, tags, v)
		case kindGauge:
			err = r.ReportGauge(name, tags, v)
		case kindSummary:
			err = r.ReportSummary(name, tags, v)
		case kindHistogram:
			err = r.ReportHistogram(name, tags, v)
		}
		if err != nil && s.onError != nil {
			s.onError(name, err)
		}
	}
}

func (s *Set) forward1(k kind, name, label, value string, v float64) {
	if len(s.reporters) == 0 {
		return
	}
	t := s.tags()
	t[label] = value
	s.forward(k, name, t, v)
	s.putTags(t)
}

// ObserveResponse records the time taken to answer a message on route:
// msgType is the "type" label (TypeHandler, TypeRPC), code the error code
// ("" when the call succeeded, which makes status "ok"; any other code makes
// it "failed"). It observes the ResponseTime summary and its histogram twin
// and sends ReportSummary(ResponseTime) to the extra Reporters. It does not
// allocate once a (route, msgType, code) combination has been seen. Every
// distinct route is a series of its own: pass only routes the server
// knows (collapse unknown client-sent ones) to bound the cardinality.
func (s *Set) ObserveResponse(route, msgType string, took time.Duration, code string) {
	k := respKey{route, msgType, code}
	s.mu.RLock()
	o, ok := s.resp[k]
	s.mu.RUnlock()
	status := StatusOK
	if code != "" {
		status = StatusFailed
	}
	if !ok {
		o = s.newResp(k, status)
	}
	v := float64(took)
	o.sum.Observe(v)
	o.hist.Observe(v)
	if len(s.reporters) > 0 {
		t := s.tags()
		t["route"], t["status"], t["type"], t["code"] = route, status, msgType, code
		s.forward(kindSummary, ResponseTime, t, v)
		s.putTags(t)
	}
}

func (s *Set) newResp(k respKey, status string) respObs {
	// Own copies: the caller's strings may alias a reused buffer.
	k = respKey{strings.Clone(k.route), strings.Clone(k.typ), strings.Clone(k.code)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if o, ok := s.resp[k]; ok {
		return o
	}
	// Prometheus panics on label values that are not UTF-8, and a route
	// may come from a client: such a value is exported with U+FFFD in
	// place of its bad bytes, and kept under its own key.
	route, typ, code := validLabel(k.route), validLabel(k.typ), validLabel(k.code)
	o := respObs{
		sum:  s.respSum.WithLabelValues(route, status, typ, code),
		hist: s.respHist.WithLabelValues(route, status, typ, code),
	}
	s.resp[k] = o
	return o
}

// validLabel makes v valid UTF-8, which Prometheus requires of label values.
func validLabel(v string) string { return strings.ToValidUTF8(v, "\uFFFD") }

// ObserveHandlerDelay records how long a message on route waited before its
// handling started; msgType is the "type" label (DelayLocal, DelayRemote).
func (s *Set) ObserveHandlerDelay(route, msgType string, d time.Duration) {
	k := delayKey{route, msgType}
	s.mu.RLock()
	o, ok := s.delays[k]
	s.mu.RUnlock()
	if !ok {
		k = delayKey{strings.Clone(route), strings.Clone(msgType)}
		s.mu.Lock()
		if o, ok = s.delays[k]; !ok {
			o = s.delay.WithLabelValues(validLabel(k.route), validLabel(k.typ))
			s.delays[k] = o
		}
		s.mu.Unlock()
	}
	v := float64(d)
	o.Observe(v)
	if len(s.reporters) > 0 {
		t := s.tags()
		t["route"], t["type"] = route, msgType
		s.forward(kindSummary, ProcessDelay, t, v)
		s.putTags(t)
	}
}

// SetConnectedClients sets the number of clients connected right now.
func (s *Set) SetConnectedClients(n int) {
	s.connected.Set(float64(n))
	s.forward(kindGauge, ConnectedClients, nil, float64(n))
}

// IncRateLimited counts one message refused by the rate limiter.
func (s *Set) IncRateLimited() {
	s.rateLimited.Inc()
	s.forward(kindCounter, ExceededRateLimiting, nil, 1)
}

// AddMalformedPackets counts n client connections closed for bad input.
func (s *Set) AddMalformedPackets(n int) { s.addCounter(s.malformed, MalformedPackets, n) }

// AddHandshakeFailures counts n refused client handshakes.
func (s *Set) AddHandshakeFailures(n int) { s.addCounter(s.hsFailures, HandshakeFailures, n) }

// AddHeartbeatTimeouts counts n client connections closed for silence.
func (s *Set) AddHeartbeatTimeouts(n int) { s.addCounter(s.hbTimeouts, HeartbeatTimeouts, n) }

// AddSlowClients counts n clients disconnected for a full send queue.
func (s *Set) AddSlowClients(n int) { s.addCounter(s.slowClients, SlowClients, n) }

// AddParkedConnections counts n times an idle connection parked.
func (s *Set) AddParkedConnections(n int) { s.addCounter(s.parked, ParkedConnections, n) }

// AddRefusedConnections counts n connections refused at MaxConnections.
func (s *Set) AddRefusedConnections(n int) { s.addCounter(s.refused, RefusedConnections, n) }

// addCounter adds n > 0 to a built-in counter without labels and forwards
// it to the extra Reporters; n <= 0 does nothing (counters only go up).
func (s *Set) addCounter(c prometheus.Counter, name string, n int) {
	if n <= 0 {
		return
	}
	c.Add(float64(n))
	s.forward(kindCounter, name, nil, float64(n))
}

// SetServerCount sets the number of discovered servers of type typ.
func (s *Set) SetServerCount(typ string, n int) {
	s.servers.WithLabelValues(typ).Set(float64(n))
	s.forward1(kindGauge, CountServers, "type", typ, float64(n))
}

// IncDroppedMessages counts one RPC message dropped by the RPC server. The
// gauge holds the running total, as Pitaya's does; Reporters get the total.
func (s *Set) IncDroppedMessages() {
	n := s.droppedN.Add(1)
	s.dropped.Inc()
	s.forward(kindGauge, DroppedMessages, nil, float64(n))
}

// SetChannelCapacity sets the free slots of the named internal channel.
func (s *Set) SetChannelCapacity(channel string, n int) {
	s.chanCap.WithLabelValues(channel).Set(float64(n))
	s.forward1(kindGauge, ChannelCapacity, "channel", channel, float64(n))
}

// SetWorkerJobs sets the number of jobs the worker executed with the given
// status (e.g. "ok", "failed").
func (s *Set) SetWorkerJobs(status string, n int) {
	s.jobs.WithLabelValues(status).Set(float64(n))
	s.forward1(kindGauge, WorkerJobsTotal, "status", status, float64(n))
}

// SetWorkerJobsRetry sets the worker's number of job retries.
func (s *Set) SetWorkerJobsRetry(n int) {
	s.jobsRetry.Set(float64(n))
	s.forward(kindGauge, WorkerJobsRetry, nil, float64(n))
}

// SetWorkerQueueSize sets the length of the named worker queue.
func (s *Set) SetWorkerQueueSize(queue string, n int) {
	s.queue.WithLabelValues(queue).Set(float64(n))
	s.forward1(kindGauge, WorkerQueueSize, "queue", queue, float64(n))
}

// ---- by name: custom metrics (and built-in ones) ----------------------------

func (s *Set) lookup(name string, kinds ...kind) (*entry, error) {
	e, ok := s.entries[name]
	if !ok || !slices.Contains(kinds, e.kind) {
		k := kinds[0].String()
		if len(kinds) > 1 {
			k = "summary or histogram"
		}
		return nil, fmt.Errorf("%w: no %s %q", ErrUnknownMetric, k, name)
	}
	return e, nil
}

func (e *entry) values(tags map[string]string) ([]string, error) {
	vals := make([]string, len(e.labels))
	n := 0
	for i, l := range e.labels {
		if v, ok := tags[l]; ok {
			vals[i] = v
			n++
		}
	}
	if n != len(tags) {
		for k := range tags {
			if !slices.Contains(e.labels, k) {
				return nil, fmt.Errorf("%w: %q on %q (has %v)", ErrUnknownLabel, k, e.name, e.labels)
			}
		}
	}
	return vals, nil
}

// Count adds v (>= 0) to the counter name, a custom counter's
// "subsystem_name" or ExceededRateLimiting, with the given labels, and
// forwards it to the extra Reporters.
func (s *Set) Count(name string, tags map[string]string, v float64) error {
	e, err := s.lookup(name, kindCounter)
	if err != nil {
		return err
	}
	if v < 0 || math.IsNaN(v) {
		return fmt.Errorf("metrics: counter %q: cannot add %v", name, v)
	}
	vals, err := e.values(tags)
	if err != nil {
		return err
	}
	c, err := e.counter.GetMetricWithLabelValues(vals...)
	if err != nil {
		return err
	}
	c.Add(v)
	s.forward(kindCounter, name, tags, v)
	return nil
}

// Gauge sets the gauge name (custom or built-in) to v with the given labels,
// and forwards it to the extra Reporters.
func (s *Set) Gauge(name string, tags map[string]string, v float64) error {
	e, err := s.lookup(name, kindGauge)
	if err != nil {
		return err
	}
	vals, err := e.values(tags)
	if err != nil {
		return err
	}
	g, err := e.gauge.GetMetricWithLabelValues(vals...)
	if err != nil {
		return err
	}
	g.Set(v)
	s.forward(kindGauge, name, tags, v)
	return nil
}

// Observe records v in the summary or histogram name (custom or built-in)
// with the given labels, and forwards it to the extra Reporters as
// ReportSummary or ReportHistogram according to the metric's kind.
func (s *Set) Observe(name string, tags map[string]string, v float64) error {
	return s.observe(name, tags, v, kindSummary, kindHistogram)
}

func (s *Set) observe(name string, tags map[string]string, v float64, kinds ...kind) error {
	e, err := s.lookup(name, kinds...)
	if err != nil {
		return err
	}
	vals, err := e.values(tags)
	if err != nil {
		return err
	}
	for _, vec := range e.obs {
		o, err := vec.GetMetricWithLabelValues(vals...)
		if err != nil {
			return err
		}
		o.Observe(v)
	}
	s.forward(e.kind, name, tags, v)
	return nil
}

// ReportCount is Count: a Set is a Reporter over its own metrics.
func (s *Set) ReportCount(name string, tags map[string]string, v float64) error {
	return s.Count(name, tags, v)
}

// ReportGauge is Gauge.
func (s *Set) ReportGauge(name string, tags map[string]string, v float64) error {
	return s.Gauge(name, tags, v)
}

// ReportSummary is Observe restricted to summaries.
func (s *Set) ReportSummary(name string, tags map[string]string, v float64) error {
	return s.observe(name, tags, v, kindSummary)
}

// ReportHistogram is Observe restricted to histograms.
func (s *Set) ReportHistogram(name string, tags map[string]string, v float64) error {
	return s.observe(name, tags, v, kindHistogram)
}

var _ Reporter = (*Set)(nil)
