package reliable_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nopal-dev/nopal"
	"github.com/nopal-dev/nopal/client"
	"github.com/nopal-dev/nopal/codec"
	rewards "github.com/nopal-dev/nopal/examples/reliable"
	"github.com/nopal-dev/nopal/frontend"
	jobs "github.com/nopal-dev/nopal/reliable"
	"github.com/nopal-dev/nopal/stream"
)

// startFront starts a connector frontend serving claims.claim on a TCP
// acceptor, with an embedded NATS server (JetStream in t.TempDir()); it
// returns the app and the client address.
func startFront(t *testing.T) (*nopal.App, string) {
	t.Helper()
	front, err := nopal.New(nopal.Config{ServerType: "connector", Logger: slog.New(slog.DiscardHandler),
		Cluster: &nopal.ClusterConfig{Bus: stream.Config{Embedded: stream.Embedded{StoreDir: t.TempDir()}}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := rewards.SetupClaims(front); err != nil {
		t.Fatal(err)
	}
	tcp := frontend.NewTCPAcceptor("127.0.0.1:0")
	front.AddAcceptor(tcp)
	if err := front.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = front.Shutdown(context.Background()) })
	return front, tcp.Addr().String()
}

// startWorker starts a rewards server on front's embedded NATS server, with
// a one-second job lease; slow (may be nil) becomes its Rewards.Slow.
func startWorker(t *testing.T, front *nopal.App, slow func(context.Context)) *nopal.App {
	t.Helper()
	w, err := nopal.New(nopal.Config{ServerType: rewards.RewardsType, Logger: slog.New(slog.DiscardHandler),
		Cluster: &nopal.ClusterConfig{Bus: stream.Config{}, Jobs: &nopal.JobsConfig{AckWait: time.Second}}})
	if err != nil {
		t.Fatal(err)
	}
	r, err := rewards.SetupRewards(w)
	if err != nil {
		t.Fatal(err)
	}
	r.Slow = slow
	w.UseEmbedded(front.Bus().Server)
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = w.Shutdown(sctx)
	})
	return w
}

// waitJob waits for the job's end (30 s at most).
func waitJob(t *testing.T, app *nopal.App, jid string) jobs.Job {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	job, err := app.Jobs().Wait(ctx, jid)
	if err != nil {
		t.Fatal(err)
	}
	return job
}

// A claim from a client becomes one job, whose grant happens once even when
// it is claimed twice and when the worker dies in the middle of the job.
func TestClaimIsGrantedOnce(t *testing.T) {
	ctx := context.Background()
	front, addr := startFront(t)

	// The first worker dies in its first grant: its bus goes away without
	// acknowledging the job.
	dying := make(chan struct{})
	var first *nopal.App
	first = startWorker(t, front, func(ctx context.Context) {
		select {
		case <-dying:
		default:
			close(dying)
			first.Bus().Abort() // the worker's link dies mid-job
			<-ctx.Done()        // and it never finishes its grant
		}
	})

	c, err := client.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var res1, res2 rewards.ClaimRes
	if err := c.Request(ctx, "claims.claim", rewards.ClaimReq{Reward: "gold"}, &res1); err != nil {
		t.Fatal(err)
	}
	if err := c.Request(ctx, "claims.claim", rewards.ClaimReq{Reward: "gold"}, &res2); err != nil {
		t.Fatal(err)
	}
	if res1.JID == "" || res1.JID != res2.JID {
		t.Fatalf("two claims gave jids %q and %q, want one job", res1.JID, res2.JID)
	}
	<-dying
	startWorker(t, front, nil) // a second worker takes the job over after AckWait

	job := waitJob(t, front, res1.JID)
	if job.State != jobs.Succeeded {
		t.Fatalf("job ended %s: %+v", job.State, job.LastError)
	}
	var g rewards.Granted
	if err := job.Decode(&g); err != nil {
		t.Fatal(err)
	}
	if g.Reward != "gold" {
		t.Fatalf("granted %+v", g)
	}
	if n, err := rewards.Grants(ctx, front); err != nil || n != 1 {
		t.Fatalf("grants = %d, %v; want exactly 1", n, err)
	}
	if len(job.Attempts) < 2 {
		t.Errorf("the job ran %d times; the first worker's attempt should be in its history", len(job.Attempts))
	}
}

