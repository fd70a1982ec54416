package nopal_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nopal-dev/nopal"
	"github.com/nopal-dev/nopal/backend"
	"github.com/nopal-dev/nopal/client"
	"github.com/nopal-dev/nopal/frontend"
	"github.com/nopal-dev/nopal/stream"
)

// orderRoom records the order in which one session's messages arrive.
type orderRoom struct {
	mu   sync.Mutex
	seen []int
}

func (r *orderRoom) Note(_ context.Context, in []byte) {
	n, _ := strconv.Atoi(string(in))
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, n)
}

func (r *orderRoom) Seen(context.Context, []byte) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return json.Marshal(r.seen)
}

// A session's notifies and requests forwarded to two backends run in the
// order the client sent them (DESIGN §4), as they do on a frontend.
func TestClusterSessionOrder(t *testing.T) {
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	room := &orderRoom{}
	var apps []*nopal.App
	for i := range 2 {
		b, err := nopal.New(nopal.Config{ServerType: "room", Logger: quiet,
			Cluster: &nopal.ClusterConfig{Bus: stream.Config{Embedded: stream.Embedded{StoreDir: t.TempDir()}}}})
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Register(room, backend.WithName("o")); err != nil {
			t.Fatal(err)
		}
		if i > 0 {
			b.UseEmbedded(apps[0].Bus().Server)
		}
		if err := b.Start(ctx); err != nil {
			t.Fatal(err)
		}
		apps = append(apps, b)
	}
	fe, err := nopal.New(nopal.Config{ServerType: "front", Logger: quiet, Cluster: &nopal.ClusterConfig{Bus: stream.Config{}}})
	if err != nil {
		t.Fatal(err)
	}
	fe.UseEmbedded(apps[0].Bus().Server)
	tcp := frontend.NewTCPAcceptor("127.0.0.1:0")
	fe.AddAcceptor(tcp)
	if err := fe.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = fe.Shutdown(sctx)
		for i := len(apps) - 1; i >= 0; i-- {
			_ = apps[i].Shutdown(sctx)
		}
	})

	c, err := client.Dial(ctx, tcp.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const n = 200
	for i := range n {
		if err := c.Notify(ctx, "room.o.note", []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	out, err := c.RequestRaw(rctx, "room.o.seen", nil)
	if err != nil {
		t.Fatal(err)
	}
	var seen []int
	if err := json.Unmarshal(out, &seen); err != nil {
		t.Fatal(err)
	}
	if len(seen) != n {
		t.Fatalf("%d notifies handled before the request, want %d", len(seen), n)
	}
	for i, v := range seen {
		if v != i {
			t.Fatalf("notify %d handled in position %d: %v", v, i, seen)
		}
	}
}
