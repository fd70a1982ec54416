// Command pitayatest is Pitaya's end-to-end test server ported to Nopal:
// the server that Pitaya's e2e suite (e2e/e2e_test.go in Pitaya's
// repository) starts as processes and drives with Pitaya's Go client. It
// takes the same command line, serves the same routes with the same
// answers, and writes "all modules started!" to stderr once it is ready,
// so the suite runs against Nopal unchanged (see README.md).
//
//	pitayatest -type connector -frontend=true -port 32222 -sdprefix test1/
//	pitayatest -type game -frontend=false -sdprefix test1/
//
// Flags, as Pitaya's: -type (server type, default connector), -frontend
// (serve clients over TCP on -port, default true), -port (default 32222),
// -serializer (json or protobuf), -sdprefix (isolates one test's servers
// from another's on the same NATS: it becomes the bus prefix), -debug.
// -grpc and -grpcport are accepted and ignored: the cluster is NATS alone.
//
// Nopal's additions: -nats (the NATS server, with JetStream; default
// $PITAYA_CLUSTER_RPC_CLIENT_NATS_CONNECT, else nats://localhost:4222) and
// -pitaya-errors (default true: error messages in Pitaya's words where
// Nopal's differ; false shows Nopal's own).
//
// Environment, as Pitaya's: PITAYA_METRICS_PROMETHEUS_PORT serves
// Prometheus's /metrics on that port (namespace "pitaya");
// PITAYA_CLUSTER_RPC_SERVER_LOOPBACKENABLED=true lets a server make an RPC
// to its own type (answered by itself), which is refused otherwise.
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
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nopal-dev/nopal"
	"github.com/nopal-dev/nopal/backend"
	"github.com/nopal-dev/nopal/codec"
	"github.com/nopal-dev/nopal/frontend"
	"github.com/nopal-dev/nopal/groups"
	"github.com/nopal-dev/nopal/metrics"
	"github.com/nopal-dev/nopal/stream"
)

// ReadyLine is what the server writes to stderr once it serves: Pitaya's
// test helpers wait for it.
const ReadyLine = "all modules started!"

// DefaultNATS is where the server finds NATS when neither -nats nor
// PITAYA_CLUSTER_RPC_CLIENT_NATS_CONNECT says (Pitaya's default).
const DefaultNATS = "nats://localhost:4222"

// options is the command line.
type options struct {
	port         int
	svType       string
	isFrontend   bool
	serializer   string
	sdPrefix     string
	debug        bool
	natsURL      string
	pitayaErrors bool
	metricsPort  int  // PITAYA_METRICS_PROMETHEUS_PORT; 0: no metrics
	loopback     bool // PITAYA_CLUSTER_RPC_SERVER_LOOPBACKENABLED
}

func parseOptions(args []string, getenv func(string) string, errOut io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("pitayatest", flag.ContinueOnError)
	fs.SetOutput(errOut)
	fs.IntVar(&o.port, "port", 32222, "the port to listen on (a frontend's TCP clients)")
	fs.StringVar(&o.svType, "type", "connector", "the server type")
	fs.BoolVar(&o.isFrontend, "frontend", true, "whether the server is a frontend (serves clients)")
	fs.StringVar(&o.serializer, "serializer", "json", "json or protobuf")
	fs.StringVar(&o.sdPrefix, "sdprefix", "pitaya/", "prefix isolating a cluster on a shared NATS (the bus prefix)")
	fs.BoolVar(&o.debug, "debug", false, "turn on debug logging")
	fs.Bool("grpc", false, "accepted for Pitaya's command line and ignored: the cluster runs on NATS")
	fs.Int("grpcport", 3434, "accepted for Pitaya's command line and ignored")
	natsDefault := getenv("PITAYA_CLUSTER_RPC_CLIENT_NATS_CONNECT")
	if natsDefault == "" {
		natsDefault = DefaultNATS
	}
	fs.StringVar(&o.natsURL, "nats", natsDefault, "NATS server(s) with JetStream, comma-separated")
	fs.BoolVar(&o.pitayaErrors, "pitaya-errors", true, "error messages in Pitaya's words where Nopal's differ")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if o.serializer != "json" && o.serializer != "protobuf" {
		return o, fmt.Errorf("-serializer %q: json or protobuf", o.serializer)
	}
	if v := getenv("PITAYA_METRICS_PROMETHEUS_PORT"); v != "" {
		p, err := strconv.Atoi(v)
		if err != nil || p < 0 || p > 65535 {
			return o, fmt.Errorf("PITAYA_METRICS_PROMETHEUS_PORT %q: a port number", v)
		}
		o.metricsPort = p
	}
	if v := getenv("PITAYA_CLUSTER_RPC_SERVER_LOOPBACKENABLED"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return o, fmt.Errorf("PITAYA_CLUSTER_RPC_SERVER_LOOPBACKENABLED %q: true or false", v)
		}
		o.loopback = b
	}
	return o, nil
}

