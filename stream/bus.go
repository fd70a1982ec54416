package stream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DefaultPrefix is the default subject prefix.
const DefaultPrefix = "nopal"

// ErrConfig is wrapped by configuration errors.
var ErrConfig = errors.New("stream: bad configuration")

// Config says how to reach the bus.
type Config struct {
	// URL of the NATS servers (comma-separated). Empty starts an embedded
	// server.
	URL string
	// Prefix of every subject and the names of streams and buckets
	// (default "nopal"); several apps can share one NATS cluster.
	Prefix string
	// Replicas of streams and buckets (default 1; 3 in a 3-server cluster).
	Replicas int
	// ServerID names this process in subjects (required: the node id).
	ServerID string

	// Credentials and TLS for a URL.
	User, Password, Token string
	CredsFile             string
	NKeySeedFile          string
	TLS                   *tls.Config

	// Embedded configures the embedded server used when URL is empty.
	Embedded Embedded
	// InProcess, when set, connects in-process to this already running
	// server (another Bus's embedded one) instead of URL or Embedded; the
	// Bus does not shut it down.
	InProcess *server.Server
	// Logger (default slog.Default()).
	Logger *slog.Logger
	// OnDisconnect and OnReconnect, when set, are called as the
	// connection to NATS drops and comes back (when it comes back, the Bus
	// also re-provisions its streams and buckets in the background).
	OnDisconnect func(error)
	OnReconnect  func()
}

// Embedded configures an embedded NATS server.
type Embedded struct {
	// StoreDir holds JetStream data (default: a new temporary folder).
	StoreDir string
	// Listen opens a client port ("127.0.0.1:4222") so other nodes can
	// connect; empty keeps the server in-process only.
	Listen string
	// ServerName (default: the ServerID).
	ServerName string
	// ClusterName, ClusterListen and Routes form a NATS cluster of
	// embedded servers ("nats://127.0.0.1:6222" ...).
	ClusterName   string
	ClusterListen string
	Routes        []string
	// User and Password, when set, are required from clients.
	User, Password string
}

// Bus is a connection to NATS with JetStream. The rest of the project
// reaches NATS through its methods only: the subjects (subjects.go), core
// NATS (Request, Publish, Subscribe, ChanSubscribe, Flush), streams and
// buckets (Stream, KV, StreamPublish, and JetStream for the packages that
// keep their state there).
type Bus struct {
	// nc and js are the connection and its JetStream context: only this
	// package speaks core NATS (the Bus methods: Request, Publish,
	// Subscribe, …; JetStream for the adapters).
	nc     *nats.Conn
	js     jetstream.JetStream
	Server *server.Server // the embedded server, or nil

	prefix   string
	replicas int
	id       string
	log      *slog.Logger
	tempDir  string
	closed   chan struct{} // closed by NATS when the connection is closed
	inProc   bool

	// life ends when Close starts: it stops re-provisioning, whose
	// goroutine loops tracks.
	life  context.Context
	kill  context.CancelFunc
	loops sync.WaitGroup
	prov  provisioner
	req   *requests // the request multiplexer (request.go)
}

// InProcess reports whether the connection is in-process (to an embedded
// server) rather than over TCP.
func (b *Bus) InProcess() bool { return b.inProc }

func (c *Config) defaults() error {
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	switch {
	case c.ServerID == "":
		return fmt.Errorf("%w: ServerID is required", ErrConfig)
	case !validToken(c.ServerID):
		return fmt.Errorf("%w: ServerID %q must be a single subject token", ErrConfig, c.ServerID)
	case !validSubject(c.Prefix):
		return fmt.Errorf("%w: Prefix %q", ErrConfig, c.Prefix)
	case c.Replicas < 1 || c.Replicas > 5:
		return fmt.Errorf("%w: Replicas %d (1 to 5)", ErrConfig, c.Replicas)
	}
	return nil
}

