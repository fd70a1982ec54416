package nopal

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/nopal-dev/nopal/backend"
	"github.com/nopal-dev/nopal/cluster"
	"github.com/nopal-dev/nopal/codec"
	"github.com/nopal-dev/nopal/frontend"
	"github.com/nopal-dev/nopal/groups"
	"github.com/nopal-dev/nopal/metrics"
	"github.com/nopal-dev/nopal/session"
)

// Config configures an App. Zero fields take the defaults.
type Config struct {
	// ServerType names this server's type, the first part of three-part
	// routes (required).
	ServerType string
	// ServerID names this server in the cluster (default: the type and a
	// random suffix). Letters, digits, '-' and '_' only.
	ServerID string
	// Serializer encodes payloads for clients (default JSON).
	Serializer codec.Serializer
	// Heartbeat interval with clients (default 30 s).
	Heartbeat time.Duration
	// HandshakeTimeout closes sockets that do not handshake (default 10 s).
	HandshakeTimeout time.Duration
	// Compress turns on zlib for payloads of at least CompressThreshold
	// bytes (default 128) when that makes them shorter. Off by default:
	// most game payloads are small.
	Compress          bool
	CompressThreshold int
	// Dictionary gives routes 2-byte codes, sent to clients at handshake.
	Dictionary map[string]uint16
	// RouteCompression numbers every handler route into the dictionary.
	RouteCompression bool
	// MaxConnections bounds the client connections of the frontend (0: no
	// bound); past it a client's handshake is refused with code 503.
	MaxConnections int
	// SendQueueSize, SendQueueBytes, SendBudget and WriteTimeout bound what
	// slow clients may hold (frontend.Config: 512 packets and 1 MiB per
	// client, no frontend-wide budget, 10 s per write).
	SendQueueSize  int
	SendQueueBytes int
	SendBudget     int64
	WriteTimeout   time.Duration
	// ParkIdle: a connection silent this long gives its reader goroutine
	// back until it sends again (frontend.Config; default 2 s, <0: never).
	ParkIdle time.Duration
	// Resume configures session resume: a client whose connection drops
	// may come back within Resume.Grace (default 30 s), to any frontend of
	// the cluster, and take its session over with the pushes it missed.
	// On by default; Resume.Off gives Pitaya's behaviour (the session
	// ends with its connection).
	Resume frontend.ResumeConfig
	// ShutdownTimeout bounds the drain in Run (default 10 s).
	ShutdownTimeout time.Duration
	// Cluster, when set, joins the cluster on the bus; nil runs standalone.
	Cluster *ClusterConfig
	// Metrics turns on metrics: Prometheus, Statsd, your own reporters.
	Metrics *MetricsConfig
	// RateLimit limits the requests of every client connection of the
	// app's acceptors (see frontend.RateLimiter); dropped requests are
	// counted in the metrics.
	RateLimit *RateLimitConfig
	// TracerProvider turns on OpenTelemetry tracing: a span per client
	// request on the frontend, per forwarded call and RPC on both ends, with
	// the W3C trace context in NATS headers. nil (the default) is off and
	// costs nothing. metrics.TracerProviderFromEnv builds one from the
	// standard OTEL_* variables (OTLP, e.g. to Jaeger).
	TracerProvider trace.TracerProvider
	// ValidateRequests checks the argument of every handler and remote
	// against the `validate:"…"` tags of its struct before it runs
	// (Pitaya's struct-validation pipeline, see backend.Validator): a
	// request that fails is answered PIT-400 naming the failing fields.
	// Off by default.
	ValidateRequests bool
	// Logger (default slog.Default()).
	Logger *slog.Logger
}

