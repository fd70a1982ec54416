package client

import (
	"crypto/tls"
	"sync"
	"time"

	"github.com/nopal-dev/nopal/codec"
)

// Defaults of the options.
const (
	DefaultPushBuffer       = 64
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultWriteTimeout     = 10 * time.Second
)

// Option configures [Dial].
type Option func(*options)

type options struct {
	serializer       codec.Serializer // nil: chosen from the handshake
	sys              codec.HandshakeSys
	user             map[string]any
	tls              *tls.Config
	pushBuffer       int
	localAddr        string
	handshakeTimeout time.Duration
	writeTimeout     time.Duration
	heartbeat        bool
	pool             *codec.BufferPool
	wsWritePool      *wsBufferPool
	autoResume       *autoResume
	resumeFrom       *codec.ResumeRequest
	onState          func(StateEvent)
}

type autoResume struct {
	within time.Duration
	addrs  []string
}

func defaultOptions() options {
	return options{
		sys: codec.HandshakeSys{
			Platform:    "go",
			LibVersion:  "nopal",
			BuildNumber: "1",
			Version:     "1",
		},
		pushBuffer:       DefaultPushBuffer,
		handshakeTimeout: DefaultHandshakeTimeout,
		writeTimeout:     DefaultWriteTimeout,
		heartbeat:        true,
	}
}

// WithSerializer sets the serializer of request, notify and push payloads and
// of error replies. By default the client uses the one the server announces in
// its handshake: [codec.Protobuf] for "protos", [codec.JSON] otherwise.
func WithSerializer(s codec.Serializer) Option {
	return func(o *options) { o.serializer = s }
}

// WithHandshake sets what the client says about itself in its handshake: sys
// is sent as it is, user (which may be nil) as the "user" object. The default
// sys is {platform: "go", libVersion: "nopal", clientBuildNumber: "1",
// clientVersion: "1"} with no user data.
func WithHandshake(sys codec.HandshakeSys, user map[string]any) Option {
	return func(o *options) { o.sys, o.user = sys, user }
}

// WithTLS dials TCP addresses with TLS using cfg. WebSocket clients use TLS
// when the URL is wss://, with cfg if it is given (nil cfg means the system
// roots and the URL's host name).
func WithTLS(cfg *tls.Config) Option {
	return func(o *options) { o.tls = cfg }
}

// WithPushBuffer sets the capacity of the channel returned by
// [Client.Pushes] (default 64). The reader never waits for it: a push that
// arrives while the channel is full is dropped and counted by
// [Client.DroppedPushes]. 0 drops every push, which saves the channel's buffer
// (n × 40 bytes) on connections that never read pushes.
func WithPushBuffer(n int) Option {
	return func(o *options) { o.pushBuffer = max(n, 0) }
}

// WithLocalAddr sets the source address of the connection: an IP address
// ("127.0.0.2") or an ip:port ("127.0.0.2:0"). It applies to TCP and
// WebSocket dialing alike; a load generator uses it to spread many
// connections over several loopback addresses. A malformed address makes
// [Dial] fail.
func WithLocalAddr(addr string) Option {
	return func(o *options) { o.localAddr = addr }
}

// WithHandshakeTimeout bounds dialing plus the handshake (default 10 s), on
// top of the context given to [Dial]; 0 leaves only the context.
func WithHandshakeTimeout(d time.Duration) Option {
	return func(o *options) { o.handshakeTimeout = d }
}

// WithWriteTimeout sets the deadline of every write (default 10 s). A write
// that misses it closes the connection, since the stream may then hold part
// of a packet.
func WithWriteTimeout(d time.Duration) Option {
	return func(o *options) { o.writeTimeout = d }
}

// WithHeartbeat turns the client's own heartbeats on or off (default on).
// When on, and the server announced a heartbeat interval, the client sends a
// Heartbeat packet whenever it has written nothing for that interval. Server
// heartbeats are answered either way.
func WithHeartbeat(on bool) Option {
	return func(o *options) { o.heartbeat = on }
}

// WithBufferPool shares buffers between the clients dialed with this option:
// p lends TCP read buffers (so an idle connection holds none), and the option
// also carries a pool of WebSocket write buffers. Build the option once and
// pass the same value to every Dial: each call of WithBufferPool makes a new
// WebSocket pool. Without it, each client has pools of its own.
func WithBufferPool(p *codec.BufferPool) Option {
	ws := &wsBufferPool{}
	return func(o *options) { o.pool, o.wsWritePool = p, ws }
}

// wsBufferPool implements websocket.BufferPool.
type wsBufferPool struct{ p sync.Pool }

func (w *wsBufferPool) Get() any  { return w.p.Get() }
func (w *wsBufferPool) Put(v any) { w.p.Put(v) }

// DefaultResumeWithin is how long [WithAutoResume] tries by default: the
// server's default resume grace.
const DefaultResumeWithin = 30 * time.Second

// WithAutoResume makes the client survive a dropped connection: it
// reconnects (to the address it dialed, then to each of addrs in turn,
// any frontend of the cluster) with exponential backoff from 20 ms to 1 s,
// and resumes its session with its token and the count of pushes it
// received. Requests in flight get their responses, pushes continue in
// order with none lost or repeated, and the push channel stays open.
// Writes made while the connection is down fail; the client goes on. If no
// server resumes the session within the window (0: DefaultResumeWithin),
// or a server answers with a fresh session, the client ends with an error
// wrapping [ErrSessionLost].
func WithAutoResume(within time.Duration, addrs ...string) Option {
	if within <= 0 {
		within = DefaultResumeWithin
	}
	return func(o *options) { o.autoResume = &autoResume{within: within, addrs: addrs} }
}

// WithResume makes the handshake ask to resume the session of token, whose
// client received pushes pushes. Whether the server resumed it is in
// Handshake().Sys.Resumed; if not, the client has a fresh session.
func WithResume(token string, pushes uint64) Option {
	return func(o *options) { o.resumeFrom = &codec.ResumeRequest{Token: token, Pushes: pushes} }
}

// WithOnState calls f with each change of the connection's state (see
// [StateEvent]): with [WithAutoResume], a dropped connection
// ([StateResuming]) and the session resumed ([StateResumed], on which
// address); then, once, the end of the client: [StateLost] when the resume
// failed, [StateKicked] after a Kick (a server that drains or shuts down
// kicks every client), or [StateClosed] for any other reason, [Client.Close]
// included. The final event is always the last: f is never called after
// it, so a program that waits for it knows f is done.
//
// f is called in order, one call at a time, on a goroutine other than the
// client's reader, started when an event comes and gone when none waits:
// f may block, or call the client's methods ([Client.Close] included),
// without holding up the connection; events queue until it returns.
func WithOnState(f func(StateEvent)) Option {
	return func(o *options) { o.onState = f }
}
