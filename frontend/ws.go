package frontend

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// ErrTextFrame is returned for a WebSocket text frame: clients must send
// binary frames.
var ErrTextFrame = errors.New("frontend: websocket text frame")

// WSOption configures a WebSocket acceptor.
type WSOption func(*WSAcceptor)

// WithCheckOrigin decides which browser origins may connect. The default
// accepts requests without an Origin header (native clients) and those whose
// origin is the host they connect to; pass a function returning true to
// accept every origin as Pitaya does.
func WithCheckOrigin(f func(r *http.Request) bool) WSOption {
	return func(a *WSAcceptor) { a.upgrader.CheckOrigin = f }
}

// WithHTTPHandler serves plain HTTP requests (those that are not WebSocket
// upgrades) with h, for example a page that hosts a web client.
func WithHTTPHandler(h http.Handler) WSOption { return func(a *WSAcceptor) { a.http = h } }

// WithWSOptions applies the common acceptor options (TLS, max packet size,
// PROXY protocol).
func WithWSOptions(opts ...AcceptorOption) WSOption {
	return func(a *WSAcceptor) { a.opts = newAcceptorOptions(opts) }
}

// WSAcceptor accepts clients over WebSocket: binary frames, exactly one
// packet per frame. Upgrades on any path are accepted.
type WSAcceptor struct {
	addr     string
	opts     acceptorOptions
	upgrader websocket.Upgrader
	http     http.Handler
	fwd      *forwarding // WithTrustedProxies
	err      error       // an invalid option: Listen returns it
	conns    chan PlayerConn
	bufs     sync.Pool // *[]byte: read buffers of frames larger than a connection's own

	mu      sync.Mutex
	ln      net.Listener
	srv     *http.Server
	stopped bool
}

// NewWSAcceptor returns a WebSocket acceptor for addr.
func NewWSAcceptor(addr string, opts ...WSOption) *WSAcceptor {
	a := &WSAcceptor{addr: addr, opts: newAcceptorOptions(nil), conns: make(chan PlayerConn)}
	// The library answers the upgrade only (frames are read and written
	// in wsconn.go): its buffers are the smallest it takes, and the write
	// buffer, taken from the pool only on a write, is never taken.
	a.upgrader.ReadBufferSize = 128
	a.upgrader.WriteBufferSize = 128
	a.upgrader.WriteBufferPool = &sync.Pool{}
	for _, o := range opts {
		o(a)
	}
	if a.fwd != nil {
		a.err = a.fwd.resolve()
	}
	return a
}

// Listen binds the address. It fails on an invalid option.
func (a *WSAcceptor) Listen() error {
	if err := cmp.Or(a.err, a.opts.err); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", a.addr)
	if err != nil {
		return fmt.Errorf("frontend: websocket listen %s: %w", a.addr, err)
	}
	// With the PROXY protocol the HTTP server reads each header on the
	// connection's goroutine, and requests carry the client's address.
	ln = a.opts.listener(ln)
	a.mu.Lock()
	a.ln = ln
	a.srv = &http.Server{
		Handler: a, ReadHeaderTimeout: 10 * time.Second,
		// Keep-alive connections that never upgrade (page loads) go.
		IdleTimeout: 60 * time.Second,
		// TLS handshake failures from scanners and the like are noise:
		// logged at debug level, through slog.
		ErrorLog: slog.NewLogLogger(slog.Default().Handler(), slog.LevelDebug),
	}
	a.mu.Unlock()
	return nil
}

// Addr is the bound address (nil before Listen).
func (a *WSAcceptor) Addr() net.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ln == nil {
		return nil
	}
	return a.ln.Addr()
}

// Conns delivers accepted connections.
func (a *WSAcceptor) Conns() <-chan PlayerConn { return a.conns }

// Serve serves HTTP until Stop.
func (a *WSAcceptor) Serve() error {
	a.mu.Lock()
	ln, srv := a.ln, a.srv
	a.mu.Unlock()
	if ln == nil {
		return errors.New("frontend: websocket acceptor not listening")
	}
	err := srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return ErrAcceptorStopped
	}
	return fmt.Errorf("frontend: websocket serve: %w", err)
}

// Stop closes the listener; upgraded connections live on.
func (a *WSAcceptor) Stop() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stopped = true
	if a.srv == nil {
		return nil
	}
	return a.srv.Close()
}

// ServeHTTP upgrades WebSocket requests and hands the rest to the HTTP
// handler given with WithHTTPHandler.
func (a *WSAcceptor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !websocket.IsWebSocketUpgrade(r) {
		if a.http != nil {
			a.http.ServeHTTP(w, r)
			return
		}
		http.NotFound(w, r)
		return
	}
	if a.err != nil {
		// Mounted in another server without Listen, misconfigured.
		http.Error(w, "websocket acceptor misconfigured", http.StatusInternalServerError)
		return
	}
	var addr net.Addr // nil: the socket's
	if a.fwd != nil {
		var err error
		if addr, err = a.fwd.clientAddr(r); err != nil {
			w.Header().Set("Connection", "close")
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
	}
	c, err := a.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered with an HTTP error
	}
	// From here on the frames are read and written in wsconn.go: the
	// library's Conn is dropped, only the connection under it is kept.
	a.conns <- newWSConn(c.NetConn(), addr, a.opts.maxBody, &a.bufs)
}

// AnyOrigin accepts WebSocket upgrades from every origin (Pitaya's default).
func AnyOrigin(*http.Request) bool { return true }
