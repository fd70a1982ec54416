package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nopal-dev/nopal/backend"
	"github.com/nopal-dev/nopal/bindings"
	"github.com/nopal-dev/nopal/codec"
	"github.com/nopal-dev/nopal/discovery"
	"github.com/nopal-dev/nopal/frontend"
	"github.com/nopal-dev/nopal/groups"
	"github.com/nopal-dev/nopal/metrics"
	"github.com/nopal-dev/nopal/reliable"
	"github.com/nopal-dev/nopal/session"
	"github.com/nopal-dev/nopal/stream"
)

// Version is reported in discovery.
const Version = "0.2.0"

// Router picks the server of a type that serves a forwarded client request.
// servers is never empty. Without one, NATS spreads requests at random over
// the type's servers.
type Router func(ctx context.Context, route string, payload []byte, servers []discovery.Server) (discovery.Server, error)

// RandomRouter picks a server at random; it is what NATS does without a
// router, given here as an example of a Router.
func RandomRouter(_ context.Context, _ string, _ []byte, servers []discovery.Server) (discovery.Server, error) {
	return servers[rand.IntN(len(servers))], nil
}

// JobsConfig configures reliable RPC on a server.
type JobsConfig struct {
	// Disabled turns off the worker of a server that has remotes: it will
	// not run jobs (it can still enqueue them).
	Disabled bool
	// Concurrency is how many jobs a worker runs at once (default 16).
	Concurrency int
	// AckWait is how long a job may run without a sign of life before
	// another worker takes it over (default 30 s; the worker signals
	// progress every AckWait/3 while a job runs).
	AckWait time.Duration
}

// Observer is told of every call this server serves (a forwarded client
// request or an RPC), for the metrics: the route, whether it was an RPC,
// when it was sent (0 if unknown) and started, and its error.
type Observer interface {
	Served(route string, rpc bool, sentUnixNano int64, started time.Time, err error)
}

// LocalFrontend is what the runtime needs of the frontend of its own
// process: pushes to the users it holds, and the frontend's side of a
// session's hand-over (see frontend.ResumeCluster for the other side).
// *frontend.Frontend implements it.
type LocalFrontend interface {
	PushToUsersID(ctx context.Context, route string, v any, uids []string, id uint64) ([]string, error)
	EncodePush(route string, data []byte) ([]byte, error)
	PushPacket(uid string, p frontend.MissedPush) bool
	TokenOf(s *session.Session) (frontend.Token, bool)
	HandOver(ctx context.Context, t frontend.Token, pushes uint64, to string) (*frontend.Handover, error)
	Drain(uid, to string) []frontend.MissedPush
	SessionCounts() (connected, suspended int)
}

// Metadata keys under which a frontend publishes its session counts in
// discovery, refreshed with its heartbeats.
const (
	MetaConnected = "nopal.connected"
	MetaSuspended = "nopal.suspended"
)

// Options is what a user configures of a server in a cluster
// (nopal.ClusterConfig).
type Options struct {
	// Bus is how to reach NATS (URL, or an embedded server). Its ServerID
	// is set to the server's.
	Bus stream.Config
	// RequestTimeout bounds a forwarded request or an RPC without a
	// deadline (default 5 s); past it the client gets PIT-408.
	RequestTimeout time.Duration
	// DiscoveryHeartbeat is how often the server announces itself (default
	// 1 s); it is declared dead 3 heartbeats after its last.
	DiscoveryHeartbeat time.Duration
	// Metadata is published with the server in discovery.
	Metadata map[string]string
	// Traffic records forwarded requests, replies, pushes and kicks in the
	// TRAFFIC stream for `node replay`.
	Traffic bool
	// Jobs configures reliable RPC (the worker of a server with remotes).
	Jobs *JobsConfig
	// TrafficMaxAge and TrafficMaxBytes limit the stream (defaults 24 h,
	// 1 GiB).
	TrafficMaxAge   time.Duration
	TrafficMaxBytes int64
	// UniqueSessionPerType makes the unique-session rule Pitaya's: a uid
	// bound on a frontend kicks its session on frontends of the same type
	// only (default: on every frontend of the cluster). See
	// bindings.UniqueSession.PerType for what the binding then names.
	UniqueSessionPerType bool
}

