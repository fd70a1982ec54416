package nopal_test

import (
	"context"
	"errors"
	"maps"
	"testing"
	"time"

	"github.com/nopal-dev/nopal"
	"github.com/nopal-dev/nopal/bindings"
	"github.com/nopal-dev/nopal/frontend"
	"github.com/nopal-dev/nopal/stream"
)

// nextPresence returns the next event of a presence watch.
func nextPresence(t *testing.T, events <-chan nopal.PresenceEvent, what string) nopal.PresenceEvent {
	t.Helper()
	select {
	case ev, ok := <-events:
		if !ok {
			t.Fatalf("%s: the watch ended", what)
		}
		return ev
	case <-time.After(waitTimeout):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// wantPresence checks the next event.
func wantPresence(t *testing.T, events <-chan nopal.PresenceEvent, want nopal.PresenceEvent) {
	t.Helper()
	if got := nextPresence(t, events, want.String()); got != want {
		t.Fatalf("presence event %+v, want %+v", got, want)
	}
}

// noPresence checks that no event comes for a while.
func noPresence(t *testing.T, events <-chan nopal.PresenceEvent) {
	t.Helper()
	select {
	case ev := <-events:
		t.Fatalf("unexpected presence event %+v", ev)
	case <-time.After(200 * time.Millisecond):
	}
}

func wantCount(t *testing.T, p nopal.Presence, want int) {
	t.Helper()
	if n, err := p.Count(testCtx(t)); err != nil || n != want {
		t.Fatalf("Count = %d, %v; want %d", n, err, want)
	}
}

func wantOnline(t *testing.T, p nopal.Presence, uid string, want bool) {
	t.Helper()
	if on, err := p.Online(testCtx(t), uid); err != nil || on != want {
		t.Fatalf("Online(%q) = %v, %v; want %v", uid, on, err, want)
	}
}

// Standalone, presence follows the session pool: a bind is online, the end
// of the session offline; a second session of the uid on the same server
// changes nothing.
func TestPresenceStandalone(t *testing.T) {
	app, _, addrs := startApp(t, nopal.Config{Resume: frontend.ResumeConfig{Off: true}})
	p := app.Presence()
	ctx := testCtx(t)
	events, err := p.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	me := app.ServerID()
	wantCount(t, p, 0)

	c1 := dial(t, addrs[0])
	if err := c1.Request(ctx, "lobby.join", &JoinReq{UID: "ana"}, &JoinRes{}); err != nil {
		t.Fatal(err)
	}
	wantPresence(t, events, nopal.PresenceEvent{Kind: bindings.PresenceOnline, UID: "ana", Frontend: me})
	wantOnline(t, p, "ana", true)
	wantOnline(t, p, "bob", false)
	wantCount(t, p, 1)

	// ana again, over WebSocket: the first session is kicked, ana stays.
	// (The lobby's group may still hold ana from the first session: the
	// join may then fail after its bind, which is what matters here.)
	c2 := dial(t, addrs[1])
	_ = c2.Request(ctx, "lobby.join", &JoinReq{UID: "ana"}, &JoinRes{})
	await(t, c1.Done(), "the first session's kick")
	noPresence(t, events)
	wantOnline(t, p, "ana", true)

	// A watch begun now starts from the state.
	later, err := p.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantPresence(t, later, nopal.PresenceEvent{Kind: bindings.PresenceOnline, UID: "ana", Frontend: me, Initial: true})
	if users, err := p.List(ctx); err != nil || !maps.Equal(users, map[string]string{"ana": me}) {
		t.Fatalf("List = %v, %v", users, err)
	}

	_ = c2.Close()
	wantPresence(t, events, nopal.PresenceEvent{Kind: bindings.PresenceOffline, UID: "ana", Frontend: me})
	wantPresence(t, later, nopal.PresenceEvent{Kind: bindings.PresenceOffline, UID: "ana", Frontend: me})
	wantCount(t, p, 0)
	noPresence(t, events)

	// The watch ends with its context.
	wctx, cancel := context.WithCancel(ctx)
	w, err := p.Watch(wctx)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case _, ok := <-w:
		if ok {
			t.Fatal("an event after the watch's end")
		}
	case <-time.After(waitTimeout):
		t.Fatal("the watch did not end with its context")
	}
}

// In a cluster, any server's presence sees every frontend's users, from
// the bindings bucket: online, moved when another frontend takes the uid
// over, offline when its session ends.
func TestPresenceCluster(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, clusterOpts{resume: frontend.ResumeConfig{Off: true}})
	be := c.room("room-1", false, nil).app
	fe1 := c.connector("conn-1", nil)
	fe2 := c.connector("conn-2", nil)
	awaitServers(t, "room", []string{"room-1"}, fe1.app, fe2.app)
	ctx := testCtx(t)

	p := be.Presence() // a backend sees the users of every frontend
	events, err := p.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantCount(t, p, 0)

	ana1, _ := bindClient(t, fe1.tcp, "ana")
	wantPresence(t, events, nopal.PresenceEvent{Kind: bindings.PresenceOnline, UID: "ana", Frontend: "conn-1"})
	ana2, _ := bindClient(t, fe2.ws, "ana")
	wantPresence(t, events, nopal.PresenceEvent{Kind: bindings.PresenceMoved, UID: "ana", Frontend: "conn-2", From: "conn-1"})
	awaitKicked(t, ana1, "ana on conn-1")
	bob, _ := bindClient(t, fe1.ws, "bob")
	wantPresence(t, events, nopal.PresenceEvent{Kind: bindings.PresenceOnline, UID: "bob", Frontend: "conn-1"})

	for _, app := range []*nopal.App{be, fe1.app, fe2.app} {
		pr := app.Presence()
		eventually(t, app.ServerID()+"'s presence to count 2", func() bool {
			n, err := pr.Count(ctx)
			return err == nil && n == 2
		})
		wantOnline(t, pr, "ana", true)
		wantOnline(t, pr, "carl", false)
		if users, err := pr.List(ctx); err != nil || !maps.Equal(users, map[string]string{"ana": "conn-2", "bob": "conn-1"}) {
			t.Fatalf("%s: List = %v, %v", app.ServerID(), users, err)
		}
	}
	later, err := fe2.app.Presence().Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantPresence(t, later, nopal.PresenceEvent{Kind: bindings.PresenceOnline, UID: "ana", Frontend: "conn-2", Initial: true})
	wantPresence(t, later, nopal.PresenceEvent{Kind: bindings.PresenceOnline, UID: "bob", Frontend: "conn-1", Initial: true})

	_ = ana2.Close()
	wantPresence(t, events, nopal.PresenceEvent{Kind: bindings.PresenceOffline, UID: "ana", Frontend: "conn-2"})
	wantPresence(t, later, nopal.PresenceEvent{Kind: bindings.PresenceOffline, UID: "ana", Frontend: "conn-2"})
	_ = bob.Close()
	wantPresence(t, events, nopal.PresenceEvent{Kind: bindings.PresenceOffline, UID: "bob", Frontend: "conn-1"})
	wantCount(t, p, 0)
	noPresence(t, events)
}

// A clustered app's presence needs the app started; the value Presence
// returned before Start works after it, and fails again after Shutdown.
func TestPresenceClusterNeedsStart(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, clusterOpts{})
	app, err := nopal.New(nopal.Config{ServerType: "room", Logger: c.log,
		Cluster: &nopal.ClusterConfig{Bus: stream.Config{URL: c.infra.Bus().ClientURL()}}})
	if err != nil {
		t.Fatal(err)
	}
	p := app.Presence()
	ctx := testCtx(t)
	if _, err := p.Count(ctx); err == nil {
		t.Fatal("Count before Start did not fail")
	}
	if err := app.Start(ctx); err != nil {
		t.Fatal(err)
	}
	wantCount(t, p, 0)
	events, err := p.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case _, ok := <-events:
		if ok {
			t.Fatal("an event after Shutdown")
		}
	case <-time.After(waitTimeout):
		t.Fatal("the watch did not end with the app")
	}
	if _, err := p.Online(ctx, "ana"); !errors.Is(err, bindings.ErrPresenceStopped) {
		t.Fatalf("Online after Shutdown: %v, want ErrPresenceStopped", err)
	}
}
