package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nopal-dev/nopal/client"
	"github.com/nopal-dev/nopal/codec"
	"github.com/nopal-dev/nopal/discovery"
	"github.com/nopal-dev/nopal/examples/chat"
	"github.com/nopal-dev/nopal/stream"
)

// The tests in this file run the real `node` binary, built once by
// nodeBinary, as separate processes talking over TCP to one NATS server.

var (
	buildOnce sync.Once
	buildDir  string // removed by TestMain
	buildBin  string
	buildErr  error

	// nodeBuildFlags are extra flags of go build (-race under -race).
	nodeBuildFlags []string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// nodeBinary builds this package's binary once per test run (go build, so
// it is independent of os.Args[0], the test binary) and returns its path.
// It skips the test when the go command is missing.
func nodeBinary(t *testing.T) string {
	t.Helper()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not on PATH: cannot build the node binary for the multi-process tests")
	}
	buildOnce.Do(func() {
		if buildDir, buildErr = os.MkdirTemp("", "nopal-node-bin-"); buildErr != nil {
			return
		}
		buildBin = filepath.Join(buildDir, "node")
		args := append([]string{"build", "-o", buildBin}, nodeBuildFlags...)
		cmd := exec.Command(goCmd, append(args, ".")...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildBin
}

// proc is a running `node` process whose stderr (the log) is kept.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited
	err  error         // cmd.Wait's, read after done

	mu      sync.Mutex
	lines   []string
	changed chan struct{} // closed and replaced on each new line
}

// startProc starts the node binary with args. t.Cleanup kills it if it is
// still running, and prints its stderr if the test failed.
func startProc(t *testing.T, bin, name string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, done: make(chan struct{}), changed: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout = io.Discard
	if _, set := os.LookupEnv("GORACE"); !set {
		// A -race binary sleeps 1 s at exit by default.
		p.cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			close(p.changed)
			p.changed = make(chan struct{})
			p.mu.Unlock()
		}
	}()
	go func() {
		<-copied // Wait closes the pipe: read it all first
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				t.Errorf("%s (pid %d) did not die after SIGKILL", name, p.cmd.Process.Pid)
			}
		}
		if strings.Contains(p.stderr(), "DATA RACE") {
			t.Errorf("%s: the race detector found a data race", name)
		}
		if t.Failed() {
			t.Logf("---- stderr of %s (%s) ----\n%s", name, strings.Join(args, " "), p.stderr())
		}
	})
	return p
}

func (p *proc) stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}

// waitLine waits until a line of stderr matches re and returns the
// submatches of the first such line.
func (p *proc) waitLine(t *testing.T, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	deadline := time.After(timeout)
	for i := 0; ; {
		p.mu.Lock()
		lines, changed := p.lines, p.changed
		p.mu.Unlock()
		for ; i < len(lines); i++ {
			if m := re.FindStringSubmatch(lines[i]); m != nil {
				return m
			}
		}
		select {
		case <-changed:
		case <-p.done:
			// Take the last lines, then give up.
			p.mu.Lock()
			n := len(p.lines)
			p.mu.Unlock()
			if i == n {
				t.Fatalf("%s exited (%v) before logging %q", p.name, p.err, re)
			}
		case <-deadline:
			t.Fatalf("%s did not log %q within %v", p.name, re, timeout)
		}
	}
}

// allLines returns every stderr line matching re.
func (p *proc) allLines(re *regexp.Regexp) [][]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out [][]string
	for _, l := range p.lines {
		if m := re.FindStringSubmatch(l); m != nil {
			out = append(out, m)
		}
	}
	return out
}

// signalAndWait sends sig and waits for the exit; it returns the exit
// code and how long the process took.
func (p *proc) signalAndWait(t *testing.T, sig os.Signal, timeout time.Duration) (int, time.Duration) {
	t.Helper()
	start := time.Now()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %s: %v", p.name, err)
	}
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("%s did not exit within %v of %v", p.name, timeout, sig)
	}
	return p.cmd.ProcessState.ExitCode(), time.Since(start)
}

