package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/nopal-dev/nopal"
	"github.com/nopal-dev/nopal/discovery"
	"github.com/nopal-dev/nopal/examples/chat"
	"github.com/nopal-dev/nopal/examples/cluster"
	rewards "github.com/nopal-dev/nopal/examples/reliable"
	"github.com/nopal-dev/nopal/frontend"
	"github.com/nopal-dev/nopal/metrics"
	"github.com/nopal-dev/nopal/stream"
)

// busFlags are the flags every command that reaches the bus shares.
type busFlags struct {
	url, prefix, user, password, token, creds string
}

func (b *busFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&b.url, "nats", "", "NATS URL (empty: start an embedded NATS server)")
	fs.StringVar(&b.prefix, "prefix", stream.DefaultPrefix, "subject prefix shared by the cluster")
	fs.StringVar(&b.user, "nats-user", "", "NATS user")
	fs.StringVar(&b.password, "nats-password", "", "NATS password")
	fs.StringVar(&b.token, "nats-token", "", "NATS token")
	fs.StringVar(&b.creds, "nats-creds", "", "NATS credentials file")
}

func (b *busFlags) config(id string) stream.Config {
	return stream.Config{URL: b.url, Prefix: b.prefix, ServerID: id, User: b.user, Password: b.password, Token: b.token, CredsFile: b.creds}
}

func serve(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	types := fs.String("type", "connector,room", `server types to run in this process, comma-separated: "connector" (frontend) and "room" (backend) of the cluster chat, "rewards" (the reliable-RPC example's worker), or "chat" (the standalone chat server, no bus)`)
	id := fs.String("id", "", "server id (one type only; default: type and a random suffix)")
	tcp := fs.String("tcp", "127.0.0.1:3250", "TCP address for clients (frontends; empty: none)")
	ws := fs.String("ws", "127.0.0.1:3251", "HTTP address: the chat page at / and WebSocket upgrades on any path (frontends; empty: none)")
	heartbeat := fs.Duration("heartbeat", 30*time.Second, "heartbeat interval with clients")
	compress := fs.Bool("compress", false, "zlib-compress large payloads")
	resumeGrace := fs.Duration("resume-grace", frontend.DefaultResumeGrace, "how long the session of a dropped client waits for it to resume (0: no resume, the session ends with its connection)")
	durable := fs.Bool("durable-pushes", false, "keep every push of a bound session in the bus, so a client whose frontend is killed still gets what that frontend had taken")
	anyOrigin := fs.Bool("ws-any-origin", false, "accept WebSocket upgrades from any browser origin")
	rate := fs.Int("rate-limit", 0, "requests per --rate-interval per connection (0: no limit)")
	rateInterval := fs.Duration("rate-interval", time.Second, "rate limit interval")
	maxConns := fs.Int("max-conns", 0, "client connections a frontend holds at once; past it handshakes are refused with code 503 (0: no limit)")
	var bus busFlags
	bus.register(fs)
	natsListen := fs.String("nats-listen", "", "embedded NATS: client address other nodes and `node replay` connect to (empty: in-process only)")
	natsStore := fs.String("nats-store", "", "embedded NATS: JetStream folder (default: a temporary folder)")
	natsClusterName := fs.String("nats-cluster", "nopal", "embedded NATS: cluster name")
	natsClusterListen := fs.String("nats-cluster-listen", "", "embedded NATS: cluster route address (empty: no cluster)")
	natsRoutes := fs.String("nats-routes", "", "embedded NATS: comma-separated routes to the other servers (nats://host:port)")
	replicas := fs.Int("replicas", 1, "replicas of streams and buckets (3 in a 3-server NATS cluster)")
	traffic := fs.Bool("traffic", true, "record forwarded requests, replies, pushes and kicks for `node replay`")
	timeout := fs.Duration("request-timeout", 5*time.Second, "timeout of requests forwarded over the bus")
	jobAckWait := fs.Duration("job-ack-wait", 30*time.Second, "reliable RPC: how long a job may run silent before another worker takes it over")
	jobConcurrency := fs.Int("job-concurrency", 16, "reliable RPC: jobs a worker runs at once")
	metricsAddr := fs.String("metrics-addr", "", "serve Prometheus /metrics here, e.g. 127.0.0.1:9090 (the first -type of the process reports there)")
	metricsNS := fs.String("metrics-namespace", "nopal", `metric namespace ("pitaya" keeps Pitaya dashboards working)`)
	game := fs.String("game", "", "the game label of every metric")
	statsdAddr := fs.String("statsd", "", "send metrics to this Statsd agent (host:port)")
	tracing := fs.Bool("tracing", false, "export OpenTelemetry traces over OTLP, configured by OTEL_EXPORTER_OTLP_ENDPOINT and the other OTEL_* variables")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log, err := newLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		return err
	}
	kinds := strings.Split(*types, ",")
	if *id != "" && len(kinds) > 1 {
		return errors.New("-id goes with a single -type")
	}

	var wrappers []frontend.Wrapper
	if *rate > 0 {
		rl, err := frontend.NewRateLimiter(*rate, *rateInterval, false)
		if err != nil {
			return err
		}
		wrappers = append(wrappers, rl)
	}
	addAcceptors := func(app *nopal.App, roomPrefix string) {
		if *tcp != "" {
			app.AddAcceptor(frontend.WithWrappers(frontend.NewTCPAcceptor(*tcp), wrappers...))
		}
		if *ws != "" {
			opts := []frontend.WSOption{frontend.WithHTTPHandler(chat.PageFor(roomPrefix))}
			if *anyOrigin {
				opts = append(opts, frontend.WithCheckOrigin(frontend.AnyOrigin))
			}
			app.AddAcceptor(frontend.WithWrappers(frontend.NewWSAcceptor(*ws, opts...), wrappers...))
		}
	}
	base := nopal.Config{Heartbeat: *heartbeat, Compress: *compress, Logger: log, ServerID: *id, MaxConnections: *maxConns,
		Resume: frontend.ResumeConfig{Off: *resumeGrace <= 0, Grace: *resumeGrace, Durable: *durable}}
	if *tracing {
		tp, err := metrics.TracerProviderFromEnv(context.WithoutCancel(ctx), "nopal")
		if err != nil {
			return err
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = tp.Shutdown(sctx)
		}()
		base.TracerProvider = tp
	}
	metricsFor := func(i int) *nopal.MetricsConfig {
		if *metricsAddr == "" && *statsdAddr == "" {
			return nil
		}
		mc := &nopal.MetricsConfig{Set: metrics.Config{Namespace: *metricsNS, Game: *game}, Statsd: *statsdAddr}
		if i == 0 {
			mc.Addr = *metricsAddr // one /metrics per process: the first server's
		}
		return mc
	}

	if len(kinds) == 1 && kinds[0] == "chat" {
		cfg := base
		cfg.ServerType = chat.ServerType
		cfg.Metrics = metricsFor(0)
		app, err := nopal.New(cfg)
		if err != nil {
			return err
		}
		if err := chat.Setup(ctx, app); err != nil {
			return err
		}
		addAcceptors(app, "room")
		return app.Run(ctx)
	}

	var apps []*nopal.App
	for i, kind := range kinds {
		cfg := base
		cfg.ServerType = strings.TrimSpace(kind)
		bcfg := bus.config("")
		bcfg.Replicas = *replicas
		if i == 0 {
			bcfg.Embedded = stream.Embedded{
				StoreDir: *natsStore, Listen: *natsListen,
				ClusterName: *natsClusterName, ClusterListen: *natsClusterListen, Routes: splitList(*natsRoutes),
			}
		}
		// An embedded server requires -nats-user and -nats-password when
		// they are given, from every client, this process's included.
		bcfg.Embedded.User, bcfg.Embedded.Password = bus.user, bus.password
		cfg.Cluster = &nopal.ClusterConfig{Bus: bcfg, Traffic: *traffic, RequestTimeout: *timeout,
			Jobs: &nopal.JobsConfig{AckWait: *jobAckWait, Concurrency: *jobConcurrency}}
		cfg.Metrics = metricsFor(i)
		app, err := nopal.New(cfg)
		if err != nil {
			return err
		}
		switch cfg.ServerType {
		case cluster.ConnectorType:
			cluster.SetupConnector(app)
			if err := rewards.SetupClaims(app); err != nil {
				return err
			}
			addAcceptors(app, cluster.RoomPrefix)
		case rewards.RewardsType:
			if _, err := rewards.SetupRewards(app); err != nil {
				return err
			}
		case cluster.RoomType:
			if err := cluster.SetupRoom(app); err != nil {
				return err
			}
		case "chat":
			return errors.New(`-type chat runs alone (standalone, no bus)`)
		default:
			return fmt.Errorf("unknown server type %q (connector, room, rewards or chat)", cfg.ServerType)
		}
		apps = append(apps, app)
	}
	return runApps(ctx, log, apps)
}

