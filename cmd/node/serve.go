package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
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

// register adds the flags; embedded says whether an empty -nats starts an
// embedded NATS server (serve) or is an error (the commands that inspect a
// running cluster, whose -nats defaults to $NATS_URL).
func (b *busFlags) register(fs *flag.FlagSet, embedded bool) {
	if embedded {
		fs.StringVar(&b.url, "nats", "", "NATS URL, comma-separated for a cluster (empty: start an embedded NATS server in this process)")
	} else {
		fs.StringVar(&b.url, "nats", os.Getenv("NATS_URL"), "NATS URL of the cluster, e.g. nats://127.0.0.1:4222 for 'make run' (required; default $NATS_URL)")
	}
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
	bus.register(fs, true)
	natsListen := fs.String("nats-listen", "", "embedded NATS: client address other nodes and 'node replay' connect to (empty: in-process only)")
	natsStore := fs.String("nats-store", "", "embedded NATS: JetStream folder (default: a temporary folder)")
	natsClusterName := fs.String("nats-cluster", "nopal", "embedded NATS: cluster name")
	natsClusterListen := fs.String("nats-cluster-listen", "", "embedded NATS: cluster route address (empty: no cluster)")
	natsRoutes := fs.String("nats-routes", "", "embedded NATS: comma-separated routes to the other servers (nats://host:port)")
	replicas := fs.Int("replicas", 1, "replicas of streams and buckets (3 in a 3-server NATS cluster)")
	traffic := fs.Bool("traffic", true, "record forwarded requests, replies, pushes and kicks for 'node replay'")
	timeout := fs.Duration("request-timeout", 5*time.Second, "timeout of requests forwarded over the bus")
	jobAckWait := fs.Duration("job-ack-wait", 30*time.Second, "reliable RPC: how long a job may run silent before another worker takes it over")
	jobConcurrency := fs.Int("job-concurrency", 16, "reliable RPC: jobs a worker runs at once")
	metricsAddr := fs.String("metrics-addr", "", "serve Prometheus /metrics here, e.g. 127.0.0.1:9090 (every -type of the process reports there)")
	metricsNS := fs.String("metrics-namespace", "nopal", `metric namespace ("pitaya" keeps Pitaya dashboards working)`)
	game := fs.String("game", "", "the game label of every metric")
	statsdAddr := fs.String("statsd", "", "send metrics to this Statsd agent (host:port)")
	tracing := fs.Bool("tracing", false, "export OpenTelemetry traces over OTLP, configured by OTEL_EXPORTER_OTLP_ENDPOINT and the other OTEL_* variables")
	shutdownTimeout := fs.Duration("shutdown-timeout", 10*time.Second, "how long a stop (SIGINT, SIGTERM) may take: draining clients, then leaving the cluster; a second signal stops at once")
	consoleAddr := fs.String("console-addr", "", "serve the web console here too, e.g. 127.0.0.1:3280 (a non-loopback address needs -console-token)")
	consoleToken := fs.String("console-token", os.Getenv("NOPAL_CONSOLE_TOKEN"), "the console's token: for kicks, retries and cancels, and for every request off loopback (default $NOPAL_CONSOLE_TOKEN; empty: a random one, logged in the console's URL)")
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
	// One /metrics for every server of the process: they share one
	// Exporter, their series told apart by their serverType label.
	exp := metrics.NewExporter()
	metricsFor := func(i int) *nopal.MetricsConfig {
		if *metricsAddr == "" && *statsdAddr == "" {
			return nil
		}
		mc := &nopal.MetricsConfig{Set: metrics.Config{Namespace: *metricsNS, Game: *game, Exporter: exp}, Statsd: *statsdAddr}
		if i == 0 {
			mc.Addr = *metricsAddr // the first server serves every server's series
		}
		return mc
	}

	if len(kinds) == 1 && kinds[0] == "chat" {
		if *consoleAddr != "" {
			return errors.New("-console-addr needs a cluster (not -type chat)")
		}
		cfg := base
		cfg.ServerType = chat.ServerType
		cfg.Metrics = metricsFor(0)
		cfg.ShutdownTimeout = *shutdownTimeout
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
	for _, kind := range kinds {
		cfg := base
		cfg.ServerType = strings.TrimSpace(kind)
		cfg.ShutdownTimeout = *shutdownTimeout
		bcfg := bus.config("")
		bcfg.Replicas = *replicas
		// The process's embedded server, if any, requires -nats-user and
		// -nats-password when they are given, from every client, the
		// in-process ones included.
		bcfg.Embedded.User, bcfg.Embedded.Password = bus.user, bus.password
		cfg.Cluster = &nopal.ClusterConfig{Bus: bcfg, Traffic: *traffic, RequestTimeout: *timeout,
			Jobs: &nopal.JobsConfig{AckWait: *jobAckWait, Concurrency: *jobConcurrency}}
		cfg.Metrics = metricsFor(len(apps))
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
	p := &process{log: log, apps: apps, shutdownTimeout: *shutdownTimeout, consoleAddr: *consoleAddr, consoleToken: *consoleToken}
	if bus.url == "" {
		// No -nats: this process runs the embedded NATS server, and its
		// servers connect to it in-process. It is the process's own, not
		// one server's, so that it stops after all of them.
		name := processID(*id, kinds)
		p.nats = &stream.Config{ServerID: "nats-" + name, Logger: log,
			Embedded: stream.Embedded{
				ServerName: name, StoreDir: *natsStore, Listen: *natsListen,
				ClusterName: *natsClusterName, ClusterListen: *natsClusterListen, Routes: splitList(*natsRoutes),
				// An embedded server requires -nats-user and -nats-password
				// when they are given, from every client.
				User: bus.user, Password: bus.password,
			}}
	}
	return p.run(ctx)
}

// processID names the embedded NATS server after the process's server:
// its -id, or its first type and a random suffix (the servers of a NATS
// cluster need names of their own). The process's connection to it is
// "nats-" and that name: a connection's name is its reply subjects' prefix,
// which it must not share with a server's.
func processID(id string, kinds []string) string {
	if id != "" {
		return id
	}
	var b [5]byte
	_, _ = rand.Read(b[:])
	return strings.TrimSpace(kinds[0]) + "-" + hex.EncodeToString(b[:])
}

// process is what `node serve` runs: an embedded NATS server (unless
// -nats names one) and the servers of the -type list on it.
type process struct {
	log             *slog.Logger
	nats            *stream.Config // the embedded server to start, or nil
	apps            []*nopal.App
	shutdownTimeout time.Duration
	consoleAddr     string // serve the web console there ("": not)
	consoleToken    string
}

// run starts the embedded NATS server, if any, and the apps in order,
// waits for SIGINT or SIGTERM, then stops them: the frontends first (their
// clients' sessions end while the backends can still hear of it, as the
// chat's room does), then the others, then NATS, all within the shutdown
// timeout. A second signal stops the process at once.
func (p *process) run(ctx context.Context) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	var nats *stream.Bus
	if p.nats != nil {
		var err error
		if nats, err = stream.Connect(ctx, *p.nats); err != nil {
			return err
		}
	}
	var started []*nopal.App
	shutdown := func() error {
		sctx, cancel := context.WithTimeout(context.Background(), p.shutdownTimeout)
		defer cancel()
		// The frontends drain first, keeping a quarter of the time (at most
		// 3 s) for the backends and NATS.
		deadline, _ := sctx.Deadline()
		fctx, fcancel := context.WithDeadline(sctx, deadline.Add(-min(p.shutdownTimeout/4, 3*time.Second)))
		defer fcancel()
		var errs []error
		for _, frontends := range []bool{true, false} {
			for i := len(started) - 1; i >= 0; i-- {
				if started[i].IsFrontend() != frontends {
					continue
				}
				actx := sctx
				if frontends {
					actx = fctx
				}
				if err := started[i].Shutdown(actx); err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", started[i].ServerID(), err))
				}
			}
		}
		if nats != nil {
			nats.Close()
		}
		return errors.Join(errs...)
	}
	for _, app := range p.apps {
		if nats != nil {
			app.UseEmbedded(nats.Server)
		}
		if err := app.Start(context.WithoutCancel(ctx)); err != nil {
			return errors.Join(err, shutdown())
		}
		started = append(started, app)
	}
	if p.consoleAddr != "" {
		if err := serveConsole(ctx, started[0].Bus(), p.consoleAddr, p.consoleToken, p.log); err != nil {
			return errors.Join(err, shutdown())
		}
	}
	// Said once the servers are up: whoever reads it finds them there.
	if nats != nil && nats.ClientURL() != "" {
		p.log.Info("embedded NATS listening", "url", nats.ClientURL())
	}
	// Ready means a client's first request finds the servers of this
	// process: each has seen the others in discovery.
	if !seeEachOther(ctx, p.apps, 5*time.Second) {
		p.log.Warn("the servers of this process do not see each other yet")
	}
	p.log.Info("ready")
	<-ctx.Done()
	stop()
	p.log.Info("shutting down: draining clients", "timeout", p.shutdownTimeout)
	again := make(chan os.Signal, 1)
	signal.Notify(again, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(again)
	done := make(chan error, 1)
	go func() { done <- shutdown() }()
	select {
	case err := <-done:
		return err
	case sig := <-again:
		return fmt.Errorf("%v again: stopped without finishing the drain", sig)
	}
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
