package reliable_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/nopal-dev/nopal/backend"
	"github.com/nopal-dev/nopal/codec"
	"github.com/nopal-dev/nopal/reliable"
	"github.com/nopal-dev/nopal/stream"
)

// Rewards is a remote of the "reward" server type. Jobs may run more than
// once, so Grant is idempotent: it grants each order once.
type Rewards struct{ granted map[string]bool }

type Grant struct {
	Order string `json:"order"`
	Gems  int    `json:"gems"`
}

func (r *Rewards) Grant(ctx context.Context, g *Grant) (*Grant, error) {
	if !r.granted[g.Order] {
		r.granted[g.Order] = true // (a real remote writes this to its database)
	}
	return g, nil
}

func Example() {
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	dir, _ := os.MkdirTemp("", "reliable-example-")
	defer os.RemoveAll(dir)
	bus, err := stream.Connect(ctx, stream.Config{ServerID: "reward-1", Logger: log, Embedded: stream.Embedded{StoreDir: dir}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer bus.Close()

	// On every "reward" server: the remotes registry, and a worker that
	// runs jobs with it.
	reg := backend.NewRegistry("reward", codec.Auto{}, log)
	if err := reg.Register(&Rewards{granted: map[string]bool{}}); err != nil {
		fmt.Println(err)
		return
	}
	inv := reliable.InvokerFunc(func(ctx context.Context, route string, arg []byte) ([]byte, error) {
		out, _, err := reg.Handle(ctx, route, arg)
		return out, err
	})
	w, err := reliable.NewWorker(ctx, bus, inv, reliable.WorkerConfig{ServerType: "reward", Logger: log})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := w.Start(ctx); err != nil {
		fmt.Println(err)
		return
	}
	defer w.Stop(ctx)

	// Anywhere in the cluster: enqueue, keyed by the order id, so a
	// retried purchase request does not grant twice.
	c, err := reliable.NewClient(ctx, bus, reliable.WithLogger(log))
	if err != nil {
		fmt.Println(err)
		return
	}
	for range 2 {
		jid, err := c.Enqueue(ctx, "reward.rewards.grant", &Grant{Order: "order-7", Gems: 50},
			reliable.WithJID("order-7"), reliable.WithMaxAttempts(10), reliable.WithDeadline(time.Now().Add(time.Hour)))
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println("enqueued", jid)
	}
	job, err := c.Wait(ctx, "order-7")
	if err != nil {
		fmt.Println(err)
		return
	}
	var g Grant
	if err := job.Decode(&g); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(job.State, len(job.Attempts), "attempt(s):", g.Gems, "gems")
	// Output:
	// enqueued order-7
	// enqueued order-7
	// succeeded 1 attempt(s): 50 gems
}
