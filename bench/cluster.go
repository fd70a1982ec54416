package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/nopal-dev/nopal"
	"github.com/nopal-dev/nopal/backend"
	"github.com/nopal-dev/nopal/frontend"
	"github.com/nopal-dev/nopal/groups"
	"github.com/nopal-dev/nopal/session"
	"github.com/nopal-dev/nopal/stream"
)

// The cluster benchmark: a frontend of type "front" (a TCP acceptor, no
// handlers) forwards every request over the bus to a backend of type "echo".
const (
	frontType = "front"
	backType  = "echo"

	// clusterEchoRoute is the raw echo handler of the backend.
	clusterEchoRoute = backType + ".echo.echo"
	// Handlers of the backend's "bench" component (scenarios 7 and 8).
	bindRoute      = backType + ".bench.bind"      // payload: uid
	joinRoute      = backType + ".bench.join"      // payload: uid; bind, then add to benchGroup
	pushRoute      = backType + ".bench.push"      // payload: 8-byte sequence, then uid
	broadcastRoute = backType + ".bench.broadcast" // payload: 8-byte sequence

	// Routes of the pushes clients get.
	pushOnRoute      = "onP"
	broadcastOnRoute = "onB"

	// benchGroup is the cluster group of scenario 8.
	benchGroup = "g"
	// seqLen is the size of the sequence number leading push payloads.
	seqLen = 8
)

// benchComponent is the backend's "bench" component: binds, group joins, a
// push to another frontend's user and a group broadcast.
type benchComponent struct{ app *nopal.App }

// Bind binds the caller's session (on its frontend) to the uid in the
// payload.
func (b *benchComponent) Bind(ctx context.Context, in []byte) ([]byte, error) {
	s := session.FromContext(ctx)
	if s == nil {
		return nil, errors.New("bench: no session")
	}
	return nil, s.Bind(ctx, string(in))
}

// Join binds the caller's session to the uid in the payload and adds the
// uid to the cluster group benchGroup.
func (b *benchComponent) Join(ctx context.Context, in []byte) ([]byte, error) {
	if _, err := b.Bind(ctx, in); err != nil {
		return nil, err
	}
	return nil, b.app.Groups().Add(ctx, benchGroup, string(in))
}

// Push pushes its payload (a sequence number, then a uid) on route onP to
// that uid wherever it is connected. It answers with the uids no frontend
// held, comma-separated: empty when the push was delivered.
func (b *benchComponent) Push(ctx context.Context, in []byte) ([]byte, error) {
	if len(in) <= seqLen {
		return nil, errors.New("bench: push payload: sequence and uid")
	}
	failed, err := b.app.SendPushToUsers(ctx, pushOnRoute, in, []string{string(in[seqLen:])}, "")
	if err != nil {
		return nil, err
	}
	return []byte(strings.Join(failed, ",")), nil
}

// Broadcast pushes its payload (a sequence number) on route onB to every
// member of benchGroup and answers with the number of members it could not
// reach, in decimal.
func (b *benchComponent) Broadcast(ctx context.Context, in []byte) ([]byte, error) {
	failed, err := b.app.Groups().Broadcast(ctx, benchGroup, broadcastOnRoute, in)
	if err != nil {
		return nil, err
	}
	return strconv.AppendInt(nil, int64(len(failed)), 10), nil
}

// clusterServerConfig configures the apps of one cluster-server process.
type clusterServerConfig struct {
	// Roles are the apps of the process, started in order: "echo" (the
	// backend) and "front" (a frontend; may repeat).
	Roles []string
	// NATS is the URL of the bus; empty starts an embedded NATS server in
	// the first app, which the others share in-process.
	NATS string
	// NATSListen opens a client port on the embedded server (empty: none).
	NATSListen string
	Addr       string // of every frontend's TCP acceptor
	Traffic    bool
	Compress   bool
	Heartbeat  time.Duration
	Logger     *slog.Logger
}

// clusterProcess is the apps of one cluster-server process.
type clusterProcess struct {
	apps    []*nopal.App
	fronts  []string // frontend addresses, in the order of Roles
	natsURL string   // the embedded server's client URL, if it listens
}

// startClusterApps builds and starts the apps of cfg.Roles in order.
func startClusterApps(ctx context.Context, cfg clusterServerConfig) (*clusterProcess, error) {
	p := &clusterProcess{}
	for i, role := range cfg.Roles {
		bus := stream.Config{URL: cfg.NATS, Logger: cfg.Logger}
		if cfg.NATS == "" && i == 0 {
			bus.Embedded = stream.Embedded{Listen: cfg.NATSListen}
		}
		acfg := nopal.Config{
			Heartbeat:       cfg.Heartbeat,
			Compress:        cfg.Compress,
			ShutdownTimeout: 5 * time.Second,
			Logger:          cfg.Logger,
			Cluster:         &nopal.ClusterConfig{Bus: bus, Traffic: cfg.Traffic},
		}
		var tcp *frontend.TCPAcceptor
		switch role {
		case backType:
			acfg.ServerType = backType
		case frontType:
			acfg.ServerType = frontType
		default:
			p.shutdown(ctx)
			return nil, fmt.Errorf("unknown role %q (echo, front; or nats alone)", role)
		}
		app, err := nopal.New(acfg)
		if err != nil {
			p.shutdown(ctx)
			return nil, err
		}
		if role == backType {
			err = errors.Join(
				app.Register(&echoComponent{}, backend.WithName("echo")),
				app.Register(&benchComponent{app: app}, backend.WithName("bench")))
			if err != nil {
				p.shutdown(ctx)
				return nil, err
			}
		} else {
			tcp = frontend.NewTCPAcceptor(cfg.Addr)
			app.AddAcceptor(tcp)
		}
		if cfg.NATS == "" && i > 0 {
			app.UseEmbedded(p.apps[0].Bus().Server)
		}
		if err := app.Start(ctx); err != nil {
			p.shutdown(ctx)
			return nil, fmt.Errorf("%s: %w", role, err)
		}
		p.apps = append(p.apps, app)
		if i == 0 {
			p.natsURL = app.Bus().ClientURL()
		}
		if role == backType {
			err := app.Groups().Create(ctx, benchGroup)
			if err != nil && !errors.Is(err, groups.ErrGroupAlreadyExists) {
				p.shutdown(ctx)
				return nil, err
			}
		}
		if tcp != nil {
			p.fronts = append(p.fronts, tcp.Addr().String())
		}
	}
	return p, nil
}

