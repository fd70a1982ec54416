package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	timerBuildOnce sync.Once
	timerBin       string
	timerBuildErr  error
)

// timerServerBinary builds testdata/timerserver (a "ticker" server that
// declares the durable timer "beat" at start and logs each tick it runs)
// once per test run, next to the node binary.
func timerServerBinary(t *testing.T) string {
	t.Helper()
	nodeBinary(t) // makes buildDir, removed by TestMain
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not on PATH")
	}
	timerBuildOnce.Do(func() {
		timerBin = filepath.Join(buildDir, "timerserver")
		args := append([]string{"build", "-o", timerBin}, nodeBuildFlags...)
		out, err := exec.Command(goCmd, append(args, "./testdata/timerserver")...).CombinedOutput()
		if err != nil {
			timerBuildErr = fmt.Errorf("go build timerserver: %w\n%s", err, out)
		}
	})
	if timerBuildErr != nil {
		t.Fatal(timerBuildErr)
	}
	return timerBin
}

var tickRe = regexp.MustCompile(`msg=tick .*timer=beat gen=(\d+) n=(\d+)`)

// ticks returns the tick numbers (generation 1) a process logged.
func ticks(p *proc) []uint64 {
	var out []uint64
	for _, m := range p.allLines(tickRe) {
		if m[1] != "1" {
			continue
		}
		n, _ := strconv.ParseUint(m[2], 10, 64)
		out = append(out, n)
	}
	return out
}

// waitLogs waits until cond holds, re-checking it whenever one of procs
// logs a line, or fails the test after timeout.
func waitLogs(t *testing.T, timeout time.Duration, what string, cond func() bool, procs ...*proc) {
	t.Helper()
	deadline := time.After(timeout)
	for !cond() {
		cases := make([]chan struct{}, len(procs))
		for i, p := range procs {
			p.mu.Lock()
			cases[i] = p.changed
			p.mu.Unlock()
		}
		if cond() { // a line came while we gathered the channels
			return
		}
		wake := make(chan struct{}, len(procs))
		stop := make(chan struct{})
		for _, c := range cases {
			go func() {
				select {
				case <-c:
					wake <- struct{}{}
				case <-stop:
				}
			}()
		}
		select {
		case <-wake:
			close(stop)
		case <-deadline:
			close(stop)
			t.Fatalf("%s: not within %v", what, timeout)
		}
	}
}

// maxTick is the highest tick number p logged.
func maxTick(p *proc) uint64 {
	var m uint64
	for _, k := range ticks(p) {
		m = max(m, k)
	}
	return m
}

// TestProcessDurableTimerSurvivesSIGKILL: a ticker server declares the
// durable timer "beat" (500 ms) at start; a second one declares it too,
// which must not double it; the first, which set it, is killed with
// SIGKILL, and the second runs the next ticks. Every tick number runs once
// across both processes (the tick the killed one may have been running is
// the only one allowed twice: jobs run at least once).
func TestProcessDurableTimerSurvivesSIGKILL(t *testing.T) {
	bin := nodeBinary(t)
	tbin := timerServerBinary(t)
	n := startProc(t, bin, "N", "serve", "-type", "connector", "-id", "nats-owner",
		"-tcp", "", "-ws", "", "-nats-listen", "127.0.0.1:0", "-nats-store", t.TempDir())
	url := n.waitLine(t, natsURLRe, startTimeout)[1]
	n.waitLine(t, readyRe, startTimeout)

	first := startProc(t, tbin, "ticker-1", "-id", "ticker-1", "-nats", url, "-interval", "500ms")
	first.waitLine(t, readyRe, startTimeout)
	waitLogs(t, 20*time.Second, "ticker-1 runs tick 2", func() bool { return maxTick(first) >= 2 }, first)

	second := startProc(t, tbin, "ticker-2", "-id", "ticker-2", "-nats", url, "-interval", "500ms")
	second.waitLine(t, readyRe, startTimeout)
	// Both run the timer now; the second's declaration changed nothing.
	both := func() map[uint64]int {
		seen := map[uint64]int{}
		for _, p := range []*proc{first, second} {
			for _, k := range ticks(p) {
				seen[k]++
			}
		}
		return seen
	}
	start := time.Now()
	before := len(both())
	waitLogs(t, 20*time.Second, "six more ticks once ticker-2 declared the timer too",
		func() bool { return len(both()) >= before+6 }, first, second)
	if el, got := time.Since(start), len(both())-before; got > int(el/(500*time.Millisecond))+2 {
		t.Fatalf("%d ticks in %v at 500 ms: the timer was doubled", got, el)
	}
	for k, c := range both() {
		if c != 1 {
			t.Fatalf("tick %d ran %d times before any crash", k, c)
		}
	}

	// SIGKILL the server that set the timer.
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-first.done
	killedRan, lastKilled := ticks(first), maxTick(first)
	lastSeen := max(lastKilled, maxTick(second))
	// The survivor runs ticks past everything seen so far (after at most
	// AckWait, 3 s, if the killed one held the pending tick).
	waitLogs(t, 30*time.Second, "ticker-2 carries on after the SIGKILL",
		func() bool { return maxTick(second) >= lastSeen+4 }, second)

	seen := both()
	var prev uint64
	for _, k := range ticks(second) {
		if k <= prev {
			t.Fatalf("ticker-2 ran tick %d after tick %d", k, prev)
		}
		prev = k
	}
	for k, c := range seen {
		if c > 1 && k != lastKilled {
			t.Fatalf("tick %d ran %d times (ticker-1 ran %v, ticker-2 %v)", k, c, killedRan, ticks(second))
		}
	}
	t.Logf("ticker-1 (killed) ran %v; ticker-2 ran %v", killedRan, ticks(second))
}
