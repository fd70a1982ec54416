package nopal_test

// Cluster tests: several Apps in one process on a real embedded NATS server
// with JetStream, clients on real sockets (see cluster_helpers_test.go).
//
// Note on session data: a backend session's data reaches its frontend (and
// the next backend session) as JSON, so numbers come back as float64: a
// backend that does s.Set("level", 3) finds float64(3) on the frontend and in
// the next request's backend session.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/nopal-dev/nopal"
	"github.com/nopal-dev/nopal/bindings"
	"github.com/nopal-dev/nopal/client"
	"github.com/nopal-dev/nopal/codec"
	"github.com/nopal-dev/nopal/discovery"
	"github.com/nopal-dev/nopal/frontend"
	"github.com/nopal-dev/nopal/groups"
	"github.com/nopal-dev/nopal/session"
)

// A connector without handlers forwards requests and notifies to the room
// backends: spread at random by default, pinned by a router; responses,
// errors and missing routes or types reach the client as such.
func TestClusterForwarding(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, clusterOpts{})
	rec := newRoomRecorder(t)
	b1 := c.room("room-1", false, rec)
	b2 := c.room("room-2", true, rec)
	ids := []string{b1.app.ServerID(), b2.app.ServerID()}

	var routed sync.Map // route -> the servers the router was given
	random := c.connector("conn-random", nil)
	pinned := c.connector("conn-pinned", func(app *nopal.App) {
		app.AddRoute("room", func(_ context.Context, route string, _ []byte, servers []discovery.Server) (discovery.Server, error) {
			var got []string
			for _, s := range servers {
				got = append(got, s.ID)
			}
			routed.Store(route, got)
			if route == "room.room.reject" {
				return discovery.Server{}, codec.NewError("ROUTE-1", "no room for you", nil)
			}
			for _, s := range servers {
				if s.ID == "room-2" {
					return s, nil
				}
			}
			return discovery.Server{}, errors.New("room-2 is gone")
		})
	})
	awaitServers(t, "room", ids, random.app, pinned.app)
	ctx := testCtx(t)

	for _, tc := range []struct{ name, addr string }{{"tcp", random.tcp}, {"ws", random.ws}} {
		t.Run("random/"+tc.name, func(t *testing.T) {
			cl := dial(t, tc.addr)
			const n = 40
			counts := map[string]int{}
			for range n {
				var w Where
				if err := cl.Request(ctx, "room.room.where", nil, &w); err != nil {
					t.Fatal(err)
				}
				if w.Frontend != random.app.ServerID() || w.IsFrontend {
					t.Errorf("backend session: frontend %q, IsFrontend %v", w.Frontend, w.IsFrontend)
				}
				counts[w.Server]++
			}
			if counts[ids[0]] == 0 || counts[ids[1]] == 0 || counts[ids[0]]+counts[ids[1]] != n {
				t.Errorf("requests per backend %v, want both of %v used", counts, ids)
			}
		})
	}

	t.Run("router pins", func(t *testing.T) {
		cl := dial(t, pinned.ws)
		for range 20 {
			var w Where
			if err := cl.Request(ctx, "room.room.where", nil, &w); err != nil {
				t.Fatal(err)
			}
			if w.Server != "room-2" {
				t.Fatalf("pinned request served by %s", w.Server)
			}
		}
		if got, _ := routed.Load("room.room.where"); !slices.Equal(got.([]string), ids) {
			t.Errorf("the router was given %v, want %v", got, ids)
		}
		err := cl.Request(ctx, "room.room.reject", nil, nil)
		if codeOf(err) != "ROUTE-1" {
			t.Errorf("router error: %v", err)
		}
		// Notifies follow the router too.
		if err := cl.Notify(ctx, "room.room.note", &Echo{Text: "pinned"}); err != nil {
			t.Fatal(err)
		}
		if got := await(t, rec.notes, "the pinned notify"); got != (Echo{Text: "pinned", Server: "room-2"}) {
			t.Errorf("notify %+v", got)
		}
	})

	cl := dial(t, random.tcp)
	for _, tc := range []struct {
		name, route string
		in          any
		code        string            // "" for success
		msg         string            // error message, when code is an application's
		meta        map[string]string // error metadata
	}{
		{name: "response", route: "room.room.echo", in: &Echo{Text: "hello"}},
		{name: "application error", route: "room.room.fail", code: "ROOM-7", msg: "room is full",
			meta: map[string]string{"room": "r1"}},
		{name: "unknown route on the backend", route: "room.room.nosuch", code: codec.CodeNotFound},
		{name: "bad argument", route: "room.room.echo", in: []byte("{not json"), code: codec.CodeBadRequest},
		{name: "type without servers", route: "chat.room.join", code: codec.CodeServiceMissing},
		{name: "two-part route of no local handler", route: "room.join", code: codec.CodeNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out Echo
			err := cl.Request(ctx, tc.route, tc.in, &out)
			if tc.code == "" {
				if err != nil || out.Text != "hello" || !slices.Contains(ids, out.Server) {
					t.Fatalf("got %+v, %v", out, err)
				}
				return
			}
			var ce *codec.Error
			if !errors.As(err, &ce) || ce.Code != tc.code {
				t.Fatalf("got %v, want code %s", err, tc.code)
			}
			if tc.msg != "" && ce.Message != tc.msg {
				t.Errorf("message %q, want %q", ce.Message, tc.msg)
			}
			for k, v := range tc.meta {
				if ce.Metadata[k] != v {
					t.Errorf("metadata %v, want %s=%s", ce.Metadata, k, v)
				}
			}
			if tc.code == "ROOM-7" && !slices.Contains(ids, ce.Metadata["server"]) {
				t.Errorf("metadata %v names no backend", ce.Metadata)
			}
		})
	}

	t.Run("notify", func(t *testing.T) {
		for i := range 10 {
			if err := cl.Notify(ctx, "room.room.note", &Echo{Text: fmt.Sprint("n", i)}); err != nil {
				t.Fatal(err)
			}
		}
		got := map[string]bool{}
		for range 10 {
			e := await(t, rec.notes, "a forwarded notify")
			if !slices.Contains(ids, e.Server) {
				t.Errorf("notify served by %q", e.Server)
			}
			got[e.Text] = true
		}
		if len(got) != 10 {
			t.Errorf("notifies received %v", got)
		}
		// The connection is fine after notifies to nowhere.
		if err := cl.Notify(ctx, "chat.room.join", nil); err != nil {
			t.Fatal(err)
		}
		if err := cl.Request(ctx, "room.room.where", nil, nil); err != nil {
			t.Fatal(err)
		}
	})
}

