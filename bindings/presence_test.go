package bindings_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/nopal-dev/nopal/bindings"
	"github.com/nopal-dev/nopal/stream"
)

func nextEvent(t *testing.T, events <-chan bindings.PresenceEvent) bindings.PresenceEvent {
	t.Helper()
	select {
	case ev, ok := <-events:
		if !ok {
			t.Fatal("the watch ended")
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for a presence event")
		panic("unreachable")
	}
}

// The cluster presence turns the Store's binds, moves and unbinds into
// online, moved and offline events, and starts each watch from the state.
func TestClusterPresence(t *testing.T) {
	ctx := testCtx(t)
	bus, err := stream.Connect(ctx, stream.Config{ServerID: "test", Logger: slog.New(slog.DiscardHandler),
		Embedded: stream.Embedded{StoreDir: t.TempDir()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bus.Close)
	store, err := bindings.NewStore(ctx, bus)
	if err != nil {
		t.Fatal(err)
	}
	fe1, fe2 := bindings.Binding{FrontendID: "fe-1", SessionID: 1}, bindings.Binding{FrontendID: "fe-2", SessionID: 7}
	if _, err := store.Bind(ctx, "old timer", fe1); err != nil { // a uid stored base64
		t.Fatal(err)
	}
	p := bindings.NewClusterPresence(bus, nil)
	defer p.Stop()
	events, err := p.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := func(w bindings.PresenceEvent) {
		t.Helper()
		if got := nextEvent(t, events); got != w {
			t.Fatalf("event %+v, want %+v", got, w)
		}
	}
	want(bindings.PresenceEvent{Kind: bindings.PresenceOnline, UID: "old timer", Frontend: "fe-1", Initial: true})

	if _, err := store.Bind(ctx, "ana", fe1); err != nil {
		t.Fatal(err)
	}
	want(bindings.PresenceEvent{Kind: bindings.PresenceOnline, UID: "ana", Frontend: "fe-1"})
	// Another session on the same frontend: no event; then a move.
	if _, err := store.Bind(ctx, "ana", bindings.Binding{FrontendID: "fe-1", SessionID: 2}); err != nil {
		t.Fatal(err)
	}
	if err := store.Move(ctx, "ana", bindings.Binding{FrontendID: "fe-1", SessionID: 2}, fe2); err != nil {
		t.Fatal(err)
	}
	want(bindings.PresenceEvent{Kind: bindings.PresenceMoved, UID: "ana", Frontend: "fe-2", From: "fe-1"})
	if n, err := p.Count(ctx); err != nil || n != 2 {
		t.Fatalf("Count = %d, %v", n, err)
	}
	if on, err := p.Online(ctx, "ana"); err != nil || !on {
		t.Fatalf("Online(ana) = %v, %v", on, err)
	}
	if _, err := p.Online(ctx, ""); !errors.Is(err, bindings.ErrInvalidUID) {
		t.Fatalf("Online(\"\"): %v", err)
	}
	if err := store.Unbind(ctx, "ana", fe2); err != nil {
		t.Fatal(err)
	}
	want(bindings.PresenceEvent{Kind: bindings.PresenceOffline, UID: "ana", Frontend: "fe-2"})
	if on, err := p.Online(ctx, "ana"); err != nil || on {
		t.Fatalf("Online(ana) after unbind = %v, %v", on, err)
	}

	// Stop ends the watches and the methods.
	p.Stop()
	select {
	case _, ok := <-events:
		if ok {
			t.Fatal("an event after Stop")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the watch did not end with Stop")
	}
	if _, err := p.Count(context.Background()); !errors.Is(err, bindings.ErrPresenceStopped) {
		t.Fatalf("Count after Stop: %v", err)
	}
}
