package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nopal-dev/nopal/reliable"
	"github.com/nopal-dev/nopal/stream"
)

// Two worker processes share 1,000 reliable jobs; one is killed with
// SIGKILL in the middle. Every job ends succeeded, none is lost, and no job
// runs again after it succeeded.
func TestProcessJobsSurviveSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the multi-process jobs test")
	}
	bin := nodeBinary(t)
	n := startProc(t, bin, "N", "serve", "-type", "connector", "-id", "nats-owner",
		"-tcp", "", "-ws", "", "-nats-listen", "127.0.0.1:0", "-nats-store", t.TempDir())
	url := n.waitLine(t, natsURLRe, startTimeout)[1]
	n.waitLine(t, readyRe, startTimeout)
	worker := func(id string) *proc {
		p := startProc(t, bin, id, "serve", "-type", "rewards", "-id", id, "-tcp", "", "-ws", "",
			"-nats", url, "-job-ack-wait", "1s", "-job-concurrency", "8")
		p.waitLine(t, readyRe, startTimeout)
		return p
	}
	w1 := worker("rewards-1")
	worker("rewards-2")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bus, err := stream.Connect(ctx, stream.Config{URL: url, ServerID: "jobs-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	jobs, err := reliable.NewClient(ctx, bus)
	if err != nil {
		t.Fatal(err)
	}

	const total = 1000
	var wg sync.WaitGroup
	errs := make(chan error, total)
	for g := range 8 {
		wg.Go(func() {
			for i := g; i < total; i += 8 {
				arg := fmt.Sprintf(`{"uid":"u%d","reward":"gold"}`, i)
				if _, err := jobs.Enqueue(ctx, "rewards.rewards.grant", []byte(arg), reliable.WithJID(fmt.Sprintf("job-%d", i))); err != nil {
					errs <- err
				}
			}
		})
	}

	count := func() map[reliable.State]int {
		t.Helper()
		page, err := jobs.List(ctx, reliable.Filter{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		out := map[reliable.State]int{}
		for _, j := range page.Jobs {
			out[j.State]++
		}
		return out
	}
	// Kill one worker once the work is well under way.
	for count()[reliable.Succeeded] < 150 {
		if ctx.Err() != nil {
			t.Fatal("jobs never got going")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, _ := w1.signalAndWait(t, syscall.SIGKILL, 10*time.Second); code == 0 {
		t.Fatal("the killed worker exited cleanly")
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("enqueue: %v", err)
	}
	for {
		c := count()
		if c[reliable.Succeeded] == total {
			break
		}
		if c[reliable.Dead]+c[reliable.Failed]+c[reliable.Cancelled] > 0 || ctx.Err() != nil {
			t.Fatalf("jobs did not all succeed: %v", c)
		}
		time.Sleep(50 * time.Millisecond)
	}

	page, err := jobs.List(ctx, reliable.Filter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	rerun, takenOver := 0, 0
	for _, j := range page.Jobs {
		if len(j.Attempts) > 1 {
			takenOver++
		}
		last := j.Attempts[len(j.Attempts)-1]
		if last.Error != nil || last.Ended.IsZero() {
			t.Errorf("%s: the succeeded attempt is not the last one: %+v", j.JID, j.Attempts)
		}
		for _, a := range j.Attempts[:len(j.Attempts)-1] {
			if a.Error == nil {
				t.Errorf("%s: an earlier attempt succeeded and the job ran again: %+v", j.JID, j.Attempts)
			}
		}
		if strings.Contains(string(j.Result), `"already":true`) {
			rerun++ // granted by the killed worker, acknowledged by the other: at least once
		}
	}
	t.Logf("%d jobs succeeded; %d taken over from the killed worker, %d of them had already granted", total, takenOver, rerun)
}
