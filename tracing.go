package nopal

import (
	"context"
	"strconv"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/nopal-dev/nopal/codec"
	"github.com/nopal-dev/nopal/session"
)

// instrumentationName names Nopal's tracer.
const instrumentationName = "github.com/nopal-dev/nopal"

// tracer wraps OpenTelemetry for the app. A nil *tracer (tracing off)
// does nothing and costs a nil check.
type tracer struct {
	t    trace.Tracer
	prop propagation.TextMapPropagator
}

func newTracer(tp trace.TracerProvider) *tracer {
	if tp == nil {
		return nil
	}
	return &tracer{t: tp.Tracer(instrumentationName), prop: propagation.TraceContext{}}
}

// start opens a span for a route; end it with finish.
func (t *tracer) start(ctx context.Context, name, route string, kind trace.SpanKind, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	attrs = append(attrs, attribute.String("nopal.route", route))
	if s := session.FromContext(ctx); s != nil {
		attrs = append(attrs, attribute.Int64("nopal.session", s.ID()))
		if uid := s.UID(); uid != "" {
			attrs = append(attrs, attribute.String("nopal.uid", uid))
		}
	}
	return t.t.Start(ctx, name+" "+route, trace.WithSpanKind(kind), trace.WithAttributes(attrs...))
}

// finish records err (as the client sees it) and ends the span.
func finish(span trace.Span, err error) {
	if err != nil {
		e := codec.AsError(err)
		span.SetAttributes(attribute.String("nopal.code", e.Code))
		span.SetStatus(codes.Error, e.Message)
	}
	span.End()
}

// inject writes ctx's trace context into NATS headers (W3C traceparent).
func (t *tracer) inject(ctx context.Context, h nats.Header) {
	t.prop.Inject(ctx, natsCarrier(h))
}

// extract reads a trace context from NATS headers.
func (t *tracer) extract(ctx context.Context, h nats.Header) context.Context {
	if h == nil {
		return ctx
	}
	return t.prop.Extract(ctx, natsCarrier(h))
}

// natsCarrier adapts nats.Header to OpenTelemetry's TextMapCarrier.
type natsCarrier nats.Header

func (c natsCarrier) Get(key string) string { return nats.Header(c).Get(key) }
func (c natsCarrier) Set(key, value string) { nats.Header(c).Set(key, value) }
func (c natsCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

func msgAttrs(msg *codec.Message) []attribute.KeyValue {
	return []attribute.KeyValue{
		attribute.String("nopal.type", msg.Type.String()),
		attribute.String("nopal.request_id", strconv.FormatUint(msg.ID, 10)),
	}
}
