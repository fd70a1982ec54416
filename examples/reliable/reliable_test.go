package reliable_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/nopal-dev/nopal"
	"github.com/nopal-dev/nopal/client"
	rewards "github.com/nopal-dev/nopal/examples/reliable"
	"github.com/nopal-dev/nopal/frontend"
	jobs "github.com/nopal-dev/nopal/reliable"
	"github.com/nopal-dev/nopal/stream"
)

// A claim from a client becomes one job, whose grant happens once even when
// it is claimed twice and when the worker dies in the middle of the job.
func TestClaimIsGrantedOnce(t *testing.T) {
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	front, err := nopal.New(nopal.Config{ServerType: "connector", Logger: quiet,
		Cluster: &nopal.ClusterConfig{Bus: stream.Config{Embedded: stream.Embedded{StoreDir: t.TempDir()}}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := rewards.SetupClaims(front); err != nil {
		t.Fatal(err)
	}
	tcp := frontend.NewTCPAcceptor("127.0.0.1:0")
	front.AddAcceptor(tcp)
	if err := front.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = front.Shutdown(context.Background()) })

	// The first worker dies in its first grant: its bus goes away without
	// acknowledging the job.
	startWorker := func(slow func(context.Context)) *nopal.App {
		w, err := nopal.New(nopal.Config{ServerType: rewards.RewardsType, Logger: quiet,
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
		if err := w.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = w.Shutdown(sctx)
		})
		return w
	}
	dying := make(chan struct{})
	var first *nopal.App
	first = startWorker(func(ctx context.Context) {
		select {
		case <-dying:
		default:
			close(dying)
			first.Bus().NC.Close() // the worker's link dies mid-job
			<-ctx.Done()           // and it never finishes its grant
		}
	})

	c, err := client.Dial(ctx, tcp.Addr().String())
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
	startWorker(nil) // a second worker takes the job over after AckWait

	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	job, err := front.Jobs().Wait(wctx, res1.JID)
	if err != nil {
		t.Fatal(err)
	}
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
