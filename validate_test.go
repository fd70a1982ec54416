package nopal_test

// Struct validation (Config.ValidateRequests) on a real NATS server and
// real sockets: a handler here, a forwarded handler, a remote called by
// RPC; off by default.

import (
	"context"
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/nopal-dev/nopal"
	"github.com/nopal-dev/nopal/backend"
	"github.com/nopal-dev/nopal/codec"
)

// SignUp is the argument of the validation tests' handlers and remotes.
type SignUp struct {
	Name  string `json:"name" validate:"required,min=3"`
	Email string `json:"email" validate:"required,email"`
	Age   int    `json:"age" validate:"gte=13,lte=130"`
}

// signUps serves form.submit (a handler) or check.submit (a remote) and
// counts the calls that got through.
type signUps struct {
	app *nopal.App
	ran chan string
}

func (s *signUps) Submit(_ context.Context, in *SignUp) (*SignUp, error) {
	s.ran <- s.app.ServerID()
	return in, nil
}

func TestValidateRequests(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, clusterOpts{})
	ran := make(chan string, 64)
	setup := func(app *nopal.App) {
		if err := app.Register(&signUps{app: app, ran: ran}, backend.WithName("form")); err != nil {
			t.Fatal(err)
		}
		if err := app.RegisterRemote(&signUps{app: app, ran: ran}, backend.WithName("check")); err != nil {
			t.Fatal(err)
		}
	}
	on := func(cfg *nopal.Config) { cfg.ValidateRequests = true }
	ctx := testCtx(t)
	c.addCustom(ctx, nodeSpec{svType: "strict", id: "strict-1", setup: setup}, on)
	c.addCustom(ctx, nodeSpec{svType: "lax", id: "lax-1", inProcess: true, setup: setup}, nil) // off by default
	front := c.addCustom(ctx, nodeSpec{svType: "front", id: "front-1", frontend: true, setup: setup}, on)
	awaitServers(t, "strict", []string{"strict-1"}, front.app)
	awaitServers(t, "lax", []string{"lax-1"}, front.app)
	cl := dial(t, front.ws)

	bad := map[string]any{"name": "al", "email": "not-an-email", "age": 7}
	wantMeta := map[string]string{"name": "min=3", "email": "email", "age": "gte=13"}
	const wantMsg = "Key: 'SignUp.Name' Error:Field validation for 'Name' failed on the 'min' tag\n" +
		"Key: 'SignUp.Email' Error:Field validation for 'Email' failed on the 'email' tag\n" +
		"Key: 'SignUp.Age' Error:Field validation for 'Age' failed on the 'gte' tag"
	good := &SignUp{Name: "ana", Email: "ana@example.com", Age: 30}

	check := func(t *testing.T, what string, err error) {
		t.Helper()
		var ce *codec.Error
		if !errors.As(err, &ce) {
			t.Fatalf("%s: got %v (%T), want a PIT-400", what, err, err)
		}
		if ce.Code != codec.CodeBadRequest || ce.Message != wantMsg || !maps.Equal(ce.Metadata, wantMeta) {
			t.Errorf("%s: got %q %q %v\nwant %q %q %v", what, ce.Code, ce.Message, ce.Metadata, codec.CodeBadRequest, wantMsg, wantMeta)
		}
		select {
		case id := <-ran:
			t.Errorf("%s: the handler ran on %s", what, id)
		default:
		}
	}
	pass := func(t *testing.T, what, server string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if id := await(t, ran, what); id != server {
			t.Errorf("%s ran on %s, want %s", what, id, server)
		}
	}

	t.Run("local handler", func(t *testing.T) {
		check(t, "form.submit", cl.Request(ctx, "form.submit", bad, nil))
		var out SignUp
		pass(t, "a valid form.submit", "front-1", cl.Request(ctx, "form.submit", good, &out))
		if out != *good {
			t.Errorf("answer %+v", out)
		}
	})
	t.Run("forwarded handler", func(t *testing.T) {
		check(t, "strict.form.submit", cl.Request(ctx, "strict.form.submit", bad, nil))
		pass(t, "a valid strict.form.submit", "strict-1", cl.Request(ctx, "strict.form.submit", good, nil))
	})
	t.Run("remote", func(t *testing.T) {
		var out SignUp
		check(t, "RPC strict.check.submit", front.app.RPC(ctx, "strict.check.submit", bad, &out))
		check(t, "RPCTo strict-1", front.app.RPCTo(ctx, "strict-1", "strict.check.submit", bad, &out))
		pass(t, "a valid RPC", "strict-1", front.app.RPC(ctx, "strict.check.submit", good, &out))
	})
	t.Run("off by default", func(t *testing.T) {
		pass(t, "lax.form.submit", "lax-1", cl.Request(ctx, "lax.form.submit", bad, nil))
		pass(t, "RPC lax.check.submit", "lax-1", front.app.RPC(ctx, "lax.check.submit", bad, nil))
	})
	t.Run("the app's own steps run after", func(t *testing.T) {
		// A Before step added by the app sees only valid arguments.
		c := newTestCluster(t, clusterOpts{})
		saw := make(chan string, 4)
		n := c.addCustom(ctx, nodeSpec{svType: "step", id: "step-1", frontend: true, setup: func(app *nopal.App) {
			setup(app)
			app.Before(func(ctx context.Context, in any) (context.Context, any, error) {
				saw <- in.(*SignUp).Name
				return ctx, in, nil
			})
		}}, on)
		cl := dial(t, n.tcp)
		if err := cl.Request(ctx, "form.submit", bad, nil); !strings.HasPrefix(codeOf(err), "PIT-400") {
			t.Fatalf("invalid: %v", err)
		}
		pass(t, "valid", "step-1", cl.Request(ctx, "form.submit", good, nil))
		if got := await(t, saw, "the app's step"); got != "ana" {
			t.Errorf("the app's step saw %q", got)
		}
		select {
		case name := <-saw:
			t.Errorf("the app's step saw an invalid argument too (%q)", name)
		default:
		}
	})
}
