package nopal_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/nopal-dev/nopal"
	"github.com/nopal-dev/nopal/backend"
	"github.com/nopal-dev/nopal/client"
	"github.com/nopal-dev/nopal/frontend"
	"github.com/nopal-dev/nopal/stream"
)

type traced struct{}

func (traced) Ping(_ context.Context, in []byte) ([]byte, error) { return in, nil }

// One request through a frontend and a backend, each with its own tracer
// provider as two nodes would have, makes one trace: the frontend's handle
// span, its client call span, and the backend's serve span under it.
func TestTraceSpansFrontendAndBackend(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	provider := func() *sdktrace.TracerProvider {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
		t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
		return tp
	}
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)

	be, err := nopal.New(nopal.Config{ServerType: "game", Logger: quiet, TracerProvider: provider(),
		Cluster: &nopal.ClusterConfig{Bus: stream.Config{Embedded: stream.Embedded{StoreDir: t.TempDir()}}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := be.Register(traced{}, backend.WithName("t")); err != nil {
		t.Fatal(err)
	}
	if err := be.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = be.Shutdown(context.Background()) })

	fe, err := nopal.New(nopal.Config{ServerType: "front", Logger: quiet, TracerProvider: provider(),
		Cluster: &nopal.ClusterConfig{Bus: stream.Config{}}})
	if err != nil {
		t.Fatal(err)
	}
	fe.UseEmbedded(be.Bus().Server)
	tcp := frontend.NewTCPAcceptor("127.0.0.1:0")
	fe.AddAcceptor(tcp)
	if err := fe.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fe.Shutdown(context.Background()) })

	c, err := client.Dial(ctx, tcp.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := c.RequestRaw(rctx, "game.t.ping", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}

	byName := map[string]tracetest.SpanStub{}
	for _, s := range exp.GetSpans() {
		byName[s.Name] = s
	}
	handle, call, serve := byName["nopal.handle game.t.ping"], byName["nopal.call game.t.ping"], byName["nopal.serve game.t.ping"]
	for name, s := range map[string]tracetest.SpanStub{"handle": handle, "call": call, "serve": serve} {
		if !s.SpanContext.IsValid() {
			t.Fatalf("no %s span; spans: %v", name, spanNames(exp.GetSpans()))
		}
	}
	if handle.SpanKind != trace.SpanKindServer || call.SpanKind != trace.SpanKindClient || serve.SpanKind != trace.SpanKindServer {
		t.Errorf("span kinds: handle %v, call %v, serve %v", handle.SpanKind, call.SpanKind, serve.SpanKind)
	}
	tid := handle.SpanContext.TraceID()
	if call.SpanContext.TraceID() != tid || serve.SpanContext.TraceID() != tid {
		t.Fatalf("spans are in different traces: %v %v %v", tid, call.SpanContext.TraceID(), serve.SpanContext.TraceID())
	}
	if call.Parent.SpanID() != handle.SpanContext.SpanID() {
		t.Errorf("the call span's parent is not the handle span")
	}
	if serve.Parent.SpanID() != call.SpanContext.SpanID() || !serve.Parent.IsRemote() {
		t.Errorf("the serve span's parent is not the (remote) call span")
	}
}

func spanNames(spans tracetest.SpanStubs) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name)
	}
	return out
}