// A backend slower than ClusterConfig.RequestTimeout gives the client PIT-408,
// and the client's next request works.
func TestClusterForwardTimeout(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	c := newTestCluster(t, clusterOpts{requestTimeout: timeout})
	c.room("room-1", true, nil)
	fe := c.connector("conn", nil)
	awaitServers(t, "room", []string{"room-1"}, fe.app)
	ctx := testCtx(t)
	for _, addr := range []string{fe.tcp, fe.ws} {
		cl := dial(t, addr)
		start := time.Now()
		err := cl.Request(ctx, "room.room.slow", nil, nil)
		took := time.Since(start)
		if codeOf(err) != codec.CodeTimeout {
			t.Fatalf("slow request: %v, want %s", err, codec.CodeTimeout)
		}
		if took < timeout-50*time.Millisecond || took > timeout+3*time.Second {
			t.Errorf("the timeout came after %v, want about %v", took, timeout)
		}
		var out Echo
		if err := cl.Request(ctx, "room.room.echo", &Echo{Text: "after"}, &out); err != nil || out.Text != "after" {
			t.Errorf("request after the timeout: %+v, %v", out, err)
		}
	}
}

// User RPC between servers: JSON and protobuf, to a type or to one server;
// errors keep their code, message and metadata.
func TestClusterRPC(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, clusterOpts{})
	b1 := c.room("room-1", false, nil)
	b2 := c.room("room-2", true, nil)
	caller := c.add(nodeSpec{svType: "lobby", id: "lobby-1"}).app
	ids := []string{b1.app.ServerID(), b2.app.ServerID()}
	awaitServers(t, "room", ids, caller)
	ctx := testCtx(t)

	t.Run("json to a type", func(t *testing.T) {
		seen := map[string]bool{}
		for i := range 30 {
			var out Echo
			if err := caller.RPC(ctx, "room.remote.echo", &Echo{Text: fmt.Sprint("hi", i)}, &out); err != nil {
				t.Fatal(err)
			}
			if out.Text != fmt.Sprint("hi", i) || !slices.Contains(ids, out.Server) {
				t.Fatalf("got %+v", out)
			}
			seen[out.Server] = true
		}
		if len(seen) != 2 {
			t.Errorf("RPCs reached only %v", seen)
		}
	})
	t.Run("protobuf", func(t *testing.T) {
		out := &wrapperspb.StringValue{}
		if err := caller.RPC(ctx, "room.remote.upper", wrapperspb.String("abc"), out); err != nil {
			t.Fatal(err)
		}
		if v := out.GetValue(); v != "ABC@room-1" && v != "ABC@room-2" {
			t.Errorf("got %q", v)
		}
	})
	t.Run("to a server", func(t *testing.T) {
		for _, id := range ids {
			for range 5 {
				var out Echo
				if err := caller.RPCTo(ctx, id, "room.remote.echo", &Echo{Text: "x"}, &out); err != nil {
					t.Fatal(err)
				}
				if out.Server != id {
					t.Fatalf("RPCTo %s reached %s", id, out.Server)
				}
			}
			out := &wrapperspb.StringValue{}
			if err := caller.RPCTo(ctx, id, "room.remote.upper", wrapperspb.String("p"), out); err != nil || out.GetValue() != "P@"+id {
				t.Errorf("protobuf RPCTo %s: %q, %v", id, out.GetValue(), err)
			}
		}
		// A server calls itself, and a nil out discards the result.
		if err := b1.app.RPCTo(ctx, "room-1", "room.remote.echo", &Echo{Text: "me"}, nil); err != nil {
			t.Errorf("RPCTo self: %v", err)
		}
	})
	t.Run("remote error", func(t *testing.T) {
		for _, call := range []func(out *Echo) error{
			func(out *Echo) error { return caller.RPC(ctx, "room.remote.fail", &Echo{Text: "bob"}, out) },
			func(out *Echo) error { return caller.RPCTo(ctx, "room-2", "room.remote.fail", &Echo{Text: "bob"}, out) },
		} {
			err := call(&Echo{})
			var ce *codec.Error
			if !errors.As(err, &ce) {
				t.Fatalf("got %v (%T), want a *codec.Error", err, err)
			}
			if ce.Code != "ROOM-9" || ce.Message != "no such player: bob" || ce.Metadata["player"] != "bob" {
				t.Errorf("got %q %q %v", ce.Code, ce.Message, ce.Metadata)
			}
		}
	})
	for _, tc := range []struct {
		name string
		call func(ctx context.Context) error
		code string // "" for any error
	}{
		{"missing type", func(ctx context.Context) error {
			return caller.RPC(ctx, "shop.remote.echo", &Echo{}, &Echo{})
		}, codec.CodeServiceMissing},
		{"unknown server id", func(ctx context.Context) error {
			return caller.RPCTo(ctx, "room-9", "room.remote.echo", &Echo{}, &Echo{})
		}, codec.CodeServiceMissing},
		{"empty server id", func(ctx context.Context) error {
			return caller.RPCTo(ctx, "", "room.remote.echo", &Echo{}, &Echo{})
		}, ""},
		{"unknown remote", func(ctx context.Context) error {
			return caller.RPC(ctx, "room.remote.nosuch", &Echo{}, &Echo{})
		}, codec.CodeNotFound},
		{"client handlers are not remotes", func(ctx context.Context) error {
			return caller.RPC(ctx, "room.room.echo", &Echo{}, &Echo{})
		}, codec.CodeNotFound},
		{"two-part route", func(ctx context.Context) error {
			return caller.RPC(ctx, "remote.echo", &Echo{}, &Echo{})
		}, ""},
		{"ctx deadline", func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			defer cancel()
			start := time.Now()
			err := caller.RPC(ctx, "room.remote.sleep", &Echo{}, &Echo{})
			if took := time.Since(start); took < 150*time.Millisecond || took > 3*time.Second {
				t.Errorf("the RPC timed out after %v, want about 200ms", took)
			}
			return err
		}, codec.CodeTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call(ctx)
			if err == nil {
				t.Fatal("no error")
			}
			if tc.code != "" && codeOf(err) != tc.code {
				t.Errorf("got %v, want code %s", err, tc.code)
			}
		})
	}
}