var (
	readyRe      = regexp.MustCompile(`msg=ready`)
	listeningRe  = regexp.MustCompile(`msg=listening .*addr=(\S+)`)
	natsURLRe    = regexp.MustCompile(`msg="embedded NATS listening" url=(\S+)`)
	startTimeout = 30 * time.Second // generous: -race binaries, a busy 2-core machine
)

// serveConnector starts `node serve -type connector` on the bus at url
// (connectorAddrs then waits for it).
func serveConnector(t *testing.T, bin, id, url string) *proc {
	return startProc(t, bin, id, "serve", "-type", "connector", "-id", id, "-nats", url,
		"-tcp", "127.0.0.1:0", "-ws", "127.0.0.1:0")
}

// connectorAddrs waits for a connector's ready line and returns its TCP
// and WebSocket addresses (logged in that order).
func connectorAddrs(t *testing.T, p *proc) (tcp, ws string) {
	t.Helper()
	p.waitLine(t, readyRe, startTimeout)
	addrs := p.allLines(listeningRe)
	if len(addrs) != 2 {
		t.Fatalf("%s: want 2 listening lines, got %v", p.name, addrs)
	}
	return addrs[0][1], addrs[1][1]
}

// chatClient is a client of the chat example with helpers that wait.
type chatClient struct {
	*client.Client
	name string
}

