package main

import (
	"context"
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
