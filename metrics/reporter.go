package metrics

// Reporter receives metrics. The Prometheus side of a Set and the Statsd
// reporter implement it (as do test doubles and user back ends); a Set fans
// every built-in and custom metric out to the Reporters given to NewSet.
//
// name is a metric name without namespace (one of the constants of this
// package, or a custom metric's "subsystem_name"); the Reporter adds its own
// prefix. tags holds the metric's variable labels and may be nil.
//
// Like io.Writer with its buffer, a Reporter must not modify tags, nor
// retain it after returning: the Set reuses the maps it passes, which keeps
// the request path free of allocations. Copy what must outlive the call.
// Reporters are called synchronously on the caller's goroutine, from many
// goroutines at once, so they must be cheap and safe for concurrent use.
type Reporter interface {
	ReportCount(name string, tags map[string]string, v float64) error
	ReportGauge(name string, tags map[string]string, v float64) error
	// ReportSummary observes a value of a summary (quantiles).
	ReportSummary(name string, tags map[string]string, v float64) error
	// ReportHistogram observes a value of a histogram (buckets).
	ReportHistogram(name string, tags map[string]string, v float64) error
}
