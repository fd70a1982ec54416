package metrics

import (
	"errors"
	"math"
	"slices"

	"github.com/DataDog/datadog-go/v5/statsd"
)

// Statsd is a Reporter that sends every metric to a StatsD server in the
// DogStatsD line format ("<prefix><name>:<value>|<type>|@<rate>|#k:v,..."),
// which the Datadog agent, statsd_exporter and Telegraf understand. It uses
// DataDog's datadog-go/v5 client (as Pitaya does): UDP, buffered, with
// client-side aggregation of counts and gauges. Mapping: ReportCount -> "c"
// (rounded to an integer), ReportGauge -> "g", ReportSummary -> "ms"
// (Pitaya's timing type; the value is sent as given, so response times stay
// in nanoseconds), ReportHistogram -> "h".
type Statsd struct {
	client *statsd.Client
	rate   float64
	prefix string // prepended here: the client's namespace option adds a '.'
}

var _ Reporter = (*Statsd)(nil)

// NewStatsd connects to the StatsD server at addr ("host:port"; "unix://"
// paths work too). prefix is prepended verbatim to every name: "nopal."
// sends "nopal.handler_response_time_ns", "nopal_" the very names Prometheus
// shows. tags are sent with every metric as "k:v" (Set.ConstLabels gives
// the game/serverType ones). rate is the sample rate in (0, 1]; anything
// else means 1.
func NewStatsd(addr, prefix string, tags map[string]string, rate float64) (*Statsd, error) {
	if addr == "" {
		return nil, errors.New("metrics: statsd: empty address")
	}
	if !(rate > 0 && rate <= 1) {
		rate = 1
	}
	c, err := statsd.New(addr,
		statsd.WithTags(tagList(tags)),
		statsd.WithoutTelemetry(),
		statsd.WithoutOriginDetection(),
	)
	if err != nil {
		return nil, err
	}
	return &Statsd{client: c, rate: rate, prefix: prefix}, nil
}

// tagList turns tags into sorted "k:v" strings, so that one label set always
// makes the same aggregation context.
func tagList(tags map[string]string) []string {
	if len(tags) == 0 {
		return nil
	}
	l := make([]string, 0, len(tags))
	for k, v := range tags {
		l = append(l, k+":"+v)
	}
	slices.Sort(l)
	return l
}

// ReportCount sends a count ("c").
func (s *Statsd) ReportCount(name string, tags map[string]string, v float64) error {
	return s.client.Count(s.prefix+name, int64(math.Round(v)), tagList(tags), s.rate)
}

// ReportGauge sends a gauge ("g").
func (s *Statsd) ReportGauge(name string, tags map[string]string, v float64) error {
	return s.client.Gauge(s.prefix+name, v, tagList(tags), s.rate)
}

// ReportSummary sends a timing ("ms"), as Pitaya's statsd reporter does.
func (s *Statsd) ReportSummary(name string, tags map[string]string, v float64) error {
	return s.client.TimeInMilliseconds(s.prefix+name, v, tagList(tags), s.rate)
}

// ReportHistogram sends a histogram value ("h").
func (s *Statsd) ReportHistogram(name string, tags map[string]string, v float64) error {
	return s.client.Histogram(s.prefix+name, v, tagList(tags), s.rate)
}

// Flush sends everything buffered or aggregated so far; it blocks until
// the payloads are written.
func (s *Statsd) Flush() error { return s.client.Flush() }

// Close flushes and closes the client.
func (s *Statsd) Close() error { return s.client.Close() }
