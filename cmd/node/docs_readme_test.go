package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nopal-dev/nopal/client"
)

// The README's "Write a server" program compiles as written, serves the
// route it shows, and exits 0 when stopped with SIGINT (Run returns nil
// after a clean stop).
func TestReadmeServerCompilesAndStops(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping a test that builds and runs a program")
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not on PATH")
	}
	blocks := codeBlocks(section(t, readDoc(t, "README.md"), "A five-minute tour"), "go")
	if len(blocks) != 1 {
		t.Fatalf("want one Go block in the tour, got %d", len(blocks))
	}
	// The same program, on free ports (a test never takes a fixed port).
	src := strings.NewReplacer(`"127.0.0.1:3250"`, `"127.0.0.1:0"`, `"127.0.0.1:3251"`, `"127.0.0.1:0"`).Replace(blocks[0])
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "hello")
	build := exec.Command(goCmd, "build", "-o", bin, filepath.Join(dir, "main.go"))
	build.Dir = filepath.Join("..", "..") // in the module: the program imports it
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("the README's program does not build: %v\n%s\n%s", err, out, src)
	}
	p := startProc(t, bin, "hello")
	p.waitLine(t, regexp.MustCompile(`INFO ready`), startTimeout)
	addr := p.allLines(regexp.MustCompile(`INFO listening .*addr=(\S+)`))[0][1]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var res struct {
		Greeting string `json:"greeting"`
	}
	if err := c.Request(ctx, "greeter.hello", map[string]string{"name": "ana"}, &res); err != nil || res.Greeting != "hello, ana" {
		t.Fatalf("greeter.hello = %+v, %v", res, err)
	}
	if code, _ := p.signalAndWait(t, syscall.SIGINT, 20*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGINT, want 0:\n%s", code, p.stderr())
	}
}

// The README's "One process per role" commands, run as written (on free
// ports): the chat works through the connector, and stopping room-1 leaves
// the bus and room-2 serving it.
func TestReadmeOneProcessPerRole(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping a multi-process test")
	}
	bin := nodeBinary(t)
	blocks := codeBlocks(section(t, readDoc(t, "README.md"), "A five-minute tour"), "sh")
	var lines []string
	for _, b := range blocks {
		if strings.Contains(b, "node nats") {
			for l := range strings.Lines(b) {
				if l = strings.TrimSpace(l); l != "" {
					lines = append(lines, l)
				}
			}
		}
	}
	if len(lines) != 4 {
		t.Fatalf("want the block of four commands with 'node nats', got %q", lines)
	}
	port := strconv.Itoa(freePorts(t, 1)[0])
	var procs []*proc
	for _, l := range lines {
		l = strings.ReplaceAll(l, "127.0.0.1:4222", "127.0.0.1:"+port)
		args := shellWords(t, strings.TrimPrefix(l, "go run ./cmd/node "))
		name := args[0]
		if i := slices.Index(args, "-id"); i >= 0 {
			name = args[i+1]
		}
		if slices.Index(args, "connector") >= 0 {
			name = "connector"
			args = append(args, "-tcp", "127.0.0.1:0", "-ws", "127.0.0.1:0") // the last value wins
		}
		p := startProc(t, bin, name, args...)
		p.waitLine(t, readyRe, startTimeout)
		procs = append(procs, p)
	}
	room1, connector := procs[1], procs[3]
	tcp, _ := connectorAddrs(t, connector)
	ana, bob := dialChat(t, "ana", tcp), dialChat(t, "bob", tcp)
	ana.join(t)
	bob.join(t)
	chatUntil(t, ana, bob, "before", 10*time.Second)
	if code, _ := room1.signalAndWait(t, syscall.SIGINT, 20*time.Second); code != 0 {
		t.Fatalf("room-1 exited %d", code)
	}
	chatUntil(t, bob, ana, "after room-1 stopped", 10*time.Second)
	cyd := dialChat(t, "cyd", tcp)
	cyd.join(t)
}

// shellWords splits a command line of the README: words separated by
// spaces, "" for an empty word (nothing else is quoted there).
func shellWords(t *testing.T, line string) []string {
	t.Helper()
	var out []string
	for _, w := range strings.Fields(line) {
		switch {
		case w == `""`:
			out = append(out, "")
		case strings.ContainsAny(w, `"'$`):
			t.Fatalf("a word the test cannot split: %s", w)
		default:
			out = append(out, w)
		}
	}
	return out
}

// readmeNodeRe finds a `node` command: however it is run (go run
// ./cmd/node, a built binary, node), its command and the rest of the line.
var readmeNodeRe = regexp.MustCompile("^(?:[A-Z_]+=\\S+ )*(?:go run \\./cmd/node|/tmp/node|node) ([a-z]+)([^#&]*)")

// readmeInlineRe finds an inline `node …` or `go run ./cmd/node …` command.
var readmeInlineRe = regexp.MustCompile("`((?:go run \\./cmd/node|node) [a-z]+[^`]*)`")

// Every `node` command line of the README (its shell blocks, and inline
// commands in its text) names a command the binary has, with flags that
// command has: a renamed flag or command cannot leave the README behind.
// (The tour and the production commands also run, in the tests above and
// in docs_security_test.go.)
func TestReadmeCommandsExist(t *testing.T) {
	bin := nodeBinary(t)
	helps := map[string]string{}
	help := func(args ...string) string {
		t.Helper()
		key := strings.Join(args, " ")
		if h, ok := helps[key]; ok {
			return h
		}
		out, err := exec.Command(bin, append(args, "-h")...).CombinedOutput()
		if err != nil {
			t.Fatalf("node %s -h: %v\n%s", key, err, out)
		}
		helps[key] = string(out)
		return helps[key]
	}
	readme := readDoc(t, "README.md")
	var lines []string
	for _, block := range codeBlocks(readme, "sh") {
		for l := range strings.Lines(block) {
			lines = append(lines, strings.TrimSpace(l))
		}
	}
	for _, m := range readmeInlineRe.FindAllStringSubmatch(readme, -1) {
		lines = append(lines, m[1])
	}
	flagRe := regexp.MustCompile(`(?:^|\s)(-[a-z][a-z-]*)`)
	seen := 0
	for _, line := range lines {
		m := readmeNodeRe.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		args, rest := []string{m[1]}, m[2]
		if f := strings.Fields(rest); m[1] == "jobs" && len(f) > 0 && !strings.HasPrefix(f[0], "-") {
			args = append(args, f[0])
		}
		h := help(args...)
		for _, f := range flagRe.FindAllStringSubmatch(rest, -1) {
			if !strings.Contains(h, "  "+f[1]+" ") && !strings.Contains(h, "  "+f[1]+"\n") {
				t.Errorf("README: node %s: no flag %s in: %s", strings.Join(args, " "), f[1], line)
			}
		}
		seen++
	}
	if seen < 20 {
		t.Fatalf("found %d node command lines in the README; the pattern is off", seen)
	}
}
