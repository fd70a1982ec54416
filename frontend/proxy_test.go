package frontend_test

// Client addresses behind a load balancer, over real sockets: PROXY protocol
// headers on the TCP (and WebSocket) acceptor, X-Forwarded-For and
// Forwarded on WebSocket upgrades, from trusted and untrusted peers. Every
// peer of these tests is on loopback: "trusted" acceptors trust loopback,
// "untrusted" ones trust only 192.0.2.0/24.

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pires/go-proxyproto"

	"github.com/nopal-dev/nopal/client"
	"github.com/nopal-dev/nopal/codec"
	"github.com/nopal-dev/nopal/frontend"
	"github.com/nopal-dev/nopal/session"
)

var (
	loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	// elsewhere holds no test peer.
	elsewhere = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
)

// proxyFront is a Frontend with one acceptor per configuration under test.
type proxyFront struct {
	fe    *frontend.Frontend
	logs  *logRecorder
	addrs map[string]string // acceptor name → host:port
}

// startProxyFront starts a Frontend (no App) whose handler answers t.addr
// with the session's RemoteAddr, on these acceptors:
//
//	tcp            PROXY protocol, loopback trusted, behind a RateLimiter
//	tcp-untrusted  PROXY protocol, loopback not trusted
//	tcp-tls        PROXY protocol, loopback trusted, then TLS
//	ws             X-Forwarded-For, loopback trusted
//	ws-forwarded   Forwarded, loopback trusted
//	ws-untrusted   X-Forwarded-For, loopback not trusted
//	ws-proxy       PROXY protocol on the WebSocket acceptor, loopback trusted
func startProxyFront(t *testing.T, tlsCfg *tls.Config) *proxyFront {
	t.Helper()
	logs := &logRecorder{}
	fe, err := frontend.New(frontend.Config{
		Pool:   session.NewPool(discardLogger()),
		Logger: slog.New(logs),
		Handler: frontend.HandlerFunc(func(ctx context.Context, msg *codec.Message) ([]byte, error) {
			if msg.Route == "t.addr" {
				return json.Marshal(session.FromContext(ctx).RemoteAddr().String())
			}
			return nil, codec.NewError(codec.CodeNotFound, "no route "+msg.Route, nil)
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	rl, err := frontend.NewRateLimiter(1000, time.Second, true)
	if err != nil {
		t.Fatal(err)
	}
	acceptors := map[string]frontend.Acceptor{
		"tcp":           frontend.WithWrappers(frontend.NewTCPAcceptor("127.0.0.1:0", frontend.WithProxyProtocol(loopback...)), rl),
		"tcp-untrusted": frontend.NewTCPAcceptor("127.0.0.1:0", frontend.WithProxyProtocol(elsewhere...)),
		"tcp-tls":       frontend.NewTCPAcceptor("127.0.0.1:0", frontend.WithProxyProtocol(loopback...), frontend.WithTLS(tlsCfg)),
		"ws":            frontend.NewWSAcceptor("127.0.0.1:0", frontend.WithTrustedProxies(loopback...)),
		"ws-forwarded": frontend.NewWSAcceptor("127.0.0.1:0", frontend.WithTrustedProxies(loopback...),
			frontend.WithForwardedHeader(frontend.HeaderForwarded)),
		"ws-untrusted": frontend.NewWSAcceptor("127.0.0.1:0", frontend.WithTrustedProxies(elsewhere...)),
		"ws-proxy":     frontend.NewWSAcceptor("127.0.0.1:0", frontend.WithWSOptions(frontend.WithProxyProtocol(loopback...))),
	}
	for _, a := range acceptors {
		fe.AddAcceptor(a)
	}
	if err := fe.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	p := &proxyFront{fe: fe, logs: logs, addrs: map[string]string{}}
	for name, a := range acceptors {
		p.addrs[name] = a.Addr().String()
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := fe.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return p
}

// dialTCP connects to acceptor name and writes prefix (a PROXY header, or
// nothing) first.
func (p *proxyFront) dialTCP(t *testing.T, name string, prefix []byte) *rawConn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", p.addrs[name], waitTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	c := &rawConn{t: t, nc: nc}
	if len(prefix) > 0 {
		c.write(prefix)
	}
	return c
}

// sessionAddr asks the server for the session's address (t.addr).
func sessionAddr(c *rawConn, id uint64) string {
	c.t.Helper()
	c.request(id, "t.addr", nil)
	m := c.response(id)
	var addr string
	if m.Err || json.Unmarshal(m.Data, &addr) != nil {
		c.t.Fatalf("t.addr: %q (error flag %v)", m.Data, m.Err)
	}
	return addr
}

// socketAddr is the address the server sees for c without any header.
func socketAddr(c *rawConn) string {
	if c.ws != nil {
		return c.ws.LocalAddr().String()
	}
	return c.nc.LocalAddr().String()
}

func proxyHeader(t *testing.T, version byte, src, dst string) []byte {
	t.Helper()
	h := proxyproto.HeaderProxyFromAddrs(version,
		net.TCPAddrFromAddrPort(netip.MustParseAddrPort(src)),
		net.TCPAddrFromAddrPort(netip.MustParseAddrPort(dst)))
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func v2Local(t *testing.T) []byte {
	t.Helper()
	b, err := (&proxyproto.Header{Version: 2, Command: proxyproto.LOCAL, TransportProtocol: proxyproto.UNSPEC}).Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// handshakePackets is a client's handshake and its ack, as they go on the
// wire.
func handshakePackets(t *testing.T) []byte {
	t.Helper()
	body, err := json.Marshal(codec.HandshakeRequest{Sys: codec.HandshakeSys{Platform: "test", LibVersion: "0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	return append(packet(codec.Handshake, body), packet(codec.HandshakeAck, nil)...)
}

// The PROXY header of a trusted peer gives the session the client's
// address, v1 and v2, IPv4 and IPv6, with or without the handshake in the
// same segment, through a rate limiter and under TLS; a header without an
// address, or none, leaves the peer's; the header of an untrusted peer is
// read and ignored.
func TestProxyProtocolAddress(t *testing.T) {
	t.Parallel()
	cert, pool := selfSigned(t)
	p := startProxyFront(t, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	const v4src, v4dst = "203.0.113.7:51000", "198.51.100.1:3250"
	const v6src, v6dst = "[2001:db8::7]:51000", "[2001:db8::1]:3250"

	cases := []struct {
		name     string
		acceptor string
		header   []byte
		together bool   // header, handshake and ack in one write
		want     string // "": the socket's address
	}{
		{name: "v1 trusted", acceptor: "tcp", header: proxyHeader(t, 1, v4src, v4dst), want: v4src},
		{name: "v2 trusted", acceptor: "tcp", header: proxyHeader(t, 2, v4src, v4dst), want: v4src},
		{name: "v1 IPv6 trusted", acceptor: "tcp", header: proxyHeader(t, 1, v6src, v6dst), want: v6src},
		{name: "v2 IPv6 trusted", acceptor: "tcp", header: proxyHeader(t, 2, v6src, v6dst), want: v6src},
		{name: "v1 with the handshake in one segment", acceptor: "tcp", header: proxyHeader(t, 1, v4src, v4dst), together: true, want: v4src},
		{name: "v2 with the handshake in one segment", acceptor: "tcp", header: proxyHeader(t, 2, v6src, v6dst), together: true, want: v6src},
		{name: "v1 UNKNOWN trusted", acceptor: "tcp", header: []byte("PROXY UNKNOWN\r\n")},
		{name: "v2 LOCAL trusted", acceptor: "tcp", header: v2Local(t)},
		{name: "no header trusted", acceptor: "tcp"},
		{name: "v1 untrusted", acceptor: "tcp-untrusted", header: proxyHeader(t, 1, v4src, v4dst)},
		{name: "v2 untrusted", acceptor: "tcp-untrusted", header: proxyHeader(t, 2, v4src, v4dst)},
		{name: "v2 untrusted in one segment", acceptor: "tcp-untrusted", header: proxyHeader(t, 2, v4src, v4dst), together: true},
		{name: "no header untrusted", acceptor: "tcp-untrusted"},
		{name: "v2 then TLS", acceptor: "tcp-tls", header: proxyHeader(t, 2, v4src, v4dst), want: v4src},
		{name: "v1 then TLS", acceptor: "tcp-tls", header: proxyHeader(t, 1, v6src, v6dst), want: v6src},
		{name: "TLS without header", acceptor: "tcp-tls"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var c *rawConn
			switch {
			case tc.acceptor == "tcp-tls":
				c = p.dialTCP(t, tc.acceptor, tc.header)
				c.nc = tls.Client(c.nc, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12})
				c.ready()
			case tc.together:
				c = p.dialTCP(t, tc.acceptor, append(append([]byte(nil), tc.header...), handshakePackets(t)...))
				if hs := c.handshakeResponse(); hs.Code != codec.HandshakeOK {
					t.Fatalf("handshake code %d", hs.Code)
				}
			default:
				c = p.dialTCP(t, tc.acceptor, tc.header)
				c.ready()
			}
			want := tc.want
			if want == "" {
				want = socketAddr(c)
			}
			if got := sessionAddr(c, 1); got != want {
				t.Fatalf("session address %s, want %s", got, want)
			}
			if got := sessionAddr(c, 2); got != want { // and it stays
				t.Fatalf("session address %s on the second request, want %s", got, want)
			}
		})
	}
}

// A malformed PROXY header, from a trusted peer or not, closes that
// connection as bad input, logged with the peer's address; clients
// connected before and after are served. A connection that was given a
// client address by its header is logged with that address.
func TestProxyProtocolMalformed(t *testing.T) {
	t.Parallel()
	p := startProxyFront(t, nil)
	before := dialProxyClient(t, p.addrs["tcp"])

	sig := []byte("\r\n\r\n\x00\r\nQUIT\n")
	cases := []struct {
		name   string
		header []byte
	}{
		{"v1 bad address", []byte("PROXY TCP4 203.0.113.999 198.51.100.1 51000 3250\r\n")},
		{"v1 bad port", []byte("PROXY TCP4 203.0.113.7 198.51.100.1 99999 3250\r\n")},
		{"v1 family mismatch", []byte("PROXY TCP4 2001:db8::7 198.51.100.1 51000 3250\r\n")},
		{"v1 without CRLF", append([]byte("PROXY TCP4 "), bytes.Repeat([]byte("9"), 120)...)},
		{"v2 unknown version", append(append([]byte(nil), sig...), 0x31, 0x11, 0, 12, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12)},
		{"v2 too short for TCP4", append(append([]byte(nil), sig...), 0x21, 0x11, 0, 4, 1, 2, 3, 4)},
	}
	malformed := p.fe.Stats().Malformed.Load()
	for _, acceptor := range []string{"tcp", "tcp-untrusted"} {
		for _, tc := range cases {
			t.Run(acceptor+"/"+tc.name, func(t *testing.T) {
				c := p.dialTCP(t, acceptor, tc.header)
				c.expectClosed()
				if !p.logs.has("closing connection: bad input", socketAddr(c)) {
					t.Fatalf("no bad-input log line for %s", socketAddr(c))
				}
			})
		}
	}
	want := malformed + 2*int64(len(cases))
	eventually(t, "malformed count", func() bool { return p.fe.Stats().Malformed.Load() >= want })

	if got := requestAddr(t, before); got != before.LocalAddr() {
		t.Fatalf("client connected before: address %s, want %s", got, before.LocalAddr())
	}
	after := dialProxyClient(t, p.addrs["tcp-untrusted"])
	if got := requestAddr(t, after); got != after.LocalAddr() {
		t.Fatalf("client connected after: address %s, want %s", got, after.LocalAddr())
	}

	// Bad input after a valid header is logged with the client's address.
	c := p.dialTCP(t, "tcp", proxyHeader(t, 1, "203.0.113.9:40000", "198.51.100.1:3250"))
	c.write([]byte{0x09, 0, 0, 0}) // no such packet type
	c.expectClosed()
	if !p.logs.has("closing connection: bad input", "203.0.113.9:40000") {
		t.Fatal("the bad input after a PROXY header is not logged with the client's address")
	}
}

// A peer slow to send its PROXY header holds up no other connection.
func TestProxyProtocolSlowPeer(t *testing.T) {
	t.Parallel()
	p := startProxyFront(t, nil)
	for range 3 {
		p.dialTCP(t, "tcp", nil) // silent: the header is awaited
	}
	start := time.Now()
	c := dialProxyClient(t, p.addrs["tcp"])
	if got := requestAddr(t, c); got != c.LocalAddr() {
		t.Fatalf("address %s, want %s", got, c.LocalAddr())
	}
	if took := time.Since(start); took >= frontend.ProxyHeaderTimeout {
		t.Fatalf("a client waited %v behind peers that send no header", took)
	}
}

// proxyClient is a Go client with the local address of its socket.
type proxyClient struct {
	*client.Client
	local string
}

func (c proxyClient) LocalAddr() string { return c.local }

// dialProxyClient connects the repository's Go client over TCP from a
// known local port, without a PROXY header.
func dialProxyClient(t *testing.T, addr string) proxyClient {
	t.Helper()
	// Reserve a free port, then dial from it: the server's view of the
	// client's address is then known.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	local := l.Addr().String()
	_ = l.Close()
	c, err := client.Dial(testCtx(t), addr, client.WithLocalAddr(local))
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return proxyClient{Client: c, local: local}
}

func requestAddr(t *testing.T, c proxyClient) string {
	t.Helper()
	var addr string
	if err := c.Request(testCtx(t), "t.addr", nil, &addr); err != nil {
		t.Fatalf("t.addr: %v", err)
	}
	return addr
}

// X-Forwarded-For and Forwarded from a trusted peer give the WebSocket
// session the client's address; from an untrusted peer, or in the header
// the acceptor does not read, they are ignored; a malformed address where
// one is read refuses the upgrade with 400, and that connection only.
func TestForwardedHeaders(t *testing.T) {
	t.Parallel()
	p := startProxyFront(t, nil)
	const xff, fwd = "X-Forwarded-For", "Forwarded"
	cases := []struct {
		name     string
		acceptor string
		header   http.Header
		want     string // "": the socket's address; "400": refused
	}{
		{"xff one", "ws", http.Header{xff: {"198.51.100.4"}}, "198.51.100.4:0"},
		{"xff rightmost untrusted", "ws", http.Header{xff: {"203.0.113.66, 198.51.100.4, 127.0.0.9"}}, "198.51.100.4:0"},
		{"xff lines joined", "ws", http.Header{xff: {"203.0.113.66", "198.51.100.4, 127.0.0.9"}}, "198.51.100.4:0"},
		{"xff with port", "ws", http.Header{xff: {"198.51.100.4:4711"}}, "198.51.100.4:4711"},
		{"xff IPv6", "ws", http.Header{xff: {"2001:db8::4"}}, "[2001:db8::4]:0"},
		{"xff bracketed IPv6 with port", "ws", http.Header{xff: {"[2001:db8::4]:4711, ::1"}}, "[2001:db8::4]:4711"},
		{"xff IPv4-mapped", "ws", http.Header{xff: {"::ffff:198.51.100.4"}}, "198.51.100.4:0"},
		{"xff all trusted: the leftmost", "ws", http.Header{xff: {"127.0.0.2, 127.0.0.3"}}, "127.0.0.2:0"},
		{"xff garbage left of the client", "ws", http.Header{xff: {"<script>, 198.51.100.4"}}, "198.51.100.4:0"},
		{"xff empty entries", "ws", http.Header{xff: {", 198.51.100.4,"}}, "198.51.100.4:0"},
		{"xff unknown", "ws", http.Header{xff: {"unknown"}}, ""},
		{"xff malformed", "ws", http.Header{xff: {"198.51.100.400"}}, "400"},
		{"xff malformed behind a trusted hop", "ws", http.Header{xff: {"nonsense, 127.0.0.5"}}, "400"},
		{"xff bad port", "ws", http.Header{xff: {"198.51.100.4:70000"}}, "400"},
		{"xff absent", "ws", nil, ""},
		{"forwarded ignored by an xff acceptor", "ws", http.Header{fwd: {"for=198.51.100.4"}}, ""},
		{"forwarded", "ws-forwarded", http.Header{fwd: {"for=198.51.100.4;proto=https;by=127.0.0.1"}}, "198.51.100.4:0"},
		{"forwarded chain", "ws-forwarded", http.Header{fwd: {`for=203.0.113.66, for="[2001:db8::4]:4711";proto=http, for=127.0.0.9`}}, "[2001:db8::4]:4711"},
		{"forwarded lines joined", "ws-forwarded", http.Header{fwd: {"for=203.0.113.66", "for=198.51.100.4:80"}}, "198.51.100.4:80"},
		{"forwarded name case", "ws-forwarded", http.Header{fwd: {`Proto=https; FOR="198.51.100.4"`}}, "198.51.100.4:0"},
		{"forwarded obfuscated port", "ws-forwarded", http.Header{fwd: {`for="198.51.100.4:_p1"`}}, "198.51.100.4:0"},
		{"forwarded hidden", "ws-forwarded", http.Header{fwd: {"for=_hidden, for=127.0.0.9"}}, ""},
		{"forwarded unknown", "ws-forwarded", http.Header{fwd: {"for=unknown"}}, ""},
		{"forwarded without for", "ws-forwarded", http.Header{fwd: {"proto=https"}}, ""},
		{"forwarded unterminated quote", "ws-forwarded", http.Header{fwd: {`for="198.51.100.4`}}, "400"},
		{"forwarded two for in one element", "ws-forwarded", http.Header{fwd: {"for=198.51.100.4;for=198.51.100.5"}}, "400"},
		{"forwarded not a pair", "ws-forwarded", http.Header{fwd: {"198.51.100.4"}}, "400"},
		{"forwarded bad address", "ws-forwarded", http.Header{fwd: {"for=host.example"}}, "400"},
		{"xff ignored by a forwarded acceptor", "ws-forwarded", http.Header{xff: {"198.51.100.4"}}, ""},
		{"untrusted xff", "ws-untrusted", http.Header{xff: {"198.51.100.4"}}, ""},
		{"untrusted malformed xff", "ws-untrusted", http.Header{xff: {"nonsense"}}, ""},
		{"untrusted forwarded", "ws-untrusted", http.Header{fwd: {"for=198.51.100.4"}}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := websocket.Dialer{HandshakeTimeout: waitTimeout}
			ws, resp, err := d.DialContext(testCtx(t), "ws://"+p.addrs[tc.acceptor]+"/", tc.header)
			if tc.want == "400" {
				if err == nil {
					ws.Close()
					t.Fatal("upgraded with a malformed header")
				}
				if resp == nil || resp.StatusCode != http.StatusBadRequest {
					t.Fatalf("got %v (%v), want 400 Bad Request", resp, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			c := &rawConn{t: t, ws: ws}
			t.Cleanup(func() { _ = c.close() })
			c.ready()
			want := tc.want
			if want == "" {
				want = socketAddr(c)
			}
			if got := sessionAddr(c, 1); got != want {
				t.Fatalf("session address %s, want %s", got, want)
			}
		})
	}
}

// The PROXY protocol on the WebSocket acceptor (a load balancer in TCP
// mode in front of it).
func TestProxyProtocolWebSocket(t *testing.T) {
	t.Parallel()
	p := startProxyFront(t, nil)
	for _, tc := range []struct {
		name   string
		header []byte
		want   string
	}{
		{"v1", proxyHeader(t, 1, "203.0.113.7:51000", "198.51.100.1:3251"), "203.0.113.7:51000"},
		{"v2", proxyHeader(t, 2, "[2001:db8::7]:51000", "[2001:db8::1]:3251"), "[2001:db8::7]:51000"},
		{"none", nil, ""},
		{"malformed", []byte("PROXY TCP4 nonsense\r\n"), "closed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := websocket.Dialer{
				HandshakeTimeout: waitTimeout,
				NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
					nc, err := (&net.Dialer{}).DialContext(ctx, network, addr)
					if err == nil && len(tc.header) > 0 {
						_, err = nc.Write(tc.header)
					}
					return nc, err
				},
			}
			ws, _, err := d.DialContext(testCtx(t), "ws://"+p.addrs["ws-proxy"]+"/", nil)
			if tc.want == "closed" {
				if err == nil {
					ws.Close()
					t.Fatal("upgraded after a malformed PROXY header")
				}
				return
			}
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			c := &rawConn{t: t, ws: ws}
			t.Cleanup(func() { _ = c.close() })
			c.ready()
			want := tc.want
			if want == "" {
				want = socketAddr(c)
			}
			if got := sessionAddr(c, 1); got != want {
				t.Fatalf("session address %s, want %s", got, want)
			}
		})
	}
}

// Invalid options make Listen fail.
func TestProxyOptionsValidated(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		a    frontend.Acceptor
		ok   bool
	}{
		{"tcp no prefix", frontend.NewTCPAcceptor("127.0.0.1:0", frontend.WithProxyProtocol()), false},
		{"tcp invalid prefix", frontend.NewTCPAcceptor("127.0.0.1:0", frontend.WithProxyProtocol(netip.Prefix{})), false},
		{"tcp every peer", frontend.NewTCPAcceptor("127.0.0.1:0",
			frontend.WithProxyProtocol(netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0"))), true},
		{"ws proxy no prefix", frontend.NewWSAcceptor("127.0.0.1:0", frontend.WithWSOptions(frontend.WithProxyProtocol())), false},
		{"ws no trusted proxy", frontend.NewWSAcceptor("127.0.0.1:0", frontend.WithTrustedProxies()), false},
		{"ws invalid prefix", frontend.NewWSAcceptor("127.0.0.1:0", frontend.WithTrustedProxies(netip.Prefix{})), false},
		{"ws other header", frontend.NewWSAcceptor("127.0.0.1:0", frontend.WithTrustedProxies(loopback...),
			frontend.WithForwardedHeader("X-Real-IP")), false},
		{"ws header without proxies", frontend.NewWSAcceptor("127.0.0.1:0", frontend.WithForwardedHeader(frontend.HeaderForwarded)), false},
		{"ws forwarded, any case", frontend.NewWSAcceptor("127.0.0.1:0", frontend.WithTrustedProxies(loopback...),
			frontend.WithForwardedHeader("forwarded")), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.a.Listen()
			if err == nil {
				_ = tc.a.Stop()
			}
			if ok := err == nil; ok != tc.ok {
				t.Fatalf("Listen: %v, want success %v", err, tc.ok)
			}
		})
	}
}

// logRecorder keeps every log record's message and its "remote"
// attribute.
type logRecorder struct {
	mu   sync.Mutex
	recs []string // "message|remote"
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logRecorder) WithGroup(string) slog.Handler            { return l }

func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	remote := ""
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "remote" {
			remote = a.Value.String()
			return false
		}
		return true
	})
	l.mu.Lock()
	l.recs = append(l.recs, r.Message+"|"+remote)
	l.mu.Unlock()
	return nil
}

// has reports whether a record with msg and remote was logged; the agent
// logs after closing, so it waits a little.
func (l *logRecorder) has(msg, remote string) bool {
	deadline := time.Now().Add(waitTimeout)
	for {
		l.mu.Lock()
		found := false
		for _, r := range l.recs {
			if r == msg+"|"+remote {
				found = true
			}
		}
		l.mu.Unlock()
		if found || time.Now().After(deadline) {
			return found
		}
		time.Sleep(2 * time.Millisecond)
	}
}
