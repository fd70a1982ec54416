package nopal

import (
	"context"
	"fmt"
	"time"

	"github.com/nopal-dev/nopal/discovery"
	"github.com/nopal-dev/nopal/metrics"
)

// MetricsConfig turns on metrics (DESIGN §5: Pitaya's names under a
// namespace; "pitaya" keeps existing dashboards working): the metric set
// (Set; its ServerType defaults to the app's), where it goes (Addr,
// Statsd, Reporters) and how often the app's gauges are sampled
// (Interval). App.Metrics is the set; see metrics.Options.
type MetricsConfig = metrics.Options

// observer is the app's metrics.Observer (whose Served is the cluster's
// Observer), nil when metrics are off.
type observer struct {
	*metrics.Observer
	set *metrics.Set
}

func newObserver(a *App) (*observer, error) {
	mc := a.cfg.Metrics
	if mc == nil {
		return nil, nil
	}
	o, err := metrics.NewObserver(metrics.ObserverConfig{Options: *mc,
		ServerType: a.cfg.ServerType, Sample: a.metricsSample, Logger: a.log})
	if err != nil {
		return nil, fmt.Errorf("nopal: %w", err)
	}
	return &observer{Observer: o, set: o.Set()}, nil
}

// metricsSample reads the gauges that live elsewhere in the app. The job
// worker's stats ask JetStream for the queue sizes (2 s at most).
func (a *App) metricsSample() (s metrics.Sample) {
	if fe := a.Frontend(); fe != nil {
		st := fe.Stats()
		s.HasFrontend, s.Connected, s.Malformed = true, st.Connected.Load(), st.Malformed.Load()
		s.HandshakeFailed, s.HeartbeatTimeouts = st.HandshakeFailed.Load(), st.HeartbeatTimeouts.Load()
		s.SlowClients, s.Refused, s.Parked = st.SlowClients.Load(), st.Refused.Load(), st.Parked.Load()
	}
	if c := a.cluster(); c != nil {
		st := c.Stats()
		s.HasCluster, s.Dropped, s.TrafficDropped, s.CallCapacity = true, st.Dropped, st.TrafficDropped, st.CallCapacity
		if w := st.Worker; w != nil {
			s.HasWorker, s.WorkerJobs, s.Retries, s.QueueSize = true, metrics.StateCounts(w.Jobs), w.Retries, w.QueueSize
		}
	}
	return s
}

// Metrics is the app's metric set (nil when Config.Metrics is nil): add
// your custom metrics' values through it.
func (a *App) Metrics() *metrics.Set { return a.obs.m().Set() }

// MetricsAddr is where /metrics is served ("" when it is not).
func (a *App) MetricsAddr() string { return a.obs.m().Addr() }

// m is the metrics.Observer, nil when o is (its methods do nothing then).
func (o *observer) m() *metrics.Observer {
	if o == nil {
		return nil
	}
	return o.Observer
}

// start serves /metrics, samples the app's gauges and follows the
// discovery's server counts until ctx ends.
func (o *observer) start(ctx context.Context, a *App) error {
	if err := o.m().Start(ctx); err != nil {
		return fmt.Errorf("nopal: %w", err)
	}
	if c := a.cluster(); c != nil && o != nil {
		d := c.Discovery()
		context.AfterFunc(ctx, d.Subscribe(func(discovery.Event) { o.SetServerCounts(d.CountByType()) }))
		o.SetServerCounts(d.CountByType())
	}
	return nil
}

func (o *observer) handled(r string, d time.Duration, err error) { o.m().Handled(r, d, err) }

func (o *observer) close() { o.m().Close() }
