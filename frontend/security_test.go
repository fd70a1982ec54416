package frontend_test

// The claims of SECURITY.md about what a client can reach, checked over real
// sockets: a client calls handler routes only (never remotes, on this server
// or across the bus), the routes it chooses stay inside the RPC subjects,
// browsers of other origins are refused a WebSocket unless the server says
// otherwise, and the TLS acceptors speak TLS only.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/nopal-dev/nopal"
	"github.com/nopal-dev/nopal/backend"
	"github.com/nopal-dev/nopal/client"
	"github.com/nopal-dev/nopal/codec"
	"github.com/nopal-dev/nopal/frontend"
	"github.com/nopal-dev/nopal/stream"
)

// GrantArg is the argument of the secret remote.
type GrantArg struct {
	UID string `json:"uid"`
}

// secretComp is registered as a remote only: servers may call it, clients
// must not.
type secretComp struct{ called chan string }

// Grant records that it ran.
func (s *secretComp) Grant(_ context.Context, in *GrantArg) (*GrantArg, error) {
	s.called <- in.UID
	return in, nil
}

// publicComp is the same shape, registered as a client handler.
type publicComp struct{}

// Hello answers its argument.
func (publicComp) Hello(_ context.Context, in *GrantArg) (*GrantArg, error) { return in, nil }

// expectCode checks that err is an error response with the given code ("":
// any code).
func expectCode(t *testing.T, what string, err error, code string) {
	t.Helper()
	var ce *codec.Error
	if !errors.As(err, &ce) {
		t.Fatalf("%s: got %v, want an error response", what, err)
	}
	if code != "" && ce.Code != code {
		t.Fatalf("%s: got %s %q, want %s", what, ce.Code, ce.Message, code)
	}
}

func dialClient(t *testing.T, addr string, opts ...client.Option) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c, err := client.Dial(ctx, addr, opts...)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// A standalone server: the remote's route is not a client route, in its
// two-part or three-part form, while the server itself can call it.
func TestClientCannotCallRemotes(t *testing.T) {
	secret := &secretComp{called: make(chan string, 8)}
	s := startServer(t, nopal.Config{}, serverOpts{setup: func(app *nopal.App) {
		if err := app.RegisterRemote(secret, backend.WithName("secret")); err != nil {
			t.Fatal(err)
		}
	}})
	forEachTransport(t, func(t *testing.T, tr transport) {
		c := dialClient(t, tr.addr(s))
		ctx := context.Background()
		for _, route := range []string{"secret.grant", serverType + ".secret.grant"} {
			_, err := c.RequestRaw(ctx, route, []byte(`{"uid":"mallory"}`))
			expectCode(t, route, err, codec.CodeNotFound)
		}
		if _, err := c.RequestRaw(ctx, "t.echo", []byte(`{}`)); err != nil {
			t.Fatalf("echo: %v", err)
		}
	})
	select {
	case uid := <-secret.called:
		t.Fatalf("a client ran the remote for %q", uid)
	default:
	}
}

// clusterPair is a frontend (type "connector", no handlers of its own) and
// a backend (type "room") on one embedded NATS server.
type clusterPair struct {
	front, room *nopal.App
	tcp         string
	secret      *secretComp
}

