package discovery_test

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/nopal-dev/nopal/discovery"
	"github.com/nopal-dev/nopal/stream"
)

func Example() {
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	// No URL: an embedded NATS server with JetStream, in-process.
	bus, err := stream.Connect(ctx, stream.Config{ServerID: "example", Logger: quiet})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer bus.Close()

	start := func(self discovery.Server) *discovery.Discovery {
		d, err := discovery.New(bus, self, discovery.Config{Logger: quiet})
		if err != nil {
			panic(err)
		}
		if err := d.Start(ctx); err != nil {
			panic(err)
		}
		return d
	}
	room := start(discovery.Server{ID: "room-1", Type: "room", Version: "1.0"})
	defer room.Stop(ctx)
	connector := start(discovery.Server{ID: "connector-1", Type: "connector", Frontend: true, Version: "1.0"})
	defer connector.Stop(ctx)

	// The view is complete when Start returns.
	for _, s := range connector.ServersByType("room") {
		fmt.Println("room:", s.ID, s.Version)
	}

	// Later changes arrive as events.
	joined := make(chan discovery.Server, 1)
	cancel := connector.Subscribe(func(e discovery.Event) {
		if e.Kind == discovery.Joined && e.Server.Type == "room" {
			joined <- e.Server
		}
	})
	defer cancel()
	room2 := start(discovery.Server{ID: "room-2", Type: "room", Version: "1.1"})
	defer room2.Stop(ctx)
	fmt.Println("joined:", (<-joined).ID)
	for _, s := range connector.ServersByType("room") {
		fmt.Println("room:", s.ID, s.Version)
	}
	fmt.Println(connector.CountByType())
	// Output:
	// room: room-1 1.0
	// joined: room-2
	// room: room-1 1.0
	// room: room-2 1.1
	// map[connector:1 room:2]
}
