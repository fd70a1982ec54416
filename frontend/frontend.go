package frontend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nopal-dev/nopal/codec"
	"github.com/nopal-dev/nopal/session"
)

// Handler handles the requests and notifies of clients (msg.Type is
// codec.Request or codec.Notify). The session is in ctx
// (session.FromContext). It returns the serialized result, ignored for a
// notify. An error reaches the client as a codec.Error (PIT-500 unless it
// is one). msg and its Data are valid only during the call.
type Handler interface {
	Handle(ctx context.Context, msg *codec.Message) ([]byte, error)
}

// HandlerFunc adapts a function to a Handler.
type HandlerFunc func(ctx context.Context, msg *codec.Message) ([]byte, error)

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, msg *codec.Message) ([]byte, error) {
	return f(ctx, msg)
}

// HandshakeValidator checks a client's handshake; an error refuses it with
// code 400 and closes the connection.
type HandshakeValidator func(ctx context.Context, s *session.Session, req *codec.HandshakeRequest) error

// Config configures a Frontend. Zero fields take the defaults.
type Config struct {
	// Handler serves requests (required).
	Handler Handler
	// Pool holds the sessions (default: a new pool).
	Pool *session.Pool
	// Serializer encodes payloads (default JSON).
	Serializer codec.Serializer
	// Dictionary compresses routes (default none).
	Dictionary *codec.Dictionary
	// Compress turns on zlib for payloads of at least CompressThreshold
	// bytes when that makes them shorter.
	Compress          bool
	CompressThreshold int
	// Heartbeat is the heartbeat interval (default 30 s). A connection
	// silent for twice this long is closed. The handshake announces it in
	// whole seconds (at least 1).
	Heartbeat time.Duration
	// HandshakeTimeout closes sockets that do not handshake in time
	// (default 10 s).
	HandshakeTimeout time.Duration
	// MaxConnections bounds the connections held at once (0: no bound).
	// Past it a new connection gets a handshake answer with code 503 and
	// is closed: Pitaya clients see a refused handshake.
	MaxConnections int
	// SendQueueSize bounds the packets waiting to be written to one client
	// (default 512); a client that lets it fill is disconnected.
	SendQueueSize int
	// SendQueueBytes bounds the bytes waiting to be written to one client
	// (default 1 MiB), each packet counted with its 24-byte queue entry; a
	// client with packets waiting that would pass it is disconnected like
	// one whose queue is full, and its session ended (no resume). It
	// bounds what a slow client holds when packets are large, where
	// SendQueueSize alone let an overloaded frontend grow to 924 MB
	// (BENCHMARKS.md). A single packet larger than it still goes to a
	// client with nothing waiting.
	SendQueueBytes int
	// SendBudget bounds the bytes waiting in all send queues of the
	// frontend together (0, the default: no bound beyond SendQueueBytes
	// per client). Past it, a client with at least the average backlog of
	// the clients that have one is disconnected rather than given more (a
	// client that stopped reading, not one a packet behind); a client
	// with nothing waiting still gets its packet. A push to many clients
	// counts once per client though its bytes are shared, so this is an
	// upper bound of the memory the queues hold. It does not bound the
	// goroutine stacks of busy connections, which under overload are most
	// of a frontend's memory (BENCHMARKS.md).
	SendBudget int64
	// WriteTimeout bounds one write to a client (default 10 s).
	WriteTimeout time.Duration
	// ParkIdle is how long a connection may send nothing before its
	// reader goroutine is given back (default 2 s; negative: never): the
	// frontend's poller waits for the client's next bytes instead, and a
	// reader starts again when they come. An idle connection then costs
	// no goroutine stack (4–8 KiB each). Only plain TCP and WebSocket
	// connections on Linux park; TLS, the PROXY protocol and custom
	// connections keep their reader.
	ParkIdle time.Duration
	// HandshakeValidators run on every handshake.
	HandshakeValidators []HandshakeValidator
	// OnHandled, if set, is called after each request or notify.
	OnHandled func(route string, t codec.MessageType, took time.Duration, err error)
	// Logger (default slog.Default()).
	Logger *slog.Logger
	// ID names this frontend in resume tokens: the server id in a cluster
	// (default: a random name).
	ID string
	// Resume configures session resume (on by default).
	Resume ResumeConfig
	// Cluster, set by the cluster runtime, reaches sessions suspended on
	// other frontends and keeps missed pushes in the bus. nil: resume on
	// this frontend only.
	Cluster ResumeCluster
}

