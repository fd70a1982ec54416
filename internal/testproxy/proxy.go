package testproxy

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
)

// Proxy forwards the TCP connections it accepts to one server address.
type Proxy struct {
	ln   net.Listener
	to   string
	done chan struct{} // closed by Close: nothing is held any more
	wg   sync.WaitGroup
	once sync.Once

	mu    sync.Mutex
	conns map[net.Conn]struct{} // nil once closed
	gate  *gate
}

// gate holds the first bytes from the server that contain marker.
type gate struct {
	marker        []byte
	held, release chan struct{}
}

// New listens on a free loopback port and forwards every connection to
// to (host:port) until Close.
func New(to string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("testproxy: %w", err)
	}
	p := &Proxy{ln: ln, to: to, done: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Start is New for a test: the proxy is closed when the test ends.
func Start(t testing.TB, to string) *Proxy {
	t.Helper()
	p, err := New(to)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's address (host:port).
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.to)
		if err != nil {
			_ = c.Close()
			continue
		}
		if !p.track(c, s) {
			return
		}
		p.wg.Add(2)
		go func() {
			defer p.wg.Done()
			_, _ = io.Copy(s, c)
			_ = s.Close()
			_ = c.Close()
		}()
		go func() {
			defer p.wg.Done()
			p.toClient(c, s)
			_ = c.Close()
			_ = s.Close()
		}()
	}
}

// track records a pair of connections; once the proxy is closed it closes
// them instead and reports false.
func (p *Proxy) track(c, s net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		_ = c.Close()
		_ = s.Close()
		return false
	}
	p.conns[c], p.conns[s] = struct{}{}, struct{}{}
	return true
}

// toClient copies the server's bytes to the client, stopping at an armed
// gate until it is released.
func (p *Proxy) toClient(c, s net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := s.Read(buf)
		if n > 0 {
			if g := p.take(buf[:n]); g != nil {
				close(g.held)
				select {
				case <-g.release:
				case <-p.done:
					return
				}
			}
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// take disarms and returns the gate if b holds its marker.
func (p *Proxy) take(b []byte) *gate {
	p.mu.Lock()
	defer p.mu.Unlock()
	g := p.gate
	if g == nil || !bytes.Contains(b, g.marker) {
		return nil
	}
	p.gate = nil
	return g
}

// HoldNext arms the proxy: the next bytes a server sends to a client that
// contain marker are held (held is then closed) until release is called.
// The server has served the request they answer; the client waits. Bytes
// read from the server before them pass; those after them wait behind them.
func (p *Proxy) HoldNext(marker string) (held <-chan struct{}, release func()) {
	g := &gate{marker: []byte(marker), held: make(chan struct{}), release: make(chan struct{})}
	p.mu.Lock()
	p.gate = g
	p.mu.Unlock()
	var once sync.Once
	return g.held, func() { once.Do(func() { close(g.release) }) }
}

// Cut closes the connections through the proxy, as a network failure
// would; it goes on accepting new ones.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		_ = c.Close()
		delete(p.conns, c)
	}
}

// Close cuts the connections and stops listening, so that the address is
// dead, and waits for the proxy's goroutines. It may be called again.
func (p *Proxy) Close() {
	p.once.Do(func() {
		close(p.done)
		_ = p.ln.Close()
		p.mu.Lock()
		for c := range p.conns {
			_ = c.Close()
		}
		p.conns = nil // a connection accepted meanwhile is closed by track
		p.mu.Unlock()
		p.wg.Wait()
	})
}
