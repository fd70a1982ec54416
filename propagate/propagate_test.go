package propagate_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"

	"github.com/nopal-dev/nopal/propagate"
)

type player struct {
	ID    string `json:"id"`
	Level int    `json:"level"`
}

// roundTrip sends ctx's values through a header, as the bus does.
func roundTrip(t *testing.T, ctx context.Context) context.Context {
	t.Helper()
	h, err := propagate.Header(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out, err := propagate.FromHeader(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestPropagateRoundTrip(t *testing.T) {
	ctx := context.Background()
	if h, err := propagate.Header(ctx); h != "" || err != nil {
		t.Fatalf("no values: header %q, %v", h, err)
	}
	vals := map[string]any{
		"region":   "eu-west, \"1\"; ünïcode %20",
		"level":    42,
		"ratio":    0.5,
		"vip":      true,
		"nothing":  nil,
		"player":   player{ID: "p1", Level: 3},
		"tags":     []string{"a", "b"},
		"match.id": map[string]int{"round": 2},
	}
	var err error
	for k, v := range vals {
		if ctx, err = propagate.Add(ctx, k, v); err != nil {
			t.Fatalf("Add(%q): %v", k, err)
		}
	}
	want := map[string]any{
		"region":   "eu-west, \"1\"; ünïcode %20",
		"level":    float64(42),
		"ratio":    0.5,
		"vip":      true,
		"nothing":  nil,
		"player":   map[string]any{"id": "p1", "level": float64(3)},
		"tags":     []any{"a", "b"},
		"match.id": map[string]any{"round": float64(2)},
	}
	for name, c := range map[string]context.Context{"here": ctx, "after the bus": roundTrip(t, ctx)} {
		for k, w := range want {
			if got := propagate.Get(c, k); !reflect.DeepEqual(got, w) {
				t.Errorf("%s: Get(%q) = %#v, want %#v", name, k, got, w)
			}
		}
		if got := propagate.ToMap(c); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: ToMap = %v", name, got)
		}
		var p player
		if ok, err := propagate.Decode(c, "player", &p); !ok || err != nil || p != (player{ID: "p1", Level: 3}) {
			t.Errorf("%s: Decode = %v, %v, %+v", name, ok, err, p)
		}
		if ok, err := propagate.Decode(c, "absent", &p); ok || err != nil {
			t.Errorf("%s: Decode of an absent key = %v, %v", name, ok, err)
		}
		if got := propagate.Get(c, "absent"); got != nil {
			t.Errorf("%s: absent key = %v", name, got)
		}
	}
	// A later Add replaces; the earlier context keeps its value.
	ctx2, err := propagate.Add(ctx, "level", 43)
	if err != nil || propagate.Get(ctx2, "level") != float64(43) || propagate.Get(ctx, "level") != float64(42) {
		t.Errorf("replace: %v, %v, %v", propagate.Get(ctx2, "level"), propagate.Get(ctx, "level"), err)
	}
	// The value is encoded when added.
	p := &player{ID: "before"}
	ctx3, _ := propagate.Add(ctx, "p", p)
	p.ID = "after"
	if got := propagate.Get(ctx3, "p").(map[string]any)["id"]; got != "before" {
		t.Errorf("a value changed after Add reads %v", got)
	}
}

func TestPropagateHeaderIsW3CBaggage(t *testing.T) {
	ctx, err := propagate.Add(context.Background(), "user_id", "ana")
	if err != nil {
		t.Fatal(err)
	}
	h, _ := propagate.Header(ctx)
	if h != "user_id=%22ana%22" {
		t.Errorf("header %q", h)
	}
	// OpenTelemetry's propagator reads it, and its members read here.
	carrier := propagation.MapCarrier{"baggage": h + ",otel.key=plain"}
	octx := propagation.Baggage{}.Extract(context.Background(), carrier)
	if v := baggage.FromContext(octx).Member("user_id").Value(); v != `"ana"` {
		t.Errorf("OpenTelemetry sees %q", v)
	}
	if got := propagate.Get(octx, "otel.key"); got != "plain" {
		t.Errorf("a member that is not JSON reads %#v", got)
	}
	// A partly invalid header keeps what is valid.
	c, err := propagate.FromHeader(context.Background(), "a=1,bad key=2")
	if err == nil || propagate.Get(c, "a") != float64(1) {
		t.Errorf("partly invalid header: %v, %v", propagate.Get(c, "a"), err)
	}
}

func TestPropagateLimits(t *testing.T) {
	base, err := propagate.Add(context.Background(), "keep", "me")
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"", "with space", "comma,", "semi;", "eq=", "ünï", "quote\""} {
		ctx, err := propagate.Add(base, key, 1)
		if !errors.Is(err, propagate.ErrInvalidKey) || ctx != base {
			t.Errorf("key %q: %v", key, err)
		}
	}
	if ctx, err := propagate.Add(base, "fn", func() {}); err == nil || ctx != base {
		t.Errorf("a value JSON cannot encode: %v", err)
	}

	// One value: the encoded header may reach MaxSize, not pass it.
	// `big="xxx…"`: 4 + 3 + 3 bytes around the x's.
	fit := strings.Repeat("x", propagate.MaxSize-10-len(",keep=%22me%22"))
	ctx, err := propagate.Add(base, "big", fit)
	if err != nil {
		t.Fatalf("a value that fits exactly: %v", err)
	}
	if h, _ := propagate.Header(ctx); len(h) != propagate.MaxSize {
		t.Fatalf("header of %d bytes, want %d", len(h), propagate.MaxSize)
	}
	if got := propagate.Get(roundTrip(t, ctx), "big"); got != fit {
		t.Error("the largest value did not survive the header")
	}
	if c, err := propagate.Add(ctx, "one", 1); !errors.Is(err, propagate.ErrTooLarge) || c != ctx {
		t.Errorf("a value past the size: %v", err)
	}
	if c, err := propagate.Add(base, "big", fit+"x"); !errors.Is(err, propagate.ErrTooLarge) || c != base {
		t.Errorf("one value past the size: %v", err)
	}
	// Percent-encoding counts: 3 bytes per quote.
	if _, err := propagate.Add(base, "q", strings.Repeat(`"`, propagate.MaxSize/3)); !errors.Is(err, propagate.ErrTooLarge) {
		t.Errorf("encoded size not counted: %v", err)
	}

	// MaxValues values.
	ctx = context.Background()
	for i := range propagate.MaxValues {
		if ctx, err = propagate.Add(ctx, fmt.Sprint("k", i), i); err != nil {
			t.Fatalf("value %d: %v", i, err)
		}
	}
	if _, err := propagate.Add(ctx, "k0", "replace"); err != nil {
		t.Errorf("replacing at MaxValues: %v", err)
	}
	if _, err := propagate.Add(ctx, "one-more", 1); !errors.Is(err, propagate.ErrTooLarge) {
		t.Errorf("value %d: %v", propagate.MaxValues+1, err)
	}

	// Baggage set around Add past the limit is not sent.
	m, _ := baggage.NewMemberRaw("huge", strings.Repeat("y", propagate.MaxSize))
	bag, _ := baggage.FromContext(base).SetMember(m)
	if h, err := propagate.Header(baggage.ContextWithBaggage(base, bag)); h != "" || !errors.Is(err, propagate.ErrTooLarge) {
		t.Errorf("oversized baggage: %d bytes, %v", len(h), err)
	}
	if c, err := propagate.FromHeader(base, strings.Repeat("z", propagate.MaxSize+1)); err == nil || c != base {
		t.Errorf("an oversized header: %v", err)
	}
}