func (c *Config) defaults() error {
	if c.Handler == nil {
		return errors.New("frontend: Config.Handler is required")
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Pool == nil {
		c.Pool = session.NewPool(c.Logger)
	}
	if c.Serializer == nil {
		c.Serializer = codec.JSON{}
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = 30 * time.Second
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	if c.SendQueueSize == 0 {
		c.SendQueueSize = 512
	}
	if c.SendQueueBytes == 0 {
		c.SendQueueBytes = 1 << 20
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.ParkIdle == 0 {
		c.ParkIdle = 2 * time.Second
	}
	if c.ID == "" {
		c.ID = "fe-" + newSecret()[:8]
	}
	var err error
	if c.Resume, err = c.Resume.Resolved(); err != nil {
		return err
	}
	if c.Heartbeat < 0 || c.HandshakeTimeout < 0 || c.SendQueueSize < 0 || c.SendQueueBytes < 0 ||
		c.SendBudget < 0 || c.WriteTimeout < 0 {
		return errors.New("frontend: negative durations or sizes in Config")
	}
	return nil
}

// Stats counts what happened to connections. Read with Load.
type Stats struct {
	Connected         atomic.Int64 // connections open now
	Accepted          atomic.Int64 // connections accepted in all
	Malformed         atomic.Int64 // connections closed for bad input
	HandshakeFailed   atomic.Int64
	HeartbeatTimeouts atomic.Int64
	SlowClients       atomic.Int64 // disconnected because their send queue filled
	RateLimited       atomic.Int64 // requests answered with PIT-429
	Refused           atomic.Int64 // connections refused: MaxConnections reached
	Suspended         atomic.Int64 // sessions suspended when their connection dropped
	Resumed           atomic.Int64 // sessions resumed by a reconnecting client
	ResumeFailed      atomic.Int64 // resumes refused: the client got a fresh session
	Expired           atomic.Int64 // suspended sessions that ended unresumed
	Moved             atomic.Int64 // sessions handed over to another frontend
	Parked            atomic.Int64 // times an idle connection gave its reader goroutine back (ParkIdle)
}

// Frontend serves clients over its acceptors.
type Frontend struct {
	cfg   Config
	ser   codec.Serializer
	codec *codec.MessageCodec
	pool  *session.Pool
	log   *slog.Logger
	stats Stats

	handshakeOK, handshakeRefused []byte
	handshakeFull                 []byte // code 503: MaxConnections reached
	hsSys                         codec.HandshakeResponseSys

	conns sync.WaitGroup
	// queued is the bytes in all send queues (Config.SendBudget), and
	// backlogged the connections with some.
	queued, backlogged atomic.Int64
	park               parking
	// wq is the line of connections waiting for a writer of the pool.
	wq chan *agent

	// links are the links of this frontend's sessions, by the Conn they
	// gave their session: how a session found in the pool leads to its
	// link without a type assertion on session.Conn (see linkOf).
	lmu   sync.RWMutex
	links map[session.Conn]*link

	mu        sync.Mutex
	agents    map[*agent]struct{}
	suspended map[*link]struct{}
	moved     map[string]*tombstone // uid -> where its session went lately
	movedN    atomic.Int32          // len(moved), read without the lock
	acceptors []Acceptor
	empty     chan struct{} // closed when agents drains to empty during Shutdown
	draining  bool
	cancel    context.CancelFunc
	done      chan struct{}
}

// New returns a Frontend; add acceptors, then Start it.
func New(cfg Config) (*Frontend, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	f := &Frontend{
		cfg:       cfg,
		ser:       cfg.Serializer,
		codec:     &codec.MessageCodec{Dict: cfg.Dictionary, Compress: cfg.Compress, CompressThreshold: cfg.CompressThreshold},
		pool:      cfg.Pool,
		log:       cfg.Logger,
		agents:    make(map[*agent]struct{}),
		links:     make(map[session.Conn]*link),
		suspended: make(map[*link]struct{}),
		moved:     make(map[string]*tombstone),
		wq:        make(chan *agent, 1<<16), // 512 KiB: a broadcast to every connection waits in line
	}
	hb := int(math.Ceil(cfg.Heartbeat.Seconds()))
	if hb < 1 {
		hb = 1
	}
	f.hsSys = codec.HandshakeResponseSys{Dict: cfg.Dictionary.Codes(), Heartbeat: hb, Serializer: cfg.Serializer.Name()}
	sys := f.hsSys
	ok, err := json.Marshal(codec.HandshakeResponse{Code: codec.HandshakeOK, Sys: &sys})
	if err != nil {
		return nil, fmt.Errorf("frontend: handshake response: %w", err)
	}
	// Like Pitaya, a large handshake response (a big dictionary) may go
	// zlib-compressed without a flag: clients sniff its leading 0x78.
	if cfg.Compress && len(ok) >= f.codec.Threshold() {
		ok, _ = f.codec.Deflate(ok)
	}
	refused, _ := json.Marshal(codec.HandshakeResponse{Code: codec.HandshakeFailed})
	if f.handshakeOK, err = codec.AppendPacket(nil, codec.Handshake, ok); err != nil {
		return nil, err
	}
	f.handshakeRefused, _ = codec.AppendPacket(nil, codec.Handshake, refused)
	full, _ := json.Marshal(codec.HandshakeResponse{Code: codec.HandshakeUnavailable})
	f.handshakeFull, _ = codec.AppendPacket(nil, codec.Handshake, full)
	return f, nil
}

// Pool is the frontend's session pool.
func (f *Frontend) Pool() *session.Pool { return f.pool }

// Stats are the frontend's counters.
func (f *Frontend) Stats() *Stats { return &f.stats }

// AddAcceptor adds an acceptor; call before Start.
func (f *Frontend) AddAcceptor(a Acceptor) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.acceptors = append(f.acceptors, a)
}

// Acceptors returns the acceptors.
func (f *Frontend) Acceptors() []Acceptor {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Acceptor(nil), f.acceptors...)
}

// Start binds every acceptor and serves until Shutdown. Handlers get
// contexts derived from ctx.
func (f *Frontend) Start(ctx context.Context) error {
	f.mu.Lock()
	if f.done != nil {
		f.mu.Unlock()
		return errors.New("frontend: already started")
	}
	acceptors := append([]Acceptor(nil), f.acceptors...)
	ctx, f.cancel = context.WithCancel(ctx)
	f.done = make(chan struct{})
	f.mu.Unlock()

	for i, a := range acceptors {
		if err := a.Listen(); err != nil {
			for _, b := range acceptors[:i] {
				_ = b.Stop()
			}
			f.cancel()
			return err
		}
	}
	for _, a := range acceptors {
		go func() {
			if err := a.Serve(); err != nil && !errors.Is(err, ErrAcceptorStopped) {
				f.log.Error("acceptor stopped", "addr", a.Addr(), "err", err)
			}
		}()
		go func() {
			for c := range a.Conns() {
				f.accept(ctx, c)
			}
		}()
	}
	go f.heartbeats(ctx)
	for range writers() {
		go f.writer(ctx)
	}
	if f.cfg.ParkIdle > 0 && parkSupported {
		f.park.ctx = ctx
		go f.parkSweep(ctx)
	}
	return nil
}

func (f *Frontend) accept(ctx context.Context, c PlayerConn) {
	if n := f.cfg.MaxConnections; n > 0 && f.stats.Connected.Load() >= int64(n) {
		f.stats.Refused.Add(1)
		go f.refuse(c)
		return
	}
	a := &agent{f: f, conn: c, maxBody: maxPacketSize(c), raw: socketOf(c), sock: readSocketOf(c)}
	if cc, ok := c.(controlled); ok {
		cc.setControl(a.send)
	}
	l := f.newLink(a)
	// The link is in the frontend's table already: its session is set
	// under its lock, as readers of the table (TokenOf) read it.
	s := f.pool.New(l)
	l.mu.Lock()
	l.sess = s
	l.mu.Unlock()
	a.lk.Store(l)
	f.mu.Lock()
	if f.draining {
		f.mu.Unlock()
		_ = c.Close()
		f.pool.Forget(l.sess)
		f.unlink(l)
		return
	}
	f.agents[a] = struct{}{}
	f.conns.Add(1)
	f.mu.Unlock()
	f.stats.Accepted.Add(1)
	f.stats.Connected.Add(1)
	a.hsTimer = time.AfterFunc(f.cfg.HandshakeTimeout, func() {
		if a.state.Load() == stateNew {
			f.log.Info("closing connection: no handshake in time", "remote", c.RemoteAddr())
			_ = a.Close()
		}
	})
	go a.run(ctx)
}

// refuse answers a connection past MaxConnections: it waits briefly for
// the client's handshake (a client reads nothing before sending it),
// answers code 503, and closes.
func (f *Frontend) refuse(c PlayerConn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	pkt, err := c.GetNextMessage()
	if err != nil {
		return
	}
	if t, _, err := codec.ParsePacket(pkt, 0); err == nil && t == codec.Handshake {
		_, _ = c.Write(f.handshakeFull)
	}
}

func (f *Frontend) remove(a *agent) {
	f.mu.Lock()
	if _, ok := f.agents[a]; ok {
		delete(f.agents, a)
		f.stats.Connected.Add(-1)
		f.conns.Done()
	}
	f.mu.Unlock()
}

func (f *Frontend) snapshot() []*agent {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]*agent, 0, len(f.agents))
	for a := range f.agents {
		out = append(out, a)
	}
	return out
}

