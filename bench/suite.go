package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// suiteOptions configures a suite run.
type suiteOptions struct {
	Duration  time.Duration `json:"duration_ns"`
	Warmup    time.Duration `json:"warmup_ns"`
	Conns     int           `json:"conns"`
	Idle      int           `json:"idle"`
	Payload   int           `json:"payload"`
	Settle    time.Duration `json:"settle_ns"`
	StartRuns int           `json:"start_runs"`
	// Rounds is how many measured windows each server gets in scenarios
	// 1 and 2, alternating between the floor and Nopal.
	Rounds int `json:"rounds"`
	// OnOffScale multiplies -duration and -rounds in scenarios 6 and 9,
	// which compare one server with a feature on and off: their ratio is
	// a difference of a few percent, and needs longer windows than the
	// noise of a 5 s run allows.
	OnOffScale int           `json:"onoff_scale"`
	Compress   bool          `json:"compress"`
	Heartbeat  time.Duration `json:"heartbeat_ns"`
	// Scenarios to run (1–10); empty: all.
	Scenarios []int `json:"scenarios"`
	// CPUProfile, if set, is passed to the Nopal server of scenario 2, and
	// with "-9" before its extension to scenario 9's server with metrics on.
	CPUProfile string `json:"cpuprofile,omitempty"`
	// Deploys are the cluster deployments of scenarios 5, 7 and 8
	// (embedded, external); empty: both.
	Deploys []string `json:"deployments"`
	// PushSamples bounds the pushes of scenario 7 (per deployment).
	PushSamples int `json:"push_samples"`
	// Members and Broadcasts size scenario 8.
	Members    int `json:"members"`
	Broadcasts int `json:"broadcasts"`
	// ClusterCPUProfile, if set, is the base name of the CPU profiles of
	// the cluster processes of scenarios 5 (its -conns run), 6, 7 and 8:
	// one per process, named after the scenario, the deployment and the
	// process (c.pprof gives c-5-embedded-echo+front.pprof,
	// c-5-external-nats.pprof, c-7-external-front-b.pprof, …).
	ClusterCPUProfile string `json:"cluster_cpuprofile,omitempty"`
	// JobsCap bounds the jobs (and raw messages) of scenario 10 (default
	// 20000).
	JobsCap int `json:"jobs_cap"`
	// JobsCPUProfile, if set, is passed to the jobs-server of scenario 10.
	JobsCPUProfile string `json:"jobs_cpuprofile,omitempty"`
	// IdleMixed is the connections of scenario 11, half WebSocket, and
	// IdleMixedSettle how long they stay idle before the RSS is sampled.
	IdleMixed       int           `json:"idle_mixed"`
	IdleMixedSettle time.Duration `json:"idle_mixed_settle_ns"`
}

func (o *suiteOptions) runs(n int) bool {
	if len(o.Scenarios) == 0 {
		return true
	}
	for _, s := range o.Scenarios {
		if s == n {
			return true
		}
	}
	return false
}

