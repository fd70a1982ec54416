package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nopal-dev/nopal/reliable"
	"github.com/nopal-dev/nopal/stream"
)

// Scenario 10: reliable jobs. The jobs-server subprocess runs an embedded
// NATS server (file storage, a TCP client port) and a reliable.Worker of
// server type "bench"; the suite enqueues jobs over TCP and watches the
// jobs KV bucket for their completion.

const (
	jobsServerType  = "bench"
	jobsRoute       = "bench.jobs.echo"
	jobsConcurrency = 64
	jobsPublishers  = 16
	// defaultJobsCap bounds the jobs (and raw messages) of scenario 10.
	defaultJobsCap = 20_000
	// jobsJIDPrefix marks the throughput phase's jobs (jid = prefix + index).
	jobsJIDPrefix = "tput-"
)

// JobsResult is scenario 10's figures.
type JobsResult struct {
	// Enqueue latency, one caller, sequential Enqueue calls.
	Enqueue LatencyStats `json:"enqueue"`
	// Floor is the TCP echo server's 1-connection round trip, measured in
	// the same scenario.
	Floor LoadResult `json:"floor"`
	// Jobs enqueued by 16 goroutines in the throughput phase, and how many
	// of them the suite saw succeed (must be all), failed or died.
	Jobs      int `json:"jobs"`
	Succeeded int `json:"succeeded"`
	Failed    int `json:"failed"`
	// JobsSeconds runs from the first enqueue to the last success.
	JobsSeconds    float64 `json:"jobs_seconds"`
	JobsPerSec     float64 `json:"jobs_per_sec"`
	EnqueuesPerSec float64 `json:"enqueues_per_sec"`
	// ServerCPUUsPerJob is the jobs-server process's (NATS and worker)
	// utime+stime over the throughput phase / Jobs.
	ServerCPUTicks    int64   `json:"server_cpu_ticks"`
	ServerCPUUsPerJob float64 `json:"server_cpu_us_per_job"`
	// Raw JetStream: as many acked publishes from 16 goroutines to a
	// work-queue stream (file storage) on the same server, consumed and
	// acked by one pull consumer in the suite.
	// WritesPerJob is the JetStream messages stored per job in the
	// throughput phase: in the JOBS stream and in the jobs bucket's
	// stream (their last sequences' growth / Jobs).
	WritesPerJob     float64 `json:"writes_per_job"`
	JobsStreamWrites float64 `json:"jobs_stream_writes_per_job"`
	BucketWrites     float64 `json:"bucket_writes_per_job"`
	RawSeconds       float64 `json:"raw_seconds"`
	RawPerSec        float64 `json:"raw_msgs_per_sec"`
	RawCPUUsPerMsg   float64 `json:"raw_server_cpu_us_per_msg"`
	JobsOverRawRate  float64 `json:"jobs_over_raw"`
}

