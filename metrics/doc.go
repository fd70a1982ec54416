// Package metrics is Nopal's metric set: Pitaya's metric names and labels,
// exported to Prometheus from a registry (the Set's own, or one several
// servers' Sets share), and fanned out to any number of extra Reporters
// (Statsd, or the application's own).
//
// # Use
//
//	set, err := metrics.NewSet(metrics.Config{Game: "mygame", ServerType: "room"})
//	addr, err := set.Serve(ctx, ":9090")          // GET /metrics
//	set.StartSysMetrics(ctx, 0)                   // goroutines, heap, every 15 s
//	set.ObserveResponse(route, metrics.TypeHandler, time.Since(start), code)
//
// With Config.Namespace "pitaya" the exported names are exactly Pitaya's,
// so existing Pitaya dashboards and alerts keep working; the default
// namespace is "nopal". There is no package-level state: every Set reports
// on the prometheus.Registry of an Exporter (Set.Registry), its own unless
// Config.Exporter shares one, never the global default one.
//
// # Several servers, one endpoint
//
// The servers of one process (node serve -type connector,room,rewards)
// share one /metrics through one Exporter:
//
//	exp := metrics.NewExporter()
//	conn, err := metrics.NewSet(metrics.Config{ServerType: "connector", Exporter: exp})
//	room, err := metrics.NewSet(metrics.Config{ServerType: "room", Exporter: exp})
//	addr, err := exp.Serve(ctx, ":9090") // or conn.Serve: the same handler
//
// Each Set registers its own collectors, whose serverType const label tells
// their series apart (the registry merges them into one family per name),
// so the Sets of an Exporter must differ in their const labels: NewSet
// refuses a second Set with the same ones. The runtime collectors are
// registered once per Exporter. Set.Close takes a Set's series off the
// endpoint (a server that stopped).
//
// # Values current at scrape
//
// Set.OnScrape registers a function that runs before every scrape of the
// handler (Exporter.Refresh), for values read from elsewhere: an App
// samples its frontend's counters and its job worker's stats there, so a
// job that just finished is in the very next scrape. A scrape waits for
// these functions ScrapeWait (1 s) at most, then serves what the registry
// holds; a function still running from an earlier scrape is not started
// again.
//
// # Metrics
//
// Every metric carries the const labels game and serverType (from
// Config.Game and Config.ServerType, empty when unset, as in Pitaya) plus
// Config.ConstLabels. <ns> is the namespace. The name column is the Go
// constant, also the name given to Reporters.
//
//	exported name                           type       labels                      Set method              constant
//	<ns>_handler_response_time_ns           summary    route, status, type, code   ObserveResponse         ResponseTime
//	<ns>_handler_response_time_ns_hist      histogram  route, status, type, code   ObserveResponse         ResponseTimeHistogram
//	<ns>_handler_handler_delay_ns           summary    route, type                 ObserveHandlerDelay     ProcessDelay
//	<ns>_acceptor_connected_clients         gauge      -                           SetConnectedClients     ConnectedClients
//	<ns>_acceptor_exceeded_rate_limiting    counter    -                           IncRateLimited          ExceededRateLimiting
//	<ns>_acceptor_malformed_packets         counter    -                           AddMalformedPackets     MalformedPackets
//	<ns>_acceptor_handshake_failures        counter    -                           AddHandshakeFailures    HandshakeFailures
//	<ns>_acceptor_heartbeat_timeouts        counter    -                           AddHeartbeatTimeouts    HeartbeatTimeouts
//	<ns>_acceptor_slow_clients              counter    -                           AddSlowClients          SlowClients
//	<ns>_acceptor_parked_connections        counter    -                           AddParkedConnections    ParkedConnections
//	<ns>_acceptor_refused_connections   counter    -                           AddRefusedConnections   RefusedConnections
//	<ns>_service_discovery_count_servers    gauge      type                        SetServerCount          CountServers
//	<ns>_rpc_server_dropped_messages        gauge      -                           IncDroppedMessages      DroppedMessages
//	<ns>_traffic_dropped_records            gauge      -                           Gauge                   TrafficDropped
//	<ns>_channel_channel_capacity           gauge      channel                     SetChannelCapacity      ChannelCapacity
//	<ns>_sys_goroutines                     gauge      -                           StartSysMetrics         Goroutines
//	<ns>_sys_heapsize                       gauge      -                           StartSysMetrics         HeapSize
//	<ns>_sys_heapobjects                    gauge      -                           StartSysMetrics         HeapObjects
//	<ns>_worker_worker_jobs_total           gauge      status                      SetWorkerJobs           WorkerJobsTotal
//	<ns>_worker_worker_jobs_retry_total     gauge      -                           SetWorkerJobsRetry      WorkerJobsRetry
//	<ns>_worker_worker_queue_size           gauge      queue                       SetWorkerQueueSize      WorkerQueueSize
//
// Label values: status is "ok" when code is "" and "failed" otherwise; type
// of a response is "handler" (TypeHandler) or "rpc" (TypeRPC), type of a
// delay "local" (DelayLocal) or "remote" (DelayRemote), all as Pitaya sets
// them; code is the error code, "" on success. The types (gauge vs counter)
// are Pitaya's, which is why the dropped-message and worker totals are
// gauges.
//
// The four acceptor counters after the rate-limit one are Nopal additions
// (Pitaya has no equivalent): client connections closed for malformed input
// (an unknown packet type, a packet over the size limit, a message that
// does not decode, data before the handshake), handshakes refused (bad
// JSON or a failed validator), connections closed after missing
// heartbeats, and clients disconnected because their send queue filled.
// An App feeds them from its frontend's counters at every scrape and every
// sampling tick (MetricsConfig.Interval), adding what they gained since
// the last sample: its Observer (NewObserver) does, from the Sample the
// App reads, and records the requests and calls the App serves (Handled,
// Served).
// Label values that are not valid UTF-8 (a route is chosen by the client)
// are exported with U+FFFD in place of their bad bytes: Prometheus refuses
// them.
//
// Durations are in nanoseconds, as the _ns suffix says. The summaries keep
// the quantiles 0.5, 0.7, 0.9, 0.95 and 0.99 (0.7 for Pitaya's dashboards)
// over a 10-minute window that moves in steps of 5 minutes
// (Config.SummaryAgeBuckets; Pitaya's moved in steps of 2). Summaries cannot be aggregated across servers,
// so every response is also counted in the histogram
// <ns>_handler_response_time_ns_hist (buckets Config.Buckets, by default
// DefaultBuckets: 100µs to 10s); its name is the summary's plus "_hist"
// because a registry cannot hold a summary and a histogram of the same
// name (both export _count and _sum). Only Prometheus gets the histogram
// twin: Reporters get one ReportSummary(ResponseTime) per response.
//
// Unless Config.DisableRuntimeCollectors, the registry also holds the Go
// runtime (go_*) and process (process_*) collectors that Pitaya exported
// through the default registry.
//
// # Custom metrics
//
// Config.Custom declares counters, gauges, summaries and histograms, each
// with a subsystem, name, help and label names (plus objectives or
// buckets). They are exported as <ns>_<subsystem>_<name> and reported by
// the name "<subsystem>_<name>" through Set.Count, Set.Gauge and
// Set.Observe, which also forward to the extra Reporters. An undeclared
// name, or a name of another kind, gives ErrUnknownMetric; a tag that the
// metric does not declare gives ErrUnknownLabel; a declared label left out
// is reported as "". Built-in metrics can be reported by name the same way
// (a Set is itself a Reporter).
//
// # Reporters
//
// The Reporters given to NewSet receive, synchronously, one call per Set
// call, with the name constants above (no namespace) and the variable
// labels as tags: ReportSummary for ObserveResponse and
// ObserveHandlerDelay, ReportCount for IncRateLimited and the Add methods
// (with the amount added), ReportGauge for the
// rest (IncDroppedMessages sends the running total), and the matching
// method for custom metrics. The tags map is lent for the call only (see
// Reporter), which keeps ObserveResponse free of allocations.
//
// Statsd (NewStatsd) sends the same set in the DogStatsD format with
// DataDog's datadog-go/v5 client, as Pitaya does: "<prefix><name>:<v>|<t>|#k:v,...".
// Give it Set.ConstLabels (or the same game/serverType map) as its tags.
// Pitaya's statsd reporter sent the bare names ("pitaya.response_time_ns");
// this one sends the subsystem-qualified names above
// ("nopal.handler_response_time_ns"), the same as Prometheus shows; with
// the prefix "nopal_" they are identical to the Prometheus names, which
// suits statsd_exporter.
//
// # Prometheus scrape config
//
//	scrape_configs:
//	  - job_name: nopal
//	    metrics_path: /metrics
//	    scrape_interval: 15s
//	    static_configs:
//	      - targets: ["room-1:9090", "connector-1:9090"]
//
// # Grafana panels
//
// Ready-made queries (replace nopal_ with pitaya_ for the Pitaya namespace):
//
//	Requests/s by route:        sum by (route) (rate(nopal_handler_response_time_ns_count[1m]))
//	Error ratio by route:       sum by (route) (rate(nopal_handler_response_time_ns_count{status="failed"}[5m])) / sum by (route) (rate(nopal_handler_response_time_ns_count[5m]))
//	Errors/s by code:           sum by (code) (rate(nopal_handler_response_time_ns_count{status="failed"}[1m]))
//	p99 latency, all servers:   histogram_quantile(0.99, sum by (le, route) (rate(nopal_handler_response_time_ns_hist_bucket[5m]))) / 1e6   (ms)
//	p95 latency, per server:    nopal_handler_response_time_ns{quantile="0.95"} / 1e6   (ms)
//	Mean latency:               sum by (route) (rate(nopal_handler_response_time_ns_sum[5m])) / sum by (route) (rate(nopal_handler_response_time_ns_count[5m]))
//	Handler delay p99:          max by (route, type) (nopal_handler_handler_delay_ns{quantile="0.99"}) / 1e6   (ms)
//	Connected clients:          sum by (serverType) (nopal_acceptor_connected_clients)
//	Rate-limited msgs/s:        sum by (serverType) (rate(nopal_acceptor_exceeded_rate_limiting[1m]))
//	Bad input closes/s:         sum by (serverType) (rate(nopal_acceptor_malformed_packets[5m]))
//	Refused handshakes/s:       sum by (serverType) (rate(nopal_acceptor_handshake_failures[5m]))
//	Heartbeat timeouts/s:       sum by (serverType) (rate(nopal_acceptor_heartbeat_timeouts[5m]))
//	Slow clients cut/s:         sum by (serverType) (rate(nopal_acceptor_slow_clients[5m]))
//	Servers by type:            max by (type) (nopal_service_discovery_count_servers)
//	RPC drops/s:                sum(rate(nopal_rpc_server_dropped_messages[5m]))   (a gauge holding a running total)
//	Channel free slots:         min by (channel) (nopal_channel_channel_capacity)
//	Goroutines:                 nopal_sys_goroutines
//	Heap bytes / objects:       nopal_sys_heapsize, nopal_sys_heapobjects
//	Worker jobs by status:      sum by (status) (nopal_worker_worker_jobs_total)
//	Worker retries:             nopal_worker_worker_jobs_retry_total
//	Worker queue length:        max by (queue) (nopal_worker_worker_queue_size)
package metrics
