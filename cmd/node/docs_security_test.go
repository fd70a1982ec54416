package main

// The `node` command lines of SECURITY.md and of the README's "Running in
// production", run as documented against real NATS servers: a three-server
// JetStream cluster started from the README's configuration, a server with
// token auth, one in operator mode (credentials files) and one with TLS.
// TestDocsCommandsAreTested fails when a command is added to the documents
// without a test here, or a tested one disappears from them.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/nopal-dev/nopal"
	"github.com/nopal-dev/nopal/client"
	"github.com/nopal-dev/nopal/frontend"
	"github.com/nopal-dev/nopal/stream"
)

// The documented command lines, exactly as written.
const (
	docServeRoom      = `node serve -type room -id room-1 -tcp "" -ws "" -nats "$NATS_URL" -nats-user nopal -nats-password "$NOPAL_PASSWORD" -replicas 3`
	docServeConnector = `node serve -type connector -id connector-1 -tcp 0.0.0.0:3250 -ws 0.0.0.0:3251 -nats "$NATS_URL" -nats-user nopal -nats-password "$NOPAL_PASSWORD" -replicas 3 -heartbeat 10s -rate-limit 50 -rate-interval 1s -metrics-addr 0.0.0.0:9090`
	docServersUser    = `node servers -nats "$NATS_URL" -nats-user nopal -nats-password "$NOPAL_PASSWORD"`
	docServersToken   = `node servers -nats "$NATS_URL" -nats-token "$NATS_TOKEN"`
	docServersCreds   = `node servers -nats "$NATS_URL" -nats-creds /etc/nopal/nopal.creds`
	docServersTLS     = `SSL_CERT_FILE=/etc/nopal/nats-ca.pem node servers -nats "$NATS_TLS_URL" -nats-user nopal -nats-password "$NOPAL_PASSWORD"`
	docServeEmbedded  = `node serve -nats-listen 127.0.0.1:4222`
)

var docCommands = []string{docServeRoom, docServeConnector, docServersUser, docServersToken, docServersCreds, docServersTLS, docServeEmbedded}

// docLocal replaces the documents' fixed addresses with free ports: a test
// never takes a fixed port.
var docLocal = strings.NewReplacer(
	"0.0.0.0:3250", "127.0.0.1:0",
	"0.0.0.0:3251", "127.0.0.1:0",
	"0.0.0.0:9090", "127.0.0.1:0",
	"127.0.0.1:4222", "127.0.0.1:0",
)