// busPrefix turns a Pitaya service-discovery prefix ("pitaya/",
// "<uuid>/") into a bus prefix, which must be one subject token usable in
// stream and bucket names: the trailing slashes go, and every character
// other than a letter, a digit, '-' or '_' becomes '_'.
func busPrefix(sdPrefix string) string {
	s := strings.TrimRight(sdPrefix, "/")
	if s == "" {
		return "pitaya"
	}
	var b strings.Builder
	for _, r := range s {
		if r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

func main() {
	o, err := parseOptions(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pitayatest:", err)
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "pitayatest:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	// Pitaya's test helper reads stderr only until the ready line, then
	// never again: the log goes through a writer that drops lines rather
	// than block the server on a full pipe. Until ready only warnings are
	// logged, as the helper reads one line per 100 ms.
	out := newNonBlockingWriter(os.Stderr, 1024)
	defer out.Close()
	level := new(slog.LevelVar)
	level.Set(slog.LevelWarn)
	log := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	app, err := newApp(o, log)
	if err != nil {
		return err
	}
	startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = app.Start(startCtx)
	cancel()
	if err != nil {
		return err
	}
	// Pitaya's TestSvc creates the group g1 as it starts; in a cluster the
	// group is shared, so the second server finds it there.
	if err := app.Groups().Create(ctx, groupName); err != nil && !errors.Is(err, groups.ErrGroupAlreadyExists) {
		_ = app.Shutdown(context.Background())
		return fmt.Errorf("create group %s: %w", groupName, err)
	}
	if o.debug {
		level.Set(slog.LevelDebug)
	} else {
		level.Set(slog.LevelInfo)
	}
	fmt.Fprintln(out, ReadyLine)
	log.Info("ready", "type", o.svType, "id", app.ServerID(), "frontend", o.isFrontend,
		"addr", listenAddr(app), "prefix", busPrefix(o.sdPrefix))

	<-ctx.Done()
	stop()
	return app.Shutdown(context.Background())
}

// newApp builds the server of o: the Pitaya test server's components and,
// for a frontend, a TCP acceptor on o.port.
func newApp(o options, log *slog.Logger) (*nopal.App, error) {
	var ser codec.Serializer = codec.JSON{}
	if o.serializer == "protobuf" {
		ser = codec.Protobuf{}
	}
	cfg := nopal.Config{
		ServerType: o.svType,
		Serializer: ser,
		// Pitaya ends a session with its connection.
		Resume: frontend.ResumeConfig{Off: true},
		Cluster: &nopal.ClusterConfig{
			Bus: stream.Config{URL: o.natsURL, Prefix: busPrefix(o.sdPrefix), Logger: log},
			// Pitaya's rule: one session per uid per frontend type.
			UniqueSessionPerType: true,
		},
		Logger: log,
	}
	if o.metricsPort > 0 {
		cfg.Metrics = &nopal.MetricsConfig{
			Set:  metrics.Config{Namespace: "pitaya"},
			Addr: fmt.Sprintf(":%d", o.metricsPort),
		}
	}
	app, err := nopal.New(cfg)
	if err != nil {
		return nil, err
	}
	if err := register(app, o); err != nil {
		return nil, err
	}
	if o.isFrontend {
		var acc frontend.Acceptor = frontend.NewTCPAcceptor(fmt.Sprintf(":%d", o.port))
		if o.pitayaErrors {
			acc = frontend.WithWrappers(acc, pitayaErrorWrapper{ser: ser})
		}
		app.AddAcceptor(acc)
	}
	return app, nil
}

// register adds Pitaya's two components under their names, every method
// name lower-cased ("testsvc.testrequestreturnsptr"), as Pitaya's server
// does, and the pipeline step that refuses empty replies.
func register(app *nopal.App, o options) error {
	svc := &TestSvc{app: app, loopback: o.loopback, pitayaErrors: o.pitayaErrors}
	if err := app.Register(svc, backend.WithName("testsvc"), backend.WithNameFunc(strings.ToLower)); err != nil {
		return err
	}
	if err := app.RegisterRemote(&TestRemoteSvc{}, backend.WithName("testremotesvc"), backend.WithNameFunc(strings.ToLower)); err != nil {
		return err
	}
	app.After(refuseNilReply)
	return nil
}

func listenAddr(app *nopal.App) string {
	if fe := app.Frontend(); fe != nil {
		for _, acc := range fe.Acceptors() {
			return acc.Addr().String()
		}
	}
	return ""
}
