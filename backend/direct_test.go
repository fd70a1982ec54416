package backend_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"

	"github.com/nopal-dev/nopal/backend"
	"github.com/nopal-dev/nopal/codec"
)

type rawEcho struct{}

func (rawEcho) Echo(_ context.Context, in []byte) ([]byte, error) { return in, nil }

type rawEchoPtr struct{ n int }

func (r *rawEchoPtr) Echo(_ context.Context, in []byte) ([]byte, error) { return in, nil }

// BenchmarkHandleRaw is the dispatch of a raw handler (bytes in, bytes
// out), the benchmark server's echo: what a request costs in the registry
// beyond the handler itself.
func BenchmarkHandleRaw(b *testing.B) {
	for _, tc := range []struct {
		name string
		comp any
	}{{"value receiver", rawEcho{}}, {"pointer receiver", &rawEchoPtr{}}} {
		b.Run(tc.name, func(b *testing.B) {
			r := backend.NewRegistry("bench", codec.JSON{}, slog.New(slog.DiscardHandler))
			if err := r.Register(tc.comp, backend.WithName("echo")); err != nil {
				b.Fatal(err)
			}
			rt, err := codec.ParseRoute("echo.echo")
			if err != nil {
				b.Fatal(err)
			}
			data := make([]byte, 64)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := r.HandleRoute(ctx, rt, data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

type tagged struct{ tag string }

// Value method: in *directComp's method set through a wrapper.
func (t tagged) Tagged(_ context.Context, in []byte) ([]byte, error) {
	return append([]byte(t.tag+":"), in...), nil
}

type inner struct{ hits int }

func (i *inner) Hit(_ context.Context, in []byte) ([]byte, error) {
	i.hits++
	return append([]byte("hit:"), in...), nil
}

type directComp struct {
	tagged // promoted value method
	*inner // promoted pointer method
	name   string
}

func (d *directComp) Own(_ context.Context, in []byte) ([]byte, error) {
	return append([]byte(d.name+":"), in...), nil
}

// TestRawHandlersCallTheirComponent: the raw handlers of a component
// registered as a pointer (its own methods, a value method, methods
// promoted from embedded fields) run on that very component.
func TestRawHandlersCallTheirComponent(t *testing.T) {
	in := &inner{}
	c := &directComp{tagged: tagged{tag: "t"}, inner: in, name: "own"}
	r := backend.NewRegistry("sv", codec.JSON{}, slog.New(slog.DiscardHandler))
	if err := r.Register(c, backend.WithName("c")); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ route, want string }{
		{"c.own", "own:x"},
		{"c.tagged", "t:x"},
		{"c.hit", "hit:x"},
	}
	for _, tt := range tests {
		t.Run(tt.route, func(t *testing.T) {
			out, _, err := r.Handle(context.Background(), tt.route, []byte("x"))
			if err != nil || string(out) != tt.want {
				t.Fatalf("%s: %q, %v; want %q", tt.route, out, err, tt.want)
			}
		})
	}
	c.name, c.tag = "renamed", "u" // the registered pointer, not a copy
	if out, _, _ := r.Handle(context.Background(), "c.own", []byte("y")); string(out) != "renamed:y" {
		t.Fatalf("after a change to the component: %q", out)
	}
	if in.hits != 1 {
		t.Fatalf("the embedded pointer's method ran on another value: hits %d", in.hits)
	}
}

type typedReq struct {
	N int `json:"n"`
}

type typedResp struct {
	Sum int `json:"sum"`
}

type typedComp struct {
	total    int
	notified []int
}

func (c *typedComp) Add(_ context.Context, r *typedReq) (*typedResp, error) {
	c.total += r.N
	return &typedResp{Sum: c.total}, nil
}

func (c *typedComp) Total(context.Context) (*typedResp, error) { return &typedResp{Sum: c.total}, nil }

func (c *typedComp) Nothing(context.Context, *typedReq) (*typedResp, error) { return nil, nil }

func (c *typedComp) Note(_ context.Context, r *typedReq) { c.notified = append(c.notified, r.N) }

func (c *typedComp) Fail(context.Context, *typedReq) (*typedResp, error) {
	return nil, codec.NewError("PIT-409", "no", nil)
}

// TestTypedHandlersDirect: handlers with pointer arguments and results
// (called without reflect) answer as before, on the registered component.
func TestTypedHandlersDirect(t *testing.T) {
	c := &typedComp{}
	r := backend.NewRegistry("sv", codec.JSON{}, slog.New(slog.DiscardHandler))
	if err := r.Register(c, backend.WithName("t")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		route, in, want string
		notify          bool
		code            string
	}{
		{route: "t.add", in: `{"n":2}`, want: `{"sum":2}`},
		{route: "t.add", in: `{"n":3}`, want: `{"sum":5}`},
		{route: "t.total", want: `{"sum":5}`},
		{route: "t.nothing", in: `{}`, want: `null`},
		{route: "t.note", in: `{"n":7}`, notify: true},
		{route: "t.fail", in: `{}`, code: "PIT-409"},
		{route: "t.add", in: `{"n":`, code: codec.CodeBadRequest},
	}
	for _, tt := range tests {
		out, notify, err := r.Handle(context.Background(), tt.route, []byte(tt.in))
		if tt.code != "" {
			var ce *codec.Error
			if !errors.As(err, &ce) || ce.Code != tt.code {
				t.Fatalf("%s %s: error %v, want code %s", tt.route, tt.in, err, tt.code)
			}
			continue
		}
		if err != nil || notify != tt.notify || string(out) != tt.want {
			t.Fatalf("%s %s: %q notify %v, %v; want %q notify %v", tt.route, tt.in, out, notify, err, tt.want, tt.notify)
		}
	}
	if len(c.notified) != 1 || c.notified[0] != 7 {
		t.Fatalf("notify handler saw %v", c.notified)
	}
}
