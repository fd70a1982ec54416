// Package nopal builds a game server: an [App] with handlers, acceptors,
// sessions and groups, started and stopped as one. It is the facade that
// wires the packages below it, with the API a Pitaya user expects:
//
//	app, err := nopal.New(nopal.Config{ServerType: "chat"})
//	app.Register(&Room{}, backend.WithName("room"))
//	app.AddAcceptor(frontend.NewTCPAcceptor("127.0.0.1:3250"))
//	err = app.Run(ctx) // until ctx ends or SIGINT/SIGTERM, then drains
//
// Standalone (no Config.Cluster), one process is frontend and backend:
// clients connect to its acceptors, and routes with two parts
// ("room.join") or three naming its server type ("chat.room.join") reach
// its handlers. With Config.Cluster the app joins a cluster on NATS
// JetStream (package cluster runs it): routes naming another server type
// are forwarded there, and RPC, SendPushToUsers, groups and ReliableRPC
// reach every server.
//
// What each package owns: codec (the client wire protocol, routes),
// session, limiter, frontend (acceptors, connections, resume on a
// frontend), backend (handlers, remotes, pipelines, dispatch), stream (the
// bus: NATS, subjects, envelope, traffic log), discovery, bindings,
// groups, reliable (jobs), cluster (the cluster runtime), metrics, modules.
package nopal
