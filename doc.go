// Package nopal builds a game server: an [App] with handlers, acceptors,
// sessions and groups, started and stopped as one.
//
//	app, err := nopal.New(nopal.Config{ServerType: "chat"})
//	app.Register(&Room{}, backend.WithName("room"))
//	app.AddAcceptor(frontend.NewTCPAcceptor("127.0.0.1:3250"))
//	err = app.Run(ctx) // until ctx ends or SIGINT/SIGTERM, then drains
//
// In standalone mode (this package today) one process is frontend and
// backend: clients connect to its acceptors, and routes with two parts
// ("room.join") or three naming its server type ("chat.room.join") reach
// its handlers.
package nopal
