// Command timerserver is a test server for process_timer_test.go: a
// clustered app of type "ticker" that declares the durable timer "beat"
// (route ticker.beat.now) at start and logs every tick it runs.
package main

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"time"

	"github.com/nopal-dev/nopal"
	"github.com/nopal-dev/nopal/backend"
	"github.com/nopal-dev/nopal/stream"
	"github.com/nopal-dev/nopal/timers"
)

// Beat is the timer's route: ticker.beat.now.
type Beat struct{ log *slog.Logger }

// Ack answers a tick.
type Ack struct {
	OK bool `json:"ok"`
}

// Now logs the tick.
func (b *Beat) Now(_ context.Context, t *timers.Tick) (*Ack, error) {
	b.log.Info("tick", "timer", t.Timer, "gen", t.Gen, "n", t.N)
	return &Ack{OK: true}, nil
}

func main() {
	id := flag.String("id", "", "server id")
	url := flag.String("nats", "nats://127.0.0.1:4222", "NATS URL")
	interval := flag.Duration("interval", 500*time.Millisecond, "the timer's interval")
	ackWait := flag.Duration("ack-wait", 3*time.Second, "the job worker's AckWait")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	app, err := nopal.New(nopal.Config{
		ServerType: "ticker", ServerID: *id, Logger: log,
		Cluster: &nopal.ClusterConfig{
			Bus:  stream.Config{URL: *url},
			Jobs: &nopal.JobsConfig{AckWait: *ackWait},
		},
	})
	if err != nil {
		log.Error("new", "err", err)
		os.Exit(1)
	}
	if err := app.RegisterRemote(&Beat{log: app.Logger()}, backend.WithName("beat")); err != nil {
		log.Error("register", "err", err)
		os.Exit(1)
	}
	if err := app.DurableTimer(context.Background(), "beat", *interval, "ticker.beat.now", nil); err != nil {
		log.Error("durable timer", "err", err)
		os.Exit(1)
	}
	if err := app.Run(context.Background()); err != nil {
		log.Error("run", "err", err)
		os.Exit(1)
	}
}