// A backend session binds its frontend session, sends it data, pushes before
// its response and kicks its client; its OnClose callbacks never run.
func TestClusterBackendSession(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, clusterOpts{})
	rec := newRoomRecorder(t)
	c.room("room-1", false, rec)
	bound := make(chan string, 8)
	closed := make(chan string, 8)
	fe := c.connector("conn", func(app *nopal.App) {
		app.OnSessionBind(func(_ context.Context, _ *session.Session, uid string) error {
			if uid == "banned" {
				return errors.New("banned user")
			}
			return nil
		})
		app.OnAfterSessionBind(func(_ context.Context, s *session.Session) { bound <- s.UID() })
		app.OnSessionClose(func(s *session.Session) { closed <- s.UID() })
	})
	awaitServers(t, "room", []string{"room-1"}, fe.app)
	ctx := testCtx(t)
	store, err := bindings.NewStore(ctx, c.infra.Bus())
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct{ name, addr string }{{"tcp", fe.tcp}, {"ws", fe.ws}} {
		t.Run(tc.name, func(t *testing.T) {
			uid := "alice-" + tc.name
			cl := dial(t, tc.addr)

			// Bind from the backend binds the frontend session.
			var w Where
			if err := cl.Request(ctx, "room.room.bind", &BindArg{UID: uid}, &w); err != nil {
				t.Fatal(err)
			}
			if w.UID != uid || w.Frontend != "conn" || w.IsFrontend {
				t.Errorf("backend session after bind: %+v", w)
			}
			if got := await(t, bound, "OnAfterSessionBind on the frontend"); got != uid {
				t.Errorf("frontend bound %q", got)
			}
			fs := fe.app.Sessions().ByUID(uid)
			if fs == nil || fs.ID() != w.Session || !fs.IsFrontend() {
				t.Fatalf("frontend session of %q: %v, want id %d", uid, fs, w.Session)
			}
			if b, err := store.Get(ctx, uid); err != nil || b != (bindings.Binding{FrontendID: "conn", SessionID: w.Session}) {
				t.Errorf("binding %v, %v", b, err)
			}
			if err := cl.Request(ctx, "room.room.bind", &BindArg{UID: "other"}, nil); codeOf(err) == "" {
				t.Errorf("second bind: %v, want an error", err)
			}

			// Set + PushToFront: the frontend session has the data (JSON:
			// numbers are float64), and so has the next backend session.
			if err := cl.Request(ctx, "room.room.store", nil, nil); err != nil {
				t.Fatal(err)
			}
			if lv, ok := fs.Get("level"); lv != float64(3) || !ok {
				t.Errorf("frontend level %v (%T)", lv, lv)
			}
			if name, _ := session.Get[string](fs, "name"); name != "knight" {
				t.Errorf("frontend name %q", name)
			}
			fs.Set("vip", true) // set on the frontend: travels with the next request
			if err := cl.Request(ctx, "room.room.where", nil, &w); err != nil {
				t.Fatal(err)
			}
			want := map[string]string{"level": "float64", "name": "string", "vip": "bool"}
			if w.UID != uid || !maps.Equal(w.DataTypes, want) || w.Data["name"] != "knight" || w.Data["level"] != float64(3) {
				t.Errorf("next backend session: uid %q data %v types %v", w.UID, w.Data, w.DataTypes)
			}

			// Pushes from the backend session arrive before its response.
			var out Echo
			if err := cl.Request(ctx, "room.room.greet", &Echo{Text: "hi"}, &out); err != nil || out.Text != "answered" {
				t.Fatalf("greet: %+v, %v", out, err)
			}
			for i := range 3 {
				select {
				case p := <-cl.Pushes():
					if want := fmt.Sprintf(`{"text":"hi %d","server":"room-1"}`, i); p.Route != "onGreet" || string(p.Data) != want {
						t.Errorf("push %d: %s %s", i, p.Route, p.Data)
					}
				default:
					t.Fatalf("push %d had not arrived when the response did", i)
				}
			}

			// OnClose on a backend session does nothing.
			if err := cl.Request(ctx, "room.room.closer", nil, nil); err != nil {
				t.Fatal(err)
			}

			// Kick from the backend ends the client.
			err := cl.Request(ctx, "room.room.kick", nil, nil)
			if !errors.Is(err, client.ErrClosed) && err != nil {
				t.Errorf("the kicking request: %v", err)
			}
			awaitKicked(t, cl, "the client")
			if got := await(t, closed, "OnSessionClose on the frontend"); got != uid {
				t.Errorf("closed %q", got)
			}
			eventually(t, "the session to leave the frontend", func() bool {
				return fe.app.Frontend().Stats().Connected.Load() == 0
			})
			if fe.app.Sessions().ByUID(uid) != nil {
				t.Error("the kicked session is still bound")
			}
			if _, err := store.Get(ctx, uid); !errors.Is(err, bindings.ErrNotFound) {
				t.Errorf("binding after close: %v", err)
			}
			if n := rec.onCloseRuns.Load(); n != 0 {
				t.Errorf("%d backend OnClose callbacks ran", n)
			}
		})
	}

	t.Run("frontend hooks veto a backend bind", func(t *testing.T) {
		cl := dial(t, fe.tcp)
		err := cl.Request(ctx, "room.room.bind", &BindArg{UID: "banned"}, nil)
		var ce *codec.Error
		if !errors.As(err, &ce) || ce.Code != codec.CodeBadRequest || !strings.Contains(ce.Message, "banned user") {
			t.Errorf("vetoed bind: %v", err)
		}
		if fe.app.Sessions().ByUID("banned") != nil {
			t.Error("the vetoed uid is bound")
		}
		var w Where
		if err := cl.Request(ctx, "room.room.where", nil, &w); err != nil || w.UID != "" {
			t.Errorf("after the veto: %+v, %v", w, err)
		}
	})

	t.Run("push needs a bound uid", func(t *testing.T) {
		cl := dial(t, fe.tcp)
		if err := cl.Request(ctx, "room.room.greet", &Echo{Text: "anon"}, nil); codeOf(err) != codec.CodeInternal {
			t.Errorf("push from an unbound backend session: %v", err)
		}
	})
}