func (f *Frontend) heartbeats(ctx context.Context) {
	t := time.NewTicker(f.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			for _, a := range f.snapshot() {
				a.beat(now, f.cfg.Heartbeat)
			}
		}
	}
}

// Shutdown drains the frontend: it stops accepting, lets requests in flight
// finish, kicks every client (after its current request) and waits for the
// connections to close. When ctx ends first, the rest are closed at once
// and Shutdown returns ctx's error without waiting for handlers still
// running (their context is cancelled).
func (f *Frontend) Shutdown(ctx context.Context) error {
	f.mu.Lock()
	if f.draining || f.done == nil {
		f.mu.Unlock()
		return nil
	}
	f.draining = true
	acceptors := append([]Acceptor(nil), f.acceptors...)
	f.mu.Unlock()
	for _, a := range acceptors {
		_ = a.Stop()
	}
	for _, a := range f.snapshot() {
		a.drain(ctx)
	}
	closed := make(chan struct{})
	go func() { f.conns.Wait(); close(closed) }()
	var err error
	select {
	case <-closed:
	case <-ctx.Done():
		err = fmt.Errorf("frontend: drain: %w", ctx.Err())
		for _, a := range f.snapshot() {
			_ = a.Close()
		}
		// Not waiting for closed: a reader blocked in a handler ends only
		// when the handler returns; its context is cancelled below.
	}
	// Sessions waiting for their clients end with the frontend.
	f.mu.Lock()
	suspended := make([]*link, 0, len(f.suspended))
	for l := range f.suspended {
		suspended = append(suspended, l)
	}
	f.mu.Unlock()
	for _, l := range suspended {
		l.end()
	}
	f.cancel()
	close(f.done)
	return err
}