// runApps starts apps in order (the first one brings the embedded NATS
// server, if any: the others connect to it in-process), waits for a signal,
// then stops them in reverse order.
func runApps(ctx context.Context, log *slog.Logger, apps []*nopal.App) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	var started []*nopal.App
	shutdown := func() error {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var errs []error
		for i := len(started) - 1; i >= 0; i-- {
			errs = append(errs, started[i].Shutdown(sctx))
		}
		return errors.Join(errs...)
	}
	for i, app := range apps {
		if i > 0 && started[0].Bus() != nil && started[0].Bus().Server != nil {
			app.UseEmbedded(started[0].Bus().Server)
		}
		if err := app.Start(context.WithoutCancel(ctx)); err != nil {
			return errors.Join(err, shutdown())
		}
		started = append(started, app)
	}
	if b := apps[0].Bus(); b != nil && b.ClientURL() != "" {
		log.Info("embedded NATS listening", "url", b.ClientURL())
	}
	// Ready means a client's first request finds the servers of this
	// process: each has seen the others in discovery.
	if !seeEachOther(ctx, apps, 5*time.Second) {
		log.Warn("the servers of this process do not see each other yet")
	}
	log.Info("ready")
	<-ctx.Done()
	log.Info("shutting down: draining clients")
	return shutdown()
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// seeEachOther waits until every app's discovery lists every other app, or
// until timeout or ctx ends; it reports whether they do.
func seeEachOther(ctx context.Context, apps []*nopal.App, timeout time.Duration) bool {
	changed := make(chan struct{}, 1)
	for _, a := range apps {
		if d := a.Discovery(); d != nil {
			cancel := d.Subscribe(func(discovery.Event) {
				select {
				case changed <- struct{}{}:
				default:
				}
			})
			defer cancel()
		}
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		all := true
		for _, a := range apps {
			if d := a.Discovery(); d != nil {
				for _, b := range apps {
					if _, ok := d.ServerByID(b.ServerID()); !ok {
						all = false
					}
				}
			}
		}
		if all {
			return true
		}
		select {
		case <-changed:
		case <-timer.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
}