// Env describes where the suite ran.
type Env struct {
	Date       string `json:"date"`
	GoVersion  string `json:"go_version"`
	GOOS       string `json:"goos"`
	GOARCH     string `json:"goarch"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	NumCPU     int    `json:"num_cpu"`
	CPUModel   string `json:"cpu_model"`
	Kernel     string `json:"kernel"`
	NoFile     uint64 `json:"rlimit_nofile"`
}

// Pair is one scenario's figures for Nopal and for the floor.
type Pair[T any] struct {
	Nopal T `json:"nopal"`
	Floor T `json:"floor"`
}

// Row is one line of the table.
type Row struct {
	Scenario string  `json:"scenario"`
	Metric   string  `json:"metric"`
	Nopal    float64 `json:"nopal"`
	Floor    float64 `json:"floor"`
	HasFloor bool    `json:"has_floor"`
	Ratio    float64 `json:"ratio,omitempty"` // Nopal / floor
	Target   string  `json:"target,omitempty"`
	OK       *bool   `json:"ok,omitempty"`
	prec     int
}

// Results are the raw figures of a suite run (written by -json).
type Results struct {
	Env        Env                `json:"env"`
	Options    suiteOptions       `json:"options"`
	Latency    *Pair[LoadResult]  `json:"latency,omitempty"`    // scenario 1
	Throughput *Pair[LoadResult]  `json:"throughput,omitempty"` // scenario 2
	Idle       *Pair[IdleResult]  `json:"idle,omitempty"`       // scenario 3
	Start      *Pair[StartResult] `json:"start,omitempty"`      // scenario 4
	// Scenario 5: the cluster echo on each deployment, 1 connection and
	// -conns connections.
	ClusterLatency    *LoadSet `json:"cluster_latency,omitempty"`
	ClusterThroughput *LoadSet `json:"cluster_throughput,omitempty"`
	// Scenario 6: the embedded cluster with traffic recording on and off.
	Traffic   *LoadSet          `json:"traffic,omitempty"`
	Push      []PushResult      `json:"push,omitempty"`      // scenario 7
	Broadcast []BroadcastResult `json:"broadcast,omitempty"` // scenario 8
	// Scenario 9: the standalone server with metrics on and off.
	Metrics *LoadSet `json:"metrics,omitempty"`
	// Scenario 10: reliable jobs.
	Jobs *JobsResult `json:"jobs,omitempty"`
	// Scenario 11: idle connections, half WebSocket, on the chat server
	// and the relay floor.
	IdleMixed *Pair[IdleConnsResult] `json:"idle_mixed,omitempty"`
	Rows      []Row                  `json:"rows"`
	Errors    []string               `json:"errors,omitempty"`
}

func cmdSuite(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("suite", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := suiteOptions{}
	fs.DurationVar(&o.Duration, "duration", 5*time.Second, "measured window of each load run")
	fs.DurationVar(&o.Warmup, "warmup", 500*time.Millisecond, "warm-up before each measured window")
	fs.IntVar(&o.Conns, "conns", 64, "connections of the closed-loop scenario")
	fs.IntVar(&o.Idle, "idle", 5000, "idle connections")
	fs.IntVar(&o.Payload, "payload", 64, "request payload bytes")
	fs.DurationVar(&o.Settle, "settle", time.Second, "wait before sampling RSS with the idle connections open")
	fs.IntVar(&o.StartRuns, "start-runs", 3, "start-time runs (the median is reported)")
	fs.IntVar(&o.Rounds, "rounds", 5, "alternating floor/Nopal windows per load scenario (each -duration/rounds long)")
	fs.IntVar(&o.OnOffScale, "onoff-scale", 3, "scenarios 6 and 9 (a feature on vs off) run this many times -duration, in as many times -rounds windows")
	fs.BoolVar(&o.Compress, "compress", false, "run the Nopal server with -compress")
	fs.DurationVar(&o.Heartbeat, "heartbeat", 60*time.Second, "heartbeat interval of the Nopal server")
	only := fs.String("only", "", "comma-separated scenarios to run (1-11; default all)")
	fs.StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of the Nopal server during scenario 2 to this file (and of scenario 9's server with metrics on to its name with -9 before the extension)")
	deploys := fs.String("deploy", strings.Join(deployments, ","), "cluster deployments of scenarios 5, 7 and 8 (embedded, external)")
	fs.IntVar(&o.PushSamples, "push-samples", 3000, "most pushes measured per deployment in scenario 7")
	fs.IntVar(&o.Members, "members", 1000, "group members of scenario 8 (spread over 2 frontends)")
	fs.IntVar(&o.Broadcasts, "broadcasts", 50, "most broadcasts measured per deployment in scenario 8")
	fs.StringVar(&o.ClusterCPUProfile, "cluster-cpuprofile", "", "base name of CPU profiles of the cluster processes of scenarios 5 (-conns run), 6, 7 and 8 (one file per process)")
	fs.IntVar(&o.JobsCap, "jobs", defaultJobsCap, "most jobs (and raw JetStream messages) of scenario 10's throughput phase")
	fs.StringVar(&o.JobsCPUProfile, "jobs-cpuprofile", "", "write a CPU profile of the jobs-server of scenario 10 to this file")
	fs.IntVar(&o.IdleMixed, "idle-mixed", 20000, "idle connections of scenario 11, half of them WebSocket")
	fs.DurationVar(&o.IdleMixedSettle, "idle-mixed-settle", 5*time.Second, "how long scenario 11's connections idle before the RSS is sampled (the frontend parks readers idle for 2 s)")
	asJSON := fs.Bool("json", false, "also write the raw figures as JSON to -out")
	out := fs.String("out", "bench.json", "JSON output file (with -json)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("suite: unexpected arguments %q", fs.Args())
	}
	if *only != "" {
		for f := range strings.SplitSeq(*only, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 || n > 11 {
				return fmt.Errorf("suite: -only: bad scenario %q", f)
			}
			o.Scenarios = append(o.Scenarios, n)
		}
	}
	for _, d := range splitList(*deploys) {
		if d != deployEmbedded && d != deployExternal {
			return fmt.Errorf("suite: -deploy: bad deployment %q (embedded, external)", d)
		}
		o.Deploys = append(o.Deploys, d)
	}
	if len(o.Deploys) == 0 {
		return errors.New("suite: -deploy: no deployment")
	}
	if o.Duration <= 0 || o.Conns <= 0 || o.Idle <= 0 || o.Payload < 0 || o.StartRuns <= 0 || o.Rounds <= 0 || o.OnOffScale <= 0 ||
		o.PushSamples <= 0 || o.Members <= 0 || o.Broadcasts <= 0 || o.JobsCap <= 0 {
		return errors.New("suite: -duration, -conns, -idle, -rounds, -onoff-scale, -start-runs, -push-samples, -members, -broadcasts and -jobs must be positive, -payload not negative")
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	res, err := runSuite(exe, o, stderr)
	if res != nil {
		renderTable(stdout, res)
		if *asJSON {
			b, jerr := json.MarshalIndent(res, "", "  ")
			if jerr == nil {
				jerr = os.WriteFile(*out, append(b, '\n'), 0o644)
			}
			if jerr != nil {
				err = errors.Join(err, fmt.Errorf("writing %s: %w", *out, jerr))
			} else {
				fmt.Fprintf(stderr, "raw figures written to %s\n", *out)
			}
		}
	}
	return err
}

// runSuite runs the selected scenarios against subprocesses of exe (the
// bench binary, or the test binary) and returns the figures. Progress goes
// to log. The error joins every failure: a failed request, a dropped
// connection, a server that died.
func runSuite(exe string, o suiteOptions, log io.Writer) (*Results, error) {
	log = &lockedWriter{w: log} // the servers' stderr and the suite's progress
	if o.Warmup < 0 {
		o.Warmup = 0
	}
	if o.Rounds <= 0 {
		o.Rounds = 1
	}
	if o.OnOffScale <= 0 {
		o.OnOffScale = 1
	}
	if len(o.Deploys) == 0 {
		o.Deploys = deployments
	}
	if o.PushSamples <= 0 {
		o.PushSamples = 3000
	}
	if o.Members <= 0 {
		o.Members = 1000
	}
	if o.Broadcasts <= 0 {
		o.Broadcasts = 50
	}
	if o.JobsCap <= 0 {
		o.JobsCap = defaultJobsCap
	}
	nofile, err := raiseNofile()
	if err != nil {
		fmt.Fprintf(log, "warning: cannot raise RLIMIT_NOFILE: %v\n", err)
	}
	res := &Results{
		Env: Env{
			Date:       time.Now().Format(time.RFC3339),
			GoVersion:  runtime.Version(),
			GOOS:       runtime.GOOS,
			GOARCH:     runtime.GOARCH,
			GOMAXPROCS: runtime.GOMAXPROCS(0),
			NumCPU:     runtime.NumCPU(),
			CPUModel:   cpuModel(),
			Kernel:     kernelRelease(),
			NoFile:     nofile,
		},
		Options: o,
	}
	var errs []error
	fail := func(scenario string, err error) {
		err = fmt.Errorf("scenario %s: %w", scenario, err)
		errs = append(errs, err)
		res.Errors = append(res.Errors, err.Error())
		fmt.Fprintf(log, "FAIL: %v\n", err)
	}
	payload := make([]byte, o.Payload)
	for i := range payload {
		payload[i] = 'a' + byte(i%26)
	}
	servers := suiteServers{exe: exe, o: o, log: log}

	if o.runs(1) {
		fmt.Fprintf(log, "scenario 1: request/response, 1 connection, %v each\n", o.Duration)
		p, err := servers.loadPair(payload, 1, "")
		if err != nil {
			fail("1", err)
		} else {
			res.Latency = p
		}
	}
	if o.runs(2) {
		fmt.Fprintf(log, "scenario 2: request/response, %d connections, %v each\n", o.Conns, o.Duration)
		p, err := servers.loadPair(payload, o.Conns, o.CPUProfile)
		if err != nil {
			fail("2", err)
		} else {
			res.Throughput = p
		}
	}
	if o.runs(3) {
		fmt.Fprintf(log, "scenario 3: %d idle connections\n", o.Idle)
		p, err := servers.idlePair()
		if err != nil {
			fail("3", err)
		} else {
			res.Idle = p
		}
	}
	if o.runs(4) {
		fmt.Fprintf(log, "scenario 4: start time, %d runs\n", o.StartRuns)
		n, f, err := runStartup(exe, o.StartRuns)
		if err != nil {
			fail("4", err)
		} else {
			res.Start = &Pair[StartResult]{Nopal: n, Floor: f}
			fmt.Fprintf(log, "  go build ./cmd/node %.0f ms; node ready %v ms; floor %v ms\n", n.BuildMs, n.RunsMs, f.RunsMs)
		}
	}
	if o.runs(5) {
		var specs []clusterSpec
		for _, d := range o.Deploys {
			specs = append(specs, clusterSpec{name: d, kind: d, traffic: true})
		}
		fmt.Fprintf(log, "scenario 5: cluster request/response (%s), 1 connection, %v each\n", strings.Join(o.Deploys, ", "), o.Duration)
		if set, err := servers.clusterLoad(payload, 1, specs, ""); err != nil {
			fail("5", err)
		} else {
			res.ClusterLatency = set
		}
		fmt.Fprintf(log, "scenario 5: cluster request/response (%s), %d connections, %v each\n", strings.Join(o.Deploys, ", "), o.Conns, o.Duration)
		if set, err := servers.clusterLoad(payload, o.Conns, specs, profilePath(o.ClusterCPUProfile, "5")); err != nil {
			fail("5", err)
		} else {
			res.ClusterThroughput = set
		}
	}
	// Scenarios 6 and 9 run longer (-onoff-scale).
	onoff := servers
	onoff.o.Duration *= time.Duration(o.OnOffScale)
	onoff.o.Rounds *= o.OnOffScale
	if o.runs(6) {
		fmt.Fprintf(log, "scenario 6: traffic recording on vs off (embedded), %d connections, %v each\n", o.Conns, onoff.o.Duration)
		specs := []clusterSpec{
			{name: "traffic on", kind: deployEmbedded, traffic: true},
			{name: "traffic off", kind: deployEmbedded, traffic: false},
		}
		if set, err := onoff.clusterLoad(payload, o.Conns, specs, profilePath(o.ClusterCPUProfile, "6")); err != nil {
			fail("6", err)
		} else {
			res.Traffic = set
		}
	}
	if o.runs(9) {
		fmt.Fprintf(log, "scenario 9: metrics on vs off (standalone), %d connections, %v each\n", o.Conns, onoff.o.Duration)
		if set, err := onoff.metricsLoad(payload, o.Conns, profilePath(o.CPUProfile, "9")); err != nil {
			fail("9", err)
		} else {
			res.Metrics = set
		}
	}
	if o.runs(7) {
		for _, d := range o.Deploys {
			fmt.Fprintf(log, "scenario 7: push to a uid on another frontend (%s), up to %d samples in %v\n", d, o.PushSamples, o.Duration)
			r, err := servers.pushLatency(d, payload)
			if err != nil {
				fail("7 ("+d+")", err)
				continue
			}
			res.Push = append(res.Push, r)
		}
	}
	if o.runs(8) {
		for _, d := range o.Deploys {
			fmt.Fprintf(log, "scenario 8: broadcast to a %d-member group on 2 frontends (%s), up to %d broadcasts\n", o.Members, d, o.Broadcasts)
			r, err := servers.broadcastRun(d)
			if err != nil {
				fail("8 ("+d+")", err)
				if r.Expected == 0 {
					continue
				}
			}
			res.Broadcast = append(res.Broadcast, r)
		}
	}
	if o.runs(10) {
		fmt.Fprintf(log, "scenario 10: reliable jobs (embedded NATS, file storage), up to %d jobs in %v\n", o.JobsCap, o.Duration)
		r, err := servers.jobsRun(payload)
		if err != nil {
			fail("10", err)
		}
		if r != nil && r.Jobs > 0 {
			res.Jobs = r
		}
	}
	if o.runs(11) {
		fmt.Fprintf(log, "scenario 11: %d idle connections, half WebSocket, idle for %v\n", o.IdleMixed, o.IdleMixedSettle)
		p, err := idleMixed(exe, o, log)
		if err != nil {
			fail("11", err)
		}
		res.IdleMixed = p
	}
	res.Rows = buildRows(res)
	return res, errors.Join(errs...)
}

// lockedWriter serialises writes from several goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// suiteServers starts the server subprocesses of each scenario.
type suiteServers struct {
	exe string
	o   suiteOptions
	log io.Writer
}

func (s suiteServers) start(nopal bool, cpuprofile string) (*child, error) {
	if !nopal {
		return startChild("echo-server", s.exe, []string{"echo-server", "-addr", "127.0.0.1:0"}, s.log, 15*time.Second)
	}
	args := []string{"server", "-addr", "127.0.0.1:0", "-heartbeat", s.o.Heartbeat.String()}
	if s.o.Compress {
		args = append(args, "-compress")
	}
	if cpuprofile != "" {
		args = append(args, "-cpuprofile", cpuprofile)
	}
	return startChild("nopal server", s.exe, args, s.log, 15*time.Second)
}

// rewarm is the warm-up before every window after a server's first.
const rewarm = 50 * time.Millisecond

// loadTarget is one server of an alternating-window measurement.
type loadTarget struct {
	name string
	addr string
	ex   *exchange
	pids []int // every process of the server, for the CPU time
}

// measureLoad opens conns connections to every target and measures them
// side by side in alternating windows (targets in order, then in reverse
// order, …: -rounds windows of -duration/-rounds each per target), so that
// a noisy neighbour or a clock change hits all alike. It returns one result
// per target.
func (s suiteServers) measureLoad(targets []loadTarget, conns int) ([]LoadResult, error) {
	rounds := max(1, min(s.o.Rounds, int(s.o.Duration/(50*time.Millisecond))))
	slice := s.o.Duration / time.Duration(rounds)
	loaders := make([]*loader, len(targets))
	defer func() {
		for _, l := range loaders {
			if l != nil {
				l.Close()
			}
		}
	}()
	for i, t := range targets {
		var err error
		if loaders[i], err = newLoader(t.addr, t.ex, conns, t.pids, slice*time.Duration(rounds)); err != nil {
			return nil, fmt.Errorf("%s: %w", t.name, err)
		}
	}
	for r := range rounds {
		for k := range targets {
			i := k
			if r%2 == 1 {
				i = len(targets) - 1 - k
			}
			warm := min(rewarm, s.o.Warmup)
			if loaders[i].windows == 0 {
				warm = s.o.Warmup
			}
			if err := loaders[i].window(warm, slice); err != nil {
				return nil, fmt.Errorf("%s: %w", targets[i].name, err)
			}
		}
	}
	out := make([]LoadResult, len(targets))
	for i, t := range targets {
		r, err := loaders[i].result()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", t.name, err)
		}
		out[i] = r
		s.logLoad(t.name, r)
	}
	return out, nil
}

// logLoad prints one target's figures to the progress log.
func (s suiteServers) logLoad(name string, r LoadResult) {
	fmt.Fprintf(s.log, "  %-20s %8d requests measured in %d windows, %9.0f req/s, p50 %7.1f µs, p99 %7.1f µs, server CPU %5.1f µs/req (user %d sys %d ticks), %.2f ctx switches/req, %.2f read+write syscalls/req, client CPU %5.1f µs/req\n",
		name, r.Requests, r.Windows, r.ReqPerSec, r.P50Us, r.P99Us,
		r.ServerCPUUsPerReq, r.ServerUserTicks, r.ServerSysTicks, r.ServerCtxSwitchesPerReq, r.ServerSyscallsPerReq, r.ClientCPUUsPerReq)
}

// loadPair runs the floor and Nopal servers side by side and measures them
// in alternating windows (floor, Nopal, Nopal, floor, …: -rounds of each,
// -duration in all per server).
func (s suiteServers) loadPair(payload []byte, conns int, cpuprofile string) (*Pair[LoadResult], error) {
	var srvs [2]*child
	defer func() {
		for _, c := range srvs {
			if c != nil && c.alive() {
				c.kill()
			}
		}
	}()
	targets := make([]loadTarget, 2)
	for i, nopal := range []bool{false, true} {
		ex, err := newExchange(payload, nopal)
		if err != nil {
			return nil, err
		}
		if srvs[i], err = s.start(nopal, cpuprofile); err != nil {
			return nil, err
		}
		targets[i] = loadTarget{name: []string{"echo-server", "nopal server"}[i], addr: srvs[i].addr, ex: ex, pids: []int{srvs[i].pid()}}
	}
	res, err := s.measureLoad(targets, conns)
	if err != nil {
		return nil, err
	}
	for i := range srvs {
		err := srvs[i].stop()
		srvs[i] = nil
		if err != nil {
			return nil, err
		}
	}
	return &Pair[LoadResult]{Floor: res[0], Nopal: res[1]}, nil
}

// metricsLoad measures the standalone server with metrics on and off, next
// to the floor, in alternating windows; cpuprofile, when set, is the CPU
// profile of the server with metrics on.
func (s suiteServers) metricsLoad(payload []byte, conns int, cpuprofile string) (*LoadSet, error) {
	var srvs []*child
	defer func() {
		for _, c := range srvs {
			if c.alive() {
				c.kill()
			}
		}
	}()
	start := func(name string, args ...string) (loadTarget, error) {
		c, err := startChild(name, s.exe, args, s.log, 15*time.Second)
		if err != nil {
			return loadTarget{}, err
		}
		srvs = append(srvs, c)
		ex, err := newExchange(payload, name != "echo-server")
		if err != nil {
			return loadTarget{}, err
		}
		return loadTarget{name: name, addr: c.addr, ex: ex, pids: []int{c.pid()}}, nil
	}
	base := []string{"server", "-addr", "127.0.0.1:0", "-heartbeat", s.o.Heartbeat.String()}
	on := append(slices.Clone(base), "-metrics")
	if cpuprofile != "" {
		on = append(on, "-cpuprofile", cpuprofile)
	}
	var targets []loadTarget
	for _, spec := range [][]string{
		{"echo-server", "echo-server", "-addr", "127.0.0.1:0"},
		append([]string{"metrics on"}, on...),
		append([]string{"metrics off"}, base...),
	} {
		t, err := start(spec[0], spec[1:]...)
		if err != nil {
			return nil, err
		}
		targets = append(targets, t)
	}
	res, err := s.measureLoad(targets, conns)
	if err != nil {
		return nil, err
	}
	// Stopped, not killed: the server with metrics on writes its profile
	// as it exits.
	for _, c := range srvs {
		if err := c.stop(); err != nil {
			return nil, err
		}
	}
	return &LoadSet{Floor: res[0], Servers: []NamedLoad{
		{Name: "metrics on", Describe: "1 process", Result: res[1]},
		{Name: "metrics off", Describe: "1 process", Result: res[2]},
	}}, nil
}

// idlePair runs the idle scenario on the floor, then on Nopal.
func (s suiteServers) idlePair() (*Pair[IdleResult], error) {
	var p Pair[IdleResult]
	for _, nopal := range []bool{false, true} {
		srv, err := s.start(nopal, "")
		if err != nil {
			return nil, err
		}
		r, err := runIdle(idleSpec{addr: srv.addr, nopal: nopal, conns: s.o.Idle, settle: s.o.Settle, pid: srv.pid()})
		if err == nil {
			err = srv.checkAlive()
		}
		if err != nil {
			srv.kill()
			return nil, fmt.Errorf("%s: %w", srv.name, err)
		}
		if err := srv.stop(); err != nil {
			return nil, err
		}
		fmt.Fprintf(s.log, "  %-12s %d connections opened in %.2f s, RSS %d → %d KB (%.2f KB per connection)\n",
			srv.name, r.Conns, r.OpenSeconds, r.RSSBeforeKB, r.RSSAfterKB, r.PerConnKB)
		if nopal {
			p.Nopal = r
		} else {
			p.Floor = r
		}
	}
	return &p, nil
}

func okp(b bool) *bool { return &b }

// buildRows turns the figures into table rows with their targets.
func buildRows(r *Results) []Row {
	var rows []Row
	pair := func(scenario, metric string, nopal, floor float64, prec int, target string, ok *bool) {
		row := Row{Scenario: scenario, Metric: metric, Nopal: nopal, Floor: floor, HasFloor: true, Target: target, OK: ok, prec: prec}
		if floor != 0 {
			row.Ratio = nopal / floor
		}
		rows = append(rows, row)
	}
	// light: the load generator's own cost next to the floor's, and
	// whether the floor's server was held back by it (then every ratio
	// of the scenario flatters Nopal).
	light := func(sc string, n, f LoadResult) {
		pair(sc, "load generator CPU per request (µs)", n.ClientCPUUsPerReq, f.ClientCPUUsPerReq, 2, "", nil)
		flag := "≥ 0.90 core"
		if f.ClientBound() {
			flag += ": CLIENT-BOUND, ratios flatter"
		}
		pair(sc, "server cores busy", n.ServerCores, f.ServerCores, 2, flag, okp(!f.ClientBound()))
	}
	if p := r.Latency; p != nil {
		sc := "1. req/resp, 1 conn, 1 in flight"
		pair(sc, "p50 latency (µs)", p.Nopal.P50Us, p.Floor.P50Us, 1, "≤ 2× floor", okp(p.Nopal.P50Us <= 2*p.Floor.P50Us))
		pair(sc, "p99 latency (µs)", p.Nopal.P99Us, p.Floor.P99Us, 1, "", nil)
		pair(sc, "requests measured", float64(p.Nopal.Requests), float64(p.Floor.Requests), 0, "", nil)
	}
	if p := r.Throughput; p != nil {
		sc := fmt.Sprintf("2. req/resp, %d conns closed loop", p.Nopal.Conns)
		pair(sc, "throughput (req/s)", p.Nopal.ReqPerSec, p.Floor.ReqPerSec, 0, "≥ 0.85× floor", okp(p.Nopal.ReqPerSec >= 0.85*p.Floor.ReqPerSec))
		pair(sc, "p50 latency (µs)", p.Nopal.P50Us, p.Floor.P50Us, 1, "", nil)
		pair(sc, "p99 latency (µs)", p.Nopal.P99Us, p.Floor.P99Us, 1, "", nil)
		pair(sc, "server CPU per request (µs)", p.Nopal.ServerCPUUsPerReq, p.Floor.ServerCPUUsPerReq, 2, "≤ 1.2× floor",
			okp(p.Nopal.ServerCPUUsPerReq <= 1.2*p.Floor.ServerCPUUsPerReq))
		pair(sc, "requests measured", float64(p.Nopal.Requests), float64(p.Floor.Requests), 0, "", nil)
		light(sc, p.Nopal, p.Floor)
	}
	if p := r.Idle; p != nil {
		sc := fmt.Sprintf("3. %d idle conns", p.Nopal.Conns)
		pair(sc, "server RSS per conn (KB)", p.Nopal.PerConnKB, p.Floor.PerConnKB, 2, "≤ 12 KB", okp(p.Nopal.PerConnKB <= 12))
		pair(sc, "server RSS total (MB)", float64(p.Nopal.RSSAfterKB)/1024, float64(p.Floor.RSSAfterKB)/1024, 1, "", nil)
	}
	if p := r.Start; p != nil {
		sc := "4. `make run` start"
		pair(sc, "exec to ready (ms, median)", p.Nopal.MedianMs, p.Floor.MedianMs, 1, "< 1000 ms", okp(p.Nopal.MedianMs < 1000))
		rows = append(rows, Row{Scenario: sc, Metric: "go build ./cmd/node (ms)", Nopal: p.Nopal.BuildMs, prec: 0})
	}
	if set := r.ClusterLatency; set != nil {
		f := set.Floor
		for _, sv := range set.Servers {
			n := sv.Result
			sc := fmt.Sprintf("5. cluster req/resp, %s (%s), 1 conn, 1 in flight", sv.Name, sv.Describe)
			target := 6.0 // embedded: one process, no hop to a NATS server
			if sv.Name == "external" {
				target = 15
			}
			pair(sc, "p50 latency (µs)", n.P50Us, f.P50Us, 1, fmt.Sprintf("≤ %g× floor", target), okp(n.P50Us <= target*f.P50Us))
			pair(sc, "p99 latency (µs)", n.P99Us, f.P99Us, 1, "", nil)
			pair(sc, "requests measured", float64(n.Requests), float64(f.Requests), 0, "", nil)
		}
	}
	if set := r.ClusterThroughput; set != nil {
		f := set.Floor
		for _, sv := range set.Servers {
			n := sv.Result
			sc := fmt.Sprintf("5. cluster req/resp, %s (%s), %d conns closed loop", sv.Name, sv.Describe, n.Conns)
			// The performance issue's targets: embedded ≥ 0.4× the floor;
			// external ≥ 0.3× and ≤ 5× its CPU per request, NATS included.
			rate, cpu := 0.4, 0.0
			if sv.Name == "external" {
				rate, cpu = 0.3, 5
			}
			pair(sc, "throughput (req/s)", n.ReqPerSec, f.ReqPerSec, 0, fmt.Sprintf("≥ %g× floor", rate), okp(n.ReqPerSec >= rate*f.ReqPerSec))
			pair(sc, "p50 latency (µs)", n.P50Us, f.P50Us, 1, "", nil)
			pair(sc, "p99 latency (µs)", n.P99Us, f.P99Us, 1, "", nil)
			if cpu > 0 {
				pair(sc, "server CPU per request, all processes (µs)", n.ServerCPUUsPerReq, f.ServerCPUUsPerReq, 2, fmt.Sprintf("≤ %g× floor", cpu),
					okp(n.ServerCPUUsPerReq <= cpu*f.ServerCPUUsPerReq))
			} else {
				pair(sc, "server CPU per request, all processes (µs)", n.ServerCPUUsPerReq, f.ServerCPUUsPerReq, 2, "", nil)
			}
			pair(sc, "requests measured", float64(n.Requests), float64(f.Requests), 0, "", nil)
			light(sc, n, f)
		}
	}
	if set := r.Traffic; set != nil && len(set.Servers) == 2 {
		f, on, off := set.Floor, set.Servers[0].Result, set.Servers[1].Result
		sc := fmt.Sprintf("6. traffic recording, embedded (%s), %d conns closed loop", set.Servers[0].Describe, on.Conns)
		pair(sc, "throughput, traffic on (req/s)", on.ReqPerSec, f.ReqPerSec, 0, "", nil)
		pair(sc, "throughput, traffic off (req/s)", off.ReqPerSec, f.ReqPerSec, 0, "", nil)
		ratio := 0.0
		if off.ReqPerSec > 0 {
			ratio = on.ReqPerSec / off.ReqPerSec
		}
		rows = append(rows, Row{Scenario: sc, Metric: "throughput on / off", Nopal: ratio, Target: "≥ 0.8", OK: okp(ratio >= 0.8), prec: 2})
		pair(sc, "server CPU per request, traffic on (µs)", on.ServerCPUUsPerReq, f.ServerCPUUsPerReq, 2, "", nil)
		pair(sc, "server CPU per request, traffic off (µs)", off.ServerCPUUsPerReq, f.ServerCPUUsPerReq, 2, "", nil)
	}
	if set := r.Metrics; set != nil && len(set.Servers) == 2 {
		f, on, off := set.Floor, set.Servers[0].Result, set.Servers[1].Result
		sc := fmt.Sprintf("9. metrics, standalone, %d conns closed loop", on.Conns)
		pair(sc, "throughput, metrics on (req/s)", on.ReqPerSec, f.ReqPerSec, 0, "", nil)
		pair(sc, "throughput, metrics off (req/s)", off.ReqPerSec, f.ReqPerSec, 0, "", nil)
		ratio, cpu := 0.0, 0.0
		if off.ReqPerSec > 0 {
			ratio = on.ReqPerSec / off.ReqPerSec
		}
		if off.ServerCPUUsPerReq > 0 {
			cpu = on.ServerCPUUsPerReq / off.ServerCPUUsPerReq
		}
		rows = append(rows, Row{Scenario: sc, Metric: "throughput on / off", Nopal: ratio, Target: "≥ 0.9", OK: okp(ratio >= 0.9), prec: 2})
		rows = append(rows, Row{Scenario: sc, Metric: "server CPU per request on / off", Nopal: cpu, Target: "≤ 1.1", OK: okp(cpu <= 1.1), prec: 2})
		pair(sc, "server CPU per request, metrics on (µs)", on.ServerCPUUsPerReq, f.ServerCPUUsPerReq, 2, "", nil)
		pair(sc, "server CPU per request, metrics off (µs)", off.ServerCPUUsPerReq, f.ServerCPUUsPerReq, 2, "", nil)
	}
	for _, p := range r.Push {
		sc := fmt.Sprintf("7. push to a uid on the other frontend, %s (%s)", p.Deploy, p.Describe)
		pair(sc, "request on A → push on B, p50 (µs)", p.Push.P50Us, p.Floor.P50Us, 1, "≤ 4× floor", okp(p.Push.P50Us <= 4*p.Floor.P50Us))
		pair(sc, "request on A → push on B, p99 (µs)", p.Push.P99Us, p.Floor.P99Us, 1, "", nil)
		pair(sc, "server CPU per sample, all processes (µs)", p.ServerCPUUsPerPush, p.FloorCPUUsPerReq, 1, "", nil)
		pair(sc, "samples", float64(p.Push.Samples), float64(p.Floor.Samples), 0, "", nil)
	}
	for _, b := range r.Broadcast {
		sc := fmt.Sprintf("8. broadcast to %d members on %d frontends, %s (%s)", b.Members, b.Frontends, b.Deploy, b.Describe)
		pair(sc, "trigger → last member read, p50 (ms)", b.Nopal.P50Us/1e3, b.Floor.P50Us/1e3, 2, "", nil)
		pair(sc, "trigger → last member read, p99 (ms)", b.Nopal.P99Us/1e3, b.Floor.P99Us/1e3, 2, "≤ 20 ms", okp(b.Nopal.Samples > 0 && b.Nopal.P99Us <= 20e3))
		pair(sc, fmt.Sprintf("pushes read (of %d)", b.Expected), float64(b.Delivered), float64(b.FloorDelivered), 0,
			fmt.Sprintf("all %d", b.Expected), okp(b.Expected > 0 && b.Delivered == b.Expected))
		pair(sc, "broadcasts measured", float64(b.Nopal.Samples), float64(b.Floor.Samples), 0, "", nil)
	}
	if j := r.Jobs; j != nil {
		sc := "10. reliable jobs (embedded NATS, file storage)"
		pair(sc, "enqueue p50, 1 caller (µs)", j.Enqueue.P50Us, j.Floor.P50Us, 1, "≤ 6× floor",
			okp(j.Enqueue.Samples > 0 && j.Enqueue.P50Us <= 6*j.Floor.P50Us))
		pair(sc, "enqueue p99, 1 caller (µs)", j.Enqueue.P99Us, j.Floor.P99Us, 1, "", nil)
		rows = append(rows, Row{Scenario: sc, Metric: fmt.Sprintf("jobs/s, %d enqueuers, enqueue → succeeded", jobsPublishers),
			Nopal: j.JobsPerSec, Target: "≥ 20000", OK: okp(j.JobsPerSec >= 20000), prec: 0})
		rows = append(rows, Row{Scenario: sc, Metric: "raw JetStream publish+consume (msg/s)", Nopal: j.RawPerSec, prec: 0})
		rows = append(rows, Row{Scenario: sc, Metric: "jobs/s / raw msg/s", Nopal: j.JobsOverRawRate, Target: "≥ 0.5", OK: okp(j.JobsOverRawRate >= 0.5), prec: 2})
		rows = append(rows, Row{Scenario: sc, Metric: "JetStream writes per job (JOBS + jobs bucket)", Nopal: j.WritesPerJob, prec: 2})
		rows = append(rows, Row{Scenario: sc, Metric: "server CPU per job, NATS + worker (µs)", Nopal: j.ServerCPUUsPerJob, prec: 1})
		rows = append(rows, Row{Scenario: sc, Metric: "server CPU per raw message (µs)", Nopal: j.RawCPUUsPerMsg, prec: 1})
		rows = append(rows, Row{Scenario: sc, Metric: fmt.Sprintf("jobs succeeded (of %d)", j.Jobs), Nopal: float64(j.Succeeded),
			Target: fmt.Sprintf("all %d", j.Jobs), OK: okp(j.Jobs > 0 && j.Succeeded == j.Jobs && j.Failed == 0), prec: 0})
	}
	if p := r.IdleMixed; p != nil {
		n, f := p.Nopal, p.Floor
		sc := fmt.Sprintf("11. %d idle conns (%d TCP, %d WS), chat server", n.Conns, n.TCP, n.WS)
		pair(sc, fmt.Sprintf("connections held (of %d)", n.Conns), float64(n.Held), float64(f.Held), 0, "all", okp(n.Held == n.Conns))
		pair(sc, "server RSS per conn, idle (KB)", n.PerConnKB, f.PerConnKB, 2, "", nil)
		pair(sc, "server RSS per conn, idle, after a GC (KB)", n.PerConnGCKB, f.PerConnGCKB, 2, "≤ 8 KB", okp(n.Held == n.Conns && n.PerConnGCKB <= 8))
	}
	return rows
}

// idleMixed runs scenario 11: `bench idle` (idleconns.go) on the relay
// floor and the chat server, with the suite's connection count and settle.
func idleMixed(exe string, o suiteOptions, log io.Writer) (*Pair[IdleConnsResult], error) {
	opts := idleConnsOptions{settle: o.IdleMixedSettle, floor: true}
	opts.chat = chatOptions{Room: 50, Rate: 1, Duration: time.Second, Payload: 32, Conns: o.IdleMixed, WSShare: 0.5,
		Sources: len(idleSources), Dialers: 64, Heartbeat: o.Heartbeat, Wanted: o.IdleMixed}
	need := uint64(opts.chat.Conns + nofileMargin)
	var err error
	if opts.chat.NoFile, opts.chat.RaisedHL, err = ensureNofile(need); err != nil {
		return nil, fmt.Errorf("RLIMIT_NOFILE: %w", err)
	}
	if opts.chat.NoFile < need {
		opts.chat.Conns = int(opts.chat.NoFile) - nofileMargin
		fmt.Fprintf(log, "RLIMIT_NOFILE %d: running %d connections, not %d\n", opts.chat.NoFile, opts.chat.Conns, opts.chat.Wanted)
	}
	var p Pair[IdleConnsResult]
	f, err := runIdleConns(exe, opts, false, log)
	if err != nil {
		return nil, fmt.Errorf("floor: %w", err)
	}
	n, err := runIdleConns(exe, opts, true, log)
	if err != nil {
		return nil, fmt.Errorf("nopal: %w", err)
	}
	p.Floor, p.Nopal = f, n
	return &p, nil
}

// renderTable prints the environment and the table in markdown.
func renderTable(w io.Writer, r *Results) {
	printEnv(w, r.Env)
	o := r.Options
	fmt.Fprintf(w, "options: duration %v in %d alternating windows (scenarios 6 and 9: %d times both), warm-up %v, conns %d, idle %d, payload %d B, compress %v, heartbeat %v\n",
		o.Duration, o.Rounds, max(o.OnOffScale, 1), o.Warmup, o.Conns, o.Idle, o.Payload, o.Compress, o.Heartbeat)
	if o.runs(5) || o.runs(6) || o.runs(7) || o.runs(8) {
		fmt.Fprintf(w, "cluster: deployments %s, traffic recording on (scenario 6: on and off), push samples %d, members %d, broadcasts %d\n",
			strings.Join(o.Deploys, ", "), o.PushSamples, o.Members, o.Broadcasts)
	}
	fmt.Fprintln(w)
	printRows(w, r.Rows, "TCP-echo floor")
	if len(r.Errors) > 0 {
		fmt.Fprintf(w, "\nERRORS (%d):\n", len(r.Errors))
		for _, e := range r.Errors {
			fmt.Fprintf(w, "- %s\n", e)
		}
	}
}

// printEnv prints where a run happened.
func printEnv(w io.Writer, e Env) {
	fmt.Fprintf(w, "date: %s\n", e.Date)
	fmt.Fprintf(w, "go: %s %s/%s, GOMAXPROCS %d (NumCPU %d)\n", e.GoVersion, e.GOOS, e.GOARCH, e.GOMAXPROCS, e.NumCPU)
	fmt.Fprintf(w, "cpu: %s; kernel %s; RLIMIT_NOFILE %d\n", e.CPUModel, e.Kernel, e.NoFile)
}

// printRows prints rows as a markdown table whose floor column is named
// floor.
func printRows(w io.Writer, rows []Row, floor string) {
	fmt.Fprintf(w, "| scenario | metric | nopal | %s | ratio | target | ok |\n", floor)
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---|---|")
	for _, row := range rows {
		floor, ratio := "—", "—"
		if row.HasFloor {
			floor = strconv.FormatFloat(row.Floor, 'f', row.prec, 64)
			if row.Floor != 0 {
				ratio = strconv.FormatFloat(row.Ratio, 'f', 2, 64) + "×"
			}
		}
		ok := ""
		if row.OK != nil {
			ok = "yes"
			if !*row.OK {
				ok = "**NO**"
			}
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", row.Scenario, row.Metric,
			strconv.FormatFloat(row.Nopal, 'f', row.prec, 64), floor, ratio, row.Target, ok)
	}
}