// Validate reports options that cannot work.
func (o *Options) Validate() error {
	if o.RequestTimeout < 0 || o.DiscoveryHeartbeat < 0 {
		return errors.New("cluster: negative RequestTimeout or DiscoveryHeartbeat")
	}
	return nil
}

// Config is what a Runtime is built from: the server, its bus, and the
// parts of the process it serves.
type Config struct {
	Options
	ServerID, ServerType string
	// Frontend: the server holds client connections (set SetFrontend
	// once the frontend runs).
	Frontend bool
	// Resume is the frontend's resume configuration (defaults resolved
	// here when left zero).
	Resume frontend.ResumeConfig
	// Serializer encodes pushes for clients (default JSON).
	Serializer codec.Serializer
	// Handlers serve forwarded client requests, Remotes the RPCs and jobs
	// (both required).
	Handlers, Remotes *backend.Registry
	// Pool holds the sessions of this server's clients (required).
	Pool *session.Pool
	// Router returns the router of a server type, or nil (may be nil).
	Router func(svType string) Router
	// Tracer, Observer and Logger are optional.
	Tracer   *metrics.Tracer
	Observer Observer
	Logger   *slog.Logger
}

func (c *Config) defaults() error {
	switch {
	case c.ServerID == "" || c.ServerType == "":
		return errors.New("cluster: ServerID and ServerType are required")
	case c.Handlers == nil || c.Remotes == nil || c.Pool == nil:
		return errors.New("cluster: Handlers, Remotes and Pool are required")
	}
	if err := c.Options.Validate(); err != nil {
		return err
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 5 * time.Second
	}
	if c.DiscoveryHeartbeat == 0 {
		c.DiscoveryHeartbeat = time.Second
	}
	if c.Serializer == nil {
		c.Serializer = codec.JSON{}
	}
	if c.Router == nil {
		c.Router = func(string) Router { return nil }
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	resolved, err := c.Resume.Resolved()
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	c.Resume = resolved
	return nil
}

// Runtime is what a server runs when it is part of a cluster: it forwards
// client requests to servers of other types and serves those forwarded to
// it, makes and serves RPCs, pushes and kicks users wherever they are,
// hands sessions over between frontends, ends the sessions of frontends
// that died, and runs the job worker. It is built from the bus and the
// parts of the process it is given, and knows no App.
type Runtime struct {
	cfg    Config
	log    *slog.Logger
	bus    *stream.Bus
	disc   *discovery.Discovery
	store  *bindings.Store
	groups *groups.Cluster
	rec    *stream.Recorder
	jobs   *reliable.Client
	worker *reliable.Worker
	subs   []*nats.Subscription
	calls  *callPool
	bufs   sync.Pool // *[]byte: encoding buffers (call.go)
	resume *resumer  // frontends with resume on
	// bindings are followed by a KV watch: who is online, and where
	// pushes and kicks go (straight to the frontend holding each uid,
	// unless UniqueSessionPerType, where a binding names one session of
	// several).
	bindings *bindings.ClusterPresence
	fe       atomic.Pointer[localFrontend]
	deaths   deaths
	janitor  janitor
	// life ends when Stop gives up waiting: handlers of forwarded calls
	// still running then see their context cancelled.
	life    context.Context
	endLife context.CancelFunc
}

// localFrontend boxes a LocalFrontend for an atomic pointer.
type localFrontend struct{ LocalFrontend }

// Start connects to the bus, joins the cluster and serves; ctx bounds the
// start. The server is announced in discovery last, once it can answer.
func Start(ctx context.Context, cfg Config) (_ *Runtime, err error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	bcfg := cfg.Bus
	bcfg.ServerID = cfg.ServerID
	if bcfg.Logger == nil {
		bcfg.Logger = cfg.Logger
	}
	bus, err := stream.Connect(ctx, bcfg)
	if err != nil {
		return nil, err
	}
	c := &Runtime{cfg: cfg, log: cfg.Logger, bus: bus}
	c.calls = newCallPool(256, c.serveCall)
	c.life, c.endLife = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			c.Stop(context.Background())
		}
	}()
	host, _ := os.Hostname()
	c.disc, err = discovery.New(bus, discovery.Server{
		ID: cfg.ServerID, Type: cfg.ServerType, Frontend: cfg.Frontend,
		Metadata: cfg.Metadata, Hostname: host, Version: Version,
	}, discovery.Config{Heartbeat: cfg.DiscoveryHeartbeat, Logger: c.log})
	if err != nil {
		return nil, err
	}
	if c.groups, err = groups.NewCluster(ctx, bus, c); err != nil {
		return nil, err
	}
	go func() { _ = c.groups.Start(c.life) }()
	if cfg.Traffic {
		c.rec, err = stream.NewRecorder(ctx, bus, stream.RecorderConfig{MaxAge: cfg.TrafficMaxAge, MaxBytes: cfg.TrafficMaxBytes})
		if err != nil {
			return nil, err
		}
	}
	// Every node reads bindings: a push no frontend takes is kept for a
	// bound user's resume.
	if c.store, err = bindings.NewStore(ctx, bus); err != nil {
		return nil, err
	}
	c.watchDeaths()
	c.bindings = bindings.NewClusterPresence(bus, c.log)
	if cfg.Frontend {
		if !cfg.Resume.Off {
			if err := c.startResume(ctx); err != nil {
				return nil, err
			}
		}
		c.startJanitor()
		go c.reportSessions()
		us := bindings.NewUniqueSession(c.store, cfg.ServerID, c, c.log)
		if cfg.UniqueSessionPerType {
			us.PerType(cfg.ServerType, func(id string) (string, bool) {
				s, ok := c.disc.ServerByID(id)
				return s.Type, ok
			})
		}
		us.Attach(cfg.Pool)
		for subject, h := range map[string]nats.MsgHandler{
			bus.ServerPush(cfg.ServerID):      c.onPush,
			bus.ServerKick(cfg.ServerID):      c.onKick,
			bus.ServerSessionOp(cfg.ServerID): c.onSessionOp,
		} {
			if err := c.subscribe(subject, "", h); err != nil {
				return nil, err
			}
		}
	}
	for subject, queue := range map[string]string{
		bus.RPCTypeWildcard(cfg.ServerType): cfg.ServerType,
		bus.ServerRPC(cfg.ServerID):         "",
	} {
		sub, err := bus.ChanQueueSubscribe(subject, queue, c.calls.msgs)
		if err != nil {
			return nil, fmt.Errorf("cluster: subscribe %s: %w", subject, err)
		}
		c.subs = append(c.subs, sub)
	}
	if err := c.startJobs(ctx); err != nil {
		return nil, err
	}
	if err := bus.Flush(10 * time.Second); err != nil {
		return nil, fmt.Errorf("cluster: bus flush: %w", err)
	}
	// Announce the server only once it can answer.
	if err := c.disc.Start(ctx); err != nil {
		return nil, err
	}
	c.log.Info("joined the cluster", "bus", busName(bus))
	return c, nil
}