// bindClient dials addr and binds the session to uid through a room backend.
func bindClient(t *testing.T, addr, uid string) (*client.Client, Where) {
	t.Helper()
	cl := dial(t, addr)
	var w Where
	if err := cl.Request(testCtx(t), "room.room.bind", &BindArg{UID: uid}, &w); err != nil {
		t.Fatalf("bind %s on %s: %v", uid, addr, err)
	}
	return cl, w
}

// expectOnly checks that each client's next push is the marker pushed to all
// of them last: whatever was not meant for a client did not reach it.
func expectOnly(t *testing.T, from *nopal.App, clients map[string]*client.Client) {
	t.Helper()
	uids := slices.Sorted(maps.Keys(clients))
	failed, err := from.SendPushToUsers(testCtx(t), "onMarker", map[string]string{"m": "end"}, uids, "")
	if err != nil || len(failed) != 0 {
		t.Fatalf("marker push: failed %v, %v", failed, err)
	}
	for _, uid := range uids {
		if p := nextPush(t, clients[uid], uid+"'s marker"); p.Route != "onMarker" {
			t.Errorf("%s got push %s %s, want the marker", uid, p.Route, p.Data)
		}
	}
}

// Pushes and kicks reach users on whichever frontend holds them; the uids no
// frontend holds come back as failed.
func TestClusterPushAndKickAnywhere(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, clusterOpts{})
	be := c.room("room-1", false, nil).app
	conn := c.connector("conn", nil)
	gate := c.add(nodeSpec{svType: "gate", id: "gate", frontend: true, inProcess: true})
	for _, app := range []*nopal.App{be, conn.app, gate.app} {
		eventually(t, app.ServerID()+" to see both frontends", func() bool {
			_, ok1 := app.Discovery().ServerByID("conn")
			_, ok2 := app.Discovery().ServerByID("gate")
			return ok1 && ok2
		})
	}
	awaitServers(t, "room", []string{"room-1"}, conn.app, gate.app)
	ctx := testCtx(t)

	clients := map[string]*client.Client{}
	clients["u1"], _ = bindClient(t, conn.tcp, "u1")
	clients["u2"], _ = bindClient(t, conn.ws, "u2")
	clients["u3"], _ = bindClient(t, gate.tcp, "u3")
	clients["u4"], _ = bindClient(t, gate.ws, "u4")

	for _, tc := range []struct {
		name         string
		from         *nopal.App
		uids         []string
		frontendType string
		reach        []string
		failed       []string
	}{
		{"from a backend to all", be, []string{"u1", "u2", "u3", "u4", "ghost"}, "", []string{"u1", "u2", "u3", "u4"}, []string{"ghost"}},
		{"from a backend to gates", be, []string{"u1", "u3", "ghost"}, "gate", []string{"u3"}, []string{"u1", "ghost"}},
		{"from a backend to connectors", be, []string{"u2", "u4"}, "connector", []string{"u2"}, []string{"u4"}},
		{"to a type without frontends", be, []string{"u1"}, "room", nil, []string{"u1"}},
		{"from a frontend, here and there", conn.app, []string{"u1", "u3", "nobody", "ghost"}, "", []string{"u1", "u3"}, []string{"nobody", "ghost"}},
		{"from the other frontend", gate.app, []string{"u2", "u4"}, "", []string{"u2", "u4"}, nil},
		{"nobody", be, nil, "", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			failed, err := tc.from.SendPushToUsers(ctx, "onNews", map[string]string{"case": tc.name}, tc.uids, tc.frontendType)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(failed, tc.failed) {
				t.Errorf("failed %v, want %v", failed, tc.failed)
			}
			for _, uid := range tc.reach {
				p := nextPush(t, clients[uid], uid+"'s push")
				if want := fmt.Sprintf(`{"case":%q}`, tc.name); p.Route != "onNews" || string(p.Data) != want {
					t.Errorf("%s got %s %s", uid, p.Route, p.Data)
				}
			}
			expectOnly(t, tc.from, clients)
		})
	}

	t.Run("PushToUsers is cluster-wide", func(t *testing.T) {
		failed, err := be.PushToUsers(ctx, "onNews", "hi", []string{"u2", "u3", "ghost"})
		if err != nil || !slices.Equal(failed, []string{"ghost"}) {
			t.Fatalf("failed %v, %v", failed, err)
		}
		for _, uid := range []string{"u2", "u3"} {
			if p := nextPush(t, clients[uid], uid+"'s push"); string(p.Data) != `"hi"` {
				t.Errorf("%s got %s", uid, p.Data)
			}
		}
	})

	t.Run("kick", func(t *testing.T) {
		failed, err := be.SendKickToUsers(ctx, []string{"u2", "u3", "ghost"}, "")
		if err != nil || !slices.Equal(failed, []string{"ghost"}) {
			t.Fatalf("failed %v, %v", failed, err)
		}
		awaitKicked(t, clients["u2"], "u2")
		awaitKicked(t, clients["u3"], "u3")
		// A type filter spares the other frontends' users.
		failed, err = conn.app.SendKickToUsers(ctx, []string{"u1", "u4"}, "gate")
		if err != nil || !slices.Equal(failed, []string{"u1"}) {
			t.Fatalf("failed %v, %v", failed, err)
		}
		awaitKicked(t, clients["u4"], "u4")
		if err := clients["u1"].Request(ctx, "room.room.where", nil, nil); err != nil {
			t.Errorf("u1 after the kicks: %v", err)
		}
		failed, err = be.SendKickToUsers(ctx, []string{"u2", "u3", "u4"}, "")
		if err != nil || !slices.Equal(failed, []string{"u2", "u3", "u4"}) {
			t.Errorf("kick of users gone: failed %v, %v", failed, err)
		}
		if failed, err := be.SendKickToUsers(ctx, nil, ""); failed != nil || err != nil {
			t.Errorf("kick of nobody: %v, %v", failed, err)
		}
		// A frontend kicks its own users without the bus.
		if failed, err := conn.app.SendKickToUsers(ctx, []string{"u1"}, "connector"); failed != nil || err != nil {
			t.Errorf("local kick: failed %v, %v", failed, err)
		}
		awaitKicked(t, clients["u1"], "u1")
	})
}

