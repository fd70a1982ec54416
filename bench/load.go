package main

import (
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"time"
)

// LoadResult is one closed-loop run: conns connections, one request in
// flight on each, warmed up then measured over one or more windows.
type LoadResult struct {
	Conns         int     `json:"conns"`
	RequestBytes  int     `json:"request_bytes"`
	ResponseBytes int     `json:"response_bytes"`
	Windows       int     `json:"windows"`
	Requests      int     `json:"requests"`
	Seconds       float64 `json:"seconds"` // measured, all windows together
	ReqPerSec     float64 `json:"req_per_sec"`
	MeanUs        float64 `json:"mean_us"`
	P50Us         float64 `json:"p50_us"`
	P90Us         float64 `json:"p90_us"`
	P99Us         float64 `json:"p99_us"`
	MaxUs         float64 `json:"max_us"`
	// ServerCPUTicks is utime+stime of the server process (summed over
	// every process of a cluster deployment) over the windows, in 1/100 s;
	// ServerCPUUsPerReq divides it by Requests.
	ServerCPUTicks    int64   `json:"server_cpu_ticks"`
	ServerUserTicks   int64   `json:"server_user_ticks"`
	ServerSysTicks    int64   `json:"server_sys_ticks"`
	ServerCPUUsPerReq float64 `json:"server_cpu_us_per_req"`
	// ServerCtxSwitchesPerReq is the server's thread context switches
	// (voluntary and involuntary, all threads) over the windows / Requests:
	// roughly how many times a server thread slept and woke per request.
	ServerCtxSwitchesPerReq float64 `json:"server_ctx_switches_per_req"`
	// ServerSyscallsPerReq is the server's read and write system calls
	// (/proc/PID/io, every process) over the windows / Requests.
	ServerSyscallsPerReq float64 `json:"server_syscalls_per_req"`
	// ClientCPUUsPerReq is the load generator's own CPU time (the suite
	// process, utime+stime) over the windows / Requests: with the server's,
	// it tells whether the machine's cores were saturated.
	ClientCPUUsPerReq float64 `json:"client_cpu_us_per_req"`
	// ServerCores is the server's CPU time over the windows / their wall
	// time: how many cores it kept busy. A floor below clientBoundCores
	// was held back by the load generator, not by the kernel (DESIGN §6).
	ServerCores float64 `json:"server_cores"`
}

// clientBoundCores: a floor server that used less of a core than this was
// waiting on the load generator, and ratios against it read too kind.
const clientBoundCores = 0.9

// ClientBound reports whether this run (a floor's) was held back by the
// load generator.
func (r LoadResult) ClientBound() bool { return r.ServerCores < clientBoundCores }

// maxPerConn bounds the requests one connection makes in a window, on top
// of the time bound.
const maxPerConn = 20_000_000

// loader drives one server with the light generator (light.go): its
// connections stay open across windows and every window's latencies go to
// the same per-connection slices.
type loader struct {
	ex    *exchange
	pids  []int // the server processes, for their CPU time
	total time.Duration
	conns []*lightConn

	windows           int
	seconds           float64
	user, sys, ctxsws int64
	syscalls          int64
	client            int64 // the suite's own utime+stime
}

// newLoader dials (and, for Nopal, handshakes) n connections to addr.
// pids are the server's processes, whose CPU time is summed. total is the
// measured time all windows will add up to.
func newLoader(addr string, ex *exchange, n int, pids []int, total time.Duration) (*loader, error) {
	l := &loader{ex: ex, pids: pids, total: total}
	for range n {
		c, err := dialRaw(addr, nil, 5*time.Second)
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("dial: %w", err)
		}
		if ex.nopal {
			if err := c.handshake(5 * time.Second); err != nil {
				_ = c.Close()
				l.Close()
				return nil, err
			}
		}
		lc, err := detach(c)
		if err != nil {
			_ = c.Close()
			l.Close()
			return nil, err
		}
		l.conns = append(l.conns, lc)
	}
	return l, nil
}