// SetFrontend gives the runtime the frontend of its process, once it runs:
// pushes and kicks for its users, and hand-overs of its sessions, reach it
// from then on.
func (c *Runtime) SetFrontend(fe LocalFrontend) {
	if fe == nil {
		c.fe.Store(nil)
		return
	}
	c.fe.Store(&localFrontend{fe})
}

// reportSessions keeps the frontend's session counts in its discovery
// metadata (MetaConnected, MetaSuspended), carried by the heartbeats: the
// console shows them.
func (c *Runtime) reportSessions() {
	t := time.NewTicker(c.cfg.DiscoveryHeartbeat)
	defer t.Stop()
	last := [2]int{-1, -1}
	for {
		select {
		case <-c.life.Done():
			return
		case <-t.C:
		}
		fe := c.frontend()
		if fe == nil {
			continue
		}
		conn, susp := fe.SessionCounts()
		if last == [2]int{conn, susp} {
			continue
		}
		last = [2]int{conn, susp}
		md := maps.Clone(c.cfg.Metadata)
		if md == nil {
			md = map[string]string{}
		}
		md[MetaConnected], md[MetaSuspended] = strconv.Itoa(conn), strconv.Itoa(susp)
		if err := c.disc.UpdateMetadata(md); err != nil {
			c.log.Debug("discovery metadata", "err", err)
		}
	}
}

// frontend is the process's frontend, or nil.
func (c *Runtime) frontend() LocalFrontend {
	if p := c.fe.Load(); p != nil {
		return p.LocalFrontend
	}
	return nil
}