// One live session per uid in the whole cluster: a bind on another frontend
// kicks the older session, whose close leaves the new binding alone, and a
// storm of binds of one uid on two frontends leaves exactly one client.
func TestClusterUniqueSession(t *testing.T) {
	t.Parallel()
	// A client that leaves has its session kept for the resume grace:
	// a short one here.
	c := newTestCluster(t, clusterOpts{resume: frontend.ResumeConfig{Grace: 50 * time.Millisecond}})
	c.room("room-1", false, nil)
	c.room("room-2", true, nil)
	a := c.connector("conn-a", nil)
	b := c.connector("conn-b", nil)
	awaitServers(t, "room", []string{"room-1", "room-2"}, a.app, b.app)
	ctx := testCtx(t)
	store, err := bindings.NewStore(ctx, c.infra.Bus())
	if err != nil {
		t.Fatal(err)
	}
	fes := map[string]*nopal.App{"conn-a": a.app, "conn-b": b.app}

	t.Run("takeover", func(t *testing.T) {
		ca, wa := bindClient(t, a.tcp, "u1")
		if got, err := store.Get(ctx, "u1"); err != nil || got != (bindings.Binding{FrontendID: "conn-a", SessionID: wa.Session}) {
			t.Fatalf("binding on A: %v, %v", got, err)
		}
		cb, wb := bindClient(t, b.ws, "u1")
		awaitKicked(t, ca, "the client on A")
		// A's close hooks, the unique session's unbind included, have run
		// once the frontend has forgotten the connection.
		eventually(t, "A to close the kicked session", func() bool {
			return a.app.Frontend().Stats().Connected.Load() == 0
		})
		if got, err := store.Get(ctx, "u1"); err != nil || got != (bindings.Binding{FrontendID: "conn-b", SessionID: wb.Session}) {
			t.Errorf("binding after A's close: %v, %v", got, err)
		}
		if a.app.Sessions().ByUID("u1") != nil {
			t.Error("u1 is still bound on A")
		}
		if s := b.app.Sessions().ByUID("u1"); s == nil || s.ID() != wb.Session {
			t.Errorf("u1 on B: %v", s)
		}
		var w Where
		if err := cb.Request(ctx, "room.room.where", nil, &w); err != nil || w.UID != "u1" || w.Frontend != "conn-b" {
			t.Errorf("the client on B: %+v, %v", w, err)
		}
		// B's own close removes its binding, once the resume grace passes.
		_ = cb.Close()
		eventually(t, "u1's binding to go with B's session", func() bool {
			_, err := store.Get(ctx, "u1")
			return errors.Is(err, bindings.ErrNotFound)
		})
	})

	t.Run("storm", func(t *testing.T) {
		const uid, rounds, perRound = "storm", 10, 6
		addrs := []string{a.tcp, b.tcp, a.ws, b.ws} // A and B in turn
		type attempt struct {
			cl  *client.Client
			w   Where
			err error
		}
		var all []*attempt
		for r := range rounds {
			round := make([]*attempt, perRound)
			for i := range round {
				round[i] = &attempt{cl: dial(t, addrs[(r+i)%len(addrs)])}
			}
			var wg sync.WaitGroup
			for _, at := range round {
				wg.Go(func() { at.err = at.cl.Request(ctx, "room.room.bind", &BindArg{UID: uid}, &at.w) })
			}
			wg.Wait()
			all = append(all, round...)

			// The kicks are sent before the bind responses; the clients
			// see them a little later.
			var alive []*attempt
			poll(func() bool {
				alive = alive[:0]
				for _, at := range all {
					if at.cl.Err() == nil {
						alive = append(alive, at)
					}
				}
				return len(alive) <= 1
			})
			if len(alive) != 1 {
				for _, at := range alive {
					t.Logf("alive: %s/%d (bind error %v)", at.w.Frontend, at.w.Session, at.err)
				}
				t.Fatalf("round %d: %d clients of %q alive, want 1", r, len(alive), uid)
			}
			win := alive[0]
			if win.err != nil || win.w.UID != uid {
				t.Fatalf("round %d: the survivor's bind: %+v, %v", r, win.w, win.err)
			}
			want := bindings.Binding{FrontendID: win.w.Frontend, SessionID: win.w.Session}
			if got, err := store.Get(ctx, uid); err != nil || got != want {
				t.Fatalf("round %d: binding %v, %v; the survivor is %v", r, got, err, want)
			}
			for id, app := range fes {
				eventually(t, fmt.Sprintf("round %d: %s to hold only the survivor", r, id), func() bool {
					s := app.Sessions().ByUID(uid)
					if id == want.FrontendID {
						return s != nil && s.ID() == want.SessionID
					}
					return s == nil
				})
			}
		}
		// Every other client was kicked.
		for _, at := range all {
			switch err := at.cl.Err(); {
			case err == nil, errors.Is(err, client.ErrKicked):
			default:
				t.Errorf("a replaced client ended with %v, want a kick", err)
			}
		}
		// The survivor is reachable through the cluster.
		failed, err := c.infra.SendPushToUsers(ctx, "onStorm", "over", []string{uid}, "")
		if err != nil || len(failed) != 0 {
			t.Fatalf("push to the survivor: %v, %v", failed, err)
		}
		for _, at := range all {
			if at.cl.Err() == nil {
				if p := nextPush(t, at.cl, "the survivor's push"); p.Route != "onStorm" {
					t.Errorf("the survivor got %s", p.Route)
				}
			}
		}
	})
}

