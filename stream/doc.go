// Package stream is Nopal's bus: the connection to NATS (a URL, or an
// embedded nats-server with JetStream started in-process), the subjects
// servers talk on, idempotent provisioning of streams and KV buckets, and the
// protobuf envelope (envelope.proto) carried between servers.
//
// Subjects, under a configurable prefix (default "nopal"):
//
//	<p>.rpc.<svtype>.<component>.<method>   calls to any server of a type (queue group per type)
//	<p>.srv.<id>.rpc                        calls to one server
//	<p>.srv.<id>.push|kick|sess             pushes, kicks and session ops for one frontend
//	<p>.reply.<id>.…                        replies, one wildcard subscription per process
//
// Replies use the connection's inbox, whose prefix is <p>.reply.<id>, so
// NATS's request multiplexing serves them with one subscription.
//
// Streams and buckets are provisioned create-only (Bus.Stream, Bus.KV),
// with retries while JetStream is not ready, and the Bus remembers each
// one's configuration. It re-provisions all of them, create-only, in the
// background: when its connection comes back after a disconnect (the server
// may have restarted with an empty store, a cluster may have been rebuilt),
// and when a caller reports an operation that failed because its stream or
// bucket is missing (Bus.RecoverMissing; RecoverMissingWait and
// RetryMissing also wait for it and retry once). Concurrent requests share
// one run, runs start at most once a second, and each object created again
// is logged at Warn ("re-created stream", "re-created bucket"). Objects come
// back empty; consumers and KV watchers on them are their owners' to
// re-create (a KV watcher does not notice that its bucket was re-created).
//
// An embedded server keeps its JetStream data in Config.Embedded.StoreDir;
// it can open a client port so other nodes join it, and cluster routes so
// three embedded servers form a real NATS cluster.
package stream