// Resumer is the cluster's side of session resume, for the frontend's
// configuration (frontend.Config.Cluster); nil when the server is no
// frontend or resume is off.
func (c *Runtime) Resumer() frontend.ResumeCluster {
	if c.resume == nil {
		return nil
	}
	return c.resume
}

func busName(b *stream.Bus) string {
	switch {
	case b.Server != nil && b.ClientURL() != "":
		return "embedded " + b.ClientURL()
	case b.Server != nil, b.InProcess():
		return "embedded, in-process"
	}
	return b.ConnectedURL()
}

func (c *Runtime) subscribe(subject, queue string, h nats.MsgHandler) error {
	// A busy server must not drop calls silently: the subscription has no
	// pending limits, and calls are handed to goroutines at once.
	sub, err := c.bus.Subscribe(subject, queue, h)
	if err != nil {
		return fmt.Errorf("cluster: subscribe %s: %w", subject, err)
	}
	c.subs = append(c.subs, sub)
	return nil
}

// Stop leaves the cluster: it leaves discovery first so no new calls
// arrive, lets the job worker and the calls in flight finish, then closes
// the bus. When ctx ends first, the calls still running see their context
// cancelled and the bus writes still queued are abandoned.
func (c *Runtime) Stop(ctx context.Context) {
	defer c.endLife()
	context.AfterFunc(ctx, c.endLife)
	c.stopJanitor()
	if c.disc != nil {
		if err := c.disc.Stop(ctx); err != nil {
			c.log.Warn("leaving discovery", "err", err)
		}
	}
	if c.worker != nil {
		if err := c.worker.Stop(ctx); err != nil {
			c.log.Warn("stopping the job worker", "err", err)
		}
	}
	// Drain delivers what the subscriptions hold, then closes them: wait for
	// that, so no call that arrived is left without its reply.
	for _, s := range c.subs {
		closed := s.StatusChanged(nats.SubscriptionClosed)
		if s.Drain() != nil {
			continue
		}
		select {
		case <-closed:
		case <-ctx.Done():
		}
	}
	// The subscriptions are closed: serve the calls they queued, then let
	// the workers end, and wait for the other work they run.
	c.calls.finish(ctx)
	done := make(chan struct{})
	go func() { c.calls.wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	if c.resume != nil {
		c.resume.stop(ctx)
	}
	if c.rec != nil {
		_ = c.rec.Close(ctx)
	}
	if c.bindings != nil {
		// Its watcher may be waiting on a bus that is gone: not past ctx
		// (it ends with the bus, closed next, anyway).
		stopped := make(chan struct{})
		go func() { c.bindings.Stop(); close(stopped) }()
		select {
		case <-stopped:
		case <-ctx.Done():
		}
	}
	c.bus.Close()
}

// Bus is the connection to the bus.
func (c *Runtime) Bus() *stream.Bus { return c.bus }

// Discovery is the cluster's discovery.
func (c *Runtime) Discovery() *discovery.Discovery { return c.disc }

// Groups is the cluster's group service.
func (c *Runtime) Groups() *groups.Cluster { return c.groups }

// Jobs is the reliable-RPC client.
func (c *Runtime) Jobs() *reliable.Client { return c.jobs }

// Presence is who is online, from the bindings the runtime follows.
func (c *Runtime) Presence() *bindings.ClusterPresence { return c.bindings }

// Worker is the job worker (nil when the server runs no jobs).
func (c *Runtime) Worker() *reliable.Worker { return c.worker }

// Stats are the runtime's gauges, for the metrics.
type Stats struct {
	// Dropped counts the messages the bus subscriptions dropped.
	Dropped int
	// TrafficDropped counts the traffic records the recorder dropped.
	TrafficDropped uint64
	// CallCapacity is how many more calls the kept call workers can take
	// at once.
	CallCapacity int
	// Worker is the job worker's, when the server runs one.
	Worker *reliable.WorkerStats
}

// Stats reads the runtime's gauges; the worker's need a bus round trip.
func (c *Runtime) Stats() Stats {
	var st Stats
	for _, s := range c.subs {
		if n, err := s.Dropped(); err == nil {
			st.Dropped += n
		}
	}
	st.CallCapacity = c.calls.idleCapacity()
	st.TrafficDropped = c.rec.Dropped()
	if c.worker != nil {
		ws := c.worker.Stats()
		st.Worker = &ws
	}
	return st
}
