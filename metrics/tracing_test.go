package metrics_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nopal-dev/nopal/metrics"
)

// A span made with the provider reaches an OTLP/HTTP endpoint named by the
// standard variable (Jaeger listens there on :4318).
func TestTracerProviderFromEnvExportsOverOTLP(t *testing.T) {
	var posts atomic.Int32
	got := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/v1/traces" {
			posts.Add(1)
			select {
			case got <- struct{}{}:
			default:
			}
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
	t.Setenv("OTEL_SERVICE_NAME", "nopal-test")

	ctx := context.Background()
	tp, err := metrics.TracerProviderFromEnv(ctx, "fallback")
	if err != nil {
		t.Fatal(err)
	}
	_, span := tp.Tracer("test").Start(ctx, "hello")
	span.End()
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := tp.Shutdown(sctx); err != nil { // flushes the batch
		t.Fatal(err)
	}
	select {
	case <-got:
	default:
		t.Fatalf("no OTLP export reached the endpoint (%d posts)", posts.Load())
	}
}
