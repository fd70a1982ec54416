package main

import (
	"context"
	"fmt"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/nopal-dev/nopal/reliable"
)

// The README's reliable-RPC tour, as a newcomer runs it: a job enqueued
// while no rewards server runs is queued; the rewards server that starts
// afterwards runs it once, and its first attempt succeeds. (A worker that
// fetched before its server could run jobs used to burn that attempt with
// "rewards: not in a cluster": with one attempt allowed, the job died.)
func TestProcessJobQueuedBeforeItsWorker(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping a multi-process test")
	}
	bin := nodeBinary(t)
	n := startProc(t, bin, "N", "serve", "-tcp", "", "-ws", "", "-nats-listen", "127.0.0.1:0")
	url := n.waitLine(t, natsURLRe, startTimeout)[1]
	n.waitLine(t, readyRe, startTimeout)
	_, jobs := connectJobs(t, url, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	const jid = "grant-x-gold"
	if _, err := jobs.Enqueue(ctx, "rewards.rewards.grant", []byte(`{"uid":"x","reward":"gold"}`),
		reliable.WithJID(jid), reliable.WithMaxAttempts(1)); err != nil {
		t.Fatal(err)
	}
	if j, err := jobs.Get(ctx, jid); err != nil || j.State != reliable.Queued {
		t.Fatalf("before a worker runs: %+v, %v", j, err)
	}
	w := startProc(t, bin, "rewards-1", "serve", "-type", "rewards", "-id", "rewards-1", "-tcp", "", "-ws", "", "-nats", url)
	w.waitLine(t, readyRe, startTimeout)
	j, err := jobs.Wait(ctx, jid)
	if err != nil {
		t.Fatal(err)
	}
	if j.State != reliable.Succeeded || len(j.Attempts) != 1 || j.Attempts[0].Error != nil {
		t.Fatalf("want one attempt, succeeded: %+v", j)
	}
}

// `make run` stopped with Ctrl-C: the connector drains first, so the room,
// still running, hears its users leave; nothing is logged as a failure and
// the exit code is 0.
func TestProcessMakeRunStopsCleanly(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping a multi-process test")
	}
	bin := nodeBinary(t)
	n := startProc(t, bin, "make-run", "serve", "-nats-listen", "127.0.0.1:0", "-tcp", "127.0.0.1:0", "-ws", "127.0.0.1:0")
	tcp, _ := connectorAddrs(t, n)
	ana := dialChat(t, "ana", tcp)
	ana.join(t)
	code, took := n.signalAndWait(t, syscall.SIGINT, 20*time.Second)
	if code != 0 {
		t.Errorf("exit code %d after SIGINT, want 0", code)
	}
	if warn := n.allLines(warnRe); len(warn) > 0 {
		t.Errorf("the stop logged warnings or errors: %q", warn)
	}
	t.Logf("stopped in %v", took)
}

var (
	warnRe         = regexp.MustCompile(`level=(WARN|ERROR).*`)
	disconnectedRe = regexp.MustCompile(`msg="bus disconnected"`)
	shuttingDownRe = regexp.MustCompile(`msg="shutting down`)
)

// A connector whose NATS server is gone stops within its shutdown timeout,
// though every bus write it owes for its sessions (their records, their
// users leaving the room) would wait for the bus; and a second SIGINT stops
// one at once, whatever its timeout.
func TestProcessShutdownWithoutTheBus(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping a multi-process test")
	}
	bin := nodeBinary(t)
	owner := startProc(t, bin, "room-1", "serve", "-type", "room", "-id", "room-1", "-tcp", "", "-ws", "",
		"-nats-listen", "127.0.0.1:0")
	url := owner.waitLine(t, natsURLRe, startTimeout)[1]
	owner.waitLine(t, readyRe, startTimeout)
	const timeout = 3 * time.Second
	connector := func(id string, shutdown time.Duration) *proc {
		p := startProc(t, bin, id, "serve", "-type", "connector", "-id", id, "-nats", url,
			"-tcp", "127.0.0.1:0", "-ws", "", "-shutdown-timeout", shutdown.String())
		p.waitLine(t, readyRe, startTimeout)
		tcp := p.waitLine(t, listeningRe, startTimeout)[1]
		for i := range 5 {
			dialChat(t, fmt.Sprintf("%s-user-%d", id, i), tcp).join(t)
		}
		return p
	}
	bounded := connector("connector-1", timeout)
	patient := connector("connector-2", time.Minute)

	if code, _ := owner.signalAndWait(t, syscall.SIGKILL, 10*time.Second); code == 0 {
		t.Fatal("the killed NATS owner exited cleanly")
	}
	bounded.waitLine(t, disconnectedRe, startTimeout)
	patient.waitLine(t, disconnectedRe, startTimeout)

	// The timeout, and a second for the process to exit (a -race binary).
	_, took := bounded.signalAndWait(t, syscall.SIGINT, timeout+5*time.Second)
	if took > timeout+time.Second {
		t.Errorf("connector-1 (-shutdown-timeout %v) took %v to stop", timeout, took)
	}
	t.Logf("connector-1 (-shutdown-timeout %v) stopped in %v", timeout, took)

	if err := patient.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	patient.waitLine(t, shuttingDownRe, 10*time.Second)
	code, took := patient.signalAndWait(t, syscall.SIGINT, 3*time.Second)
	if code == 0 {
		t.Error("a stop by a second SIGINT exited 0")
	}
	t.Logf("connector-2 stopped %v after a second SIGINT", took)
}
