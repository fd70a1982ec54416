package metrics

import "errors"

// Built-in metric names, without the namespace. They are Pitaya's metric
// names (subsystem_name), so with Config.Namespace "pitaya" the exported
// series are exactly Pitaya's (pitaya_handler_response_time_ns, ...). The
// Prometheus side exports "<namespace>_<name>"; the same names are passed to
// every extra Reporter, which adds its own prefix (see NewStatsd).
const (
	// ResponseTime is a summary of the time to answer a message, in
	// nanoseconds. Labels: route, status, type, code.
	ResponseTime = "handler_response_time_ns"
	// ResponseTimeHistogram is the histogram twin of ResponseTime (same
	// observations, same labels), exported to Prometheus only: summaries
	// cannot be aggregated across servers, histograms can.
	ResponseTimeHistogram = "handler_response_time_ns_hist"
	// ProcessDelay is a summary of the delay between a message's arrival
	// and the start of its handling, in nanoseconds. Labels: route, type.
	ProcessDelay = "handler_handler_delay_ns"
	// ConnectedClients is a gauge of the clients connected right now.
	ConnectedClients = "acceptor_connected_clients"
	// ExceededRateLimiting is a counter of messages refused by the
	// per-connection rate limiter.
	ExceededRateLimiting = "acceptor_exceeded_rate_limiting"
	// MalformedPackets is a counter of client connections closed for bad
	// input: an unknown packet type, a packet over the size limit, a
	// malformed message, data before the handshake (a Nopal addition).
	MalformedPackets = "acceptor_malformed_packets"
	// HandshakeFailures is a counter of handshakes refused: bad JSON or a
	// failed handshake validator (a Nopal addition).
	HandshakeFailures = "acceptor_handshake_failures"
	// HeartbeatTimeouts is a counter of client connections closed for
	// being silent for twice the heartbeat interval (a Nopal addition).
	HeartbeatTimeouts = "acceptor_heartbeat_timeouts"
	// SlowClients is a counter of clients disconnected because their send
	// queue filled (a Nopal addition).
	SlowClients = "acceptor_slow_clients"
	// ParkedConnections is a counter of the times an idle connection gave
	// its reader goroutine back (frontend.Config.ParkIdle; a Nopal
	// addition).
	ParkedConnections = "acceptor_parked_connections"
	// RefusedConnections is a counter of connections refused because the
	// frontend held MaxConnections.
	RefusedConnections = "acceptor_refused_connections"
	// CountServers is a gauge of the servers discovered, by server type.
	// Labels: type.
	CountServers = "service_discovery_count_servers"
	// DroppedMessages is a gauge (Pitaya's type) holding the running total
	// of RPC messages dropped by the RPC server.
	DroppedMessages = "rpc_server_dropped_messages"
	// TrafficDropped is a gauge holding the running total of traffic
	// records the recorder dropped (the TRAFFIC stream could not take
	// them): the traffic log is at most once, never silently.
	TrafficDropped = "traffic_dropped_records"
	// ChannelCapacity is a gauge of the free slots of an internal channel.
	// Labels: channel.
	ChannelCapacity = "channel_channel_capacity"
	// Goroutines is a gauge of runtime.NumGoroutine.
	Goroutines = "sys_goroutines"
	// HeapSize is a gauge of runtime.MemStats.Alloc (bytes).
	HeapSize = "sys_heapsize"
	// HeapObjects is a gauge of runtime.MemStats.HeapObjects.
	HeapObjects = "sys_heapobjects"
	// WorkerJobsTotal is a gauge of the jobs executed by the worker, by
	// status. Labels: status.
	WorkerJobsTotal = "worker_worker_jobs_total"
	// WorkerJobsRetry is a gauge of the worker's job retries.
	WorkerJobsRetry = "worker_worker_jobs_retry_total"
	// WorkerQueueSize is a gauge of a worker queue's length. Labels: queue.
	WorkerQueueSize = "worker_worker_queue_size"
)

// Values of the "type" label of ResponseTime, as Pitaya sets them.
const (
	TypeHandler = "handler" // a client request or notify handled here
	TypeRPC     = "rpc"     // a server-to-server call
)

// Values of the "type" label of ProcessDelay, as Pitaya sets them.
const (
	DelayLocal  = "local"  // the handler runs on this server
	DelayRemote = "remote" // the message is forwarded to another server
)

// Values of the "status" label of ResponseTime.
const (
	StatusOK     = "ok"
	StatusFailed = "failed"
)

// Const label names every metric carries, as Pitaya's do.
const (
	LabelGame       = "game"
	LabelServerType = "serverType"
)

var (
	// ErrUnknownMetric is returned by Count, Gauge and Observe for a name
	// that no custom metric of that kind declares.
	ErrUnknownMetric = errors.New("metrics: unknown metric")
	// ErrUnknownLabel is returned when tags hold a key that the metric
	// does not declare.
	ErrUnknownLabel = errors.New("metrics: unknown label")
)
