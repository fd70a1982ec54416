// Package cluster is the cluster runtime of a server: what it runs when
// nopal.Config.Cluster is set. A [Runtime] is built by [Start] from the
// bus configuration and the parts of its process it serves (the handler and
// remote registries, the session pool, and, once it runs, the frontend
// through the narrow [LocalFrontend] interface); it holds no pointer back
// to the App.
//
// The files, by what they own:
//
//	cluster.go   Config, Start and Stop, the subscriptions, the accessors
//	call.go      a client request forwarded to a server of its route's type
//	             (Forward), RPC, and serving the calls that reach this server
//	push.go      pushes and kicks to users wherever they are connected
//	remote.go    backend sessions: Bind and PushToFront go back to the
//	             frontend that holds the client
//	handover.go  session resume across frontends: the hand-over, the
//	             session records (KV "sessions") and the MAILBOX stream
//	janitor.go   ending the sessions of a frontend that died
//	jobs.go      the reliable-RPC client and the job worker
//	callpool.go  the goroutines that serve calls: they read the call
//	             subscriptions' channel themselves
//	deadline.go  a served call's context, its deadline timer armed only
//	             when the handler asks for Done
//
// A client request's path through the folders:
//
//	frontend (agent reads the packet)  →  nopal.App.handle (parses the
//	codec.Route once)  →  backend.Registry, when the route is this server's,
//	or cluster.Runtime.Forward  →  stream (NATS request on
//	<prefix>.rpc.<route>, Bus.Call)  →  on a server of the type, a
//	call-pool worker takes it from the subscription's channel and runs
//	cluster.Runtime.serveCall  →  backend.Registry.Handle with a backend
//	session  →  the reply back the same way to the frontend (the waiting
//	request reads it from the reply channel), which writes the response.
package cluster