// shutdown stops the apps in reverse order (the first one, which may own
// the embedded server, last).
func (p *clusterProcess) shutdown(ctx context.Context) error {
	var errs []error
	for i := len(p.apps) - 1; i >= 0; i-- {
		errs = append(errs, p.apps[i].Shutdown(ctx))
	}
	p.apps = nil
	return errors.Join(errs...)
}

// startCPUProfile starts a CPU profile into path ("" does nothing) and
// returns what stops it.
func startCPUProfile(path string) (func() error, error) {
	if path == "" {
		return func() error { return nil }, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, err
	}
	return func() error {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			return err
		}
		return writeAllocsProfile(path + ".allocs")
	}, nil
}

// writeAllocsProfile writes the process's allocation profile (every
// allocation since it started, sampled as the runtime always does) to path:
// `go tool pprof -sample_index=alloc_space` reads what a run allocated.
func writeAllocsProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func cmdClusterServer(args []string, stdin io.Reader, stdout, stderr io.Writer) (err error) {
	fs := flag.NewFlagSet("cluster-server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	mode := fs.String("mode", "embedded", `"embedded": the process starts an embedded NATS server that all its apps share in-process; "external": the apps connect to -nats over TCP`)
	roles := fs.String("role", "", `apps of this process, started in order: "echo" (backend), "front" (frontend; may repeat), or "nats" alone (only the NATS server, embedded mode; default "echo,front")`)
	natsURL := fs.String("nats", "", "NATS URL (external mode)")
	natsListen := fs.String("nats-listen", "", `embedded mode: client address of the NATS server (default: none, or "127.0.0.1:0" for -role nats)`)
	addr := fs.String("addr", "127.0.0.1:0", "TCP address of every frontend")
	traffic := fs.Bool("traffic", true, "record traffic (ClusterConfig.Traffic)")
	compress := fs.Bool("compress", false, "frontends zlib-compress payloads above the threshold (128 bytes)")
	heartbeat := fs.Duration("heartbeat", 60*time.Second, "heartbeat interval with clients")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile to this file until the server exits")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("cluster-server: unexpected arguments %q", fs.Args())
	}
	switch *mode {
	case "embedded":
		if *natsURL != "" {
			return errors.New("cluster-server: -nats goes with -mode external")
		}
	case "external":
		if *natsURL == "" {
			return errors.New("cluster-server: -mode external needs -nats")
		}
		if *natsListen != "" {
			return errors.New("cluster-server: -nats-listen goes with -mode embedded")
		}
	default:
		return fmt.Errorf("cluster-server: -mode %q: embedded or external", *mode)
	}
	if *roles == "" {
		*roles = backType + "," + frontType
	}
	roleList := splitList(*roles)
	natsOnly := len(roleList) == 1 && roleList[0] == "nats"
	if natsOnly && *mode != "embedded" {
		return errors.New("cluster-server: -role nats runs the NATS server: embedded mode only")
	}
	if len(roleList) == 0 {
		return errors.New("cluster-server: no -role")
	}

	stopProfile, err := startCPUProfile(*cpuprofile)
	if err != nil {
		return err
	}
	defer func() {
		if perr := stopProfile(); err == nil {
			err = perr
		}
	}()
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, cancel := untilStopped(stdin)
	defer cancel()

	if natsOnly {
		listen := *natsListen
		if listen == "" {
			listen = "127.0.0.1:0"
		}
		bus, err := stream.Connect(context.Background(), stream.Config{
			ServerID: "nats", Embedded: stream.Embedded{Listen: listen}, Logger: log,
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "NATS %s\nREADY\n", bus.ClientURL())
		<-ctx.Done()
		bus.Close()
		return nil
	}

	p, err := startClusterApps(context.Background(), clusterServerConfig{
		Roles: roleList, NATS: *natsURL, NATSListen: *natsListen, Addr: *addr,
		Traffic: *traffic, Compress: *compress, Heartbeat: *heartbeat, Logger: log,
	})
	if err != nil {
		return err
	}
	for _, a := range p.fronts {
		fmt.Fprintf(stdout, "ADDR %s\n", a)
	}
	if p.natsURL != "" {
		fmt.Fprintf(stdout, "NATS %s\n", p.natsURL)
	}
	fmt.Fprintln(stdout, "READY")
	<-ctx.Done()
	sctx, scancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer scancel()
	if err := p.shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// splitList splits a comma-separated list, dropping empty items.
func splitList(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
