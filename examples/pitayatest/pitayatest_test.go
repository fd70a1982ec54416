package main

// These tests do what Pitaya's end-to-end suite does to Pitaya's test
// server: they build the server, start each frontend and backend as a
// process on one NATS server (each test with its own -sdprefix), wait for
// "all modules started!" and drive them with a Go client, Nopal's here.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/nopal-dev/nopal/client"
	"github.com/nopal-dev/nopal/codec"
	"github.com/nopal-dev/nopal/examples/pitayatest/protos"
	"github.com/nopal-dev/nopal/stream"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildBin  string
	buildErr  error

	// buildFlags are extra flags of go build (-race under -race).
	buildFlags []string

	natsOnce sync.Once
	natsBus  *stream.Bus
	natsErr  error
)

// timeout bounds every wait of these tests: a server's start, an answer, a
// push, a kick.
const timeout = 30 * time.Second

func TestMain(m *testing.M) {
	code := m.Run()
	if natsBus != nil {
		natsBus.Close()
	}
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// serverBinary builds the server once per run with go build, as Pitaya's
// suite builds its own.
func serverBinary(t *testing.T) string {
	t.Helper()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not on PATH: cannot build the server")
	}
	buildOnce.Do(func() {
		if buildDir, buildErr = os.MkdirTemp("", "pitayatest-bin-"); buildErr != nil {
			return
		}
		buildBin = filepath.Join(buildDir, "server")
		args := append([]string{"build", "-o", buildBin}, buildFlags...)
		out, err := exec.Command(goCmd, append(args, ".")...).CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildBin
}

// natsURL starts, once per run, an embedded NATS server with JetStream on
// a free loopback port, shared by every test as Pitaya's suite shares the
// NATS at localhost:4222.
func natsURL(t *testing.T) string {
	t.Helper()
	natsOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		natsBus, natsErr = stream.Connect(ctx, stream.Config{
			ServerID: "pitayatest-nats",
			Embedded: stream.Embedded{Listen: "127.0.0.1:0", StoreDir: filepath.Join(os.TempDir(), fmt.Sprintf("pitayatest-nats-%d", os.Getpid()))},
		})
	})
	if natsErr != nil {
		t.Fatal(natsErr)
	}
	return natsBus.ClientURL()
}

// sdPrefix is a fresh -sdprefix, shaped as Pitaya's suite makes them.
func sdPrefix() string { return newUID() + "/" }

// server is a running server process.
type server struct {
	name string
	addr string // a frontend's client address
	cmd  *exec.Cmd

	mu    sync.Mutex
	lines []string
}

func (s *server) stderr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.lines, "\n")
}

var addrRE = regexp.MustCompile(`msg=ready .*addr=\S*:(\d+)`)

// spec says how to start a server.
type spec struct {
	svType   string
	frontend bool
	prefix   string
	args     []string // more flags
	env      []string // more environment
}

// startServer starts a server, with -port 0 for a frontend (the OS picks
// the port, read back from its log), and waits for its ready line. The
// process is killed when the test ends, as Pitaya's suite kills its
// servers.
func startServer(t *testing.T, sp spec) *server {
	t.Helper()
	s, err := tryStartServer(t, sp)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// tryStartServer is startServer returning, not failing on, a server that
// exits before it is ready (say, its metrics port was taken meanwhile).
func tryStartServer(t *testing.T, sp spec) (*server, error) {
	t.Helper()
	args := append([]string{
		"-type", sp.svType, "-port", "0", fmt.Sprintf("-frontend=%t", sp.frontend),
		"-sdprefix", sp.prefix, "-grpcport", "0", "-grpc=false", "-debug",
		"-nats", natsURL(t),
	}, sp.args...)
	s := &server{name: sp.svType, cmd: exec.Command(serverBinary(t), args...)}
	s.cmd.Env = append([]string{"GORACE=atexit_sleep_ms=0", "PATH=" + os.Getenv("PATH")}, sp.env...)
	s.cmd.Stdout = io.Discard
	pipe, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready, addr := make(chan struct{}), make(chan string, 1)
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(pipe)
		sawReady := false
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.lines = append(s.lines, line)
			s.mu.Unlock()
			if line == ReadyLine && !sawReady {
				sawReady = true
				close(ready)
			}
			if m := addrRE.FindStringSubmatch(line); m != nil {
				addr <- "127.0.0.1:" + m[1]
			}
		}
	}()
	exited := make(chan error, 1)
	go func() {
		<-copied
		exited <- s.cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		<-exited
		if strings.Contains(s.stderr(), "DATA RACE") {
			t.Errorf("%s: the race detector found a data race", s.name)
		}
		if t.Failed() {
			t.Logf("---- stderr of %s (%s) ----\n%s", s.name, strings.Join(args, " "), s.stderr())
		}
	})
	select {
	case <-ready:
	case err := <-exited:
		exited <- err
		return nil, fmt.Errorf("%s exited before it was ready: %w\n%s", s.name, err, s.stderr())
	case <-time.After(timeout):
		t.Fatalf("%s not ready within %v\n%s", s.name, timeout, s.stderr())
	}
	if sp.frontend {
		select {
		case s.addr = <-addr:
		case <-time.After(timeout):
			t.Fatalf("%s did not log its address\n%s", s.name, s.stderr())
		}
	}
	return s, nil
}