// Close closes every connection.
func (l *loader) Close() {
	for _, c := range l.conns {
		_ = c.Close()
	}
}

// window runs every connection in a closed loop on one thread (light.go):
// warm-up until t0, then each request started in [t0, t0+d) is timed into
// its connection's slice. The server's CPU time and context switches (of
// every server process) and the generator's own CPU time are read at t0
// and t0+d.
func (l *loader) window(warmup, d time.Duration) error {
	t0 := time.Now().Add(warmup)
	t1 := t0.Add(d)
	done := make(chan error, 1)
	go func() { done <- lightWindow(l.conns, l.ex, t0, t1, maxPerConn) }()
	time.Sleep(time.Until(t0))
	u0, s0, err0 := cpuTimesAll(l.pids)
	cs0, err1 := ctxSwitchesAll(l.pids)
	sc0, err6 := syscallsAll(l.pids)
	cu0, cst0, err4 := cpuTimes(os.Getpid())
	time.Sleep(time.Until(t1))
	u1, s1, err2 := cpuTimesAll(l.pids)
	cs1, err3 := ctxSwitchesAll(l.pids)
	sc1, err7 := syscallsAll(l.pids)
	cu1, cst1, err5 := cpuTimes(os.Getpid())
	if err := <-done; err != nil {
		return err
	}
	if err := errors.Join(err0, err1, err2, err3, err4, err5, err6, err7); err != nil {
		return fmt.Errorf("server CPU time: %w", err)
	}
	l.windows++
	l.seconds += d.Seconds()
	l.user += u1 - u0
	l.sys += s1 - s0
	l.ctxsws += cs1 - cs0
	l.syscalls += sc1 - sc0
	l.client += cu1 + cst1 - cu0 - cst0
	return nil
}

// result merges and sorts the latencies of every window.
func (l *loader) result() (LoadResult, error) {
	res := LoadResult{
		Conns: len(l.conns), RequestBytes: len(l.ex.req), ResponseBytes: l.ex.respBody + 4,
		Windows: l.windows, Seconds: l.seconds,
	}
	n := 0
	for _, c := range l.conns {
		n += len(c.lat)
	}
	if n == 0 || l.seconds == 0 {
		return res, errors.New("no request completed in the measured windows")
	}
	all := make([]int64, 0, n)
	for _, c := range l.conns {
		all = append(all, c.lat...)
	}
	slices.Sort(all)
	var sum float64
	for _, v := range all {
		sum += float64(v)
	}
	us := func(ns int64) float64 { return float64(ns) / 1e3 }
	res.Requests = n
	res.ReqPerSec = float64(n) / res.Seconds
	res.MeanUs = sum / float64(n) / 1e3
	res.P50Us = us(percentile(all, 0.50))
	res.P90Us = us(percentile(all, 0.90))
	res.P99Us = us(percentile(all, 0.99))
	res.MaxUs = us(all[n-1])
	res.ServerUserTicks, res.ServerSysTicks = l.user, l.sys
	res.ServerCPUTicks = l.user + l.sys
	res.ServerCPUUsPerReq = float64(res.ServerCPUTicks) * 1e6 / clkTck / float64(n)
	res.ServerCtxSwitchesPerReq = float64(l.ctxsws) / float64(n)
	res.ServerSyscallsPerReq = float64(l.syscalls) / float64(n)
	res.ClientCPUUsPerReq = float64(l.client) * 1e6 / clkTck / float64(n)
	res.ServerCores = float64(res.ServerCPUTicks) / clkTck / res.Seconds
	return res, nil
}

// percentile returns the nearest-rank q-quantile of sorted v.
func percentile(v []int64, q float64) int64 {
	if len(v) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(v)))) - 1
	return v[min(max(i, 0), len(v)-1)]
}