// Connect connects to cfg.URL, or starts an embedded server and connects to
// it in-process. ctx bounds the start.
func Connect(ctx context.Context, cfg Config) (*Bus, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	b := &Bus{prefix: cfg.Prefix, replicas: cfg.Replicas, id: cfg.ServerID, log: cfg.Logger, closed: make(chan struct{})}
	b.life, b.kill = context.WithCancel(context.Background())
	b.prov.objects = map[string]object{}
	b.prov.done = make(chan struct{})
	opts := []nats.Option{
		nats.ClosedHandler(func(*nats.Conn) { close(b.closed) }),
		nats.Name(cfg.ServerID),
		nats.CustomInboxPrefix(b.ReplyPrefix()),
		nats.PingInterval(time.Second),
		nats.MaxPingsOutstanding(2),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		nats.RetryOnFailedConnect(false),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err == nil {
				return // closed on purpose
			}
			b.log.Warn("bus disconnected", "err", err)
			if cfg.OnDisconnect != nil {
				cfg.OnDisconnect(err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			b.log.Info("bus reconnected", "url", nc.ConnectedUrlRedacted())
			// The server may have come back without our streams and
			// buckets (an empty store, a rebuilt cluster).
			b.requestReprovision()
			if cfg.OnReconnect != nil {
				cfg.OnReconnect()
			}
		}),
		nats.LameDuckModeHandler(func(nc *nats.Conn) {
			// The server is going away: the client reconnects to another
			// one of the cluster on its own; say so.
			b.log.Warn("bus server entering lame duck mode", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			b.log.Warn("bus error", "subject", subj, "err", err)
		}),
	}
	url := cfg.URL
	b.inProc = cfg.InProcess != nil || url == ""
	if b.inProc {
		// No write deadline per flush: on an in-process connection (a
		// net.Pipe) each one armed a new timer, and a write there only
		// waits for the server of this very process.
		opts = append(opts, nats.FlusherTimeout(0))
	}
	if cfg.InProcess != nil {
		url = ""
		opts = append(opts, nats.InProcessServer(cfg.InProcess))
		if cfg.Embedded.User != "" {
			opts = append(opts, nats.UserInfo(cfg.Embedded.User, cfg.Embedded.Password))
		}
	} else if url == "" {
		ns, tmp, err := startEmbedded(cfg)
		if err != nil {
			return nil, err
		}
		b.Server, b.tempDir = ns, tmp
		opts = append(opts, nats.InProcessServer(ns))
		if cfg.Embedded.User != "" {
			opts = append(opts, nats.UserInfo(cfg.Embedded.User, cfg.Embedded.Password))
		}
	} else {
		if cfg.User != "" {
			opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
		}
		if cfg.Token != "" {
			opts = append(opts, nats.Token(cfg.Token))
		}
		if cfg.CredsFile != "" {
			opts = append(opts, nats.UserCredentials(cfg.CredsFile))
		}
		if cfg.NKeySeedFile != "" {
			o, err := nats.NkeyOptionFromSeed(cfg.NKeySeedFile)
			if err != nil {
				return nil, fmt.Errorf("stream: nkey: %w", err)
			}
			opts = append(opts, o)
		}
		if cfg.TLS != nil {
			opts = append(opts, nats.Secure(cfg.TLS))
		}
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		b.shutdownServer()
		return nil, fmt.Errorf("stream: connect %s: %w", redact(url), err)
	}
	b.nc = nc
	if err := b.startRequests(); err != nil {
		b.Close()
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("stream: jetstream: %w", err)
	}
	b.js = js
	if err := b.waitJetStream(ctx); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// waitJetStream waits until JetStream answers (a new cluster needs a meta
// leader first).
func (b *Bus) waitJetStream(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		actx, acancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := b.JetStream().AccountInfo(actx)
		acancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stream: jetstream not available: %w", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func startEmbedded(cfg Config) (*server.Server, string, error) {
	e := cfg.Embedded
	opts := &server.Options{
		ServerName: e.ServerName,
		JetStream:  true,
		StoreDir:   e.StoreDir,
		NoSigs:     true,
		NoLog:      true,
		Username:   e.User,
		Password:   e.Password,
	}
	if opts.ServerName == "" {
		opts.ServerName = cfg.ServerID
	}
	tmp := ""
	if opts.StoreDir == "" {
		dir, err := os.MkdirTemp("", "nopal-js-")
		if err != nil {
			return nil, "", fmt.Errorf("stream: store dir: %w", err)
		}
		opts.StoreDir, tmp = dir, dir
	}
	if e.Listen == "" {
		opts.DontListen = true
	} else {
		host, port, err := splitHostPort(e.Listen)
		if err != nil {
			return nil, "", fmt.Errorf("%w: Embedded.Listen: %w", ErrConfig, err)
		}
		opts.Host, opts.Port = host, port
	}
	if e.ClusterListen != "" {
		if e.Listen == "" {
			// Without a client listener the server never starts routing
			// (and its Shutdown then hangs).
			return nil, "", fmt.Errorf("%w: Embedded.ClusterListen needs Embedded.Listen (a client port; 127.0.0.1:0 will do)", ErrConfig)
		}
		host, port, err := splitHostPort(e.ClusterListen)
		if err != nil {
			return nil, "", fmt.Errorf("%w: Embedded.ClusterListen: %w", ErrConfig, err)
		}
		opts.Cluster = server.ClusterOpts{Name: e.ClusterName, Host: host, Port: port}
		for _, r := range e.Routes {
			u, err := url.Parse(r)
			if err != nil {
				return nil, "", fmt.Errorf("%w: route %q: %w", ErrConfig, r, err)
			}
			opts.Routes = append(opts.Routes, u)
		}
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, "", fmt.Errorf("stream: embedded server: %w", err)
	}
	// The server reports a port it cannot listen on (or JetStream failing
	// to start) only to its logger's Fatalf, and never gets ready: catch
	// that to fail at once with the reason, not after 10 s without one.
	fatal := &fatalLogger{log: cfg.Logger, err: make(chan error, 1)}
	ns.SetLoggerV2(fatal, false, false, false)
	ns.Start()
	deadline := time.Now().Add(10 * time.Second)
	for !ns.ReadyForConnections(100 * time.Millisecond) {
		select {
		case err := <-fatal.err:
			ns.Shutdown()
			return nil, "", fmt.Errorf("stream: embedded server: %w", err)
		default:
		}
		if time.Now().After(deadline) {
			ns.Shutdown()
			return nil, "", errors.New("stream: embedded server did not start in 10 s")
		}
	}
	return ns, tmp, nil
}

// fatalLogger is the embedded server's logger: it keeps the first fatal
// error (a port it cannot listen on) and drops the rest, as NoLog would.
type fatalLogger struct {
	log *slog.Logger
	err chan error
}

func (l *fatalLogger) Fatalf(format string, v ...any) {
	err := fmt.Errorf(format, v...)
	l.log.Error("embedded NATS server", "err", err)
	select {
	case l.err <- err:
	default:
	}
}

func (*fatalLogger) Noticef(string, ...any) {}
func (*fatalLogger) Warnf(string, ...any)   {}
func (*fatalLogger) Errorf(string, ...any)  {}
func (*fatalLogger) Debugf(string, ...any)  {}
func (*fatalLogger) Tracef(string, ...any)  {}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, err
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	return host, port, nil
}

// ClientURL is the embedded server's client URL ("" when it has no port).
func (b *Bus) ClientURL() string {
	if b.Server == nil || b.Server.Addr() == nil {
		return ""
	}
	return b.Server.ClientURL()
}

// Close stops re-provisioning, drains the connection and stops the
// embedded server, if any.
func (b *Bus) Close() {
	b.prov.mu.Lock()
	b.prov.closed = true
	b.prov.mu.Unlock()
	b.kill()
	b.loops.Wait()
	if b.nc != nil {
		if err := b.nc.Drain(); err == nil {
			select {
			case <-b.closed:
			case <-time.After(5 * time.Second):
			}
		}
		b.nc.Close()
	}
	b.shutdownServer()
}

func (b *Bus) shutdownServer() {
	if b.Server != nil {
		b.Server.Shutdown()
		b.Server.WaitForShutdown()
	}
	if b.tempDir != "" {
		_ = os.RemoveAll(b.tempDir)
	}
}

// Prefix is the subject prefix.
func (b *Bus) Prefix() string { return b.prefix }

// Replicas is the replica count for streams and buckets.
func (b *Bus) Replicas() int { return b.replicas }

// ServerID is this process's server id.
func (b *Bus) ServerID() string { return b.id }

// Name returns a stream or bucket name under the prefix: "nopal_servers".
// JetStream names cannot hold dots, so the prefix's dots become underscores.
func (b *Bus) Name(name string) string {
	return strings.ReplaceAll(b.prefix, ".", "_") + "_" + name
}

// Connected reports whether the connection to NATS is up.
func (b *Bus) Connected() bool { return b.nc != nil && b.nc.IsConnected() }

// KV returns a key-value bucket (name gets the prefix, replicas the bus's
// count), creating it if it does not exist. An existing bucket keeps its
// configuration: every node provisions the same buckets as it starts, and
// updating a stream while another node creates a consumer on it races
// inside nats-server (seen with the race detector); change a bucket's
// configuration by deleting it. See provision for the retries.
//
// The Bus remembers the configuration (the last one given for a name) and
// creates the bucket again, the same way, whenever it re-provisions: when
// its connection comes back, and on RecoverMissing.
func (b *Bus) KV(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	cfg.Bucket = b.Name(cfg.Bucket)
	if cfg.Replicas == 0 {
		cfg.Replicas = b.replicas
	}
	kv, err := provision(ctx, "bucket "+cfg.Bucket, func(ctx context.Context) (jetstream.KeyValue, error) {
		kv, _, err := b.ensureKV(ctx, cfg)
		return kv, err
	})
	if err == nil {
		b.remember(object{kind: "bucket", name: cfg.Bucket, ensure: func(ctx context.Context) (bool, error) {
			_, created, err := b.ensureKV(ctx, cfg)
			return created, err
		}})
	}
	return kv, err
}

// Stream returns a stream (name gets the prefix, replicas the bus's count),
// creating it if it does not exist; an existing stream keeps its
// configuration, and the Bus remembers it to re-provision it, as with KV.
func (b *Bus) Stream(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	cfg.Name = b.Name(cfg.Name)
	if cfg.Replicas == 0 {
		cfg.Replicas = b.replicas
	}
	st, err := provision(ctx, "stream "+cfg.Name, func(ctx context.Context) (jetstream.Stream, error) {
		st, _, err := b.ensureStream(ctx, cfg)
		return st, err
	})
	if err == nil {
		b.remember(object{kind: "stream", name: cfg.Name, ensure: func(ctx context.Context) (bool, error) {
			_, created, err := b.ensureStream(ctx, cfg)
			return created, err
		}})
	}
	return st, err
}

// KVStream returns the stream under a bucket that KV returned. In a NATS
// cluster a bucket another node has just created may not be known yet to
// the server answering stream lookups ("stream not found" for a moment,
// seen with three nodes starting together): that answer is retried as
// provision retries, until ctx ends.
func (b *Bus) KVStream(ctx context.Context, kv jetstream.KeyValue) (jetstream.Stream, error) {
	name := "KV_" + kv.Bucket()
	return provision(ctx, "stream "+name, func(ctx context.Context) (jetstream.Stream, error) {
		st, err := b.js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return st, notYetError{err}
		}
		return st, err
	})
}

