package nopal_test

import (
	"context"
	"errors"
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
	"github.com/nopal-dev/nopal/reliable"
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

// startMetricsApp starts a standalone app serving echoComp on a TCP
// acceptor, with metrics sampled every 20 ms and served on a free port.
func startMetricsApp(t *testing.T, cfg nopal.Config) (*nopal.App, string) {
	t.Helper()
	cfg.ServerType = "game"
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.Metrics = &nopal.MetricsConfig{Addr: "127.0.0.1:0", Interval: 20 * time.Millisecond}
	app, err := nopal.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Register(echoComp{}, backend.WithName("echo")); err != nil {
		t.Fatal(err)
	}
	tcp := frontend.NewTCPAcceptor("127.0.0.1:0")
	app.AddAcceptor(tcp)
	if err := app.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = app.Shutdown(context.Background()) })
	return app, tcp.Addr().String()
}

// rawPacket encodes one packet for the raw connections below.
func rawPacket(t *testing.T, typ codec.PacketType, body string) []byte {
	t.Helper()
	b, err := codec.AppendPacket(nil, typ, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The frontend's bad-input and abuse counters reach /metrics: each client
// below misbehaves once over a real socket, and the matching counter, fed
// from the frontend's Stats at every sample, goes up by one.
func TestMetricsAcceptorCounters(t *testing.T) {
	const hello = `{"sys":{"platform":"test"}}`
	cases := []struct {
		name   string
		metric string
		send   func(t *testing.T) []byte
	}{
		{"unknown packet type", "nopal_acceptor_malformed_packets", func(t *testing.T) []byte {
			return append(rawPacket(t, codec.Handshake, hello), 0x07, 0, 0, 0)
		}},
		{"data before the handshake", "nopal_acceptor_malformed_packets", func(t *testing.T) []byte {
			return rawPacket(t, codec.Data, "\x00\x01\x09echo.echo{}")
		}},
		{"handshake is not JSON", "nopal_acceptor_handshake_failures", func(t *testing.T) []byte {
			return rawPacket(t, codec.Handshake, "{not json")
		}},
		{"silent after the handshake", "nopal_acceptor_heartbeat_timeouts", func(t *testing.T) []byte {
			return cat(rawPacket(t, codec.Handshake, hello), rawPacket(t, codec.HandshakeAck, ""))
		}},
	}
	app, addr := startMetricsApp(t, nopal.Config{Heartbeat: 100 * time.Millisecond})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := metricValue(t, scrape(t, app.MetricsAddr()), tc.metric)
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.Write(tc.send(t)); err != nil {
				t.Fatal(err)
			}
			// The server closes the connection: read to its end (what
			// comes first, a handshake answer or heartbeats, is dropped).
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.Copy(io.Discard, conn); err != nil {
				t.Fatalf("the server did not close the connection: %v", err)
			}
			deadline := time.Now().Add(10 * time.Second)
			for {
				got := metricValue(t, scrape(t, app.MetricsAddr()), tc.metric)
				if got == before+1 {
					break
				}
				if got > before+1 || time.Now().After(deadline) {
					t.Fatalf("%s = %v, want %v", tc.metric, got, before+1)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

func cat(bs ...[]byte) []byte {
	var out []byte
	for _, b := range bs {
		out = append(out, b...)
	}
	return out
}

// A client chooses its routes, bytes that are not UTF-8 included. Forwarded
// over the bus such a route fails (protobuf strings are UTF-8), and the
// response time of that failure must not reach Prometheus with the route as
// a label: Prometheus panics on a label value that is not UTF-8, which took
// the whole server down. The route is counted as "unknown" instead.
func TestMetricsRouteNotUTF8(t *testing.T) {
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	front, err := nopal.New(nopal.Config{ServerType: "connector", Logger: quiet,
		Metrics: &nopal.MetricsConfig{Addr: "127.0.0.1:0"},
		Cluster: &nopal.ClusterConfig{Bus: stream.Config{Embedded: stream.Embedded{StoreDir: t.TempDir()}}}})
	if err != nil {
		t.Fatal(err)
	}
	tcp := frontend.NewTCPAcceptor("127.0.0.1:0")
	front.AddAcceptor(tcp)
	if err := front.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = front.Shutdown(context.Background()) })
	room, err := nopal.New(nopal.Config{ServerType: "room", Logger: quiet, Cluster: &nopal.ClusterConfig{Bus: stream.Config{}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := room.Register(echoComp{}, backend.WithName("echo")); err != nil {
		t.Fatal(err)
	}
	room.UseEmbedded(front.Bus().Server)
	if err := room.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = room.Shutdown(context.Background()) })
	deadline := time.Now().Add(10 * time.Second)
	for !front.Discovery().HasType("room") {
		if time.Now().After(deadline) {
			t.Fatal("the frontend never saw the room server")
		}
		time.Sleep(10 * time.Millisecond)
	}

	c, err := client.Dial(ctx, tcp.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if out, err := c.RequestRaw(ctx, "room.echo.echo", []byte(`"hi"`)); err != nil || string(out) != `"hi"` {
		t.Fatalf("forwarded echo: %q, %v", out, err)
	}
	_, err = c.RequestRaw(ctx, "room.\xff.echo", []byte(`{}`))
	var ce *codec.Error
	if !errors.As(err, &ce) {
		t.Fatalf("route not UTF-8: got %v, want an error response", err)
	}
	// The server is still up and the connection still works.
	if out, err := c.RequestRaw(ctx, "room.echo.echo", []byte(`"again"`)); err != nil || string(out) != `"again"` {
		t.Fatalf("echo after the bad route: %q, %v", out, err)
	}
	text := scrape(t, front.MetricsAddr())
	if got := metricValue(t, text, "nopal_handler_response_time_ns_count", `route="unknown"`, `code="`+ce.Code+`"`); got != 1 {
		t.Errorf("the bad route counted %v times as unknown, want 1", got)
	}
}

// startObservedApp starts an app of type svType with the given metrics on
// the embedded NATS server of bus (nil: an embedded server of its own, in
// t.TempDir()); room adds the room component and its remotes (a job
// worker), tcp a TCP acceptor (its address is returned).
func startObservedApp(t *testing.T, svType string, mc *nopal.MetricsConfig, bus *nopal.App, room, tcp bool) (*nopal.App, string) {
	t.Helper()
	cfg := nopal.Config{ServerType: svType, Logger: clusterLogger(t), Metrics: mc,
		Cluster: &nopal.ClusterConfig{Bus: stream.Config{}}}
	if bus == nil {
		cfg.Cluster.Bus.Embedded = stream.Embedded{StoreDir: t.TempDir()}
	}
	app, err := nopal.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if bus != nil {
		app.UseEmbedded(bus.Bus().Server)
	}
	if room {
		setupRoom(t, app, nil)
	}
	var acc *frontend.TCPAcceptor
	if tcp {
		acc = frontend.NewTCPAcceptor("127.0.0.1:0")
		app.AddAcceptor(acc)
	}
	if err := app.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		_ = app.Shutdown(ctx)
	})
	if acc == nil {
		return app, ""
	}
	return app, acc.Addr().String()
}

// runJob runs the reliable RPC room.remote.echo to its end and waits until
// app's worker has counted it (the worker counts a job just after it
// records its end, which is what Jobs().Wait sees).
func runJob(t *testing.T, app, worker *nopal.App) {
	t.Helper()
	ctx := testCtx(t)
	w := worker.JobWorker()
	if w == nil {
		t.Fatalf("%s runs no job worker", worker.ServerType())
	}
	before := w.Stats().Jobs[reliable.Succeeded]
	jid, err := app.ReliableRPC(ctx, "room.remote.echo", &Echo{Text: "job"})
	if err != nil {
		t.Fatal(err)
	}
	job, err := app.Jobs().Wait(ctx, jid)
	if err != nil {
		t.Fatal(err)
	}
	if job.State != reliable.Succeeded {
		t.Fatalf("job %s ended %s: %+v", jid, job.State, job.LastError)
	}
	eventually(t, "the worker to count the job", func() bool {
		return w.Stats().Jobs[reliable.Succeeded] == before+1
	})
}

// The worker_* metrics are current when scraped: the scrape right after a
// job finished counts it, though the app samples its gauges only hourly.
func TestMetricsWorkerCurrentAtScrape(t *testing.T) {
	app, _ := startObservedApp(t, "room",
		&nopal.MetricsConfig{Addr: "127.0.0.1:0", Interval: time.Hour}, nil, true, false)
	for n := 1.0; n <= 2; n++ {
		runJob(t, app, app)
		text := scrape(t, app.MetricsAddr())
		if got := metricValue(t, text, "nopal_worker_worker_jobs_total", `status="succeeded"`, `serverType="room"`); got != n {
			t.Fatalf("after job %v: worker_worker_jobs_total{status=succeeded} = %v", n, got)
		}
		if got := metricValue(t, text, "nopal_worker_worker_queue_size", `queue="room"`); got != 0 {
			t.Errorf("after job %v: worker_worker_queue_size = %v, want 0", n, got)
		}
	}
}

// Several apps of one process report on one /metrics (a shared
// metrics.Exporter, served by the one app given an Addr): a connector
// frontend and a room backend with a job worker, each series under its
// app's serverType. A stopped app's series leave the endpoint.
func TestMetricsSharedEndpoint(t *testing.T) {
	exp := metrics.NewExporter()
	shared := func(addr string) *nopal.MetricsConfig {
		return &nopal.MetricsConfig{Set: metrics.Config{Game: "demo", Exporter: exp}, Addr: addr, Interval: time.Hour}
	}
	front, tcp := startObservedApp(t, "connector", shared("127.0.0.1:0"), nil, false, true)
	room, _ := startObservedApp(t, "room", shared(""), front, true, false)
	if room.MetricsAddr() != "" || front.MetricsAddr() == "" {
		t.Fatalf("metrics addresses %q (connector) and %q (room): want the connector's only", front.MetricsAddr(), room.MetricsAddr())
	}
	eventually(t, "the connector to see the room server", func() bool { return front.Discovery().HasType("room") })

	ctx := testCtx(t)
	c, err := client.Dial(ctx, tcp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var out Echo
	if err := c.Request(ctx, "room.room.echo", &Echo{Text: "hi"}, &out); err != nil || out.Text != "hi" {
		t.Fatalf("forwarded echo: %+v, %v", out, err)
	}
	runJob(t, front, room)

	text := scrape(t, front.MetricsAddr())
	tests := []struct {
		name      string
		fragments []string
		want      float64 // -1: any value
	}{
		{"nopal_acceptor_connected_clients", []string{`serverType="connector"`}, 1},
		{"nopal_handler_response_time_ns_count", []string{`serverType="connector"`, `route="room.room.echo"`}, 1},
		{"nopal_handler_response_time_ns_count", []string{`serverType="room"`, `route="room.room.echo"`}, 1},
		{"nopal_handler_handler_delay_ns_count", []string{`serverType="room"`, `route="room.room.echo"`, `type="remote"`}, 1},
		{"nopal_worker_worker_jobs_total", []string{`serverType="room"`, `status="succeeded"`, `game="demo"`}, 1},
		{"nopal_service_discovery_count_servers", []string{`serverType="connector"`, `type="room"`}, 1},
		{"nopal_service_discovery_count_servers", []string{`serverType="room"`, `type="connector"`}, 1},
		{"nopal_sys_goroutines", []string{`serverType="room"`}, -1},
		{"go_goroutines", nil, -1},
	}
	for _, tc := range tests {
		if got := metricValue(t, text, tc.name, tc.fragments...); tc.want >= 0 && got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.fragments, got, tc.want)
		}
	}

	if err := room.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	text = scrape(t, front.MetricsAddr())
	if strings.Contains(text, `serverType="room"`) {
		t.Errorf("the stopped room's series are still served:\n%s", grepLines(text, "nopal_worker"))
	}
	metricValue(t, text, "nopal_acceptor_connected_clients", `serverType="connector"`)
}
