// Package stream is Nopal's bus: the connection to NATS (a URL, or an
// embedded nats-server with JetStream started in-process), the subjects
// servers talk on, idempotent provisioning of streams and KV buckets, and the
// protobuf envelope (envelope.proto) carried between servers.
//
// It is the only package that speaks core NATS: the rest of the project
// goes through the Bus's methods (Request, Publish, Subscribe,
// ChanSubscribe, Flush, ConnectedURL, Closing; Stream, KV, StreamPublish),
// and the packages that keep their state in JetStream (discovery,
// bindings, groups, reliable) through Bus.JetStream.
//
// # Subjects
//
// Every subject is built in subjects.go, by a named Bus method, under a
// configurable prefix <p> (default "nopal"):
//
//	subject                              method                 what travels on it
//	<p>.rpc.<svtype>.<comp>.<method>     RPCSubject             Call to any server of a type (sys: a client request a frontend forwards; user: RPC); answered with a Reply
//	<p>.rpc.<svtype>.>                   RPCTypeWildcard        what the servers of a type subscribe to, in the queue group <svtype>
//	<p>.srv.<id>.rpc                     ServerRPC              Call to one server (a router picked it, or RPCTo); answered with a Reply
//	<p>.srv.<id>.push                    ServerPush             Push to users of one frontend; answered with a Delivery (uids it does not hold)
//	<p>.srv.<id>.kick                    ServerKick             Kick of users of one frontend; answered with a Delivery
//	<p>.srv.<id>.sess                    ServerSessionOp        SessionOp (bind, data sync) from a backend to the session's frontend; answered with a Reply
//	<p>.srv.<id>.resume                  ServerResume           resume hand-over: the frontend a client resumes on asks the old one to take or drain a session (ResumeRequest, ResumeReply)
//	<p>.srv.<id>.fwd                     ServerForward          Forward: a push or late response the old frontend passes on during a resume
//	<p>.reply.<id>.q.<n>                 ReplyPrefix            replies to this process's requests (Request, Call): one wildcard subscription
//	<p>.reply.<id>.<nuid>[.<token>]      ReplyPrefix            the inboxes nats.go makes itself (JetStream's API calls, consumers)
//	<p>.job.<svtype>.<jid>               JobSubject             reliable job for any server of a type (stream JOBS, work queue)
//	<p>.job.<svtype>.srv.<id>.<jid>      JobTargetSubject       reliable job for one server
//	<p>.job.<svtype>.*                   JobFilter              the shared consumer of a server type
//	<p>.job.<svtype>.srv.<id>.*          JobTargetFilter        one server's consumer of its targeted jobs
//	<p>.job.>                            JobsWildcard           the stream JOBS
//	<p>.jobdlq.<svtype>.<jid>            DLQSubject             a job's dead letter, JSON with its attempts (stream JOBS_DLQ, one per jid)
//	<p>.jobdlq.>                         DLQWildcard            the stream JOBS_DLQ
//	<p>.mbox.<uid key>                   MailboxSubject         pushes kept for a user who may resume (stream MAILBOX): a client packet, or a payload with RouteHeader
//	<p>.mbox.>                           MailboxWildcard        the stream MAILBOX
//	<p>.traffic.<id>                     TrafficSubject         TrafficBatch of the records one server made (stream TRAFFIC)
//	<p>.traffic.>                        TrafficWildcard        the stream TRAFFIC
//
// Replies use the connection's inbox, whose prefix is <p>.reply.<id>:
// the Bus's own request multiplexer (request.go) serves the replies to
// Request and Call with one channel subscription that the waiting
// requests read themselves, and nats.go's inboxes serve JetStream's. KV
// buckets and JetStream's API use JetStream's own subjects ($KV.…,
// $JS.API.…).
//
// # Headers
//
// The headers bus messages carry are declared in headers.go: RouteHeader,
// SeqHeader, SessionHeader, PushIDHeader (traffic records and mailbox
// entries), JobRouteHeader and JobStateHeader (dead letters).
// HeaderCarrier carries a trace context (W3C
// traceparent) in a message's headers.
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