// GrantArg.Work makes the grant take that long; a Work that is not a
// duration, is negative or exceeds MaxWork fails the job at its first
// attempt (no retries) with a message naming the problem.
func TestGrantWork(t *testing.T) {
	front, _ := startFront(t)
	startWorker(t, front, nil)
	tests := []struct {
		name     string
		work     string
		state    jobs.State
		errMsg   string        // in the job's last error, when it fails
		atLeast  time.Duration // of the attempt, when it succeeds
		attempts int
	}{
		{"no work", "", jobs.Succeeded, "", 0, 1},
		{"some work", "300ms", jobs.Succeeded, "", 300 * time.Millisecond, 1},
		{"not a duration", "20", jobs.Failed, `work "20" is not a duration`, 0, 1},
		{"garbage", "soon", jobs.Failed, `work "soon" is not a duration`, 0, 1},
		{"negative", "-5s", jobs.Failed, `work "-5s" is negative`, 0, 1},
		{"too long", "11m", jobs.Failed, `work "11m" is longer than 10m0s`, 0, 1},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			uid := "u" + string(rune('a'+i))
			jid, err := front.ReliableRPC(ctx, rewards.GrantRoute,
				&rewards.GrantArg{UID: uid, Reward: "gold", Work: tc.work}, jobs.WithMaxAttempts(3))
			if err != nil {
				t.Fatal(err)
			}
			job := waitJob(t, front, jid)
			if job.State != tc.state {
				t.Fatalf("job ended %s (%+v), want %s", job.State, job.LastError, tc.state)
			}
			if len(job.Attempts) != tc.attempts {
				t.Errorf("%d attempts, want %d", len(job.Attempts), tc.attempts)
			}
			if tc.state == jobs.Failed {
				le := job.LastError
				if le == nil || le.Code != codec.CodeBadRequest || !strings.Contains(le.Message, tc.errMsg) {
					t.Fatalf("last error %+v, want %s with %q", le, codec.CodeBadRequest, tc.errMsg)
				}
				return
			}
			a := job.Attempts[len(job.Attempts)-1]
			if took := a.Ended.Sub(a.Started); took < tc.atLeast {
				t.Errorf("the attempt took %v, want at least %v", took, tc.atLeast)
			}
		})
	}
}

// The README's crash demo: a worker killed during a slow grant (GrantArg.
// Work) leaves the job, which another worker takes over once the lease
// lapses, and grants once.
func TestWorkerKilledDuringWork(t *testing.T) {
	ctx := context.Background()
	front, _ := startFront(t)
	working := make(chan struct{})
	var first *nopal.App
	first = startWorker(t, front, func(context.Context) {
		select {
		case <-working:
		default:
			close(working) // the grant's work starts now
		}
	})
	jid, err := front.ReliableRPC(ctx, rewards.GrantRoute,
		&rewards.GrantArg{UID: "ana", Reward: "gold", Work: "2s"}, jobs.WithJID("grant-ana-gold"))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-working:
	case <-time.After(30 * time.Second):
		t.Fatal("the first worker never started the job")
	}
	first.Bus().Abort() // killed: it neither acknowledges nor signals progress
	second := startWorker(t, front, nil)

	job := waitJob(t, front, jid)
	if job.State != jobs.Succeeded {
		t.Fatalf("job ended %s: %+v", job.State, job.LastError)
	}
	if n, err := rewards.Grants(ctx, front); err != nil || n != 1 {
		t.Fatalf("grants = %d, %v; want exactly 1", n, err)
	}
	if len(job.Attempts) < 2 {
		t.Fatalf("attempts %+v: want the killed one and the one that granted", job.Attempts)
	}
	killed, last := job.Attempts[0], job.Attempts[len(job.Attempts)-1]
	if killed.Server != first.ServerID() || last.Server != second.ServerID() {
		t.Errorf("attempts ran on %s then %s, want %s then %s",
			killed.Server, last.Server, first.ServerID(), second.ServerID())
	}
	if took := last.Ended.Sub(last.Started); took < 2*time.Second {
		t.Errorf("the second worker's attempt took %v, want the 2s of work", took)
	}
}
