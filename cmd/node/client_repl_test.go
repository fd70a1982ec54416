package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nopal-dev/nopal/internal/testproxy"
)

// replWait bounds each wait for a line of the REPL: generous, for -race on
// a busy machine; a passing test waits far less.
const replWait = 20 * time.Second

// replRun is a REPL (`node client`) running in-process, with its stdin
// open, so that the test can watch what it prints while it is idle.
type replRun struct {
	in    *io.PipeWriter
	lines chan string // what it prints, line by line; closed at its end
	done  chan error  // what run returned
	seen  []string    // the lines read so far, for failure messages
}

// startREPL runs `node client args...` and waits for its "connected"
// line. The REPL's input ends, and the REPL with it, when the test ends.
func startREPL(t *testing.T, args ...string) *replRun {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	r := &replRun{in: inW, lines: make(chan string, 1024), done: make(chan error, 1)}
	go func() {
		err := run(context.Background(), append([]string{"client"}, args...), inR, outW, io.Discard)
		_ = outW.Close()
		_ = inR.CloseWithError(errors.New("the REPL has ended"))
		r.done <- err
	}()
	go func() {
		defer close(r.lines)
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			r.lines <- sc.Text()
		}
		_, _ = io.Copy(io.Discard, outR)
	}()
	t.Cleanup(func() {
		_ = inW.Close()
		select {
		case <-r.done:
		case <-time.After(replWait):
			t.Error("the REPL did not end with its input")
		}
	})
	r.waitLine(t, "connected to ")
	return r
}

// waitLine reads the REPL's output until a line containing want, and
// returns it.
func (r *replRun) waitLine(t *testing.T, want string) string {
	t.Helper()
	deadline := time.NewTimer(replWait)
	defer deadline.Stop()
	for {
		select {
		case line, ok := <-r.lines:
			if !ok {
				t.Fatalf("the REPL ended without printing %q; it printed:\n%s", want, strings.Join(r.seen, "\n"))
			}
			r.seen = append(r.seen, line)
			if strings.Contains(line, want) {
				return line
			}
		case <-deadline.C:
			t.Fatalf("the REPL did not print %q in %v; it printed:\n%s", want, replWait, strings.Join(r.seen, "\n"))
		}
	}
}

// waitLines waits for each of wants in turn, in that order.
func (r *replRun) waitLines(t *testing.T, wants ...string) {
	t.Helper()
	for _, w := range wants {
		r.waitLine(t, w)
	}
}

// send types a line into the REPL.
func (r *replRun) send(t *testing.T, line string) {
	t.Helper()
	if _, err := fmt.Fprintln(r.in, line); err != nil {
		t.Fatalf("typing %q: %v", line, err)
	}
}

// end closes the REPL's input and waits for it to return; it returns the
// rest of what the REPL printed.
func (r *replRun) end(t *testing.T) (rest []string, err error) {
	t.Helper()
	_ = r.in.Close()
	deadline := time.NewTimer(replWait)
	defer deadline.Stop()
	for {
		select {
		case line, ok := <-r.lines:
			if !ok {
				select {
				case err = <-r.done:
					r.done <- err // for the cleanup
					return rest, err
				case <-deadline.C:
					t.Fatal("the REPL did not return after its output ended")
				}
			}
			r.seen = append(r.seen, line)
			rest = append(rest, line)
		case <-deadline.C:
			t.Fatalf("the REPL did not end with its input; it printed:\n%s", strings.Join(r.seen, "\n"))
		}
	}
}