func readDoc(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// section returns the text of the "## title" section of a Markdown file.
func section(t *testing.T, doc, title string) string {
	t.Helper()
	start := strings.Index(doc, "\n## "+title+"\n")
	if start < 0 {
		t.Fatalf("no section %q", title)
	}
	rest := doc[start+1:]
	if end := strings.Index(rest[3:], "\n## "); end >= 0 {
		rest = rest[:end+4]
	}
	return rest
}

// codeBlocks returns the contents of the fenced blocks of the given
// language.
func codeBlocks(text, lang string) []string {
	re := regexp.MustCompile("(?ms)^```" + regexp.QuoteMeta(lang) + "\n(.*?)^```")
	var out []string
	for _, m := range re.FindAllStringSubmatch(text, -1) {
		out = append(out, m[1])
	}
	return out
}

var docCommandRe = regexp.MustCompile(`^([A-Z_]+=\S+ )*node `)

// documentedCommands returns every `node` command line of the shell blocks
// of SECURITY.md and of the README's production section.
func documentedCommands(t *testing.T) []string {
	t.Helper()
	texts := []string{readDoc(t, "SECURITY.md"), section(t, readDoc(t, "README.md"), "Running in production")}
	var out []string
	for _, text := range texts {
		for _, block := range codeBlocks(text, "sh") {
			for line := range strings.Lines(block) {
				if line = strings.TrimSpace(line); docCommandRe.MatchString(line) {
					out = append(out, line)
				}
			}
		}
	}
	return out
}

func TestDocsCommandsAreTested(t *testing.T) {
	got := documentedCommands(t)
	for _, c := range got {
		if !slices.Contains(docCommands, c) {
			t.Errorf("documented but not tested: %s", c)
		}
	}
	for _, c := range docCommands {
		if !slices.Contains(got, c) {
			t.Errorf("tested but no longer documented: %s", c)
		}
	}
}

// shellLine splits a documented command line as sh would: leading VAR=value
// assignments, then words, with "..." and '...' quoting and $VAR expanded
// from env (outside single quotes). It returns the assignments and the words
// after "node".
func shellLine(t *testing.T, line string, env map[string]string) (map[string]string, []string) {
	t.Helper()
	var words []string
	var cur strings.Builder
	inWord := false
	expand := func(s string) string {
		return os.Expand(s, func(k string) string {
			v, ok := env[k]
			if !ok {
				t.Fatalf("%s: $%s is not set by the test", line, k)
			}
			return v
		})
	}
	for i := 0; i < len(line); i++ {
		switch c := line[i]; c {
		case ' ':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case '"', '\'':
			j := strings.IndexByte(line[i+1:], c)
			if j < 0 {
				t.Fatalf("%s: unbalanced quote", line)
			}
			part := line[i+1 : i+1+j]
			if c == '"' {
				part = expand(part)
			}
			cur.WriteString(part)
			inWord = true
			i += j + 1
		default:
			j := strings.IndexAny(line[i:], ` "'`)
			if j < 0 {
				j = len(line) - i
			}
			cur.WriteString(expand(line[i : i+j]))
			inWord = true
			i += j - 1
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	assign := map[string]string{}
	for len(words) > 0 && words[0] != "node" {
		k, v, ok := strings.Cut(words[0], "=")
		if !ok {
			t.Fatalf("%s: %q is neither an assignment nor node", line, words[0])
		}
		assign[k] = v
		words = words[1:]
	}
	if len(words) == 0 {
		t.Fatalf("%s: no node command", line)
	}
	return assign, words[1:]
}

// docArgs turns a documented command line into the arguments of run: env
// expanded, fixed addresses replaced by free ports, documented file paths by
// the test's files.
func docArgs(t *testing.T, line string, env, files map[string]string) (map[string]string, []string) {
	t.Helper()
	assign, args := shellLine(t, line, env)
	for i, a := range args {
		a = docLocal.Replace(a)
		if f, ok := files[a]; ok {
			a = f
		}
		args[i] = a
	}
	for k, v := range assign {
		if f, ok := files[v]; ok {
			assign[k] = f
		}
	}
	return assign, args
}

// runDoc runs a command that ends on its own (servers) and returns its
// output.
func runDoc(t *testing.T, args []string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	err := run(ctx, args, strings.NewReader(""), &out, &errOut)
	if err != nil {
		err = fmt.Errorf("%w\n%s", err, errOut.String())
	}
	return out.String(), err
}

// serveDoc runs a `node serve` command until it logs ready and returns the
// addresses it listens on; the test's cleanup stops it.
func serveDoc(t *testing.T, args []string) []string {
	t.Helper()
	if !slices.Contains(args, "-tcp") {
		args = append(args, "-tcp", "127.0.0.1:0", "-ws", "127.0.0.1:0") // the defaults are fixed ports
	}
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := run(ctx, args, strings.NewReader(""), io.Discard, pw)
		pw.Close()
		done <- err
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("node %s: %v", strings.Join(args, " "), err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("node %s did not stop", strings.Join(args, " "))
		}
	})
	addrRe := regexp.MustCompile(`msg=listening .*addr=(\S+)`)
	var addrs, log []string
	lines := bufio.NewScanner(pr)
	for lines.Scan() {
		log = append(log, lines.Text())
		if m := addrRe.FindStringSubmatch(lines.Text()); m != nil {
			addrs = append(addrs, m[1])
		}
		if strings.Contains(lines.Text(), "msg=ready") {
			go func() { _, _ = io.Copy(io.Discard, pr) }()
			return addrs
		}
	}
	t.Fatalf("node %s did not get ready:\n%s", strings.Join(args, " "), strings.Join(log, "\n"))
	return nil
}

// freePorts returns n loopback ports that were free a moment ago.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	return ports
}

// startNATS starts a NATS server with opts and stops it at cleanup.
func startNATS(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	opts.NoLog, opts.NoSigs = true, true
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatalf("NATS server %s not ready", opts.ServerName)
	}
	return ns
}

