package stream_test

import (
	"context"
	"slices"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nopal-dev/nopal/stream"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

var _ propagation.TextMapCarrier = stream.HeaderCarrier(nil)

func TestHeaderCarrier(t *testing.T) {
	h := nats.Header{}
	c := stream.HeaderCarrier(h)
	if c.Get("missing") != "" || len(c.Keys()) != 0 {
		t.Fatalf("empty carrier: %q, %v", c.Get("missing"), c.Keys())
	}
	c.Set("A", "1")
	c.Set("A", "2") // replaces
	c.Set("B", "3")
	if c.Get("A") != "2" || h.Get("A") != "2" || len(h["A"]) != 1 {
		t.Fatalf("A: %q, header %v", c.Get("A"), h)
	}
	keys := c.Keys()
	slices.Sort(keys)
	if !slices.Equal(keys, []string{"A", "B"}) {
		t.Fatalf("keys %v", keys)
	}

	// A trace context survives a trip through a message's headers.
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, Remote: true})
	prop := propagation.TraceContext{}
	m := nats.NewMsg("x")
	prop.Inject(trace.ContextWithSpanContext(context.Background(), sc), stream.HeaderCarrier(m.Header))
	if got := m.Header.Get("traceparent"); got != "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" {
		t.Fatalf("traceparent %q", got)
	}
	back := trace.SpanContextFromContext(prop.Extract(context.Background(), stream.HeaderCarrier(m.Header)))
	if !back.Equal(sc) {
		t.Fatalf("extracted %v, want %v", back, sc)
	}
}
