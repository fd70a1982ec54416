package nopal_test

import (
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nopal-dev/nopal/cluster"
)

// A frontend publishes its connected and suspended sessions in discovery
// with its heartbeats: every node (and the console) sees them.
func TestFrontendPublishesSessionCounts(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, clusterOpts{})
	room := c.room("room-1", false, nil)
	a := c.connector("conn-a", nil)
	awaitServers(t, "connector", []string{"conn-a"}, room.app)
	counts := func() (string, string) {
		s, ok := room.app.Discovery().ServerByID("conn-a")
		if !ok {
			return "", ""
		}
		return s.Metadata[cluster.MetaConnected], s.Metadata[cluster.MetaSuspended]
	}
	for want := 1; want <= 2; want++ {
		cl := dialOpts(t, a.tcp)
		defer cl.Close()
		eventually(t, "conn-a to publish "+strconv.Itoa(want)+" connected", func() bool {
			conn, susp := counts()
			return conn == strconv.Itoa(want) && susp == "0"
		})
	}
}

// A push to a bound uid goes straight to the frontend holding it, not to
// every frontend: the bindings are followed by a KV watch. A uid that
// binding does not name yet still gets its push, through every frontend.
func TestPushGoesStraightToTheHoldingFrontend(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, clusterOpts{})
	room := c.room("room-1", false, nil)
	a := c.connector("conn-a", nil)
	b := c.connector("conn-b", nil)
	awaitServers(t, "connector", []string{"conn-a", "conn-b"}, room.app)
	ctx := testCtx(t)
	bus := c.infra.Bus()
	var toA atomic.Int32
	sub, err := bus.Subscribe(bus.ServerPush("conn-a"), "", func(*nats.Msg) { toA.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()

	cl := dialOpts(t, b.tcp)
	if err := cl.Request(ctx, "room.room.bind", &BindArg{UID: "straight"}, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the room to see the binding", func() bool {
		ok, err := room.app.Presence().Online(ctx, "straight")
		return err == nil && ok
	})
	for n := 1; n <= 3; n++ {
		failed, err := room.app.SendPushToUsers(ctx, "onSeq", seqPush{N: n}, []string{"straight"}, "")
		if err != nil || len(failed) > 0 {
			t.Fatalf("push %d: failed %v, %v", n, failed, err)
		}
	}
	readSeq(t, cl, 1, 3)
	if err := bus.Flush(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if n := toA.Load(); n != 0 {
		t.Fatalf("conn-a got %d push messages for a user of conn-b", n)
	}
	_ = a
}