// SessionCounts returns the connections open now and the sessions
// suspended while their clients reconnect.
func (f *Frontend) SessionCounts() (connected, suspended int) {
	f.mu.Lock()
	suspended = len(f.suspended)
	f.mu.Unlock()
	return int(f.stats.Connected.Load()), suspended
}

// PushToUsers sends one push to each uid bound on this frontend: v is
// serialized and encoded once for all. It returns the uids it could not
// reach (not connected here, or closed). A session suspended while its
// client reconnects keeps the push for the resume.
func (f *Frontend) PushToUsers(ctx context.Context, route string, v any, uids []string) ([]string, error) {
	return f.PushToUsersID(ctx, route, v, uids, 0)
}

// PushToUsersID is PushToUsers for a cluster push with an id (not 0): a
// session that moved here from another frontend while the push was on its
// way to both drops the second copy.
func (f *Frontend) PushToUsersID(_ context.Context, route string, v any, uids []string, id uint64) ([]string, error) {
	data, err := f.ser.Marshal(v)
	if err != nil {
		return uids, fmt.Errorf("frontend: push %s: %w", route, err)
	}
	pkt, err := f.codec.AppendPacket(nil, &codec.Message{Type: codec.Push, Route: route, Data: data})
	if err != nil {
		return uids, fmt.Errorf("frontend: push %s: %w", route, err)
	}
	var failed []string
	for _, uid := range uids {
		s := f.pool.ByUID(uid)
		if s == nil {
			if id == 0 || !f.pushMoved(uid, MissedPush{ID: id, Pkt: pkt}) {
				failed = append(failed, uid)
			}
			continue
		}
		l := f.linkOf(s)
		if l == nil || l.push(pkt, id) != nil {
			failed = append(failed, uid)
		}
	}
	return failed, nil
}

// EncodePush encodes a push packet of route with an already serialized
// payload, as this frontend sends it.
func (f *Frontend) EncodePush(route string, data []byte) ([]byte, error) {
	return f.codec.AppendPacket(nil, &codec.Message{Type: codec.Push, Route: route, Data: data})
}

func (f *Frontend) isDraining() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.draining
}
