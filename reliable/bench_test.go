package reliable_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nopal-dev/nopal/reliable"
)

// BenchmarkEnqueue measures one durable Enqueue (one acked publish to
// JOBS), one caller at a time, and reports its latency percentiles.
func BenchmarkEnqueue(b *testing.B) {
	bus := newBus(b, "a")
	c := newClient(b, bus)
	ctx := context.Background()
	arg := &Mail{To: "someone", Body: "hello"}
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		if _, err := c.Enqueue(ctx, route, arg); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	reportPercentiles(b, lat, "enqueue")
}

func reportPercentiles(b *testing.B, lat []time.Duration, name string) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	p := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Microseconds()) }
	b.ReportMetric(p(0.50), name+"_p50_µs")
	b.ReportMetric(p(0.99), name+"_p99_µs")
}

// BenchmarkThroughput enqueues b.N jobs from 16 goroutines while a worker
// with Concurrency 64 runs them (a no-op remote), and reports jobs enqueued
// and completed per second. In the same run it moves b.N messages through a
// raw JetStream work queue the same way (16 publishers with acked
// publishes, a pull consumer acking each message with 64 handlers), so the
// ratio says what the job bookkeeping costs on this machine.
func BenchmarkThroughput(b *testing.B) {
	bus := newBus(b, "a")
	ctx := context.Background()
	n := b.N
	const publishers = 16

	// Raw JetStream floor.
	raw, err := bus.Stream(ctx, jetstream.StreamConfig{Name: "RAW", Subjects: []string{"raw.>"}, Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage})
	if err != nil {
		b.Fatal(err)
	}
	cons, err := raw.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "raw", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1024})
	if err != nil {
		b.Fatal(err)
	}
	var got atomic.Int64
	allIn := make(chan struct{})
	sem := make(chan struct{}, 64)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			_ = m.Ack()
			if got.Add(1) == int64(n) {
				close(allIn)
			}
		}()
	}, jetstream.PullMaxMessages(64))
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Stop()

	// Jobs.
	c := newClient(b, bus)
	var done atomic.Int64
	jobsDone := make(chan struct{})
	kv, err := bus.JetStream().KeyValue(ctx, bus.Name(reliable.Bucket))
	if err != nil {
		b.Fatal(err)
	}
	watch, err := kv.WatchAll(ctx, jetstream.UpdatesOnly())
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = watch.Stop() }()
	go func() {
		for e := range watch.Updates() {
			if e != nil && e.Operation() == jetstream.KeyValuePut && containsSucceeded(e.Value()) {
				if done.Add(1) == int64(n) {
					close(jobsDone)
				}
			}
		}
	}()
	inv := reliable.InvokerFunc(func(ctx context.Context, route string, arg []byte) ([]byte, error) { return arg, nil })
	w := startWorker(b, bus, inv, reliable.WorkerConfig{ServerType: "mail", Concurrency: 64})

	b.ResetTimer()
	jobStart := time.Now()
	run(b, n, publishers, func(i int) error {
		_, err := c.Enqueue(ctx, route, &Mail{To: "x"})
		return err
	})
	enqueueEnd := time.Since(jobStart)
	<-jobsDone
	jobTime := time.Since(jobStart)

	rawStart := time.Now()
	run(b, n, publishers, func(i int) error {
		_, err := bus.JetStream().Publish(ctx, fmt.Sprint("raw.", i%16), []byte(`{"to":"x"}`))
		return err
	})
	<-allIn
	rawTime := time.Since(rawStart)
	b.StopTimer()

	jobsPerSec := float64(n) / jobTime.Seconds()
	rawPerSec := float64(n) / rawTime.Seconds()
	b.ReportMetric(jobsPerSec, "jobs/s")
	b.ReportMetric(float64(n)/enqueueEnd.Seconds(), "enqueues/s")
	b.ReportMetric(rawPerSec, "raw_msgs/s")
	b.ReportMetric(jobsPerSec/rawPerSec, "jobs/raw")
	if st := w.Stats(); st.Jobs[reliable.Succeeded] != uint64(n) {
		b.Fatalf("stats %+v", st)
	}
}

func containsSucceeded(v []byte) bool {
	return bytes.Contains(v, []byte(`"state":"succeeded"`))
}

// run calls f(0..n-1) from g goroutines.
func run(b *testing.B, n, g int, f func(i int) error) {
	var wg sync.WaitGroup
	var next atomic.Int64
	errs := make(chan error, g)
	for range g {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

// BenchmarkDrain enqueues b.N jobs with no worker running (not timed), then
// starts a worker with Concurrency 64 and reports how fast it completes
// them: the worker side alone.
func BenchmarkDrain(b *testing.B) {
	bus := newBus(b, "a")
	ctx := context.Background()
	c := newClient(b, bus)
	n := b.N
	run(b, n, 16, func(i int) error {
		_, err := c.Enqueue(ctx, route, &Mail{To: "x"})
		return err
	})
	var done atomic.Int64
	all := make(chan struct{})
	inv := reliable.InvokerFunc(func(ctx context.Context, route string, arg []byte) ([]byte, error) { return arg, nil })
	w, err := reliable.NewWorker(ctx, bus, inv, reliable.WorkerConfig{ServerType: "mail", Concurrency: 64, Logger: discard})
	if err != nil {
		b.Fatal(err)
	}
	kv, err := bus.JetStream().KeyValue(ctx, bus.Name(reliable.Bucket))
	if err != nil {
		b.Fatal(err)
	}
	watch, err := kv.WatchAll(ctx, jetstream.UpdatesOnly())
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = watch.Stop() }()
	go func() {
		for e := range watch.Updates() {
			if e != nil && e.Operation() == jetstream.KeyValuePut && containsSucceeded(e.Value()) {
				if done.Add(1) == int64(n) {
					close(all)
				}
			}
		}
	}()
	b.ResetTimer()
	start := time.Now()
	if err := w.Start(ctx); err != nil {
		b.Fatal(err)
	}
	<-all
	elapsed := time.Since(start)
	b.StopTimer()
	if err := w.Stop(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(n)/elapsed.Seconds(), "jobs/s")
}
