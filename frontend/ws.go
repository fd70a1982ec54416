package frontend

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/nopal-dev/nopal/codec"
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
	corkBufs sync.Pool // *[]byte: the frames of one batch, written at once

	mu      sync.Mutex
	ln      net.Listener
	srv     *http.Server
	stopped bool
}

// NewWSAcceptor returns a WebSocket acceptor for addr.
func NewWSAcceptor(addr string, opts ...WSOption) *WSAcceptor {
	a := &WSAcceptor{addr: addr, opts: newAcceptorOptions(nil), conns: make(chan PlayerConn)}
	// Frame headers and small frames only: payloads are read through it
	// into the connection's own buffer.
	a.upgrader.ReadBufferSize = 256
	a.upgrader.WriteBufferSize = 1024
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
	hw := &hijackCork{ResponseWriter: w, pool: &a.corkBufs}
	c, err := a.upgrader.Upgrade(hw, r, nil)
	if err != nil {
		return // the upgrader has answered with an HTTP error
	}
	c.SetReadLimit(int64(a.opts.maxBody) + codec.HeaderLength)
	a.conns <- &wsConn{ws: c, maxBody: a.opts.maxBody, cork: hw.conn, addr: addr}
}

// hijackCork hands the WebSocket library a connection that can hold its
// writes back (corkConn), so a batch of packets, one frame each, leaves in
// one write instead of one write per frame.
type hijackCork struct {
	http.ResponseWriter
	pool *sync.Pool
	conn *corkConn
}

func (h *hijackCork) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := h.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("frontend: the HTTP server cannot hand over connections")
	}
	c, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	h.conn = &corkConn{Conn: c, pool: h.pool}
	return h.conn, brw, nil
}

// corkConn passes writes through, except between cork and uncork, when it
// keeps them (copied: the library reuses its buffer) and writes them all
// at uncork. Control frames the library writes meanwhile (a pong) join the
// batch; outside a batch they go straight out, whole, like any write.
type corkConn struct {
	net.Conn
	pool *sync.Pool

	mu     sync.Mutex
	corked *[]byte
	wd     time.Time // the write deadline last set on Conn
}

// SetWriteDeadline passes the deadline on unless it is the one already
// set: the library sets it before every frame, and the agent changes it
// at most once a second, so most of those calls would only reset a timer.
func (c *corkConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	same := t.Equal(c.wd)
	c.wd = t
	c.mu.Unlock()
	if same {
		return nil
	}
	return c.Conn.SetWriteDeadline(t)
}

// SetDeadline sets both deadlines, keeping SetWriteDeadline's record.
func (c *corkConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.wd = t
	c.mu.Unlock()
	return c.Conn.SetDeadline(t)
}

func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.corked != nil {
		*c.corked = append(*c.corked, p...)
		c.mu.Unlock()
		return len(p), nil
	}
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *corkConn) cork() {
	b, _ := c.pool.Get().(*[]byte)
	if b == nil {
		b = new([]byte)
	}
	c.mu.Lock()
	c.corked = b
	c.mu.Unlock()
}

func (c *corkConn) uncork() error {
	c.mu.Lock()
	b := c.corked
	c.corked = nil
	c.mu.Unlock()
	_, err := c.Conn.Write(*b)
	if cap(*b) <= 64<<10 {
		*b = (*b)[:0]
		c.pool.Put(b)
	}
	return err
}

// wsConn adapts a WebSocket to a PlayerConn: one binary frame per packet.
type wsConn struct {
	ws      *websocket.Conn
	cork    *corkConn // the connection under ws
	addr    net.Addr  // the client's, from a trusted proxy's header; nil: the socket's
	maxBody int
	// small holds a frame that fits (most game packets do), buf a larger
	// one: an idle connection holds no grown buffer.
	small  [128]byte
	buf    bytes.Buffer
	reader io.Reader // for Read
	wmu    sync.Mutex
}

// MaxPacketSize implements PacketLimited.
func (c *wsConn) MaxPacketSize() int { return c.maxBody }

func (c *wsConn) GetNextMessage() ([]byte, error) {
	mt, r, err := c.ws.NextReader()
	if err != nil {
		return nil, err
	}
	if mt != websocket.BinaryMessage {
		return nil, ErrTextFrame
	}
	// Most packets fit the inline array; a larger one goes to buf.
	var b []byte
	n, err := io.ReadFull(r, c.small[:])
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		b = c.small[:n] // the whole frame
	case err != nil:
		return nil, err
	default:
		c.buf.Reset()
		c.buf.Write(c.small[:])
		if _, err := c.buf.ReadFrom(r); err != nil {
			return nil, err
		}
		b = c.buf.Bytes()
	}
	if len(b) < codec.HeaderLength {
		// Bad input, not the peer going away (which an io.ErrUnexpectedEOF
		// from ParsePacket would read as).
		return nil, fmt.Errorf("%w: frame of %d bytes", codec.ErrPacketLength, len(b))
	}
	if _, _, err := codec.ParsePacket(b, c.maxBody); err != nil {
		return nil, err
	}
	if c.buf.Cap() > 64<<10 {
		c.buf = bytes.Buffer{} // do not keep a large buffer for an idle connection
		return append([]byte(nil), b...), nil
	}
	return b, nil
}

func (c *wsConn) Read(p []byte) (int, error) {
	for {
		if c.reader == nil {
			mt, r, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			if mt != websocket.BinaryMessage {
				return 0, ErrTextFrame
			}
			c.reader = r
		}
		n, err := c.reader.Read(p)
		if errors.Is(err, io.EOF) {
			c.reader = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

func (c *wsConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// WriteBatch writes the packets, a frame each, in one write to the socket.
func (c *wsConn) WriteBatch(pkts [][]byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if len(pkts) == 1 || c.cork == nil {
		for _, p := range pkts {
			if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
				return err
			}
		}
		return nil
	}
	c.cork.cork()
	var err error
	for _, p := range pkts {
		if err = c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
			break
		}
	}
	if uerr := c.cork.uncork(); err == nil {
		err = uerr
	}
	return err
}

func (c *wsConn) Close() error        { return c.ws.Close() }
func (c *wsConn) LocalAddr() net.Addr { return c.ws.LocalAddr() }
func (c *wsConn) RemoteAddr() net.Addr {
	if c.addr != nil {
		return c.addr
	}
	return c.ws.RemoteAddr()
}
func (c *wsConn) SetReadDeadline(t time.Time) error  { return c.ws.SetReadDeadline(t) }
func (c *wsConn) SetWriteDeadline(t time.Time) error { return c.ws.SetWriteDeadline(t) }
func (c *wsConn) SetDeadline(t time.Time) error {
	if err := c.ws.SetReadDeadline(t); err != nil {
		return err
	}
	return c.ws.SetWriteDeadline(t)
}

// AnyOrigin accepts WebSocket upgrades from every origin (Pitaya's default).
func AnyOrigin(*http.Request) bool { return true }