func dialChat(t *testing.T, name, addr string) *chatClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, addr)
	if err != nil {
		t.Fatalf("%s: dial %s: %v", name, addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &chatClient{Client: c, name: name}
}

func (c *chatClient) request(route string, in, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.Request(ctx, route, in, out)
}

func (c *chatClient) join(t *testing.T) {
	t.Helper()
	var res chat.JoinResponse
	if err := c.request("room.room.join", struct{}{}, &res); err != nil {
		t.Fatalf("%s: join: %v", c.name, err)
	}
	if res.Code != 0 || res.Result != "success" {
		t.Fatalf("%s: join: %+v", c.name, res)
	}
}

func (c *chatClient) say(t *testing.T, content string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Notify(ctx, "room.room.message", &chat.UserMessage{Name: c.name, Content: content}); err != nil {
		t.Fatalf("%s: message: %v", c.name, err)
	}
}

// waitPush waits for a push of route whose payload contains want,
// skipping others.
func (c *chatClient) waitPush(t *testing.T, route, want string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	var seen []string
	for {
		select {
		case p := <-c.Pushes():
			if p.Route == route && strings.Contains(string(p.Data), want) {
				return
			}
			seen = append(seen, p.Route+" "+string(p.Data))
		case <-c.Done():
			t.Fatalf("%s: connection ended (%v) waiting for %s %q; saw %q", c.name, c.Err(), route, want, seen)
		case <-deadline:
			t.Fatalf("%s: no push %s containing %q; saw %q", c.name, route, want, seen)
		}
	}
}

// listServers runs `node servers -json` in-process and returns the
// servers by id.
func listServers(t *testing.T, url string) map[string]discovery.Server {
	t.Helper()
	var out, errOut strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := run(ctx, []string{"servers", "-nats", url, "-json"}, strings.NewReader(""), &out, &errOut); err != nil {
		t.Fatalf("node servers: %v\n%s", err, errOut.String())
	}
	got := map[string]discovery.Server{}
	dec := json.NewDecoder(strings.NewReader(out.String()))
	for {
		var s discovery.Server
		if err := dec.Decode(&s); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("node servers -json: %v:\n%s", err, out.String())
		}
		got[s.ID] = s
	}
	return got
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestProcessCluster runs the cluster chat as separate `node` processes.
//
// Topology (every arrow is a TCP connection to N's NATS):
//
//	N   node serve -type connector -id connector-0 -nats-listen 127.0.0.1:0
//	    owns the embedded NATS + JetStream store; a frontend nobody uses;
//	    never stopped before the end (the bus would go with it)
//	R   node serve -type room -id room-1 -nats <N>   the only room server,
//	    until step f stops it (SIGTERM) and R2 (room-2) replaces it
//	C1  node serve -type connector -id connector-1 -nats <N>  killed -9 in e
//	C2  node serve -type connector -id connector-2 -nats <N>  lives on
//
//	alice: client of C1 over TCP; bob: client of C2 over WebSocket;
//	carol: client of C2 (TCP) who joins the room R2 serves.
//
// Steps: (b) chat across frontends through the room's cluster group; (c)
// `node servers`; (d) `node replay`; (e) C1 dies without a word: its
// client drops, discovery forgets it by TTL, C2 keeps chatting; (f) R
// drains on SIGTERM and exits 0, the route then has no server (PIT-503),
// R2 takes over with the group state kept in JetStream; finally C2, R2
// and N stop gracefully and exit 0.
func TestProcessCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the multi-process cluster test")
	}
	bin := nodeBinary(t)
	begin := time.Now()
	step := func(format string, a ...any) {
		t.Logf("%6.2fs "+format, append([]any{time.Since(begin).Seconds()}, a...)...)
	}

	// a. Start the processes.
	n := startProc(t, bin, "N", "serve", "-type", "connector", "-id", "connector-0",
		"-tcp", "127.0.0.1:0", "-ws", "", "-nats-listen", "127.0.0.1:0", "-nats-store", t.TempDir())
	url := n.waitLine(t, natsURLRe, startTimeout)[1]
	n.waitLine(t, readyRe, startTimeout)
	step("N ready, NATS at %s", url)
	r := startProc(t, bin, "R", "serve", "-type", "room", "-id", "room-1", "-tcp", "", "-ws", "", "-nats", url)
	c1 := serveConnector(t, bin, "connector-1", url)
	c2 := serveConnector(t, bin, "connector-2", url)
	r.waitLine(t, readyRe, startTimeout)
	c1tcp, _ := connectorAddrs(t, c1)
	c2tcp, c2ws := connectorAddrs(t, c2)
	step("R, C1, C2 ready")

	// b. Chat across frontends.
	alice := dialChat(t, "alice", c1tcp)
	bob := dialChat(t, "bob", "ws://"+c2ws+"/")
	alice.join(t)
	alice.waitPush(t, "onMembers", `"members"`)
	bob.join(t)
	bob.waitPush(t, "onMembers", "connector-1-")             // alice is there
	alice.waitPush(t, "onNewUser", "New user: connector-2-") // bob came
	bob.say(t, "hello from C2")
	alice.waitPush(t, "onMessage", "hello from C2")
	bob.waitPush(t, "onMessage", "hello from C2")
	alice.say(t, "hello from C1")
	bob.waitPush(t, "onMessage", "hello from C1")
	step("chat across C1 and C2 works")

	// c. node servers.
	got := listServers(t, url)
	for id, frontend := range map[string]bool{"connector-0": true, "connector-1": true, "connector-2": true, "room-1": false} {
		s, ok := got[id]
		if !ok {
			t.Fatalf("node servers lacks %s: %v", id, keys(got))
		}
		if s.Frontend != frontend {
			t.Errorf("node servers: %s frontend=%v", id, s.Frontend)
		}
	}
	if len(got) != 4 {
		t.Errorf("node servers: %v", keys(got))
	}
	step("node servers lists %v", keys(got))

	// d. node replay: both joins, each a call and its reply. The recorders
	// flush every 2 ms, so poll.
	var out strings.Builder
	replayArgs := []string{"replay", "-nats", url, "-route", "room.room.join"}
	deadline := time.Now().Add(10 * time.Second)
	for {
		out.Reset()
		if err := run(context.Background(), replayArgs, strings.NewReader(""), &out, io.Discard); err != nil {
			t.Fatal(err)
		}
		if strings.Count(out.String(), "reply   room.room.join") >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, want := range []string{
		"call    room.room.join (sys) session=1 frontend=connector-1 by=connector-1 {}",
		"frontend=connector-2 by=connector-2 {}",
		`reply   room.room.join by=connector-1 {"code":0,"result":"success"}`,
		`reply   room.room.join by=connector-2 {"code":0,"result":"success"}`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("replay output lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if err := run(context.Background(), append(replayArgs, "-json"), strings.NewReader(""), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var e stream.Entry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("replay -json line %q: %v", line, err)
		}
		if e.Route != "room.room.join" {
			t.Errorf("replay -json -route room.room.join printed %+v", e)
		}
		kinds[e.Kind]++
	}
	if kinds[stream.KindCall] != 2 || kinds[stream.KindReply] != 2 {
		t.Errorf("replay -json kinds %v:\n%s", kinds, out.String())
	}
	step("node replay shows both join exchanges")

	// e. C1 dies without leaving discovery.
	c1.signalAndWait(t, syscall.SIGKILL, 5*time.Second)
	killed := time.Now()
	select {
	case <-alice.Done():
		step("alice's connection dropped: %v", alice.Err())
	case <-time.After(5 * time.Second):
		t.Fatal("alice did not see C1's death")
	}
	if err := alice.request("room.room.join", struct{}{}, nil); !errors.Is(err, client.ErrClosed) {
		t.Errorf("request on a dead connection: %v", err)
	}
	// Discovery still lists C1 for up to 3 s: the broadcast's delivery to
	// it fails, the one to C2 does not.
	bob.say(t, "C1 is dead")
	bob.waitPush(t, "onMessage", "C1 is dead")
	for {
		if _, ok := listServers(t, url)["connector-1"]; !ok {
			break
		}
		if time.Since(killed) > 10*time.Second {
			t.Fatal("connector-1 still listed 10 s after SIGKILL (discovery TTL is 3 s)")
		}
		time.Sleep(200 * time.Millisecond)
	}
	step("connector-1 gone from node servers %.2fs after SIGKILL", time.Since(killed).Seconds())
	bob.say(t, "still here")
	bob.waitPush(t, "onMessage", "still here")
	step("bob keeps chatting")

	// f. R drains and exits; the route has no server until R2 comes.
	code, took := r.signalAndWait(t, syscall.SIGTERM, 15*time.Second)
	if code != 0 {
		t.Fatalf("R exited %d after SIGTERM", code)
	}
	step("R exited 0 %.2fs after SIGTERM", took.Seconds())
	var cerr *codec.Error
	if err := bob.request("room.room.join", struct{}{}, nil); !errors.As(err, &cerr) || cerr.Code != codec.CodeServiceMissing {
		t.Fatalf("join with no room server: %v, want %s", err, codec.CodeServiceMissing)
	}
	step("join without a room server: %v", cerr)

	r2 := startProc(t, bin, "R2", "serve", "-type", "room", "-id", "room-2", "-tcp", "", "-ws", "", "-nats", url)
	r2.waitLine(t, readyRe, startTimeout)
	carol := dialChat(t, "carol", c2tcp)
	carol.join(t)
	carol.waitPush(t, "onMembers", "connector-2-") // the group outlived R
	bob.waitPush(t, "onNewUser", "New user: connector-2-2")
	carol.say(t, "room-2 here")
	bob.waitPush(t, "onMessage", "room-2 here")
	step("R2 serves the room; the group state survived R")

	// The rest stops gracefully, the bus owner last.
	for _, p := range []*proc{c2, r2, n} {
		if code, took := p.signalAndWait(t, syscall.SIGTERM, 15*time.Second); code != 0 {
			t.Errorf("%s exited %d after SIGTERM", p.name, code)
		} else {
			step("%s exited 0 %.2fs after SIGTERM", p.name, took.Seconds())
		}
	}
	select {
	case <-bob.Done():
	case <-time.After(5 * time.Second):
		t.Error("bob still connected after C2 stopped")
	}
}