func startClusterPair(t *testing.T) *clusterPair {
	t.Helper()
	ctx := context.Background()
	p := &clusterPair{secret: &secretComp{called: make(chan string, 8)}}
	var err error
	p.front, err = nopal.New(nopal.Config{ServerType: "connector", Logger: discardLogger(),
		Cluster: &nopal.ClusterConfig{Bus: stream.Config{Embedded: stream.Embedded{StoreDir: t.TempDir()}}}})
	if err != nil {
		t.Fatal(err)
	}
	tcp := frontend.NewTCPAcceptor("127.0.0.1:0")
	p.front.AddAcceptor(tcp)
	if err := p.front.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shutdownApp(t, p.front) })
	p.tcp = tcp.Addr().String()

	p.room, err = nopal.New(nopal.Config{ServerType: "room", Logger: discardLogger(),
		Cluster: &nopal.ClusterConfig{Bus: stream.Config{}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.room.Register(publicComp{}, backend.WithName("public")); err != nil {
		t.Fatal(err)
	}
	if err := p.room.RegisterRemote(p.secret, backend.WithName("secret")); err != nil {
		t.Fatal(err)
	}
	p.room.UseEmbedded(p.front.Bus().Server)
	if err := p.room.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// Registered after the frontend's: runs first, while the bus is up.
	t.Cleanup(func() { shutdownApp(t, p.room) })
	eventually(t, "the frontend to see the room server", func() bool { return p.front.Discovery().HasType("room") })
	return p
}

func shutdownApp(t *testing.T, app *nopal.App) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := app.Shutdown(ctx); err != nil {
		t.Errorf("shutdown %s: %v", app.ServerID(), err)
	}
}

// Across the bus: a client's request is forwarded as a call of kind SYS,
// which a backend serves from its handlers only; remotes answer calls of
// kind USER, which only servers make. And whatever route a client sends, it
// is published under <prefix>.rpc.: the request fails or reaches a handler,
// the frontend's bus connection survives, and no remote runs.
func TestClusterClientReachesHandlersOnly(t *testing.T) {
	p := startClusterPair(t)
	ctx := context.Background()
	c := dialClient(t, p.tcp)
	hello := func() {
		t.Helper()
		out, err := c.RequestRaw(ctx, "room.public.hello", []byte(`{"uid":"ana"}`))
		if err != nil || string(out) != `{"uid":"ana"}` {
			t.Fatalf("forwarded hello: %q, %v", out, err)
		}
	}
	hello()

	cases := []struct {
		route string
		code  string // "": any error code
	}{
		{"room.secret.grant", codec.CodeNotFound},                // a remote's route
		{"room.*.grant", codec.CodeNotFound},                     // a NATS wildcard reaches the room servers, which know no such handler
		{"room.secret.*", codec.CodeNotFound},                    //
		{"room.public.>", codec.CodeNotFound},                    //
		{"room.>", codec.CodeNotFound},                           // two parts: a route of this (handler-less) frontend
		{"room.secret grant.x", codec.CodeNotFound},              // whitespace never reaches the bus
		{"room.public.hello\r\nPUB x 1\r\n", codec.CodeNotFound}, // no protocol injection
		{"room.\xff.grant", codec.CodeNotFound},                  // not UTF-8
		{"room..grant", codec.CodeNotFound},                      //
		{"srv.room.push", codec.CodeServiceMissing},              // no server type "srv": not the push subject
	}
	for _, tc := range cases {
		_, err := c.RequestRaw(ctx, tc.route, []byte(`{"uid":"mallory"}`))
		expectCode(t, tc.route, err, tc.code)
		hello() // the connection and the frontend's bus connection work
	}
	// The remote is there for servers.
	var out GrantArg
	if err := p.front.RPC(ctx, "room.secret.grant", &GrantArg{UID: "server"}, &out); err != nil || out.UID != "server" {
		t.Fatalf("server-side RPC: %+v, %v", out, err)
	}
	if uid := <-p.secret.called; uid != "server" {
		t.Fatalf("the remote ran for %q", uid)
	}
	select {
	case uid := <-p.secret.called:
		t.Fatalf("a client ran the remote for %q", uid)
	default:
	}
}

// By default a browser page of another origin cannot open a WebSocket (the
// request is refused with 403 before any Nopal code runs); native clients
// (no Origin header) and same-origin pages can. WithCheckOrigin(AnyOrigin)
// accepts every origin, as Pitaya does.
func TestWebSocketOrigin(t *testing.T) {
	cases := []struct {
		name      string
		anyOrigin bool
		origin    func(host string) string // "" sends no Origin header
		ok        bool
	}{
		{"no origin header", false, func(string) string { return "" }, true},
		{"same origin", false, func(h string) string { return "http://" + h }, true},
		{"same origin over https", false, func(h string) string { return "https://" + h }, true},
		{"other origin", false, func(string) string { return "https://evil.example" }, false},
		{"other port", false, func(h string) string { host, _, _ := net.SplitHostPort(h); return "http://" + host + ":1" }, false},
		{"origin null", false, func(string) string { return "null" }, false},
		{"other origin, any origin allowed", true, func(string) string { return "https://evil.example" }, true},
	}
	// startServer's WebSocket acceptor keeps the default check; the
	// AnyOrigin one is an app of its own.
	def := startServer(t, nopal.Config{}, serverOpts{})
	anyWS := frontend.NewWSAcceptor("127.0.0.1:0", frontend.WithCheckOrigin(frontend.AnyOrigin))
	anyApp, err := nopal.New(nopal.Config{ServerType: serverType, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := anyApp.Register(newTestComp(), backend.WithName("t")); err != nil {
		t.Fatal(err)
	}
	anyApp.AddAcceptor(anyWS)
	if err := anyApp.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shutdownApp(t, anyApp) })
	addrs := map[bool]string{false: def.wsAddr, true: anyWS.Addr().String()}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			host := addrs[tc.anyOrigin]
			h := http.Header{}
			if o := tc.origin(host); o != "" {
				h.Set("Origin", o)
			}
			d := websocket.Dialer{HandshakeTimeout: waitTimeout}
			ws, resp, err := d.Dial("ws://"+host+"/", h)
			if !tc.ok {
				if err == nil {
					ws.Close()
					t.Fatal("upgrade accepted")
				}
				if resp == nil || resp.StatusCode != http.StatusForbidden {
					t.Fatalf("got %v (%v), want 403", resp, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("upgrade refused: %v (%v)", err, resp)
			}
			c := &rawConn{t: t, ws: ws}
			t.Cleanup(func() { _ = c.close() })
			c.ready()
			c.echo(1)
		})
	}
}

