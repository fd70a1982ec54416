package discovery

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// awaitView consumes r's events until d's view is exactly want.
func awaitView(t *testing.T, d *Discovery, r *recorder, timeout time.Duration, want ...string) {
	t.Helper()
	deadline := time.After(timeout)
	for !slices.Equal(ids(d.Servers()), want) {
		select {
		case e := <-r.ch:
			t.Logf("%s sees %s %s", d.id, e.Kind, e.Server.ID)
		case <-deadline:
			t.Fatalf("%s sees %v, want %v", d.id, ids(d.Servers()), want)
		}
	}
}

// TestBucketDeletedUnderWatchers deletes the servers bucket, and another
// stream of the bus, while two nodes run: their heartbeats fail, the bucket
// and the stream are created again, the watchers are re-created on the new
// bucket, and a node that joins afterwards is seen by both.
func TestBucketDeletedUnderWatchers(t *testing.T) {
	busA, join := cluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	other, err := busA.Stream(ctx, jetstream.StreamConfig{Name: "OTHER", Subjects: []string{busA.Prefix() + ".other.>"}})
	if err != nil {
		t.Fatal(err)
	}
	a := start(t, busA, srv("a", "connector"))
	ra := record(t, a)
	busB := join("b")
	b := start(t, busB, srv("b", "room"))
	rb := record(t, b)
	awaitView(t, a, ra, 5*time.Second, "a", "b")

	// JetStream announces the stream's creation: await it.
	created := make(chan *nats.Msg, 8)
	sub, err := busA.ChanSubscribe("$JS.EVENT.ADVISORY.STREAM.CREATED."+busA.Name("OTHER"), created)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := busA.Flush(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := busA.JetStream().DeleteKeyValue(ctx, busA.Name(Bucket)); err != nil {
		t.Fatal(err)
	}
	if err := busA.JetStream().DeleteStream(ctx, busA.Name("OTHER")); err != nil {
		t.Fatal(err)
	}
	// A heartbeat that fails on the missing bucket has the bus re-create
	// what it provisioned, the other stream included.
	select {
	case <-created:
	case <-time.After(10 * time.Second):
		t.Fatal("the other stream did not come back")
	}
	// The server sends the advisory just before it registers the stream
	// with the account, so an Info right after it may still miss it.
	awaitStream(t, ctx, other)

	c := start(t, join("c"), srv("c", "room"))
	rc := record(t, c)
	for _, n := range []struct {
		d *Discovery
		r *recorder
	}{{a, ra}, {b, rb}, {c, rc}} {
		awaitView(t, n.d, n.r, 10*time.Second, "a", "b", "c")
	}
	// The watchers follow changes on the new bucket.
	if err := b.SetMetadata(ctx, map[string]string{"after": "delete"}); err != nil {
		t.Fatal(err)
	}
	awaitChange(t, ra, "b", "after", "delete", 10*time.Second)
}

// awaitStream asks for s's info until the server has it registered: the
// creation advisory is sent a moment before that.
func awaitStream(t *testing.T, ctx context.Context, s jetstream.Stream) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		_, err := s.Info(ctx)
		if err == nil {
			return
		}
		if !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Fatal(err)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("the other stream is still not found: %v", err)
		}
	}
}