// startReadmeCluster starts three NATS servers from the README's
// configuration, on free loopback ports, and returns their client URLs.
func startReadmeCluster(t *testing.T, password string) []string {
	t.Helper()
	confs := codeBlocks(section(t, readDoc(t, "README.md"), "Running in production"), "conf")
	if len(confs) != 1 {
		t.Fatalf("%d conf blocks in the production section, want 1", len(confs))
	}
	t.Setenv("NOPAL_PASSWORD", password) // the configuration reads it
	ports := freePorts(t, 6)             // 3 client ports, 3 route ports
	var urls []string
	opts := make([]*server.Options, 3)
	for i := range opts {
		r := []string{
			"server_name: nats-1", fmt.Sprintf("server_name: nats-%d", i+1),
			"listen: 0.0.0.0:4222", fmt.Sprintf("listen: 127.0.0.1:%d", ports[i]),
			"listen: 0.0.0.0:6222", fmt.Sprintf("listen: 127.0.0.1:%d", ports[3+i]),
			"/var/lib/nats", t.TempDir(),
		}
		for k := range 3 {
			r = append(r, fmt.Sprintf("nats://nats-%d:6222", k+1), fmt.Sprintf("nats://127.0.0.1:%d", ports[3+k]))
		}
		conf := strings.NewReplacer(r...).Replace(confs[0])
		path := filepath.Join(t.TempDir(), fmt.Sprintf("nats-%d.conf", i+1))
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		o, err := server.ProcessConfigFile(path)
		if err != nil {
			t.Fatalf("the README's NATS configuration: %v\n%s", err, conf)
		}
		opts[i] = o
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", ports[i]))
	}
	for _, o := range opts {
		startNATS(t, o)
	}
	return urls
}

// TestDocsProductionCluster runs the README's production commands on three
// NATS servers started from its configuration: a room and a connector with
// -replicas 3, `node servers` listing both, buckets and streams with three
// replicas, and the README's Go connector serving TLS clients over TCP and
// WSS on the same bus.
func TestDocsProductionCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the 3-server NATS cluster")
	}
	const password = "s3cret-for-the-docs"
	urls := startReadmeCluster(t, password)
	env := map[string]string{"NATS_URL": strings.Join(urls, ","), "NOPAL_PASSWORD": password}

	_, args := docArgs(t, docServeRoom, env, nil)
	serveDoc(t, args)
	_, args = docArgs(t, docServeConnector, env, nil)
	if addrs := serveDoc(t, args); len(addrs) != 2 {
		t.Fatalf("connector listens on %v", addrs)
	}
	_, args = docArgs(t, docServersUser, env, nil)
	out, err := runDoc(t, args)
	if err != nil || !strings.Contains(out, "room-1") || !strings.Contains(out, "connector-1") {
		t.Fatalf("node servers: %v\n%s", err, out)
	}
	_, args = docArgs(t, docServersUser, map[string]string{"NATS_URL": env["NATS_URL"], "NOPAL_PASSWORD": "wrong"}, nil)
	if _, err := runDoc(t, args); err == nil || !strings.Contains(err.Error(), "Authorization Violation") {
		t.Fatalf("a wrong password: %v", err)
	}

	nc, err := nats.Connect(env["NATS_URL"], nats.UserInfo("nopal", password))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, name := range []string{"KV_nopal_servers", "KV_nopal_bindings", "nopal_TRAFFIC"} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		if r := s.CachedInfo().Config.Replicas; r != 3 {
			t.Errorf("stream %s has %d replicas, want 3", name, r)
		}
	}

	checkReadmeGo(t)
	cert, pool := testCert(t)
	clientTLS := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	app, err := newConnector(clientTLS, nil, env["NATS_URL"], password, "127.0.0.1:0", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		_ = app.Shutdown(sctx)
	})
	accs := app.Frontend().Acceptors()
	trusted := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	for _, addr := range []string{accs[0].Addr().String(), "wss://" + accs[1].Addr().String() + "/"} {
		c, err := client.Dial(ctx, addr, client.WithTLS(trusted))
		if err != nil {
			t.Fatalf("dial %s: %v", addr, err)
		}
		var res struct {
			Result string `json:"result"`
		}
		err = c.Request(ctx, "room.room.join", nil, &res)
		c.Close()
		if err != nil || res.Result != "success" {
			t.Fatalf("join over %s: %+v, %v", addr, res, err)
		}
	}
}