// App is one Nopal server: a frontend when it has acceptors, a backend for
// its handler and remote types, or both.
type App struct {
	cfg        Config
	log        *slog.Logger
	registry   *backend.Registry // client handlers
	remotes    *backend.Registry // server-to-server remotes
	pool       *session.Pool
	validators []frontend.HandshakeValidator
	acceptors  []frontend.Acceptor
	routers    atomic.Pointer[map[string]Router] // copied on write: read on every forwarded request
	tracer     *metrics.Tracer
	obs        *observer
	presence   presenceState // presence.go
	timers     appTimers     // timers.go: stopped first in Shutdown
	limiter    *frontend.RateLimiter
	modules    moduleList
	stopCh     chan struct{}
	stopOnce   sync.Once

	mu      sync.Mutex
	groups  groups.Service
	fe      *frontend.Frontend
	clp     atomic.Pointer[cluster.Runtime] // the cluster runtime, read lock-free on the request path
	cancel  context.CancelFunc
	started bool
	stopped bool

	shutDone chan struct{} // closed when the first Shutdown has finished
}

// New returns an App; register handlers and acceptors, then Start or Run it.
func New(cfg Config) (*App, error) {
	if cfg.ServerType == "" {
		return nil, errors.New("nopal: Config.ServerType is required")
	}
	if !validID(cfg.ServerType) {
		return nil, fmt.Errorf("nopal: ServerType %q: letters, digits, '-' and '_' only", cfg.ServerType)
	}
	if cfg.ServerID == "" {
		var b [5]byte
		_, _ = rand.Read(b[:])
		cfg.ServerID = cfg.ServerType + "-" + hex.EncodeToString(b[:])
	}
	if !validID(cfg.ServerID) {
		return nil, fmt.Errorf("nopal: ServerID %q: letters, digits, '-' and '_' only", cfg.ServerID)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Serializer == nil {
		cfg.Serializer = codec.JSON{}
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 10 * time.Second
	}
	if cfg.Cluster != nil {
		if err := cfg.Cluster.Validate(); err != nil {
			return nil, err
		}
	}
	log := cfg.Logger.With("server_type", cfg.ServerType, "server_id", cfg.ServerID)
	a := &App{
		cfg:      cfg,
		log:      log,
		registry: backend.NewRegistry(cfg.ServerType, cfg.Serializer, log),
		remotes:  backend.NewRegistry(cfg.ServerType, codec.Auto{}, log),
		pool:     session.NewPool(log),
		stopCh:   make(chan struct{}),
		shutDone: make(chan struct{}),
		tracer:   metrics.NewTracer(cfg.TracerProvider),
	}
	if cfg.ValidateRequests { // ahead of the app's own Before steps
		v := backend.NewValidator()
		a.registry.Before(v.Validate)
		a.remotes.Before(v.Validate)
	}
	a.groups = groups.NewMemory(a)
	if err := a.registerSys(); err != nil { // the built-in routes: docs.go
		return nil, err
	}
	var err error
	if a.obs, err = newObserver(a); err != nil {
		return nil, err
	}
	if rl := cfg.RateLimit; rl != nil {
		if a.limiter, err = frontend.NewRateLimiter(rl.Limit, rl.Interval, rl.Reply); err != nil {
			return nil, fmt.Errorf("nopal: rate limit: %w", err)
		}
		if a.obs != nil {
			a.limiter.OnDrop = a.obs.set.IncRateLimited
		}
	}
	a.initOps() // presence and readiness: health.go
	return a, nil
}

// RateLimitConfig limits each client connection to Limit requests per
// Interval; with Reply, dropped requests are answered PIT-429.
type RateLimitConfig struct {
	Limit    int
	Interval time.Duration
	Reply    bool
}

func validID(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}

// UseEmbedded makes a clustered app connect in-process to an embedded NATS
// server another app of this process started (call before Start).
func (a *App) UseEmbedded(ns *server.Server) {
	if a.cfg.Cluster != nil {
		a.cfg.Cluster.Bus.InProcess = ns
	}
}

// Logger is the app's logger.
func (a *App) Logger() *slog.Logger { return a.log }

// ServerID is this server's id.
func (a *App) ServerID() string { return a.cfg.ServerID }

// ServerType is this server's type.
func (a *App) ServerType() string { return a.cfg.ServerType }

// Register adds a component's client handlers (see package backend).
func (a *App) Register(component any, opts ...backend.Option) error {
	return a.registry.Register(component, opts...)
}

// RegisterRemote adds a component whose methods other servers call with
// RPC and RPCTo (route "svtype.component.method"). Arguments and results
// are protobuf for proto.Message types and JSON otherwise.
func (a *App) RegisterRemote(component any, opts ...backend.Option) error {
	return a.remotes.Register(component, opts...)
}

// Before adds a pipeline step run before every handler.
func (a *App) Before(f backend.BeforeHandler) { a.registry.Before(f) }

// After adds a pipeline step run after every handler.
func (a *App) After(f backend.AfterHandler) { a.registry.After(f) }

// AddAcceptor adds a client acceptor (TCP, WebSocket or your own); a
// server with acceptors is a frontend.
func (a *App) AddAcceptor(acc frontend.Acceptor) {
	if a.limiter != nil {
		acc = a.limiter.Wrap(acc)
	}
	a.acceptors = append(a.acceptors, acc)
}

// AddHandshakeValidator adds a check every client handshake must pass.
func (a *App) AddHandshakeValidator(v frontend.HandshakeValidator) {
	a.validators = append(a.validators, v)
}

// OnSessionBind adds a hook that runs before every bind and may veto it.
func (a *App) OnSessionBind(h session.BindHook) { a.pool.OnSessionBind(h) }

// OnAfterSessionBind adds a hook that runs after every bind.
func (a *App) OnAfterSessionBind(f func(ctx context.Context, s *session.Session)) {
	a.pool.OnAfterSessionBind(f)
}

// OnSessionClose adds a hook that runs when any session ends. A session
// whose connection dropped ends when its resume grace passes without the
// client coming back (see Config.Resume).
func (a *App) OnSessionClose(f func(s *session.Session)) { a.pool.OnSessionClose(f) }

// OnSessionSuspend adds a hook that runs when a session's connection drops
// and the session waits for its client to resume it.
func (a *App) OnSessionSuspend(f func(s *session.Session)) { a.pool.OnSessionSuspend(f) }

// OnSessionResume adds a hook that runs when a client resumes its session
// on this frontend.
func (a *App) OnSessionResume(f func(ctx context.Context, s *session.Session)) {
	a.pool.OnSessionResume(f)
}

// Sessions is the pool of this server's client sessions.
func (a *App) Sessions() *session.Pool { return a.pool }

// Groups is the group service: in memory when standalone, shared through
// the bus in a cluster (available once started).
func (a *App) Groups() groups.Service {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.groups
}

// Routes lists the handler routes.
func (a *App) Routes() []string { return a.registry.Routes() }

// Frontend is the running frontend (nil before Start or without acceptors).
func (a *App) Frontend() *frontend.Frontend {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.fe
}

// IsFrontend reports whether the server holds client connections.
func (a *App) IsFrontend() bool { return len(a.acceptors) > 0 }

// PushToUsers sends a push to users and returns those it could not reach:
// on this server when standalone, on every frontend of the cluster
// otherwise (see SendPushToUsers).
func (a *App) PushToUsers(ctx context.Context, route string, v any, uids []string) ([]string, error) {
	return a.SendPushToUsers(ctx, route, v, uids, "")
}

// pushLocal pushes to the users of this server's frontend.
func (a *App) pushLocal(ctx context.Context, route string, v any, uids []string) ([]string, error) {
	fe := a.Frontend()
	if fe == nil {
		return uids, errors.New("nopal: not started")
	}
	return fe.PushToUsers(ctx, route, v, uids)
}

// resumeCluster is the cluster's side of session resume for the frontend
// (nil when standalone or resume is off).
func (a *App) resumeCluster() frontend.ResumeCluster {
	if c := a.cluster(); c != nil {
		return c.Resumer()
	}
	return nil
}

// cluster is the cluster runtime (nil when standalone or not started).
func (a *App) cluster() *cluster.Runtime { return a.clp.Load() }

// Start joins the cluster (if configured), opens the acceptors and serves
// until Shutdown.
//
// ctx bounds the start only: the app lives until Shutdown, whatever
// becomes of ctx (its values pass on to the handlers' contexts).
func (a *App) Start(ctx context.Context) error {
	a.mu.Lock()
	if a.started {
		a.mu.Unlock()
		return errors.New("nopal: already started")
	}
	a.started = true
	a.mu.Unlock()

	// The app lives until Shutdown, whatever becomes of ctx (a start-up
	// timeout must not quietly break a running server); ctx's values pass on.
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a.cancel = cancel
	if err := a.initModules(ctx); err != nil {
		cancel()
		return err
	}
	if a.cfg.Cluster != nil {
		cl, err := a.startCluster(ctx)
		if err != nil {
			_ = a.shutdownModules(ctx)
			cancel()
			return err
		}
		a.mu.Lock()
		a.groups = cl.Groups()
		a.mu.Unlock()
		a.clp.Store(cl)
	} else if m, ok := a.groups.(*groups.Memory); ok {
		go func() { _ = m.Start(ctx) }()
	}
	if a.IsFrontend() {
		if err := a.startFrontend(ctx); err != nil {
			a.stopCluster(ctx)
			_ = a.shutdownModules(ctx)
			cancel()
			return err
		}
	}
	if err := a.obs.start(ctx, a); err != nil {
		_ = a.Shutdown(ctx)
		return err
	}
	a.afterInitModules(ctx)
	if cl := a.cluster(); cl != nil {
		if err := cl.StartWorker(ctx); err != nil {
			_ = a.Shutdown(ctx)
			return fmt.Errorf("nopal: job worker: %w", err)
		}
	}
	return nil
}

func (a *App) onHandled() func(string, codec.MessageType, time.Duration, error) {
	if a.obs == nil {
		return nil
	}
	return func(route string, _ codec.MessageType, took time.Duration, err error) {
		a.obs.handled(route, took, err)
	}
}

func (a *App) startFrontend(ctx context.Context) error {
	dict, err := codec.ServerDictionary(a.cfg.ServerType, a.registry.Routes(), a.cfg.Dictionary, a.cfg.RouteCompression)
	if err != nil {
		return fmt.Errorf("nopal: dictionary: %w", err)
	}
	fe, err := frontend.New(frontend.Config{
		Handler:             frontend.HandlerFunc(a.handle),
		Pool:                a.pool,
		Serializer:          a.cfg.Serializer,
		Dictionary:          dict,
		Compress:            a.cfg.Compress,
		CompressThreshold:   a.cfg.CompressThreshold,
		Heartbeat:           a.cfg.Heartbeat,
		HandshakeTimeout:    a.cfg.HandshakeTimeout,
		SendQueueSize:       a.cfg.SendQueueSize,
		SendQueueBytes:      a.cfg.SendQueueBytes,
		SendBudget:          a.cfg.SendBudget,
		ParkIdle:            a.cfg.ParkIdle,
		MaxConnections:      a.cfg.MaxConnections,
		WriteTimeout:        a.cfg.WriteTimeout,
		HandshakeValidators: a.validators,
		Logger:              a.log,
		OnHandled:           a.onHandled(),
		ID:                  a.cfg.ServerID,
		Resume:              a.cfg.Resume,
		Cluster:             a.resumeCluster(),
	})
	if err != nil {
		return err
	}
	for _, acc := range a.acceptors {
		fe.AddAcceptor(acc)
	}
	if err := fe.Start(ctx); err != nil {
		return err
	}
	a.mu.Lock()
	a.fe = fe
	a.mu.Unlock()
	if cl := a.cluster(); cl != nil {
		cl.SetFrontend(fe)
	}
	for _, acc := range fe.Acceptors() {
		a.log.Info("listening", "addr", acc.Addr().String())
	}
	return nil
}

// handle serves a client message: here when the route names this server,
// else forwarded over the bus to a server of the route's type.
func (a *App) handle(ctx context.Context, msg *codec.Message) (out []byte, err error) {
	if a.tracer != nil {
		var span trace.Span
		ctx, span = a.tracer.Start(ctx, "nopal.handle", msg.Route, trace.SpanKindServer,
			attribute.String("nopal.type", msg.Type.String()), attribute.String("nopal.request_id", strconv.FormatUint(msg.ID, 10)))
		defer func() { metrics.Finish(span, err) }()
	}
	// The route is parsed once, here, and the Route passed on.
	r, perr := codec.ParseRoute(msg.Route)
	cl := a.cluster()
	switch {
	case perr != nil:
		return nil, codec.NewError(codec.CodeNotFound, fmt.Sprintf("nopal/handler: %s not found", msg.Route), nil)
	case r.ServerType == "" || r.ServerType == a.cfg.ServerType || cl == nil:
		out, _, err := a.registry.HandleRoute(ctx, r, msg.Data)
		return out, err
	}
	return cl.Forward(ctx, r, msg)
}

// Shutdown drains the server: acceptors stop, requests in flight finish,
// clients are kicked, then the server leaves the cluster. It returns
// within Config.ShutdownTimeout, or sooner when ctx ends, whatever the
// bus does: every step shares that one deadline, the last part of it kept
// for leaving the cluster.
func (a *App) Shutdown(ctx context.Context) error {
	a.mu.Lock()
	fe, started, stopped := a.fe, a.started, a.stopped
	a.stopped = a.stopped || started
	a.mu.Unlock()
	if !started {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, a.cfg.ShutdownTimeout)
	defer cancel()
	if stopped {
		// Another Shutdown is draining: wait for it, so a caller that
		// returns from Shutdown knows the app has stopped (that drain's
		// own error went to its caller).
		select {
		case <-a.shutDone:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("nopal: waiting for shutdown: %w", ctx.Err())
		}
	}
	defer close(a.shutDone)
	// Draining clients may take all the time they are given: leaving the
	// cluster (the discovery key, calls in flight, the last bus writes)
	// keeps the last quarter of it, at most 3 s.
	dctx := ctx
	if deadline, ok := ctx.Deadline(); ok {
		var dcancel context.CancelFunc
		dctx, dcancel = context.WithDeadline(ctx, deadline.Add(-min(time.Until(deadline)/4, 3*time.Second)))
		defer dcancel()
	}
	a.stopTimers(dctx) // no timer fires while the app drains: timers.go
	a.beforeShutdownModules(dctx)
	var err error
	if fe != nil {
		err = fe.Shutdown(dctx)
	}
	a.stopCluster(ctx)
	err = errors.Join(err, a.shutdownModules(ctx))
	a.cancel()
	a.obs.close()
	return err
}

func (a *App) stopCluster(ctx context.Context) {
	if cl := a.cluster(); cl != nil {
		cl.Stop(ctx)
	}
}

// Run starts the app, serves until ctx ends or the process gets SIGINT or
// SIGTERM, then drains within Config.ShutdownTimeout. It returns nil after
// a clean stop. A second SIGINT or SIGTERM during the drain makes it
// return at once, with an error: the caller is expected to exit.
func (a *App) Run(ctx context.Context) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Handlers must not see the signal: in-flight requests finish first.
	if err := a.Start(context.WithoutCancel(ctx)); err != nil {
		return err
	}
	a.log.Info("ready")
	select {
	case <-ctx.Done():
	case <-a.stopCh:
	}
	stop()
	a.log.Info("shutting down: draining clients", "timeout", a.cfg.ShutdownTimeout)
	again := make(chan os.Signal, 1)
	signal.Notify(again, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(again)
	done := make(chan error, 1)
	go func() { done <- a.Shutdown(context.Background()) }()
	select {
	case err := <-done:
		return err
	case sig := <-again:
		return fmt.Errorf("nopal: %v again: stopped without finishing the drain", sig)
	}
}
