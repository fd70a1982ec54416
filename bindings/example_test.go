package bindings_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/nopal-dev/nopal/bindings"
	"github.com/nopal-dev/nopal/stream"
)

func Example() {
	ctx := context.Background()
	// No URL: an embedded NATS server with JetStream in a temporary folder.
	bus, err := stream.Connect(ctx, stream.Config{ServerID: "example", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer bus.Close()
	store, err := bindings.NewStore(ctx, bus)
	if err != nil {
		fmt.Println(err)
		return
	}

	phone := bindings.Binding{FrontendID: "fe-1", SessionID: 1}
	laptop := bindings.Binding{FrontendID: "fe-2", SessionID: 7}

	prev, _ := store.Bind(ctx, "alice", phone)
	fmt.Println("first bind replaced:", prev)

	prev, _ = store.Bind(ctx, "alice", laptop)
	fmt.Println("takeover replaced:", prev, "(kick it)")

	// The phone's connection ends after the takeover: its Unbind is stale
	// and removes nothing.
	_ = store.Unbind(ctx, "alice", phone)
	fe, _ := store.FrontendOf(ctx, "alice")
	fmt.Println("alice is on", fe)

	_ = store.Unbind(ctx, "alice", laptop)
	_, err = store.Get(ctx, "alice")
	fmt.Println("after the laptop leaves:", errors.Is(err, bindings.ErrNotFound))

	// Output:
	// first bind replaced: <nil>
	// takeover replaced: fe-1/1 (kick it)
	// alice is on fe-2
	// after the laptop leaves: true
}