// notYetError marks an answer that provision retries whatever it is.
type notYetError struct{ error }

func (e notYetError) Unwrap() error { return e.error }

// provisionAttempt bounds one attempt of provision, provisionTimeout all
// of them when the caller's context has no deadline.
const (
	provisionAttempt = 5 * time.Second
	provisionTimeout = time.Minute
)

// provision runs create until it succeeds, fails for good, or ctx ends. The
// nodes of a new cluster provision the same buckets at the same moment,
// while JetStream elects its leaders: create-only calls (an identical
// existing configuration is accepted) do not fight as create-or-update
// ones do (those were seen to hang until their deadline), and the answers
// that mean "not yet" (no leader, no peers for the replicas, a timeout)
// are retried with a backoff.
func provision[T any](ctx context.Context, what string, create func(context.Context) (T, error)) (T, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, provisionTimeout)
		defer cancel()
	}
	backoff := 50 * time.Millisecond
	createFailures := 0
	for {
		actx, cancel := context.WithTimeout(ctx, provisionAttempt)
		v, err := create(actx)
		cancel()
		if err == nil {
			return v, nil
		}
		retry := notYet(err)
		if !retry && createFailed(err) && createFailures < createRetries {
			// "error creating store for stream": seen when a stream is
			// made again right after one of the same name was deleted
			// (the server removes the old store in the background). A
			// stream that cannot be made at all fails a moment later.
			createFailures++
			retry = true
		}
		if ctx.Err() != nil || !retry {
			return v, fmt.Errorf("stream: %s: %w", what, err)
		}
		select {
		case <-ctx.Done():
			return v, fmt.Errorf("stream: %s: %w (%w)", what, ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// createRetries bounds provision's retries of a stream the server failed
// to create (about 1.5 s with the backoff).
const createRetries = 5

// createFailed reports whether err is the server's JSStreamCreateErrF: it
// could not create the stream, for the reason its description gives.
func createFailed(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeStreamCreate
}

// errCodeStreamCreate is the server's JSStreamCreateErrF.
const errCodeStreamCreate = 10049

// notYet reports whether a JetStream API error means "try again later".
func notYet(err error) bool {
	if errors.As(err, new(notYetError)) {
		return true
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, nats.ErrNoResponders) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == 10005 || // no suitable peers for placement
		apiErr.ErrorCode == 10008 || // JetStream system temporarily unavailable
		apiErr.Code == 503)
}

func validToken(s string) bool {
	return s != "" && !strings.ContainsAny(s, ".*> \t\r\n")
}

func validSubject(s string) bool {
	if s == "" {
		return false
	}
	for _, t := range strings.Split(s, ".") {
		if !validToken(t) {
			return false
		}
	}
	return true
}

func redact(u string) string {
	if i := strings.Index(u, "@"); i >= 0 {
		if j := strings.Index(u, "://"); j >= 0 && j < i {
			return u[:j+3] + "***" + u[i:]
		}
	}
	return u
}
