package nopal_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nopal-dev/nopal"
	"github.com/nopal-dev/nopal/frontend"
	"github.com/nopal-dev/nopal/metrics"
)

// probe GETs a path of the metrics address and returns the status and body.
func probe(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// /healthz and /readyz answer on the metrics address; /readyz turns 503,
// saying why, once the app drains.
func TestHealthReadyStandalone(t *testing.T) {
	app, err := nopal.New(nopal.Config{ServerType: "game", Logger: slog.New(slog.DiscardHandler),
		Metrics: &nopal.MetricsConfig{Addr: "127.0.0.1:0"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Ready(); err == nil || !strings.Contains(err.Error(), "not started") {
		t.Fatalf("Ready before Start: %v", err)
	}
	block := &blockingModule{release: make(chan struct{})}
	if err := app.RegisterModule(block, "block"); err != nil {
		t.Fatal(err)
	}
	app.AddAcceptor(frontend.NewTCPAcceptor("127.0.0.1:0"))
	if err := app.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	addr := app.MetricsAddr()
	if code, body := probe(t, addr, "/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	if code, body := probe(t, addr, "/readyz"); code != http.StatusOK || body != "ok\n" {
		t.Fatalf("/readyz: %d %q", code, body)
	}
	if err := app.Ready(); err != nil {
		t.Fatalf("Ready: %v", err)
	}

	// Shutdown waits in the module: the app drains, /metrics still serves.
	done := make(chan error, 1)
	go func() { done <- app.Shutdown(context.Background()) }()
	await(t, block.release, "the module's shutdown")
	code, body := probe(t, addr, "/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "game: draining") {
		t.Errorf("/readyz while draining: %d %q", code, body)
	}
	if code, _ := probe(t, addr, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz while draining: %d", code)
	}
	block.release <- struct{}{}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("shutdown did not end")
	}
}

// In a cluster, ready means connected to the bus and registered in
// discovery: a node cut off the bus is not ready until it is back, and
// /readyz of a process serving several servers checks every one.
func TestHealthReadyCluster(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, clusterOpts{heartbeat: 250 * time.Millisecond})
	proxy := c.startProxy()
	fe := c.add(nodeSpec{svType: "connector", id: "conn", frontend: true, busURL: proxy.URL()})
	eventually(t, "conn to be ready", func() bool { return fe.app.Ready() == nil })
	proxy.cut()
	eventually(t, "conn to be not ready without the bus", func() bool {
		err := fe.app.Ready()
		return err != nil && strings.Contains(err.Error(), "bus not connected")
	})
	proxy.restore()
	eventually(t, "conn to be ready again", func() bool { return fe.app.Ready() == nil })

	// Two servers on one endpoint (a shared Exporter): /readyz checks both.
	exp := metrics.NewExporter()
	front, _ := startObservedApp(t, "connector",
		&nopal.MetricsConfig{Addr: "127.0.0.1:0", Set: metrics.Config{Exporter: exp}}, c.infra, false, true)
	room, _ := startObservedApp(t, "room", &nopal.MetricsConfig{Set: metrics.Config{Exporter: exp}}, c.infra, true, false)
	eventually(t, "both to be ready", func() bool { return front.Ready() == nil && room.Ready() == nil })
	if code, body := probe(t, front.MetricsAddr(), "/readyz"); code != http.StatusOK || body != "ok\n" {
		t.Fatalf("/readyz: %d %q", code, body)
	}
	if err := room.Shutdown(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	code, body := probe(t, front.MetricsAddr(), "/readyz")
	if code != http.StatusServiceUnavailable || body != "not ready\nroom: draining: shutting down\n" {
		t.Fatalf("/readyz with the room stopped: %d %q", code, body)
	}
}
