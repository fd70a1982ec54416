package nopal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/nopal-dev/nopal/backend"
	"github.com/nopal-dev/nopal/codec"
	"github.com/nopal-dev/nopal/frontend"
	"github.com/nopal-dev/nopal/groups"
	"github.com/nopal-dev/nopal/session"
)

// Config configures an App. Zero fields take the defaults.
type Config struct {
	// ServerType names this server's type, the first part of three-part
	// routes (required).
	ServerType string
	// Serializer encodes payloads (default JSON).
	Serializer codec.Serializer
	// Heartbeat interval (default 30 s).
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
	// SendQueueSize and WriteTimeout bound what a slow client may hold
	// (defaults 512 packets, 10 s).
	SendQueueSize int
	WriteTimeout  time.Duration
	// ShutdownTimeout bounds the drain in Run (default 10 s).
	ShutdownTimeout time.Duration
	// Logger (default slog.Default()).
	Logger *slog.Logger
}

// App is one Nopal server.
type App struct {
	cfg        Config
	log        *slog.Logger
	registry   *backend.Registry
	pool       *session.Pool
	groups     *groups.Memory
	validators []frontend.HandshakeValidator
	acceptors  []frontend.Acceptor

	mu     sync.Mutex
	fe     *frontend.Frontend
	cancel context.CancelFunc
}

// New returns an App; register handlers and acceptors, then Start or Run it.
func New(cfg Config) (*App, error) {
	if cfg.ServerType == "" {
		return nil, errors.New("nopal: Config.ServerType is required")
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
	log := cfg.Logger.With("server_type", cfg.ServerType)
	a := &App{
		cfg:      cfg,
		log:      log,
		registry: backend.NewRegistry(cfg.ServerType, cfg.Serializer, log),
		pool:     session.NewPool(log),
	}
	a.groups = groups.NewMemory(a)
	return a, nil
}

// Register adds a component's handlers (see package backend).
func (a *App) Register(component any, opts ...backend.Option) error {
	return a.registry.Register(component, opts...)
}

// Before adds a pipeline step run before every handler.
func (a *App) Before(f backend.BeforeHandler) { a.registry.Before(f) }

// After adds a pipeline step run after every handler.
func (a *App) After(f backend.AfterHandler) { a.registry.After(f) }

// AddAcceptor adds a client acceptor (TCP, WebSocket or your own).
func (a *App) AddAcceptor(acc frontend.Acceptor) { a.acceptors = append(a.acceptors, acc) }

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

// OnSessionClose adds a hook that runs when any session ends.
func (a *App) OnSessionClose(f func(s *session.Session)) { a.pool.OnSessionClose(f) }

// Sessions is the pool of this server's client sessions.
func (a *App) Sessions() *session.Pool { return a.pool }

// Groups is the group service.
func (a *App) Groups() groups.Service { return a.groups }

// Routes lists the handler routes.
func (a *App) Routes() []string { return a.registry.Routes() }

// Frontend is the running frontend (nil before Start).
func (a *App) Frontend() *frontend.Frontend {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.fe
}

// PushToUsers sends a push to users bound on this server and returns those
// it could not reach.
func (a *App) PushToUsers(ctx context.Context, route string, v any, uids []string) ([]string, error) {
	fe := a.Frontend()
	if fe == nil {
		return uids, errors.New("nopal: not started")
	}
	return fe.PushToUsers(ctx, route, v, uids)
}

// Start opens the acceptors and serves until Shutdown.
func (a *App) Start(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fe != nil {
		return errors.New("nopal: already started")
	}
	routes := a.registry.Routes()
	known := make([]string, 0, 2*len(routes))
	for _, r := range routes {
		known = append(known, r, a.cfg.ServerType+"."+r)
	}
	codes := a.cfg.Dictionary
	if a.cfg.RouteCompression {
		codes = mergeCodes(codes, codec.NumberRoutes(routes))
	}
	dict, err := codec.NewDictionary(codes, known...)
	if err != nil {
		return fmt.Errorf("nopal: dictionary: %w", err)
	}
	fe, err := frontend.New(frontend.Config{
		Handler:             a.registry,
		Pool:                a.pool,
		Serializer:          a.cfg.Serializer,
		Dictionary:          dict,
		Compress:            a.cfg.Compress,
		CompressThreshold:   a.cfg.CompressThreshold,
		Heartbeat:           a.cfg.Heartbeat,
		HandshakeTimeout:    a.cfg.HandshakeTimeout,
		SendQueueSize:       a.cfg.SendQueueSize,
		WriteTimeout:        a.cfg.WriteTimeout,
		HandshakeValidators: a.validators,
		Logger:              a.log,
	})
	if err != nil {
		return err
	}
	for _, acc := range a.acceptors {
		fe.AddAcceptor(acc)
	}
	ctx, cancel := context.WithCancel(ctx)
	if err := fe.Start(ctx); err != nil {
		cancel()
		return err
	}
	go func() { _ = a.groups.Start(ctx) }()
	a.fe, a.cancel = fe, cancel
	for _, acc := range fe.Acceptors() {
		a.log.Info("listening", "addr", acc.Addr().String())
	}
	return nil
}

// mergeCodes adds generated codes to the given ones, skipping routes and
// codes the given map already uses.
func mergeCodes(given, generated map[string]uint16) map[string]uint16 {
	out := make(map[string]uint16, len(given)+len(generated))
	used := map[uint16]bool{}
	for r, c := range given {
		out[r], used[c] = c, true
	}
	next := uint16(1)
	for _, r := range sortedKeys(generated) {
		if _, ok := out[r]; ok {
			continue
		}
		for used[next] {
			next++
		}
		out[r], used[next] = next, true
	}
	return out
}

// Shutdown drains the server: acceptors stop, requests in flight finish,
// clients are kicked. ctx bounds the wait.
func (a *App) Shutdown(ctx context.Context) error {
	a.mu.Lock()
	fe, cancel := a.fe, a.cancel
	a.mu.Unlock()
	if fe == nil {
		return nil
	}
	err := fe.Shutdown(ctx)
	cancel()
	return err
}

// Run starts the app, serves until ctx ends or the process gets SIGINT or
// SIGTERM, then drains within Config.ShutdownTimeout.
func (a *App) Run(ctx context.Context) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Handlers must not see the signal: in-flight requests finish first.
	if err := a.Start(context.WithoutCancel(ctx)); err != nil {
		return err
	}
	a.log.Info("ready")
	<-ctx.Done()
	a.log.Info("shutting down: draining clients", "timeout", a.cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	return a.Shutdown(sctx)
}
