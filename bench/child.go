package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// childEnv marks a process started by the suite. The real binary ignores
// it; the test binary uses it to run a subcommand instead of the tests.
const childEnv = "NOPAL_BENCH_CHILD"

// child is a server subprocess that printed "ADDR host:port".
type child struct {
	name     string
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	addr     string   // the first ADDR
	addrs    []string // every ADDR line before READY (startChildReady)
	natsURL  string   // the NATS line, if any (startChildReady)
	done     chan struct{}
	waitErr  error // valid once done is closed
	stopping atomic.Bool
}

// startChild runs exe with args, its stderr going to stderr, and waits up
// to timeout for the "ADDR " line on its stdout.
func startChild(name, exe string, args []string, stderr io.Writer, timeout time.Duration) (*child, error) {
	return startChildLines(name, exe, args, stderr, timeout, false)
}

// startChildReady is startChild for a cluster-server: it waits for the
// "READY" line and keeps every "ADDR " line and the "NATS " line before it.
func startChildReady(name, exe string, args []string, stderr io.Writer, timeout time.Duration) (*child, error) {
	return startChildLines(name, exe, args, stderr, timeout, true)
}

// childLines is what a child printed up to the line the suite waited for.
type childLines struct {
	addrs   []string
	natsURL string
}

func startChildLines(name, exe string, args []string, stderr io.Writer, timeout time.Duration, untilReady bool) (*child, error) {
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	// An os.Pipe rather than StdoutPipe: Wait must not close it under the
	// reader.
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout = pw
	if err := cmd.Start(); err != nil {
		_ = pr.Close()
		_ = pw.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	_ = pw.Close()
	c := &child{name: name, cmd: cmd, stdin: stdin, done: make(chan struct{})}
	go func() {
		c.waitErr = cmd.Wait()
		close(c.done)
	}()
	linesc := make(chan childLines, 1)
	go func() {
		defer pr.Close()
		sc := bufio.NewScanner(pr)
		var got childLines
		sent := false
		for sc.Scan() {
			if sent {
				continue // keep draining
			}
			line := sc.Text()
			if a, ok := strings.CutPrefix(line, "ADDR "); ok {
				got.addrs = append(got.addrs, strings.TrimSpace(a))
			} else if u, ok := strings.CutPrefix(line, "NATS "); ok {
				got.natsURL = strings.TrimSpace(u)
			}
			if (!untilReady && len(got.addrs) > 0) || (untilReady && strings.TrimSpace(line) == "READY") {
				linesc <- got
				sent = true
			}
		}
	}()
	want := "ADDR"
	if untilReady {
		want = "READY"
	}
	select {
	case got := <-linesc:
		c.addrs, c.natsURL = got.addrs, got.natsURL
		if len(got.addrs) > 0 {
			c.addr = got.addrs[0]
		}
		return c, nil
	case <-c.done:
		return nil, fmt.Errorf("%s exited before listening: %v", name, c.waitErr)
	case <-time.After(timeout):
		c.kill()
		return nil, fmt.Errorf("%s: no %s line in %v", name, want, timeout)
	}
}

// pid is the subprocess's process id.
func (c *child) pid() int { return c.cmd.Process.Pid }

// alive reports whether the subprocess still runs.
func (c *child) alive() bool {
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

// checkAlive returns an error if the subprocess died before being stopped.
func (c *child) checkAlive() error {
	if !c.alive() && !c.stopping.Load() {
		return fmt.Errorf("%s died: %v", c.name, c.waitErr)
	}
	return nil
}

// stop closes the subprocess's stdin (its signal to drain and exit), waits
// up to 10 s, then kills it. It returns an error if it had died before or
// did not exit cleanly.
func (c *child) stop() error {
	if err := c.checkAlive(); err != nil {
		return err
	}
	c.stopping.Store(true)
	_ = c.stdin.Close()
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		c.kill()
		return fmt.Errorf("%s did not exit in 10 s: killed", c.name)
	}
	var ee *exec.ExitError
	if errors.As(c.waitErr, &ee) {
		return fmt.Errorf("%s: %v", c.name, c.waitErr)
	}
	return nil
}

// kill ends the subprocess at once and waits for it; after it has exited
// (stopped, or died) it does nothing.
func (c *child) kill() {
	c.stopping.Store(true)
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
}
