package groups_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/nopal-dev/nopal/groups"
	"github.com/nopal-dev/nopal/stream"
)

// printPusher is a Pusher that prints what it would send. A real one
// serializes v once and writes one packet to each user's session.
type printPusher struct{}

func (printPusher) PushToUsers(_ context.Context, route string, v any, uids []string) ([]string, error) {
	slices.Sort(uids) // the Service passes them in no particular order
	fmt.Printf("push %s %v to %v\n", route, v, uids)
	return nil, nil
}

func Example() {
	ctx := context.Background()
	var g groups.Service = groups.NewMemory(printPusher{})

	if err := g.Create(ctx, "room1"); err != nil {
		panic(err)
	}
	for _, uid := range []string{"bob", "alice", "carol"} {
		if err := g.Add(ctx, "room1", uid); err != nil {
			panic(err)
		}
	}
	failed, err := g.Broadcast(ctx, "room1", "room.onChat", "hello")
	fmt.Println("failed:", failed, "err:", err)

	err = g.Add(ctx, "room1", "bob")
	fmt.Println(errors.Is(err, groups.ErrMemberAlreadyExists), err)
	// Output:
	// push room.onChat hello to [alice bob carol]
	// failed: [] err: <nil>
	// true groups: "room1": uid "bob": member already exists
}

func ExampleMemory_Multicast() {
	ctx := context.Background()
	m := groups.NewMemory(printPusher{})
	_ = m.Create(ctx, "room1")
	for _, uid := range []string{"bot-1", "alice", "bob", "bot-2"} {
		_ = m.Add(ctx, "room1", uid)
	}
	humans := func(uid string) bool { return len(uid) < 4 || uid[:4] != "bot-" }
	_, _ = m.Multicast(ctx, "room1", "room.onJoin", "dave", humans)
	// Output: push room.onJoin dave to [alice bob]
}

// A group with a TTL disappears when the TTL passes without RenewTTL. The
// clock is injected so that the example does not wait.
func ExampleMemory_RenewTTL() {
	ctx := context.Background()
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	m := groups.NewMemory(printPusher{}, groups.WithClock(func() time.Time { return now }))
	_ = m.CreateWithTTL(ctx, "match", time.Minute)

	now = now.Add(50 * time.Second)
	fmt.Println("renew:", m.RenewTTL(ctx, "match"))

	now = now.Add(50 * time.Second) // 100 s after creation, 50 s after renewal
	n, err := m.Count(ctx, "match")
	fmt.Println("count:", n, err)

	now = now.Add(10 * time.Second) // a minute after renewal
	_, err = m.Count(ctx, "match")
	fmt.Println("expired:", errors.Is(err, groups.ErrGroupNotFound))
	fmt.Println("swept:", m.Sweep(now))
	// Output:
	// renew: <nil>
	// count: 0 <nil>
	// expired: true
	// swept: 1
}

// Start reclaims the memory of expired groups until its context is done.
func ExampleMemory_Start() {
	ctx, cancel := context.WithCancel(context.Background())
	m := groups.NewMemory(printPusher{}, groups.WithSweepInterval(time.Minute))
	done := make(chan error)
	go func() { done <- m.Start(ctx) }()

	// ... serve ...

	cancel()
	fmt.Println(<-done)
	// Output: context canceled
}

// Every node of a cluster creates its own Cluster on its bus; they all see the
// same groups. Here the bus starts an embedded NATS server (no URL), as a
// single node does.
func ExampleNewCluster() {
	ctx := context.Background()
	bus, err := stream.Connect(ctx, stream.Config{ServerID: "node1", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	defer bus.Close()

	g, err := groups.NewCluster(ctx, bus, printPusher{})
	if err != nil {
		panic(err)
	}
	sweeping, stop := context.WithCancel(ctx)
	defer stop()         // before bus.Close
	go g.Start(sweeping) // deletes expired groups; harmless on every node

	if err := g.CreateWithTTL(ctx, "match1", time.Hour); err != nil {
		panic(err)
	}
	for _, uid := range []string{"bob", "alice"} {
		if err := g.Add(ctx, "match1", uid); err != nil {
			panic(err)
		}
	}
	_, _ = g.Broadcast(ctx, "match1", "match.onStart", "go")
	fmt.Println(g.Create(ctx, "match1"))
	// Output:
	// push match.onStart go to [alice bob]
	// groups: "match1": group already exists
}
