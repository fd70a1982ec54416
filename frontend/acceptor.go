package frontend

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/nopal-dev/nopal/codec"
)

// DefaultMaxPacketSize is the default limit on a packet body: larger packets
// close the connection that sent them.
const DefaultMaxPacketSize = 1 << 20

// ErrAcceptorStopped is returned by Serve after Stop.
var ErrAcceptorStopped = errors.New("frontend: acceptor stopped")

// PlayerConn is one client connection handed over by an acceptor.
type PlayerConn interface {
	// GetNextMessage returns the next whole packet, header included. The
	// slice is valid until the next call.
	GetNextMessage() ([]byte, error)
	// Write sends one whole packet.
	net.Conn
}

// BatchWriter is implemented by connections that can send several packets
// in one go (a TCP connection uses writev). The agent uses it when present.
type BatchWriter interface {
	WriteBatch(pkts [][]byte) error
}

// Acceptor accepts client connections.
type Acceptor interface {
	// Listen binds the acceptor's address; Addr is valid after it.
	Listen() error
	// Serve accepts connections until Stop, sending each on Conns.
	Serve() error
	// Addr is the bound address.
	Addr() net.Addr
	// Conns delivers accepted connections.
	Conns() <-chan PlayerConn
	// Stop closes the listener; connections already accepted live on.
	Stop() error
}

// AcceptorOption configures the TCP and WebSocket acceptors.
type AcceptorOption func(*acceptorOptions)

type acceptorOptions struct {
	tls     *tls.Config
	maxBody int
	pool    *codec.BufferPool
	proxy   *proxyOptions // WithProxyProtocol
	err     error         // an invalid option: Listen returns it
}

// WithTLS serves TLS with cfg.
func WithTLS(cfg *tls.Config) AcceptorOption { return func(o *acceptorOptions) { o.tls = cfg } }

// WithMaxPacketSize limits packet bodies to n bytes (default
// DefaultMaxPacketSize); a larger packet closes its connection.
func WithMaxPacketSize(n int) AcceptorOption { return func(o *acceptorOptions) { o.maxBody = n } }

// WithBufferPool shares read buffers with other acceptors.
func WithBufferPool(p *codec.BufferPool) AcceptorOption {
	return func(o *acceptorOptions) { o.pool = p }
}

func newAcceptorOptions(opts []AcceptorOption) acceptorOptions {
	o := acceptorOptions{maxBody: DefaultMaxPacketSize}
	for _, opt := range opts {
		opt(&o)
	}
	if o.maxBody <= 0 || o.maxBody > codec.MaxPacketBody {
		o.maxBody = codec.MaxPacketBody
	}
	if o.pool == nil {
		o.pool = &codec.BufferPool{}
	}
	if o.proxy != nil {
		o.err = o.proxy.resolve()
	}
	return o
}

// TCPAcceptor accepts clients over TCP (optionally TLS).
type TCPAcceptor struct {
	addr  string
	opts  acceptorOptions
	conns chan PlayerConn

	mu      sync.Mutex
	ln      net.Listener
	stopped bool
	done    chan struct{} // closed by Stop
}

// NewTCPAcceptor returns an acceptor for addr ("127.0.0.1:3250"; port 0
// picks a free one).
func NewTCPAcceptor(addr string, opts ...AcceptorOption) *TCPAcceptor {
	return &TCPAcceptor{addr: addr, opts: newAcceptorOptions(opts), conns: make(chan PlayerConn), done: make(chan struct{})}
}

// Listen binds the address. It fails on an invalid option.
func (a *TCPAcceptor) Listen() error {
	if a.opts.err != nil {
		return a.opts.err
	}
	ln, err := net.Listen("tcp", a.addr)
	if err != nil {
		return fmt.Errorf("frontend: tcp listen %s: %w", a.addr, err)
	}
	ln = a.opts.listener(ln)
	a.mu.Lock()
	a.ln = ln
	a.mu.Unlock()
	return nil
}

// Addr is the bound address (nil before Listen).
func (a *TCPAcceptor) Addr() net.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ln == nil {
		return nil
	}
	return a.ln.Addr()
}

// Conns delivers accepted connections.
func (a *TCPAcceptor) Conns() <-chan PlayerConn { return a.conns }

// Serve accepts until Stop.
func (a *TCPAcceptor) Serve() error {
	a.mu.Lock()
	ln := a.ln
	a.mu.Unlock()
	if ln == nil {
		return errors.New("frontend: tcp acceptor not listening")
	}
	return a.serve(ln)
}

// serve accepts on ln until Stop. An accept error other than the listener
// closing (out of file descriptors, a connection aborted before accept)
// does not stop the acceptor: it retries with a backoff from 5 ms to 1 s,
// as net/http does, and serves again once the condition passes.
func (a *TCPAcceptor) serve(ln net.Listener) error {
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			a.mu.Lock()
			stopped := a.stopped
			a.mu.Unlock()
			if stopped || errors.Is(err, net.ErrClosed) {
				return ErrAcceptorStopped
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			time.Sleep(backoff) // nothing to wait on: the condition is the kernel's
			continue
		}
		backoff = 0
		if a.opts.proxy != nil {
			// The PROXY header is read on a goroutine of its own: a peer
			// slow to send it holds up no one else.
			go a.handOver(c)
			continue
		}
		a.conns <- a.newConn(c, c)
	}
}

// handOver reads c's PROXY header, then hands c over, unless the acceptor
// stops first.
func (a *TCPAcceptor) handOver(c net.Conn) {
	w := readProxyHeader(c)
	select {
	case a.conns <- a.newConn(c, w):
	case <-a.done:
		_ = c.Close()
	}
}

// newConn wraps c; batches are written to w (c or the socket under it).
func (a *TCPAcceptor) newConn(c, w net.Conn) *tcpConn {
	return &tcpConn{Conn: c, w: w, r: codec.NewPacketReader(c, a.opts.pool, a.opts.maxBody), maxBody: a.opts.maxBody}
}

// Stop closes the listener.
func (a *TCPAcceptor) Stop() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.stopped {
		close(a.done)
	}
	a.stopped = true
	if a.ln == nil {
		return nil
	}
	return a.ln.Close()
}

type tcpConn struct {
	net.Conn
	w       net.Conn // for WriteBatch: the socket itself when Conn only reads a PROXY header off it
	r       *codec.PacketReader
	maxBody int
}

// MaxPacketSize implements PacketLimited.
func (c *tcpConn) MaxPacketSize() int { return c.maxBody }

// PacketLimited is implemented by a PlayerConn whose packets are bounded
// (the built-in acceptors', see WithMaxPacketSize): a compressed payload
// may not inflate past that bound either. Wrappers should pass it on.
type PacketLimited interface {
	MaxPacketSize() int
}

// maxPacketSize returns c's packet bound, or 0 when it has none.
func maxPacketSize(c PlayerConn) int {
	if p, ok := c.(PacketLimited); ok {
		return p.MaxPacketSize()
	}
	return 0
}

func (c *tcpConn) GetNextMessage() ([]byte, error) {
	_, _, pkt, err := c.r.Next()
	return pkt, err
}

func (c *tcpConn) WriteBatch(pkts [][]byte) error {
	if len(pkts) == 1 {
		_, err := c.w.Write(pkts[0])
		return err
	}
	bufs := net.Buffers(pkts)
	_, err := bufs.WriteTo(c.w)
	return err
}