// selfSigned returns a server certificate for 127.0.0.1 and a pool that
// trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "nopal test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}, pool
}

// WithTLS on both acceptors: TLS clients work (TCP and wss://), plaintext
// clients get no Pitaya handshake, and a client that does not trust the
// certificate does not connect.
func TestTLSAcceptors(t *testing.T) {
	cert, pool := selfSigned(t)
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	s := startServer(t, nopal.Config{}, serverOpts{acceptorOpts: []frontend.AcceptorOption{frontend.WithTLS(cfg)}})
	trusted := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	ctx := context.Background()

	for name, addr := range map[string]string{"tcp": s.tcpAddr, "wss": "wss://" + s.wsAddr + "/"} {
		t.Run(name+" with TLS", func(t *testing.T) {
			c := dialClient(t, addr, client.WithTLS(trusted))
			if out, err := c.RequestRaw(ctx, "t.echo", []byte(`"secret"`)); err != nil || string(out) != `"secret"` {
				t.Fatalf("echo: %q, %v", out, err)
			}
		})
		t.Run(name+" with an untrusted certificate", func(t *testing.T) {
			dctx, cancel := context.WithTimeout(ctx, waitTimeout)
			defer cancel()
			c, err := client.Dial(dctx, addr, client.WithTLS(&tls.Config{MinVersion: tls.VersionTLS12}))
			if err == nil {
				c.Close()
				t.Fatal("connected without trusting the certificate")
			}
			var uerr x509.UnknownAuthorityError
			if !errors.As(err, &uerr) && !strings.Contains(err.Error(), "certificate") {
				t.Fatalf("got %v, want a certificate error", err)
			}
		})
	}

	t.Run("plaintext tcp", func(t *testing.T) {
		c := transports[0].dial(t, s)
		c.write(packet(codec.Handshake, []byte(`{"sys":{"platform":"test"}}`)))
		// Whatever comes back is a TLS alert, never a Pitaya handshake.
		for _, pkt := range c.closedAfter() {
			if codec.PacketType(pkt[0]) == codec.Handshake {
				t.Fatalf("got a handshake response %x over plaintext", pkt)
			}
		}
	})
	t.Run("plaintext ws", func(t *testing.T) {
		d := websocket.Dialer{HandshakeTimeout: waitTimeout}
		ws, resp, err := d.Dial("ws://"+s.wsAddr+"/", nil)
		if err == nil {
			ws.Close()
			t.Fatal("plaintext WebSocket accepted by a TLS acceptor")
		}
		if resp != nil && resp.StatusCode == http.StatusSwitchingProtocols {
			t.Fatalf("got %v", resp.Status)
		}
	})
}

// Past MaxConnections a client's handshake is refused with code 503 and
// its connection closed; the clients already in are untouched, and once
// one leaves a new one gets in.
func TestMaxConnections(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		s := startServer(t, nopal.Config{MaxConnections: 2, Resume: frontend.ResumeConfig{Off: true}}, serverOpts{})
		a, b := tr.dial(t, s), tr.dial(t, s)
		a.ready()
		b.ready()
		over := tr.dial(t, s)
		over.write(packet(codec.Handshake, []byte(`{"sys":{"platform":"test"}}`)))
		if hs := over.handshakeResponse(); hs.Code != codec.HandshakeUnavailable {
			t.Fatalf("handshake past the limit: code %d", hs.Code)
		}
		over.expectClosed()
		if n := s.stats().Refused.Load(); n != 1 {
			t.Errorf("Refused %d", n)
		}
		a.echo(1)
		b.echo(1)
		_ = a.close()
		eventually(t, "the frontend to count a's close", func() bool { return s.stats().Connected.Load() == 1 })
		c := tr.dial(t, s)
		c.ready()
		c.echo(1)
	})
}
