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
// An embedded server keeps its JetStream data in Config.Embedded.StoreDir;
// it can open a client port so other nodes join it, and cluster routes so
// three embedded servers form a real NATS cluster.
package stream
