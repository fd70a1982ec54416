package nopal_test

// Propagated context (nopal.AddToPropagateCtx): values reach the handlers
// and remotes a context calls on other servers, through a frontend's
// forward, RPCs and reliable jobs, on a real NATS server and real sockets.

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/nopal-dev/nopal"
	"github.com/nopal-dev/nopal/backend"
	"github.com/nopal-dev/nopal/frontend"
	"github.com/nopal-dev/nopal/propagate"
	"github.com/nopal-dev/nopal/stream"
)

// addCustom is testCluster.add with the App's Config adjusted by mod (may
// be nil) and started with ctx.
func (c *testCluster) addCustom(ctx context.Context, spec nodeSpec, mod func(*nopal.Config)) *testNode {
	c.t.Helper()
	cfg := nopal.Config{
		ServerType: spec.svType,
		ServerID:   spec.id,
		Logger:     c.log,
		Cluster:    c.clusterConfig(stream.Config{URL: c.infra.Bus().ClientURL()}),
		Resume:     c.opts.resume,
	}
	if mod != nil {
		mod(&cfg)
	}
	app, err := nopal.New(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	if spec.inProcess {
		app.UseEmbedded(c.infra.Bus().Server)
	}
	n := &testNode{app: app}
	var tcp *frontend.TCPAcceptor
	var ws *frontend.WSAcceptor
	if spec.frontend {
		tcp, ws = frontend.NewTCPAcceptor("127.0.0.1:0"), frontend.NewWSAcceptor("127.0.0.1:0")
		app.AddAcceptor(tcp)
		app.AddAcceptor(ws)
	}
	if spec.setup != nil {
		spec.setup(app)
	}
	if err := app.Start(ctx); err != nil {
		c.t.Fatalf("start %s: %v", spec.id, err)
	}
	if spec.frontend {
		n.tcp, n.ws = tcp.Addr().String(), "ws://"+ws.Addr().String()+"/"
	}
	c.mu.Lock()
	c.nodes = append(c.nodes, n)
	c.mu.Unlock()
	return n
}

// PropReport is what a server of the propagation tests saw: its id, its
// propagated values, and what the server it called saw.
type PropReport struct {
	Server string         `json:"server"`
	Values map[string]any `json:"values"`
	Next   *PropReport    `json:"next,omitempty"`
}

// PropArg asks a handler for an oversized value, or a remote to call on.
type PropArg struct {
	Big  int    `json:"big,omitempty"`  // bytes of the "big" value to add
	More int    `json:"more,omitempty"` // bytes of the "more" value to add after it
	Next string `json:"next,omitempty"` // remote route to RPC next
}

func report(app *nopal.App, ctx context.Context) *PropReport {
	return &PropReport{Server: app.ServerID(), Values: propagate.ToMap(ctx)}
}

// propGame is the handler of the "game" backend (routes game.play.*).
type propGame struct{ app *nopal.App }

// Where reports the forwarded request's values.
func (g *propGame) Where(ctx context.Context) (*PropReport, error) {
	return report(g.app, ctx), nil
}

// Start adds values and RPCs relay.relay.first, which RPCs
// game.remote.last: handler → RPC → RPC.
func (g *propGame) Start(ctx context.Context, in *PropArg) (*PropReport, error) {
	ctx = nopal.AddToPropagateCtx(ctx, "match", map[string]any{"id": 7, "mode": "ranked"})
	if in.Big > 0 {
		ctx = nopal.AddToPropagateCtx(ctx, "big", strings.Repeat("x", in.Big))
	}
	if in.More > 0 {
		ctx = nopal.AddToPropagateCtx(ctx, "more", strings.Repeat("y", in.More))
	}
	r := report(g.app, ctx)
	r.Next = &PropReport{}
	if err := g.app.RPC(ctx, "relay.relay.first", &PropArg{Next: "game.remote.last"}, r.Next); err != nil {
		return nil, err
	}
	return r, nil
}

// Enqueue adds a value and enqueues a reliable job on relay.relay.job.
func (g *propGame) Enqueue(ctx context.Context) (*PropArg, error) {
	ctx = nopal.AddToPropagateCtx(ctx, "reward", "gold")
	jid, err := g.app.ReliableRPC(ctx, "relay.relay.job", &PropArg{})
	return &PropArg{Next: jid}, err
}

// propGameRemote is the "game" backend's remote (game.remote.last).
type propGameRemote struct{ app *nopal.App }

func (g *propGameRemote) Last(ctx context.Context, _ *PropArg) (*PropReport, error) {
	return report(g.app, ctx), nil
}

// propRelay is the "relay" backend's remote (relay.relay.*).
type propRelay struct{ app *nopal.App }

func (r *propRelay) First(ctx context.Context, in *PropArg) (*PropReport, error) {
	ctx = nopal.AddToPropagateCtx(ctx, "hop1", r.app.ServerID())
	rep := report(r.app, ctx)
	if in.Next != "" {
		rep.Next = &PropReport{}
		if err := r.app.RPC(ctx, in.Next, &PropArg{}, rep.Next); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

func (r *propRelay) Job(ctx context.Context, _ *PropArg) (*PropReport, error) {
	return report(r.app, ctx), nil
}

func TestPropagatedContext(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, clusterOpts{})
	game := c.add(nodeSpec{svType: "game", id: "game-1", setup: func(app *nopal.App) {
		if err := app.Register(&propGame{app: app}, backend.WithName("play")); err != nil {
			t.Fatal(err)
		}
		if err := app.RegisterRemote(&propGameRemote{app: app}, backend.WithName("remote")); err != nil {
			t.Fatal(err)
		}
	}}).app
	relay := c.add(nodeSpec{svType: "relay", id: "relay-1", inProcess: true, setup: func(app *nopal.App) {
		if err := app.RegisterRemote(&propRelay{app: app}, backend.WithName("relay")); err != nil {
			t.Fatal(err)
		}
	}}).app
	// The frontend's values: those of the context it was started with.
	fctx := nopal.AddToPropagateCtx(context.Background(), "region", "eu-west")
	fctx = nopal.AddToPropagateCtx(fctx, "shard", 3)
	conn := c.addCustom(fctx, nodeSpec{svType: "connector", id: "conn-1", frontend: true}, nil)
	awaitServers(t, "game", []string{"game-1"}, conn.app, relay)
	awaitServers(t, "relay", []string{"relay-1"}, game)
	ctx := testCtx(t)
	cl := dial(t, conn.tcp)

	frontValues := map[string]any{"region": "eu-west", "shard": float64(3)}
	match := map[string]any{"id": float64(7), "mode": "ranked"}

	t.Run("forwarded request", func(t *testing.T) {
		var r PropReport
		if err := cl.Request(ctx, "game.play.where", nil, &r); err != nil {
			t.Fatal(err)
		}
		if r.Server != "game-1" || !jsonEqual(r.Values, frontValues) {
			t.Errorf("the forwarded handler saw %+v, want %v", r, frontValues)
		}
	})

	t.Run("handler, RPC, RPC", func(t *testing.T) {
		var r PropReport
		if err := cl.Request(ctx, "game.play.start", &PropArg{}, &r); err != nil {
			t.Fatal(err)
		}
		want := map[string]any{"region": "eu-west", "shard": float64(3), "match": match}
		if !jsonEqual(r.Values, want) {
			t.Errorf("handler: %v, want %v", r.Values, want)
		}
		first, last := r.Next, r.Next.Next
		if first == nil || last == nil {
			t.Fatalf("report %+v", r)
		}
		if first.Server != "relay-1" || !jsonEqual(first.Values, merge(want, map[string]any{"hop1": "relay-1"})) {
			t.Errorf("first remote saw %+v", first)
		}
		if last.Server != "game-1" || !jsonEqual(last.Values, merge(want, map[string]any{"hop1": "relay-1"})) {
			t.Errorf("second remote saw %+v", last)
		}
		// The caller's context is its own: hop1 was added downstream.
		if _, ok := r.Values["hop1"]; ok {
			t.Error("a value added downstream came back up")
		}
	})

	t.Run("RPC from a server's own context", func(t *testing.T) {
		rctx := nopal.AddToPropagateCtx(ctx, "caller", "relay")
		var r PropReport
		if err := relay.RPC(rctx, "game.remote.last", &PropArg{}, &r); err != nil {
			t.Fatal(err)
		}
		if !jsonEqual(r.Values, map[string]any{"caller": "relay"}) {
			t.Errorf("remote saw %v", r.Values)
		}
		// No values, no header: the remote sees none.
		var none PropReport
		if err := relay.RPC(ctx, "game.remote.last", &PropArg{}, &none); err != nil || len(none.Values) != 0 {
			t.Errorf("remote saw %v without values (%v)", none.Values, err)
		}
	})

	t.Run("reliable job", func(t *testing.T) {
		var queued PropArg
		if err := cl.Request(ctx, "game.play.enqueue", nil, &queued); err != nil {
			t.Fatal(err)
		}
		job, err := game.Jobs().Wait(ctx, queued.Next)
		if err != nil {
			t.Fatal(err)
		}
		var r PropReport
		if err := json.Unmarshal(job.Result, &r); err != nil {
			t.Fatalf("job %s ended %s with %q: %v", job.JID, job.State, job.Result, err)
		}
		want := merge(frontValues, map[string]any{"reward": "gold"})
		if r.Server != "relay-1" || !jsonEqual(r.Values, want) {
			t.Errorf("the job saw %+v, want %v", r, want)
		}
	})

	t.Run("size limit", func(t *testing.T) {
		// The frontend's values take ~60 bytes of the 8 KiB and match
		// ~50: a 7,000-byte value fits, 2,000 more do not and are
		// dropped, the others travel.
		var r PropReport
		if err := cl.Request(ctx, "game.play.start", &PropArg{Big: 7000, More: 2000}, &r); err != nil {
			t.Fatal(err)
		}
		for _, rep := range []*PropReport{&r, r.Next, r.Next.Next} {
			if got, _ := rep.Values["big"].(string); len(got) != 7000 {
				t.Errorf("%s: big value of %d bytes, want 7000", rep.Server, len(got))
			}
			if _, ok := rep.Values["more"]; ok {
				t.Errorf("%s: the value past the limit travelled", rep.Server)
			}
			if rep.Values["region"] != "eu-west" || !jsonEqual(rep.Values["match"], match) {
				t.Errorf("%s: lost the other values: %v %v", rep.Server, rep.Values["region"], rep.Values["match"])
			}
		}
	})
}

func TestAddToPropagateCtxLimit(t *testing.T) {
	ctx := nopal.AddToPropagateCtx(context.Background(), "a", 1)
	if got := nopal.GetFromPropagateCtx(ctx, "a"); got != float64(1) {
		t.Errorf("a = %#v", got)
	}
	if got := nopal.GetFromPropagateCtx(ctx, "b"); got != nil {
		t.Errorf("b = %#v", got)
	}
	// Past the limit, with a bad key, or not JSON: dropped, ctx unchanged.
	for _, c := range []struct {
		key string
		val any
	}{
		{"big", strings.Repeat("x", propagate.MaxSize)},
		{"bad key", 1},
		{"fn", func() {}},
	} {
		if got := nopal.AddToPropagateCtx(ctx, c.key, c.val); got != ctx {
			t.Errorf("%q: a new context", c.key)
		}
	}
	if _, err := propagate.Add(ctx, "big", strings.Repeat("x", propagate.MaxSize)); !errors.Is(err, propagate.ErrTooLarge) {
		t.Errorf("propagate.Add: %v", err)
	}
}

// jsonEqual compares two values as JSON sees them.
func jsonEqual(a, b any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(x) == string(y)
}

func merge(a, b map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}