// newConnector is the README's Go example, verbatim (checkReadmeGo).
func newConnector(clientTLS, natsTLS *tls.Config, natsURL, natsPassword, tcpAddr, wsAddr string) (*nopal.App, error) {
	app, err := nopal.New(nopal.Config{
		ServerType:       "connector",
		Heartbeat:        10 * time.Second, // a silent client is closed after 20 s
		HandshakeTimeout: 5 * time.Second,
		SendQueueSize:    256, // packets waiting for a slow client before it is cut off
		WriteTimeout:     5 * time.Second,
		RateLimit:        &nopal.RateLimitConfig{Limit: 50, Interval: time.Second, Reply: true},
		Cluster: &nopal.ClusterConfig{
			Bus: stream.Config{
				URL:      natsURL,
				User:     "nopal",
				Password: natsPassword,
				TLS:      natsTLS, // nil for nats:// URLs
				Replicas: 3,
			},
			Traffic: true, // the traffic log holds client payloads: see SECURITY.md
		},
	})
	if err != nil {
		return nil, err
	}
	limit := frontend.WithMaxPacketSize(64 << 10)
	app.AddAcceptor(frontend.NewTCPAcceptor(tcpAddr, frontend.WithTLS(clientTLS), limit))
	app.AddAcceptor(frontend.NewWSAcceptor(wsAddr, frontend.WithWSOptions(frontend.WithTLS(clientTLS), limit)))
	return app, nil
}

