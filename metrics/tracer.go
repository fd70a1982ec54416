package metrics

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/nopal-dev/nopal/codec"
	"github.com/nopal-dev/nopal/session"
)

// instrumentationName names Nopal's tracer.
const instrumentationName = "github.com/nopal-dev/nopal"

// Tracer opens Nopal's spans: one per client request on the frontend, per
// forwarded call and RPC on both ends. A nil *Tracer (tracing off) must not
// be used: callers check for nil, which is all tracing costs when it is off.
type Tracer struct {
	t    trace.Tracer
	prop propagation.TextMapPropagator
}

// NewTracer returns a Tracer on tp, or nil when tp is nil.
func NewTracer(tp trace.TracerProvider) *Tracer {
	if tp == nil {
		return nil
	}
	return &Tracer{t: tp.Tracer(instrumentationName), prop: propagation.TraceContext{}}
}

// Start opens a span for a route, with the session of ctx (its id and uid)
// as attributes; end it with Finish.
func (t *Tracer) Start(ctx context.Context, name, route string, kind trace.SpanKind, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	attrs = append(attrs, attribute.String("nopal.route", route))
	if s := session.FromContext(ctx); s != nil {
		attrs = append(attrs, attribute.Int64("nopal.session", s.ID()))
		if uid := s.UID(); uid != "" {
			attrs = append(attrs, attribute.String("nopal.uid", uid))
		}
	}
	return t.t.Start(ctx, name+" "+route, trace.WithSpanKind(kind), trace.WithAttributes(attrs...))
}

// Finish records err, as the client sees it (its code and message), and
// ends the span.
func Finish(span trace.Span, err error) {
	if err != nil {
		e := codec.AsError(err)
		span.SetAttributes(attribute.String("nopal.code", e.Code))
		span.SetStatus(codes.Error, e.Message)
	}
	span.End()
}

// Inject writes ctx's trace context (W3C traceparent) into a message's
// headers, e.g. stream.HeaderCarrier.
func (t *Tracer) Inject(ctx context.Context, c propagation.TextMapCarrier) {
	t.prop.Inject(ctx, c)
}

// Extract reads a trace context from a message's headers.
func (t *Tracer) Extract(ctx context.Context, c propagation.TextMapCarrier) context.Context {
	return t.prop.Extract(ctx, c)
}