func cmdJobsServer(args []string, stdin io.Reader, stdout, stderr io.Writer) (err error) {
	fs := flag.NewFlagSet("jobs-server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("nats-listen", "127.0.0.1:0", "client address of the embedded NATS server")
	storeDir := fs.String("store", "", "JetStream store folder (default: a new temporary folder, removed at exit)")
	concurrency := fs.Int("concurrency", jobsConcurrency, "worker concurrency")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile to this file until the server exits")
	if err := fs.Parse(args); err != nil {
		return err
	}
	stopProfile, err := startCPUProfile(*cpuprofile)
	if err != nil {
		return err
	}
	defer func() {
		if perr := stopProfile(); err == nil {
			err = perr
		}
	}()
	dir := *storeDir
	if dir == "" {
		d, err := os.MkdirTemp("", "nopal-bench-jobs-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, cancel := untilStopped(stdin)
	defer cancel()
	sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer scancel()
	bus, err := stream.Connect(sctx, stream.Config{
		ServerID: "jobs", Embedded: stream.Embedded{StoreDir: dir, Listen: *listen}, Logger: log,
	})
	if err != nil {
		return err
	}
	defer bus.Close()
	inv := reliable.InvokerFunc(func(_ context.Context, _ string, arg []byte) ([]byte, error) { return arg, nil })
	w, err := reliable.NewWorker(sctx, bus, inv, reliable.WorkerConfig{
		ServerType: jobsServerType, Concurrency: *concurrency, Logger: log,
	})
	if err != nil {
		return err
	}
	if err := w.Start(sctx); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "NATS %s\nREADY\n", bus.ClientURL())
	<-ctx.Done()
	stopCtx, stopCancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer stopCancel()
	if err := w.Stop(stopCtx); err != nil {
		return fmt.Errorf("stop worker: %w", err)
	}
	return nil
}

// jobsRun runs scenario 10.
func (s suiteServers) jobsRun(payload []byte) (*JobsResult, error) {
	res := &JobsResult{}

	// The floor: 1 connection, 1 in flight, to a TCP echo server.
	echo, err := s.start(false, "")
	if err != nil {
		return nil, err
	}
	ex, err := newExchange(payload, false)
	if err != nil {
		echo.kill()
		return nil, err
	}
	floorDur := min(time.Second, s.o.Duration)
	l, err := newLoader(echo.addr, ex, 1, []int{echo.pid()}, floorDur)
	if err == nil {
		err = l.window(s.o.Warmup, floorDur)
		if err == nil {
			res.Floor, err = l.result()
		}
		l.Close()
	}
	if err != nil {
		echo.kill()
		return nil, fmt.Errorf("floor: %w", err)
	}
	if err := echo.stop(); err != nil {
		return nil, err
	}
	s.logLoad("echo-server", res.Floor)

	// The jobs server.
	args := []string{"jobs-server"}
	if s.o.JobsCPUProfile != "" {
		args = append(args, "-cpuprofile", s.o.JobsCPUProfile)
	}
	srv, err := startChildReady("jobs-server", s.exe, args, s.log, 30*time.Second)
	if err != nil {
		return nil, err
	}
	defer func() {
		if srv.alive() {
			srv.kill()
		}
	}()
	if srv.natsURL == "" {
		return nil, errors.New("jobs-server printed no NATS line")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute+2*s.o.Duration)
	defer cancel()
	quiet := slog.New(slog.DiscardHandler)
	bus, err := stream.Connect(ctx, stream.Config{URL: srv.natsURL, ServerID: "suite", Logger: quiet})
	if err != nil {
		return nil, err
	}
	defer bus.Close()
	c, err := reliable.NewClient(ctx, bus, reliable.WithLogger(quiet))
	if err != nil {
		return nil, err
	}
	arg := payload

	// (a) Enqueue latency: sequential, after a warm-up.
	warmEnd := time.Now().Add(s.o.Warmup)
	for time.Now().Before(warmEnd) {
		if _, err := c.Enqueue(ctx, jobsRoute, arg); err != nil {
			return nil, fmt.Errorf("enqueue (warm-up): %w", err)
		}
	}
	latDur := max(s.o.Duration/2, 100*time.Millisecond)
	var lat []int64
	end := time.Now().Add(latDur)
	for time.Now().Before(end) && len(lat) < 1_000_000 {
		t := time.Now()
		if _, err := c.Enqueue(ctx, jobsRoute, arg); err != nil {
			return nil, fmt.Errorf("enqueue: %w", err)
		}
		lat = append(lat, int64(time.Since(t)))
	}
	res.Enqueue = latencyStats(lat)
	fmt.Fprintf(s.log, "  enqueue (1 caller)   %8d enqueues in %v, p50 %7.1f µs, p99 %7.1f µs\n",
		res.Enqueue.Samples, latDur, res.Enqueue.P50Us, res.Enqueue.P99Us)

	// (b) End-to-end throughput. The suite watches the jobs bucket for the
	// throughput phase's jids (jobsJIDPrefix + index) reaching a terminal
	// state; each index is counted once.
	jobsCap := s.o.JobsCap
	if jobsCap <= 0 {
		jobsCap = defaultJobsCap
	}
	kv, err := bus.JetStream().KeyValue(ctx, bus.Name(reliable.Bucket))
	if err != nil {
		return nil, err
	}
	watch, err := kv.WatchAll(ctx, jetstream.UpdatesOnly())
	if err != nil {
		return nil, err
	}
	defer func() { _ = watch.Stop() }()
	var (
		mu          sync.Mutex
		seen        = make([]bool, jobsCap)
		succeeded   int
		failed      int
		lastSuccess time.Time
		progress    = make(chan struct{}, 1)
	)
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		for e := range watch.Updates() {
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue
			}
			i, ok := strings.CutPrefix(e.Key(), jobsJIDPrefix)
			if !ok {
				continue
			}
			n, err := strconv.Atoi(i)
			if err != nil || n < 0 || n >= jobsCap {
				continue
			}
			v := e.Value()
			done := bytes.Contains(v, []byte(`"state":"succeeded"`))
			bad := bytes.Contains(v, []byte(`"state":"failed"`)) || bytes.Contains(v, []byte(`"state":"dead"`)) ||
				bytes.Contains(v, []byte(`"state":"cancelled"`))
			if !done && !bad {
				continue
			}
			mu.Lock()
			if !seen[n] {
				seen[n] = true
				if done {
					succeeded++
					lastSuccess = time.Now()
				} else {
					failed++
				}
			}
			mu.Unlock()
			select {
			case progress <- struct{}{}:
			default:
			}
		}
	}()

	lastSeqs := func() (jobs, bucket uint64, err error) {
		for _, p := range []struct {
			name string
			seq  *uint64
		}{{bus.Name(reliable.Stream), &jobs}, {"KV_" + bus.Name(reliable.Bucket), &bucket}} {
			st, err := bus.JetStream().Stream(ctx, p.name)
			if err != nil {
				return 0, 0, err
			}
			info, err := st.Info(ctx)
			if err != nil {
				return 0, 0, err
			}
			*p.seq = info.State.LastSeq
		}
		return jobs, bucket, nil
	}
	jobs0, bucket0, err := lastSeqs()
	if err != nil {
		return nil, err
	}
	u0, s0, err := cpuTimes(srv.pid())
	if err != nil {
		return nil, err
	}
	var next atomic.Int64
	deadline := time.Now().Add(s.o.Duration)
	start := time.Now()
	err = runParallel(jobsPublishers, func() (bool, error) {
		if time.Now().After(deadline) {
			return false, nil
		}
		i := int(next.Add(1)) - 1
		if i >= jobsCap {
			return false, nil
		}
		_, err := c.Enqueue(ctx, jobsRoute, arg, reliable.WithJID(jobsJIDPrefix+strconv.Itoa(i)))
		return true, err
	})
	enqueued := time.Since(start)
	n := int(min(next.Load(), int64(jobsCap)))
	res.Jobs = n
	if err != nil {
		return res, fmt.Errorf("enqueue: %w", err)
	}
	if n == 0 {
		return res, errors.New("no job enqueued")
	}
	res.EnqueuesPerSec = float64(n) / enqueued.Seconds()
	timeout := time.After(30*time.Second + s.o.Duration)
	for {
		mu.Lock()
		finished := succeeded + failed
		mu.Unlock()
		if finished >= n {
			break
		}
		select {
		case <-progress:
		case <-watchDone:
			return res, errors.New("jobs bucket watch ended")
		case <-timeout:
			mu.Lock()
			res.Succeeded, res.Failed = succeeded, failed
			mu.Unlock()
			return res, fmt.Errorf("only %d of %d jobs finished (%d failed) in time", res.Succeeded+res.Failed, n, res.Failed)
		case <-ctx.Done():
			return res, ctx.Err()
		}
	}
	u1, s1, err := cpuTimes(srv.pid())
	if err != nil {
		return res, err
	}
	mu.Lock()
	res.Succeeded, res.Failed = succeeded, failed
	elapsed := lastSuccess.Sub(start)
	mu.Unlock()
	res.JobsSeconds = elapsed.Seconds()
	res.JobsPerSec = float64(n) / res.JobsSeconds
	res.ServerCPUTicks = u1 + s1 - u0 - s0
	res.ServerCPUUsPerJob = float64(res.ServerCPUTicks) * 1e6 / clkTck / float64(n)
	fmt.Fprintf(s.log, "  jobs (%d enqueuers)  %8d jobs (%d succeeded, %d failed), %9.0f enqueues/s, %9.0f jobs/s, server CPU %6.1f µs/job\n",
		jobsPublishers, n, res.Succeeded, res.Failed, res.EnqueuesPerSec, res.JobsPerSec, res.ServerCPUUsPerJob)
	if jobs1, bucket1, err := lastSeqs(); err == nil {
		res.JobsStreamWrites = float64(jobs1-jobs0) / float64(n)
		res.BucketWrites = float64(bucket1-bucket0) / float64(n)
		res.WritesPerJob = res.JobsStreamWrites + res.BucketWrites
		fmt.Fprintf(s.log, "  JetStream writes     %8.2f per job (JOBS %.2f, jobs bucket %.2f)\n",
			res.WritesPerJob, res.JobsStreamWrites, res.BucketWrites)
	}
	if res.Failed > 0 || res.Succeeded != n {
		return res, fmt.Errorf("%d of %d jobs succeeded, %d failed", res.Succeeded, n, res.Failed)
	}

	// (c) Raw JetStream: n acked publishes from 16 goroutines to a
	// work-queue stream, consumed and acked by one pull consumer.
	raw, err := bus.Stream(ctx, jetstream.StreamConfig{
		Name: "BENCH_RAW", Subjects: []string{"benchraw.>"},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage,
	})
	if err != nil {
		return res, err
	}
	cons, err := raw.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable: "raw", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1024,
	})
	if err != nil {
		return res, err
	}
	var got atomic.Int64
	allIn := make(chan struct{})
	cc, err := cons.Consume(func(m jetstream.Msg) {
		_ = m.Ack()
		if got.Add(1) == int64(n) {
			close(allIn)
		}
	}, jetstream.PullMaxMessages(256))
	if err != nil {
		return res, err
	}
	defer cc.Stop()
	u0, s0, err = cpuTimes(srv.pid())
	if err != nil {
		return res, err
	}
	var rnext atomic.Int64
	rawStart := time.Now()
	err = runParallel(jobsPublishers, func() (bool, error) {
		i := int(rnext.Add(1)) - 1
		if i >= n {
			return false, nil
		}
		_, err := bus.JetStream().Publish(ctx, "benchraw."+strconv.Itoa(i%16), arg)
		return true, err
	})
	if err != nil {
		return res, fmt.Errorf("raw publish: %w", err)
	}
	select {
	case <-allIn:
	case <-time.After(30*time.Second + s.o.Duration):
		return res, fmt.Errorf("raw: only %d of %d messages consumed in time", got.Load(), n)
	}
	rawElapsed := time.Since(rawStart)
	u1, s1, err = cpuTimes(srv.pid())
	if err != nil {
		return res, err
	}
	res.RawSeconds = rawElapsed.Seconds()
	res.RawPerSec = float64(n) / res.RawSeconds
	res.RawCPUUsPerMsg = float64(u1+s1-u0-s0) * 1e6 / clkTck / float64(n)
	res.JobsOverRawRate = res.JobsPerSec / res.RawPerSec
	fmt.Fprintf(s.log, "  raw JetStream        %8d msgs, %9.0f msg/s, server CPU %6.1f µs/msg; jobs/raw %.2f\n",
		n, res.RawPerSec, res.RawCPUUsPerMsg, res.JobsOverRawRate)

	cc.Stop()
	bus.Close()
	if err := srv.stop(); err != nil {
		return res, err
	}
	return res, nil
}

// runParallel runs f in g goroutines until it returns false or an error,
// and returns the first error.
func runParallel(g int, f func() (bool, error)) error {
	var wg sync.WaitGroup
	errs := make([]error, g)
	var stop atomic.Bool
	for k := range g {
		wg.Go(func() {
			for !stop.Load() {
				more, err := f()
				if err != nil {
					errs[k] = err
					stop.Store(true)
					return
				}
				if !more {
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