func dial(t *testing.T, s *server, opts ...client.Option) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := client.Dial(ctx, s.addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// answer sends a request and returns what the client receives: the
// response payload, or the error payload as the server encoded it in JSON
// ({"code","msg","metadata"}: re-encoding the decoded error gives the
// same bytes, field order and all).
func answer(t *testing.T, c *client.Client, route string, data []byte) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := c.RequestRaw(ctx, route, data)
	var e *codec.Error
	if errors.As(err, &e) {
		b, merr := json.Marshal(e)
		if merr != nil {
			t.Fatal(merr)
		}
		return string(b)
	}
	if err != nil {
		t.Fatalf("%s: %v", route, err)
	}
	return string(out)
}

// answerOnceServed is answer for the first call from one server type to
// another that started after it: discovery tells the older server of the
// newer one within milliseconds, and until then the call answers PIT-503.
// It retries that answer only.
func answerOnceServed(t *testing.T, c *client.Client, route string, data []byte) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := answer(t, c, route, data)
		if !strings.Contains(got, `"code":"PIT-503"`) || time.Now().After(deadline) {
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func nextPush(t *testing.T, c *client.Client) client.Push {
	t.Helper()
	select {
	case p, ok := <-c.Pushes():
		if !ok {
			t.Fatalf("connection ended before a push: %v", c.Err())
		}
		return p
	case <-time.After(timeout):
		t.Fatal("no push")
	}
	return client.Push{}
}

func waitKicked(t *testing.T, c *client.Client) {
	t.Helper()
	select {
	case <-c.Done():
		if !c.Kicked() {
			t.Fatalf("connection ended, not kicked: %v", c.Err())
		}
	case <-time.After(timeout):
		t.Fatal("not kicked")
	}
}

func notify(t *testing.T, c *client.Client, route string, data []byte) {
	t.Helper()
	if err := c.Notify(context.Background(), route, data); err != nil {
		t.Fatal(err)
	}
}

// handlerCases are Pitaya's handler calls and their answers, for a route
// prefix ("connector" on the frontend, "game" forwarded to a backend).
func handlerCases(svType string) []struct{ route, data, want string } {
	r := func(m string) string { return svType + ".testsvc." + m }
	return []struct{ route, data, want string }{
		{r("testrequestonlysessionreturnsptr"), ``, `{"code":200,"msg":"hello"}`},
		{r("testrequestonlysessionreturnsptrnil"), ``, `{"code":"PIT-000","msg":"reply must not be null"}`},
		{r("testrequestonlysessionreturnsrawnil"), ``, `{"code":"PIT-000","msg":"reply must not be null"}`},
		{r("testrequestreturnsptr"), `{"msg":"good"}`, `{"code":200,"msg":"good"}`},
		{r("testrequestreturnsraw"), `{"msg":"good"}`, `good`},
		{r("testrequestreceivereturnsraw"), `woow`, `woow`},
		{r("nonexistenthandler"), `woow`, `{"code":"PIT-404","msg":"pitaya/handler: ` + r("nonexistenthandler") + ` not found"}`},
		{r("testrequestreturnserror"), `woow`, `{"code":"PIT-555","msg":"somerror"}`},
	}
}

func TestHandlerCallToFront(t *testing.T) {
	fe := startServer(t, spec{svType: "connector", frontend: true, prefix: sdPrefix()})
	c := dial(t, fe)
	for _, tc := range handlerCases("connector") {
		t.Run(tc.route, func(t *testing.T) {
			if got := answer(t, c, tc.route, []byte(tc.data)); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestForwardToBackend(t *testing.T) {
	prefix := sdPrefix()
	startServer(t, spec{svType: "game", prefix: prefix})
	fe := startServer(t, spec{svType: "connector", frontend: true, prefix: prefix})
	c := dial(t, fe)
	for _, tc := range handlerCases("game") {
		t.Run(tc.route, func(t *testing.T) {
			if got := answer(t, c, tc.route, []byte(tc.data)); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

// TestNopalErrorTexts: with -pitaya-errors=false the server says Nopal's
// words; codes and shape stay.
func TestNopalErrorTexts(t *testing.T) {
	fe := startServer(t, spec{svType: "connector", frontend: true, prefix: sdPrefix(), args: []string{"-pitaya-errors=false"}})
	c := dial(t, fe)
	want := `{"code":"PIT-404","msg":"nopal/handler: connector.testsvc.nonexistenthandler not found"}`
	if got := answer(t, c, "connector.testsvc.nonexistenthandler", nil); got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

// TestProtobufPayloads runs a frontend with -serializer protobuf: requests,
// answers and errors are protobuf, as Pitaya's protobuf clients expect.
func TestProtobufPayloads(t *testing.T) {
	fe := startServer(t, spec{svType: "connector", frontend: true, prefix: sdPrefix(), args: []string{"-serializer", "protobuf"}})
	c := dial(t, fe)
	if name := c.Handshake().Sys.Serializer; name != "protos" {
		t.Fatalf("handshake announces serializer %q, want protos", name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var res protos.TestResponse
	if err := c.Request(ctx, "connector.testsvc.testrequestreturnsptr", &protos.TestRequest{Msg: "good"}, &res); err != nil {
		t.Fatal(err)
	}
	if want := (&protos.TestResponse{Code: 200, Msg: "good"}); !proto.Equal(&res, want) {
		t.Errorf("got %v, want %v", &res, want)
	}
	for _, tc := range []struct{ route, code, msg string }{
		{"connector.testsvc.testrequestreturnserror", "PIT-555", "somerror"},
		{"connector.testsvc.nonexistenthandler", "PIT-404", "pitaya/handler: connector.testsvc.nonexistenthandler not found"},
	} {
		err := c.Request(ctx, tc.route, &protos.TestRequest{Msg: "x"}, &res)
		var e *codec.Error
		if !errors.As(err, &e) || e.Code != tc.code || e.Message != tc.msg {
			t.Errorf("%s: got %v, want %s %q", tc.route, err, tc.code, tc.msg)
		}
	}
}

func TestGroup(t *testing.T) {
	for _, tc := range []struct {
		name   string
		svType string // the server of the handlers
	}{
		{"front", "connector"},
		{"back", "game"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prefix := sdPrefix()
			if tc.svType == "game" {
				startServer(t, spec{svType: "game", prefix: prefix})
			}
			fe1 := startServer(t, spec{svType: "connector", frontend: true, prefix: prefix})
			fe2 := fe1
			if tc.svType == "game" {
				fe2 = startServer(t, spec{svType: "connector", frontend: true, prefix: prefix})
			}
			c1, c2 := dial(t, fe1), dial(t, fe2)
			for _, c := range []*client.Client{c1, c2} {
				if got := answer(t, c, tc.svType+".testsvc.testbind", nil); got != "ack" {
					t.Fatalf("bind: %s", got)
				}
			}
			for _, m := range []struct{ route, push, data string }{
				{"testsendgroupmsg", "route.test", "testing group"},
				{"testsendgroupmsgptr", "route.testptr", `{"msg":"hellow"}`},
			} {
				notify(t, c1, tc.svType+".testsvc."+m.route, []byte(m.data))
				for i, c := range []*client.Client{c1, c2} {
					p := nextPush(t, c)
					if p.Route != m.push || string(p.Data) != m.data {
						t.Errorf("client %d: push %s %s, want %s %s", i+1, p.Route, p.Data, m.push, m.data)
					}
				}
			}
		})
	}
}

func TestKick(t *testing.T) {
	fe := startServer(t, spec{svType: "connector", frontend: true, prefix: sdPrefix()})
	c1, c2 := dial(t, fe), dial(t, fe)
	uid := newUID()
	if got := answer(t, c1, "connector.testsvc.testbindid", []byte(uid)); got != "ack" {
		t.Fatalf("bind: %s", got)
	}
	if got := answer(t, c2, "connector.testsvc.testrequestkickuser", []byte(uid)); got != `{"code":200,"msg":"ok"}` {
		t.Errorf("kick: %s", got)
	}
	waitKicked(t, c1)
	want := `{"code":"PIT-404","msg":"session not found"}`
	if got := answer(t, c2, "connector.testsvc.testrequestkickuser", []byte(newUID())); got != want {
		t.Errorf("kick of nobody: got %s, want %s", got, want)
	}
}

func TestKickOnBack(t *testing.T) {
	prefix := sdPrefix()
	startServer(t, spec{svType: "game", prefix: prefix})
	fe := startServer(t, spec{svType: "connector", frontend: true, prefix: prefix})
	c := dial(t, fe)
	if got := answer(t, c, "game.testsvc.testbind", nil); got != "ack" {
		t.Fatalf("bind: %s", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	go func() { _, _ = c.RequestRaw(ctx, "game.testsvc.testrequestkickme", nil) }()
	waitKicked(t, c)
}

// TestSameUIDUserShouldBeKicked: a uid bound again, on the same frontend or
// another of its type, kicks the older session.
func TestSameUIDUserShouldBeKicked(t *testing.T) {
	for _, tc := range []struct {
		name      string
		frontends int
	}{
		{"same_frontend", 1},
		{"other_frontend_same_type", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prefix := sdPrefix()
			fe1 := startServer(t, spec{svType: "connector", frontend: true, prefix: prefix})
			fe2 := fe1
			if tc.frontends == 2 {
				fe2 = startServer(t, spec{svType: "connector", frontend: true, prefix: prefix})
			}
			c1, c2 := dial(t, fe1), dial(t, fe2)
			uid := newUID()
			if got := answer(t, c1, "connector.testsvc.testbindid", []byte(uid)); got != "ack" {
				t.Fatalf("bind: %s", got)
			}
			// The second bind is answered PIT-441 (the uid is in the group
			// already), as by Pitaya's server: only the kick matters.
			answer(t, c2, "connector.testsvc.testbindid", []byte(uid))
			waitKicked(t, c1)
			if err := c2.Err(); err != nil {
				t.Errorf("the newer session ended: %v", err)
			}
		})
	}
}

// TestSameUIDUserShouldNotBeKickedInDifferentServersFromDiffType is Pitaya's
// rule that a session is unique per frontend type
// (ClusterConfig.UniqueSessionPerType): a uid bound on connector2 leaves
// its session on connector1 alone.
func TestSameUIDUserShouldNotBeKickedInDifferentServersFromDiffType(t *testing.T) {
	prefix := sdPrefix()
	fe1 := startServer(t, spec{svType: "connector", frontend: true, prefix: prefix})
	fe2 := startServer(t, spec{svType: "connector2", frontend: true, prefix: prefix})
	c1, c2 := dial(t, fe1), dial(t, fe2)
	uid := newUID()
	if got := answer(t, c1, "connector.testsvc.testbindid", []byte(uid)); got != "ack" {
		t.Fatalf("bind on connector: %s", got)
	}
	answer(t, c2, "connector2.testsvc.testbindid", []byte(uid))
	// A kick would be sent at the second bind: a request made after it on
	// the first session is answered only if that session is still there.
	if got := answer(t, c1, "connector.testsvc.testrequestonlysessionreturnsptr", nil); strings.Contains(got, "PIT-") {
		t.Fatalf("connector's session after the bind on connector2: %s", got)
	}
	for i, c := range []*client.Client{c1, c2} {
		if err := c.Err(); err != nil {
			t.Errorf("session %d ended: %v", i+1, err)
		}
	}
}

func TestPushToUsers(t *testing.T) {
	prefix := sdPrefix()
	startServer(t, spec{svType: "game", prefix: prefix})
	fe1 := startServer(t, spec{svType: "connector", frontend: true, prefix: prefix})
	fe2 := startServer(t, spec{svType: "connector", frontend: true, prefix: prefix})
	c1, c2 := dial(t, fe1), dial(t, fe2)
	uid1, uid2 := newUID(), newUID()
	for _, b := range []struct {
		c   *client.Client
		uid string
	}{{c1, uid1}, {c2, uid2}} {
		if got := answer(t, b.c, "connector.testsvc.testbindid", []byte(b.uid)); got != "ack" {
			t.Fatalf("bind: %s", got)
		}
	}
	msg := fmt.Sprintf(`{"msg":"testing send to users","uids":["%s","%s"]}`, uid1, uid2)
	for _, route := range []string{"connector.testsvc.testsendtousers", "game.testsvc.testsendtousers"} {
		t.Run(route, func(t *testing.T) {
			notify(t, c1, route, []byte(msg))
			for i, c := range []*client.Client{c1, c2} {
				p := nextPush(t, c)
				if p.Route != "route.sendtousers" || string(p.Data) != "testing send to users" {
					t.Errorf("client %d: push %s %q", i+1, p.Route, p.Data)
				}
			}
		})
	}
}

// rpcCases are Pitaya's user RPC calls and their answers; sameServer is
// the answer of an RPC from a connector to its own type.
func rpcCases(sameServer string) []struct{ name, route, data, want string } {
	return []struct{ name, route, data, want string }{
		{"front_to_back", "connector.testsvc.testsendrpc", `{"route":"game.testremotesvc.rpctestrawptrreturnsptr","data":"thisthis"}`, `{"code":200,"msg":"got thisthis"}`},
		{"back_to_front", "game.testsvc.testsendrpc", `{"route":"connector.testremotesvc.rpctestrawptrreturnsptr","data":"thisthis"}`, `{"code":200,"msg":"got thisthis"}`},
		{"front_to_back_error", "connector.testsvc.testsendrpc", `{"route":"game.testremotesvc.rpctestreturnserror","data":"thisthis"}`, `{"code":"PIT-433","msg":"test error","metadata":{"some":"meta"}}`},
		{"back_to_front_error", "game.testsvc.testsendrpc", `{"route":"connector.testremotesvc.rpctestreturnserror","data":"thisthis"}`, `{"code":"PIT-433","msg":"test error","metadata":{"some":"meta"}}`},
		{"same_server", "connector.testsvc.testsendrpc", `{"route":"connector.testremotesvc.rpctestrawptrreturnsptr","data":"thisthis"}`, sameServer},
		{"front_to_back_ptr", "connector.testsvc.testsendrpc", `{"route":"game.testremotesvc.rpctestptrreturnsptr","data":"thisthis"}`, `{"code":200,"msg":"got thisthis"}`},
		{"no_args", "connector.testsvc.testsendrpcnoargs", `{"route":"game.testremotesvc.rpctestnoargs"}`, `{"code":200,"msg":"got nothing"}`},
		{"not_found", "connector.testsvc.testsendrpc", `{"route":"game.testremotesvc.rpctestnotfound","data":"thisthis"}`, `{"code":"PIT-404","msg":"route not found","metadata":{"route":"testremotesvc.rpctestnotfound"}}`},
	}
}

func TestUserRPC(t *testing.T) {
	for _, tc := range []struct {
		name       string
		loopback   bool
		sameServer string
	}{
		{"default", false, `{"code":"PIT-000","msg":"you are making a rpc that may be processed locally, either specify a different server type or specify a server id"}`},
		{"loopback", true, `{"code":200,"msg":"got thisthis"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prefix := sdPrefix()
			env := []string{fmt.Sprintf("PITAYA_CLUSTER_RPC_SERVER_LOOPBACKENABLED=%t", tc.loopback)}
			startServer(t, spec{svType: "game", prefix: prefix})
			fe := startServer(t, spec{svType: "connector", frontend: true, prefix: prefix, env: env})
			c := dial(t, fe)
			for i, rc := range rpcCases(tc.sameServer) {
				ask := answer
				if i < 2 {
					ask = answerOnceServed
				}
				if got := ask(t, c, rc.route, []byte(rc.data)); got != rc.want {
					t.Errorf("%s: got %s, want %s", rc.name, got, rc.want)
				}
			}
		})
	}
}

// TestPrefixIsolation: servers with different -sdprefix on one NATS do not
// see each other.
func TestPrefixIsolation(t *testing.T) {
	startServer(t, spec{svType: "game", prefix: sdPrefix()})
	fe := startServer(t, spec{svType: "connector", frontend: true, prefix: sdPrefix()})
	c := dial(t, fe)
	got := answer(t, c, "game.testsvc.testrequestonlysessionreturnsptr", nil)
	if !strings.Contains(got, `"code":"PIT-503"`) {
		t.Errorf("a game of another prefix answered: %s", got)
	}
}

// TestMetrics: PITAYA_METRICS_PROMETHEUS_PORT serves /metrics with Pitaya's
// names.
func TestMetrics(t *testing.T) {
	// The port is Pitaya's fixed one, picked free here: another test may
	// take it before the server binds it, then the server is started
	// again on another.
	var fe *server
	var port int
	for try := 1; fe == nil; try++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port = ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
		fe, err = tryStartServer(t, spec{svType: "connector", frontend: true, prefix: sdPrefix(),
			env: []string{fmt.Sprintf("PITAYA_METRICS_PROMETHEUS_PORT=%d", port)}})
		if err != nil && (try == 5 || !strings.Contains(err.Error(), "address already in use")) {
			t.Fatal(err)
		}
	}
	c := dial(t, fe)
	answer(t, c, "connector.testsvc.testrequestonlysessionreturnsptr", nil)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/metrics", port), nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if !strings.Contains(string(body), "pitaya_handler_response_time_ns") {
		t.Errorf("no pitaya_handler_response_time_ns in /metrics:\n%.2000s", body)
	}
}
