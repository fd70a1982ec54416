package nopal_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nopal-dev/nopal"
	"github.com/nopal-dev/nopal/backend"
	"github.com/nopal-dev/nopal/client"
	"github.com/nopal-dev/nopal/codec"
	"github.com/nopal-dev/nopal/frontend"
	"github.com/nopal-dev/nopal/metrics"
	"github.com/nopal-dev/nopal/stream"
)

type echoComp struct{}

func (echoComp) Echo(_ context.Context, in []byte) ([]byte, error) { return in, nil }

func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// metricValue finds the value of the first sample whose line matches all
// the given fragments.
func metricValue(t *testing.T, text, name string, fragments ...string) float64 {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(\{[^}]*\})? (\S+)$`)
	for _, m := range re.FindAllStringSubmatch(text, -1) {
		ok := true
		for _, f := range fragments {
			ok = ok && strings.Contains(m[1], f)
		}
		if ok {
			v, err := strconv.ParseFloat(m[2], 64)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	t.Fatalf("no sample %s with %v in:\n%s", name, fragments, grepLines(text, name))
	return 0
}

func grepLines(text, prefix string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// Real traffic against a real server, then a real scrape: the counts match
// what was sent, the histogram has buckets, the rate-limit counter moves,
// and a Statsd agent (a UDP socket) receives the same metrics.
func TestMetricsAfterRealTraffic(t *testing.T) {
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	app, err := nopal.New(nopal.Config{
		ServerType: "game",
		Logger:     slog.New(slog.DiscardHandler),
		Metrics: &nopal.MetricsConfig{
			Set:      metrics.Config{Namespace: "pitaya", Game: "demo"},
			Addr:     "127.0.0.1:0",
			Statsd:   udp.LocalAddr().String(),
			Interval: 50 * time.Millisecond,
		},
		RateLimit: &nopal.RateLimitConfig{Limit: 20, Interval: time.Minute, Reply: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Register(echoComp{}, backend.WithName("echo")); err != nil {
		t.Fatal(err)
	}
	tcp := frontend.NewTCPAcceptor("127.0.0.1:0")
	app.AddAcceptor(tcp)
	ctx := context.Background()
	if err := app.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = app.Shutdown(context.Background()) })

	c, err := client.Dial(ctx, app.Frontend().Acceptors()[0].Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const ok, missing, limited = 15, 3, 4 // 18 allowed in the minute, then 4 dropped
	for range ok {
		if _, err := c.RequestRaw(ctx, "echo.echo", []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	for range missing {
		if _, err := c.RequestRaw(ctx, "echo.nosuch", []byte(`{}`)); err == nil {
			t.Fatal("unknown route answered")
		}
	}
	for range limited + 2 { // the limit is 20: 2 more pass, 4 are dropped
		_, _ = c.RequestRaw(ctx, "echo.echo", []byte(`{}`))
	}

	text := scrape(t, app.MetricsAddr())
	if got := metricValue(t, text, "pitaya_handler_response_time_ns_count", `route="echo.echo"`, `status="ok"`, `game="demo"`, `serverType="game"`); got != ok+2 {
		t.Errorf("ok responses counted %v, want %d", got, ok+2)
	}
	if got := metricValue(t, text, "pitaya_handler_response_time_ns_count", `route="unknown"`, `code="PIT-404"`, `status="failed"`); got != missing {
		t.Errorf("404 responses counted %v, want %d", got, missing)
	}
	if got := metricValue(t, text, "pitaya_handler_response_time_ns_hist_bucket", `route="echo.echo"`, `le="+Inf"`); got != ok+2 {
		t.Errorf("histogram +Inf bucket %v, want %d", got, ok+2)
	}
	if !strings.Contains(text, `pitaya_handler_response_time_ns{`) || !strings.Contains(text, `quantile="0.99"`) {
		t.Error("the response-time summary has no quantiles")
	}
	if got := metricValue(t, text, "pitaya_acceptor_exceeded_rate_limiting"); got != limited {
		t.Errorf("rate-limit counter %v, want %d", got, limited)
	}
	deadline := time.Now().Add(5 * time.Second)
	for metricValue(t, scrape(t, app.MetricsAddr()), "pitaya_acceptor_connected_clients") != 1 {
		if time.Now().After(deadline) {
			t.Fatal("connected clients never reached 1")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, name := range []string{"pitaya_sys_goroutines", "pitaya_sys_heapsize", "pitaya_sys_heapobjects"} {
		if metricValue(t, text, name) <= 0 {
			t.Errorf("%s is not positive", name)
		}
	}

	// Statsd got the same response times, with tags.
	buf := make([]byte, 64<<10)
	_ = udp.SetReadDeadline(time.Now().Add(10 * time.Second))
	var lines strings.Builder
	for !strings.Contains(lines.String(), "pitaya_handler_response_time_ns:") {
		n, _, err := udp.ReadFrom(buf)
		if err != nil {
			t.Fatalf("statsd lines so far:\n%s\nerr %v", lines.String(), err)
		}
		lines.Write(buf[:n])
		lines.WriteByte('\n')
	}
	if !strings.Contains(lines.String(), "route:echo.echo") || !strings.Contains(lines.String(), "|ms") {
		t.Errorf("statsd lines lack the route tag or timing type:\n%s", lines.String())
	}
}

// The server count by type follows joins and leaves of the cluster.
func TestMetricsServerCountFollowsDiscovery(t *testing.T) {
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	watcher, err := nopal.New(nopal.Config{ServerType: "watch", Logger: quiet,
		Metrics: &nopal.MetricsConfig{Addr: "127.0.0.1:0"},
		Cluster: &nopal.ClusterConfig{Bus: stream.Config{Embedded: stream.Embedded{StoreDir: t.TempDir()}}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := watcher.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = watcher.Shutdown(context.Background()) })

	count := func() float64 {
		text := scrape(t, watcher.MetricsAddr())
		if !strings.Contains(text, `type="room"`) {
			return 0
		}
		return metricValue(t, text, "nopal_service_discovery_count_servers", `type="room"`)
	}
	waitCount := func(want float64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for count() != want {
			if time.Now().After(deadline) {
				t.Fatalf("room server count %v, want %v", count(), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	var rooms []*nopal.App
	for range 2 {
		r, err := nopal.New(nopal.Config{ServerType: "room", Logger: quiet, Cluster: &nopal.ClusterConfig{Bus: stream.Config{}}})
		if err != nil {
			t.Fatal(err)
		}
		r.UseEmbedded(watcher.Bus().Server)
		if err := r.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = r.Shutdown(context.Background()) })
		rooms = append(rooms, r)
	}
	waitCount(2)
	if err := rooms[0].Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	waitCount(1)
	_ = codec.CodeNotFound
}