// serveStoppable runs `node serve -type chat` (the standalone chat server,
// no bus) in-process on a free TCP port, like startServe, and returns its
// address and a function that stops it as SIGTERM would: it drains, kicking
// every client. stop returns serve's error; the test's end calls it too.
func serveStoppable(t *testing.T) (addr string, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := run(ctx, []string{"serve", "-type", "chat", "-tcp", "127.0.0.1:0", "-ws", ""}, strings.NewReader(""), io.Discard, pw)
		_ = pw.Close()
		done <- err
	}()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(replWait):
				err = errors.New("serve did not stop")
			}
		})
		return err
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	listening := regexp.MustCompile(`msg=listening .*addr=(\S+)`)
	lines := bufio.NewScanner(pr)
	for lines.Scan() {
		if m := listening.FindStringSubmatch(lines.Text()); m != nil {
			addr = m[1]
		}
		if strings.Contains(lines.Text(), "msg=ready") {
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	if addr == "" {
		t.Fatal("serve did not get ready")
	}
	return addr, stop
}

// What happens to the connection is printed at once, while the REPL waits
// for input: a drain of the server (its kick), a network failure that the
// session survives, one it does not survive (within -resume, or with no
// resume at all). After a final disconnect the REPL says "disconnected",
// answers a command with a clear error, and ends cleanly with its input.
func TestREPLReportsWhileIdle(t *testing.T) {
	tests := []struct {
		name   string
		resume string // the -resume flag
		fail   func(stop func() error, p *testproxy.Proxy) error
		want   []string // the lines, in order, printed with no input ({proxy}: its address)
		ended  bool     // the client has ended: "disconnected" and errors
	}{
		{
			name:  "drain kicks",
			fail:  func(stop func() error, _ *testproxy.Proxy) error { return stop() },
			want:  []string{"kicked by the server (a server that drains or shuts down kicks every client)", "disconnected"},
			ended: true,
		},
		{
			name: "network cut, resumed",
			fail: func(_ func() error, p *testproxy.Proxy) error { p.Cut(); return nil },
			want: []string{"connection lost: resuming…", "resumed the session on {proxy} (the same frontend)"},
		},
		{
			name:   "network down past -resume",
			resume: "300ms",
			fail:   func(_ func() error, p *testproxy.Proxy) error { p.Close(); return nil },
			want:   []string{"connection lost: resuming…", "resume failed: client: session lost: no server resumed it within 300ms", "disconnected"},
			ended:  true,
		},
		{
			name:   "network cut, no resume",
			resume: "0",
			fail:   func(_ func() error, p *testproxy.Proxy) error { p.Cut(); return nil },
			want:   []string{"connection closed: ", "disconnected"},
			ended:  true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv, stop := serveStoppable(t)
			p := testproxy.Start(t, srv)
			args := []string{"-addr", p.Addr()}
			if tc.resume != "" {
				args = append(args, "-resume", tc.resume)
			}
			r := startREPL(t, args...)
			r.send(t, "request room.join {}")
			r.waitLine(t, `response {"code":0,"result":"success"}`)

			if err := tc.fail(stop, p); err != nil {
				t.Fatalf("serve: %v", err)
			}
			for _, w := range tc.want {
				r.waitLine(t, strings.ReplaceAll(w, "{proxy}", p.Addr()))
			}
			if tc.ended {
				r.send(t, "request room.join {}")
				r.waitLine(t, "error: disconnected (")
				r.send(t, "drop")
				r.waitLine(t, "error: disconnected (")
			} else {
				r.send(t, "request room.nosuch {}")
				r.waitLine(t, "PIT-404")
			}
			rest, err := r.end(t)
			t.Logf("the REPL printed:\n%s", strings.Join(r.seen, "\n"))
			if err != nil {
				t.Fatalf("the REPL ended with %v", err)
			}
			for _, line := range rest {
				if strings.Contains(line, "disconnected") || strings.Contains(line, "connection") {
					t.Errorf("the REPL printed %q after its input ended", line)
				}
			}
		})
	}
}

// The drop command: the REPL reports the lost connection and the resume on
// the same frontend, then the session still gets the room's messages.
func TestREPLDropResumes(t *testing.T) {
	n := startServe(t)
	r := startREPL(t, "-addr", n.tcp)
	r.send(t, "request room.room.join {}")
	r.waitLine(t, `response {"code":0,"result":"success"}`)
	r.send(t, "drop")
	r.waitLines(t,
		"connection lost: resuming…",
		"resumed the session on "+n.tcp+" (the same frontend)",
		"dropped and resumed (",
	)
	r.send(t, `notify room.room.message {"name":"me","content":"after the drop"}`)
	r.waitLine(t, `push onMessage {"name":"me","content":"after the drop"}`)
	if rest, err := r.end(t); err != nil || len(rest) != 0 {
		t.Fatalf("the end of the REPL: %v, then %q", err, rest)
	}
}

// The network to a frontend fails for good: the REPL resumes the session
// on another frontend of the cluster (-resume-addrs) and says so; the room
// then reaches it there.
func TestREPLResumesOnAnotherFrontend(t *testing.T) {
	a := startServe(t, "-nats-listen", "127.0.0.1:0") // connector and room
	b := startServe(t, "-type", "connector", "-nats", a.nats)
	p := testproxy.Start(t, a.tcp)
	r := startREPL(t, "-addr", p.Addr(), "-resume-addrs", b.tcp)
	r.send(t, "request room.room.join {}")
	r.waitLine(t, `response {"code":0,"result":"success"}`)

	p.Close() // the way to the first frontend is gone
	r.waitLines(t,
		"connection lost: resuming…",
		"resumed the session on "+b.tcp+" (another frontend; was "+p.Addr()+")",
	)
	r.send(t, `notify room.room.message {"name":"me","content":"from the other frontend"}`)
	r.waitLine(t, `push onMessage {"name":"me","content":"from the other frontend"}`)
	if _, err := r.end(t); err != nil {
		t.Fatal(err)
	}
}