// Cluster groups: what one server does to a group, the others see; TTL
// groups expire unless renewed; a broadcast to members on two frontends
// reaches each member once.
func TestClusterGroups(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, clusterOpts{})
	b1 := c.room("room-1", false, nil).app
	b2 := c.room("room-2", true, nil).app
	fa := c.connector("conn-a", nil)
	fb := c.add(nodeSpec{svType: "gate", id: "gate-b", frontend: true})
	awaitServers(t, "room", []string{"room-1", "room-2"}, fa.app, fb.app)
	ctx := testCtx(t)
	g1, g2, ga := b1.Groups(), b2.Groups(), fa.app.Groups()

	t.Run("shared", func(t *testing.T) {
		steps := []struct {
			name string
			do   func() error
			want error
		}{
			{"create on room-1", func() error { return g1.Create(ctx, "lobby") }, nil},
			{"create again on room-2", func() error { return g2.Create(ctx, "lobby") }, groups.ErrGroupAlreadyExists},
			{"add x on conn-a", func() error { return ga.Add(ctx, "lobby", "x") }, nil},
			{"add y on room-2", func() error { return g2.Add(ctx, "lobby", "y") }, nil},
			{"add x again on room-1", func() error { return g1.Add(ctx, "lobby", "x") }, groups.ErrMemberAlreadyExists},
			{"members on room-1", func() error { return wantMembers(ctx, g1, "lobby", "x", "y") }, nil},
			{"remove x on room-2", func() error { return g2.Remove(ctx, "lobby", "x") }, nil},
			{"members on conn-a", func() error { return wantMembers(ctx, ga, "lobby", "y") }, nil},
			{"remove all on conn-a", func() error { return ga.RemoveAll(ctx, "lobby") }, nil},
			{"members on room-2", func() error { return wantMembers(ctx, g2, "lobby") }, nil},
			{"delete on room-2", func() error { return g2.Delete(ctx, "lobby") }, nil},
			{"members on room-1", func() error { _, err := g1.Members(ctx, "lobby"); return err }, groups.ErrGroupNotFound},
		}
		for _, st := range steps {
			if err := st.do(); !errors.Is(err, st.want) || (st.want == nil && err != nil) {
				t.Fatalf("%s: %v, want %v", st.name, err, st.want)
			}
		}
		if ok, err := g2.Contains(ctx, "lobby", "y"); ok || !errors.Is(err, groups.ErrGroupNotFound) {
			t.Errorf("Contains on a deleted group: %v, %v", ok, err)
		}
	})

	t.Run("ttl", func(t *testing.T) {
		const ttl = 300 * time.Millisecond
		for _, name := range []string{"short", "renewed"} {
			if err := g1.CreateWithTTL(ctx, name, ttl); err != nil {
				t.Fatal(err)
			}
			if err := g2.Add(ctx, name, "u"); err != nil {
				t.Fatal(err)
			}
		}
		created := time.Now()
		if err := ga.RenewTTL(ctx, "lobby-none"); !errors.Is(err, groups.ErrGroupNotFound) {
			t.Errorf("RenewTTL of no group: %v", err)
		}
		// Renew "renewed" from another server until "short" has expired
		// and "renewed" has outlived two TTLs.
		tick := time.NewTicker(ttl / 4)
		defer tick.Stop()
		var shortGone time.Duration
		for shortGone == 0 || time.Since(created) < 2*ttl {
			if time.Since(created) > waitTimeout {
				t.Fatal("the short group did not expire")
			}
			if err := g2.RenewTTL(ctx, "renewed"); err != nil {
				t.Fatalf("RenewTTL after %v: %v", time.Since(created), err)
			}
			if shortGone == 0 {
				if _, err := ga.Count(ctx, "short"); errors.Is(err, groups.ErrGroupNotFound) {
					shortGone = time.Since(created)
				} else if err != nil {
					t.Fatal(err)
				}
			}
			<-tick.C
		}
		if shortGone < ttl/2 {
			t.Errorf("the short group expired after %v, before its TTL %v", shortGone, ttl)
		}
		if n, err := ga.Count(ctx, "renewed"); err != nil || n != 1 {
			t.Errorf("renewed group after %v: %d members, %v", time.Since(created), n, err)
		}
		if err := g1.Add(ctx, "short", "v"); !errors.Is(err, groups.ErrGroupNotFound) {
			t.Errorf("Add to the expired group: %v", err)
		}
		if err := g2.Create(ctx, "short"); err != nil {
			t.Errorf("Create over the expired group: %v", err)
		}
		if err := wantMembers(ctx, g1, "short"); err != nil {
			t.Errorf("the new group: %v", err)
		}
		// Without renewals it expires too.
		eventually(t, "the renewed group to expire", func() bool {
			_, err := ga.Members(ctx, "renewed")
			return errors.Is(err, groups.ErrGroupNotFound)
		})
		if err := g1.RenewTTL(ctx, "renewed"); !errors.Is(err, groups.ErrGroupNotFound) {
			t.Errorf("RenewTTL of the expired group: %v", err)
		}
		if err := g1.RenewTTL(ctx, "short"); !errors.Is(err, groups.ErrNoTTL) {
			t.Errorf("RenewTTL of a group without TTL: %v", err)
		}
	})

	t.Run("broadcast", func(t *testing.T) {
		clients := map[string]*client.Client{}
		clients["u1"], _ = bindClient(t, fa.tcp, "u1")
		clients["u2"], _ = bindClient(t, fa.ws, "u2")
		clients["u3"], _ = bindClient(t, fb.tcp, "u3")
		clients["u4"], _ = bindClient(t, fb.ws, "u4")
		if err := g1.Create(ctx, "table"); err != nil {
			t.Fatal(err)
		}
		for _, uid := range []string{"u1", "u2", "u3", "u4", "ghost"} {
			if err := g2.Add(ctx, "table", uid); err != nil {
				t.Fatal(err)
			}
		}
		failed, err := g1.Broadcast(ctx, "table", "onTable", map[string]int{"hand": 1})
		if err != nil || !slices.Equal(failed, []string{"ghost"}) {
			t.Fatalf("Broadcast: failed %v, %v", failed, err)
		}
		for uid, cl := range clients {
			if p := nextPush(t, cl, uid+"'s broadcast"); p.Route != "onTable" || string(p.Data) != `{"hand":1}` {
				t.Errorf("%s got %s %s", uid, p.Route, p.Data)
			}
		}
		expectOnly(t, b1, clients) // once each

		failed, err = ga.Multicast(ctx, "table", "onSome", "x", func(uid string) bool { return uid == "u2" || uid == "u3" })
		if err != nil || len(failed) != 0 {
			t.Fatalf("Multicast: failed %v, %v", failed, err)
		}
		for _, uid := range []string{"u2", "u3"} {
			if p := nextPush(t, clients[uid], uid+"'s multicast"); p.Route != "onSome" {
				t.Errorf("%s got %s", uid, p.Route)
			}
		}
		expectOnly(t, b2, clients)
	})
}