// checkReadmeGo checks that the README's Go block is newConnector above,
// byte for byte: it compiles and TestDocsProductionCluster runs it.
func checkReadmeGo(t *testing.T) {
	t.Helper()
	blocks := codeBlocks(section(t, readDoc(t, "README.md"), "Running in production"), "go")
	src, err := os.ReadFile("docs_security_test.go")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?ms)^func newConnector\(.*?^}\n`).Find(src)
	if len(blocks) != 1 || m == nil || blocks[0] != string(m) {
		t.Fatalf("the README's Go block is not newConnector of docs_security_test.go:\n%s", strings.Join(blocks, "\n---\n"))
	}
}

// testCert returns a certificate for 127.0.0.1 and a pool trusting it.
func testCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "nopal docs test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// TestDocsTokenAuth: `node servers` with -nats-token against a server that
// requires the token; without it the connection is refused.
func TestDocsTokenAuth(t *testing.T) {
	const token = "docs-token"
	ns := startNATS(t, &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), Authorization: token})
	_, args := docArgs(t, docServersToken, map[string]string{"NATS_URL": ns.ClientURL(), "NATS_TOKEN": token}, nil)
	if out, err := runDoc(t, args); err != nil || !strings.Contains(out, "ID") {
		t.Fatalf("with the token: %v\n%s", err, out)
	}
	_, args = docArgs(t, docServersToken, map[string]string{"NATS_URL": ns.ClientURL(), "NATS_TOKEN": "wrong"}, nil)
	if _, err := runDoc(t, args); err == nil || !strings.Contains(err.Error(), "Authorization Violation") {
		t.Fatalf("a wrong token: %v", err)
	}
}

// TestDocsCredsFile: a NATS server in operator mode (JWTs) and a
// credentials file for a user of an account with JetStream: `node serve`
// and `node servers` with -nats-creds work; without it they are refused.
func TestDocsCredsFile(t *testing.T) {
	must := func(s string, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	okp, _ := nkeys.CreateOperator()
	sysKP, _ := nkeys.CreateAccount()
	accKP, _ := nkeys.CreateAccount()
	userKP, _ := nkeys.CreateUser()
	oc := jwt.NewOperatorClaims(must(okp.PublicKey()))
	oc.SystemAccount = must(sysKP.PublicKey())
	sys := jwt.NewAccountClaims(must(sysKP.PublicKey()))
	acc := jwt.NewAccountClaims(must(accKP.PublicKey()))
	acc.Name = "nopal"
	acc.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	user := jwt.NewUserClaims(must(userKP.PublicKey()))
	seed, err := userKP.Seed()
	if err != nil {
		t.Fatal(err)
	}
	creds, err := jwt.FormatUserConfig(must(user.Encode(accKP)), seed)
	if err != nil {
		t.Fatal(err)
	}
	credsPath := filepath.Join(t.TempDir(), "nopal.creds")
	if err := os.WriteFile(credsPath, creds, 0o600); err != nil {
		t.Fatal(err)
	}
	res := &server.MemAccResolver{}
	if err := res.Store(oc.SystemAccount, must(sys.Encode(okp))); err != nil {
		t.Fatal(err)
	}
	if err := res.Store(acc.Subject, must(acc.Encode(okp))); err != nil {
		t.Fatal(err)
	}
	ns := startNATS(t, &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		TrustedOperators: []*jwt.OperatorClaims{oc}, AccountResolver: res, SystemAccount: oc.SystemAccount})

	files := map[string]string{"/etc/nopal/nopal.creds": credsPath}
	env := map[string]string{"NATS_URL": ns.ClientURL()}
	// A room server with the same credentials, so there is something to list.
	serveDoc(t, []string{"serve", "-type", "room", "-id", "room-creds", "-tcp", "", "-ws", "", "-nats", ns.ClientURL(), "-nats-creds", credsPath})
	_, args := docArgs(t, docServersCreds, env, files)
	if out, err := runDoc(t, args); err != nil || !strings.Contains(out, "room-creds") {
		t.Fatalf("with the credentials: %v\n%s", err, out)
	}
	if _, err := runDoc(t, []string{"servers", "-nats", ns.ClientURL()}); err == nil || !strings.Contains(err.Error(), "Authorization Violation") {
		t.Fatalf("without credentials: %v", err)
	}
}

// TestDocsNATSOverTLS: a NATS server with TLS (a private CA) and a user:
// the documented command, run as its own process so that Go reads
// SSL_CERT_FILE, connects over tls://; without SSL_CERT_FILE the
// certificate is refused.
func TestDocsNATSOverTLS(t *testing.T) {
	bin := nodeBinary(t)
	cert, _ := testCert(t)
	const password = "tls-docs"
	ns := startNATS(t, &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		Username: "nopal", Password: password,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, TLSTimeout: 5})
	caPath := filepath.Join(t.TempDir(), "nats-ca.pem")
	if err := os.WriteFile(caPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	tlsURL := strings.Replace(ns.ClientURL(), "nats://", "tls://", 1)
	env := map[string]string{"NATS_TLS_URL": tlsURL, "NOPAL_PASSWORD": password}
	assign, args := docArgs(t, docServersTLS, env, map[string]string{"/etc/nopal/nats-ca.pem": caPath})

	runBin := func(extraEnv ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = append(slices.DeleteFunc(os.Environ(), func(kv string) bool {
			return strings.HasPrefix(kv, "SSL_CERT_FILE=") || strings.HasPrefix(kv, "SSL_CERT_DIR=")
		}), append([]string{"GORACE=atexit_sleep_ms=0"}, extraEnv...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	var extra []string
	for k, v := range assign {
		extra = append(extra, k+"="+v)
	}
	if out, err := runBin(extra...); err != nil || !strings.Contains(out, "ID") {
		t.Fatalf("node %s with %v: %v\n%s", strings.Join(args, " "), extra, err, out)
	}
	out, err := runBin()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !strings.Contains(out, "certificate") {
		t.Fatalf("without SSL_CERT_FILE: %v\n%s", err, out)
	}
}

// TestDocsEmbeddedServerAuth: the documented way to run the embedded server
// works, and, as SECURITY.md says, given -nats-user and -nats-password its
// client port refuses clients without them.
func TestDocsEmbeddedServerAuth(t *testing.T) {
	_, doc := docArgs(t, docServeEmbedded, nil, nil)
	serveDoc(t, slices.Concat(doc, []string{"-nats-store", t.TempDir()}))

	args := slices.Concat(doc, []string{"-type", "room", "-tcp", "", "-ws", "", "-nats-store", t.TempDir(),
		"-nats-user", "nopal", "-nats-password", "checked"})
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		err := run(ctx, args, strings.NewReader(""), io.Discard, pw)
		pw.Close()
		done <- err
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	urlRe := regexp.MustCompile(`msg="embedded NATS listening" url=(\S+)`)
	var url string
	lines := bufio.NewScanner(pr)
	for url == "" && lines.Scan() {
		if m := urlRe.FindStringSubmatch(lines.Text()); m != nil {
			url = m[1]
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	if url == "" {
		t.Fatal("the embedded server did not say where it listens")
	}
	if out, err := runDoc(t, []string{"servers", "-nats", url}); err == nil {
		t.Fatalf("a client without credentials was let in (update SECURITY.md):\n%s", out)
	}
	out, err := runDoc(t, []string{"servers", "-nats", url, "-nats-user", "nopal", "-nats-password", "checked"})
	if err != nil || !strings.Contains(out, "room-") {
		t.Fatalf("a client with the credentials was refused: %v\n%s", err, out)
	}
}