// wantMembers checks a group's members.
func wantMembers(ctx context.Context, g groups.Service, name string, want ...string) error {
	got, err := g.Members(ctx, name)
	if err != nil {
		return err
	}
	if !slices.Equal(got, want) && (len(got) != 0 || len(want) != 0) {
		return fmt.Errorf("members of %s: %v, want %v", name, got, want)
	}
	return nil
}

// awaitEvent returns the next discovery event about server id.
func awaitEvent(t *testing.T, events <-chan discovery.Event, id string) discovery.Event {
	t.Helper()
	for {
		e := await(t, events, "a discovery event about "+id)
		if e.Server.ID == id {
			return e
		}
	}
}

// Discovery through the App: joins are seen, a graceful stop is seen at once
// as Left, a node cut off the bus is seen as Died after about three
// heartbeats, and requests then go to the survivors.
func TestClusterDiscovery(t *testing.T) {
	t.Parallel()
	const hb = 250 * time.Millisecond
	c := newTestCluster(t, clusterOpts{heartbeat: hb})
	fe := c.connector("conn", nil)
	routed := c.add(nodeSpec{svType: "connector", id: "conn-routed", frontend: true, inProcess: true,
		setup: func(app *nopal.App) { app.AddRoute("room", nopal.RandomRouter) }})
	events := make(chan discovery.Event, 256)
	defer fe.app.Discovery().Subscribe(func(e discovery.Event) { events <- e })()

	b1 := c.room("room-1", false, nil) // cut off the bus
	b2 := c.room("room-2", true, nil)  // survives
	b3 := c.room("room-3", false, nil) // leaves gracefully
	for _, id := range []string{"room-1", "room-2", "room-3"} {
		if e := awaitEvent(t, events, id); e.Kind != discovery.Joined || e.Server.Type != "room" || e.Server.Frontend {
			t.Errorf("event %v %+v", e.Kind, e.Server)
		}
	}
	all := []*nopal.App{c.infra, fe.app, routed.app, b1.app, b2.app, b3.app}
	awaitServers(t, "room", []string{"room-1", "room-2", "room-3"}, all...)
	awaitServers(t, "connector", []string{"conn", "conn-routed"}, all...)
	var ids []string
	for _, s := range fe.app.Servers() {
		ids = append(ids, s.ID)
		if s.Frontend != (s.Type == "connector") || s.Version != nopal.Version {
			t.Errorf("server %+v", s)
		}
	}
	if want := []string{"conn", "conn-routed", "infra", "room-1", "room-2", "room-3"}; !slices.Equal(ids, want) {
		t.Errorf("Servers() %v, want %v", ids, want)
	}
	ctx := testCtx(t)
	clients := []*client.Client{dial(t, fe.tcp), dial(t, routed.ws)}
	served := func(t *testing.T, n int) map[string]int {
		t.Helper()
		counts := map[string]int{}
		for _, cl := range clients {
			for range n {
				var w Where
				if err := cl.Request(ctx, "room.room.where", nil, &w); err != nil {
					t.Fatal(err)
				}
				counts[w.Server]++
			}
		}
		return counts
	}
	if counts := served(t, 30); len(counts) != 3 {
		t.Errorf("requests served by %v, want all three rooms", counts)
	}

	t.Run("graceful shutdown is Left", func(t *testing.T) {
		start := time.Now()
		sctx, cancel := context.WithTimeout(ctx, waitTimeout)
		defer cancel()
		if err := b3.app.Shutdown(sctx); err != nil {
			t.Fatal(err)
		}
		e := awaitEvent(t, events, "room-3")
		if took := time.Since(start); e.Kind != discovery.Left || took > 2*time.Second {
			t.Errorf("room-3: %v after %v, want Left at once", e.Kind, took)
		}
		awaitServers(t, "room", []string{"room-1", "room-2"}, c.infra, routed.app, b1.app, b2.app)
	})

	t.Run("cut off the bus is Died", func(t *testing.T) {
		start := time.Now()
		b1.app.Bus().Abort() // no Shutdown: its key stays until the TTL
		e := awaitEvent(t, events, "room-1")
		took := time.Since(start)
		if e.Kind != discovery.Died {
			t.Errorf("room-1: %v, want Died", e.Kind)
		}
		// The last beat was at most one heartbeat before the cut; the
		// bucket's TTL is three.
		if took < 3*hb-hb-50*time.Millisecond || took > 3*hb+4*time.Second {
			t.Errorf("room-1 died %v after the cut, want about %v", took, 3*hb)
		}
		t.Logf("room-1 seen dead %v after the cut", took)
		awaitServers(t, "room", []string{"room-2"}, c.infra, fe.app, routed.app, b2.app)
		if counts := served(t, 20); counts["room-2"] != 40 {
			t.Errorf("requests after the death served by %v, want room-2 only", counts)
		}
	})
}

// A frontend that loses the bus keeps its clients, answers what needs the
// bus with PIT-503 at once, and recovers by itself when the bus is back:
// after a short loss, and after one long enough for the others to see it
// dead.
func TestClusterBusLoss(t *testing.T) {
	t.Parallel()
	const hb = 250 * time.Millisecond
	c := newTestCluster(t, clusterOpts{requestTimeout: 3 * time.Second, heartbeat: hb})
	be := c.room("room-1", true, nil).app
	proxy := c.startProxy()
	fe := c.add(nodeSpec{svType: "connector", id: "conn", frontend: true, busURL: proxy.URL()})
	awaitServers(t, "room", []string{"room-1"}, fe.app)
	awaitServers(t, "connector", []string{"conn"}, be)
	ctx := testCtx(t)
	clients := map[string]*client.Client{}
	clients["u1"], _ = bindClient(t, fe.tcp, "u1")
	clients["u2"], _ = bindClient(t, fe.ws, "u2")

	for _, long := range []bool{false, true} {
		proxy.cut()
		eventually(t, "the frontend to notice the loss", func() bool { return !fe.app.Bus().Connected() })
		for uid, cl := range clients {
			start := time.Now()
			err := cl.Request(ctx, "room.room.where", nil, nil)
			if took := time.Since(start); codeOf(err) != codec.CodeServiceMissing || took > time.Second {
				t.Errorf("%s's request without the bus: %v after %v, want %s at once", uid, err, took, codec.CodeServiceMissing)
			}
		}
		start := time.Now()
		if err := fe.app.RPC(ctx, "room.remote.echo", &Echo{}, &Echo{}); codeOf(err) != codec.CodeServiceMissing || time.Since(start) > time.Second {
			t.Errorf("RPC without the bus: %v after %v", err, time.Since(start))
		}
		if failed, _ := fe.app.SendPushToUsers(ctx, "onX", "x", []string{"nobody"}, ""); !slices.Equal(failed, []string{"nobody"}) {
			t.Errorf("push without the bus: failed %v", failed)
		}
		if long {
			// The others see the frontend die; pushes to its users fail.
			eventually(t, "room-1 to see the frontend dead", func() bool {
				_, ok := be.Discovery().ServerByID("conn")
				return !ok
			})
			if failed, err := be.SendPushToUsers(ctx, "onX", "x", []string{"u1"}, ""); !slices.Equal(failed, []string{"u1"}) {
				t.Errorf("push to a user of the lost frontend: failed %v, %v", failed, err)
			}
		}
		for uid, cl := range clients {
			if err := cl.Err(); err != nil {
				t.Fatalf("%s was dropped with the bus: %v", uid, err)
			}
		}
		if n := fe.app.Sessions().Count(); n != len(clients) {
			t.Errorf("%d sessions, want %d", n, len(clients))
		}

		proxy.restore()
		start = time.Now()
		eventually(t, "forwarding to work again", func() bool {
			return clients["u1"].Request(ctx, "room.room.where", nil, nil) == nil
		})
		t.Logf("long loss %v: forwarding back %v after the bus", long, time.Since(start))
		for uid, cl := range clients {
			var w Where
			if err := cl.Request(ctx, "room.room.where", nil, &w); err != nil || w.Server != "room-1" || w.UID != uid {
				t.Errorf("%s's request after the recovery: %+v, %v", uid, w, err)
			}
		}
		var out Echo
		if err := fe.app.RPC(ctx, "room.remote.echo", &Echo{Text: "back"}, &out); err != nil || out.Text != "back" {
			t.Errorf("RPC after the recovery: %+v, %v", out, err)
		}
		// The frontend is back in discovery and takes pushes again.
		awaitServers(t, "connector", []string{"conn"}, be)
		failed, err := be.SendPushToUsers(ctx, "onBack", "hello", []string{"u1", "u2"}, "")
		if err != nil || len(failed) != 0 {
			t.Errorf("push after the recovery: failed %v, %v", failed, err)
		}
		for uid, cl := range clients {
			if p := nextPush(t, cl, uid+"'s push after the recovery"); p.Route != "onBack" {
				t.Errorf("%s got %s", uid, p.Route)
			}
		}
	}
}

// A backend's graceful shutdown loses no request: it leaves discovery, its
// subscriptions drain to the other servers of its type, and the calls it
// has taken finish before its bus closes.
func TestClusterGracefulShutdownLosesNothing(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, clusterOpts{requestTimeout: 5 * time.Second})
	b1 := c.room("room-1", false, nil)
	c.room("room-2", true, nil)
	fe := c.connector("conn", nil)
	awaitServers(t, "room", []string{"room-1", "room-2"}, fe.app)
	ctx := testCtx(t)

	const workers = 16
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	served := map[string]int{}
	var errs []error
	for i := range workers {
		cl := dial(t, []string{fe.tcp, fe.ws}[i%2])
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				var w Where
				err := cl.Request(ctx, "room.room.work", nil, &w)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					served[w.Server]++
				}
				mu.Unlock()
			}
		})
	}
	count := func(id string) int {
		mu.Lock()
		defer mu.Unlock()
		return served[id]
	}
	eventually(t, "room-1 to serve requests", func() bool { return count("room-1") > 20 })
	sctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	if err := b1.app.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	after := count("room-2")
	eventually(t, "room-2 to serve more requests", func() bool { return count("room-2") > after+50 })
	close(stop)
	wg.Wait()
	for _, err := range errs {
		t.Errorf("request during the shutdown: %v", err)
	}
	t.Logf("served %v", served)
}
