package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nopal-dev/nopal/stream"
)

// TestMain lets the suite re-execute the test binary as its server
// subprocesses, as it re-executes the bench binary when run for real.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		if err := run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestServersInProcess checks the helpers the subcommands use: the Nopal
// echo server answers the raw request loop, the floor echoes it.
func TestServersInProcess(t *testing.T) {
	ctx := context.Background()
	app, addr, err := startNopal(ctx, nopalServerConfig{
		Addr: "127.0.0.1:0", Heartbeat: time.Minute,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := app.Shutdown(sctx); err != nil {
			t.Error(err)
		}
	}()
	echo, err := startEcho("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()

	payload := bytes.Repeat([]byte("x"), 300) // larger than the inline read buffer
	for _, tc := range []struct {
		name  string
		addr  string
		nopal bool
	}{{"nopal", addr.String(), true}, {"floor", echo.Addr().String(), false}} {
		t.Run(tc.name, func(t *testing.T) {
			ex, err := newExchange(payload, tc.nopal)
			if err != nil {
				t.Fatal(err)
			}
			c, err := dialRaw(tc.addr, idleSources[0], 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if tc.nopal {
				err = c.handshake(5 * time.Second)
			} else {
				err = c.ping(5 * time.Second)
			}
			if err != nil {
				t.Fatal(err)
			}
			_ = c.c.SetDeadline(time.Now().Add(5 * time.Second))
			for range 100 {
				if err := c.roundTrip(ex); err != nil {
					t.Fatal(err)
				}
			}
			if !c.alive() {
				t.Fatal("connection not alive")
			}
		})
	}
}

// TestClusterInProcess checks the apps a cluster-server runs, in this
// process: the frontend forwards the echo route to the backend, a push from
// a request on frontend A reaches a uid bound on frontend B, a broadcast
// reaches the group's members on both frontends, and traffic is recorded.
func TestClusterInProcess(t *testing.T) {
	ctx := context.Background()
	p, err := startClusterApps(ctx, clusterServerConfig{
		Roles: []string{backType, frontType, frontType}, Addr: "127.0.0.1:0",
		Traffic: true, Heartbeat: time.Minute,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := p.shutdown(sctx); err != nil {
			t.Error(err)
		}
	}()
	if len(p.fronts) != 2 {
		t.Fatalf("frontends %q", p.fronts)
	}
	dial := func(addr string) *rawConn {
		t.Helper()
		c, err := dialNopal(addr, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		_ = c.c.SetDeadline(time.Now().Add(10 * time.Second))
		return c
	}
	call := func(c *rawConn, route string, data []byte) []byte {
		t.Helper()
		req, err := buildRequest(route, 1, data)
		if err != nil {
			t.Fatal(err)
		}
		out, err := c.call(req, 1)
		if err != nil {
			t.Fatalf("%s: %v", route, err)
		}
		return out
	}
	a, b := dial(p.fronts[0]), dial(p.fronts[1])

	ex, err := newRouteExchange(clusterEchoRoute, []byte("hello"), true)
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if err := a.roundTrip(ex); err != nil {
			t.Fatal(err)
		}
	}

	call(b, bindRoute, []byte(pushUID))
	data := append(binary.BigEndian.AppendUint64(nil, 7), pushUID...)
	reqPush, err := buildRequest(pushRoute, 1, data)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.c.Write(reqPush); err != nil {
		t.Fatal(err)
	}
	route, got, err := b.readPush()
	if err != nil || string(route) != pushOnRoute || !bytes.Equal(got, data) {
		t.Fatalf("push on B: %q % x %v", route, got, err)
	}
	if failed, err := a.readResponse(1); err != nil || len(failed) != 0 {
		t.Fatalf("push response: %q %v", failed, err)
	}

	m0, m1 := dial(p.fronts[0]), dial(p.fronts[1])
	call(m0, joinRoute, []byte("m0"))
	call(m1, joinRoute, []byte("m1"))
	seq := binary.BigEndian.AppendUint64(nil, 3)
	if failed := call(a, broadcastRoute, seq); string(failed) != "0" {
		t.Fatalf("broadcast: %q unreachable", failed)
	}
	for i, m := range []*rawConn{m0, m1} {
		route, got, err := m.readPush()
		if err != nil || string(route) != broadcastOnRoute || !bytes.Equal(got, seq) {
			t.Fatalf("member %d: %q % x %v", i, route, got, err)
		}
	}

	bus := p.apps[0].Bus()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := bus.JetStream().Stream(ctx, bus.Name(stream.TrafficStream))
		if err == nil {
			info, err := st.Info(ctx)
			if err == nil && info.State.Msgs > 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing recorded in the traffic stream: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSuiteSmall runs scenarios 1–3 at a tiny scale against real
// subprocesses (this test binary, re-executed) and checks the figures and
// the table.
func TestSuiteSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server subprocesses and measures for a few seconds")
	}
	// Race-built children otherwise sleep 1 s on exit (the race runtime's
	// atexit_sleep_ms); the environment reaches the subprocesses only.
	t.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	res, err := runSuite(exe, suiteOptions{
		Duration: 200 * time.Millisecond, Warmup: 100 * time.Millisecond,
		Conns: 4, Idle: 50, Payload: 64, Settle: 200 * time.Millisecond,
		StartRuns: 1, Rounds: 2, Heartbeat: time.Minute, Scenarios: []int{1, 2, 3},
	}, &log)
	t.Log(log.String())
	if err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string]*Pair[LoadResult]{"latency": res.Latency, "throughput": res.Throughput} {
		if p == nil {
			t.Fatalf("%s: no result", name)
		}
		for side, r := range map[string]LoadResult{"nopal": p.Nopal, "floor": p.Floor} {
			if r.Requests <= 0 || r.ReqPerSec <= 0 || r.P50Us <= 0 || r.P99Us < r.P50Us || r.ServerCPUTicks < 0 || r.Windows != 2 {
				t.Errorf("%s %s: %+v", name, side, r)
			}
		}
	}
	if res.Idle == nil {
		t.Fatal("idle: no result")
	}
	for side, r := range map[string]IdleResult{"nopal": res.Idle.Nopal, "floor": res.Idle.Floor} {
		if r.Conns != 50 || r.RSSBeforeKB <= 0 || r.RSSAfterKB <= 0 || len(r.RSSSamplesKB) != 3 {
			t.Errorf("idle %s: %+v", side, r)
		}
		t.Logf("idle %s: %.2f KB per connection", side, r.PerConnKB)
	}

	var out bytes.Buffer
	renderTable(&out, res)
	table := out.String()
	t.Log("\n" + table)
	for _, want := range []string{
		"| scenario | metric | nopal | TCP-echo floor | ratio | target | ok |",
		"GOMAXPROCS", "p50 latency (µs)", "throughput (req/s)", "server CPU per request (µs)",
		"server RSS per conn (KB)", "requests measured",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q", want)
		}
	}
	if strings.Contains(table, "ERRORS") {
		t.Error("table reports errors")
	}
}

// TestClusterSmall runs scenarios 5 (embedded deployment), 7 and 8 at a
// tiny scale against real cluster-server subprocesses and checks that the
// figures are positive and every broadcast reached every member.
func TestClusterSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("starts cluster subprocesses and measures for a few seconds")
	}
	t.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	const members, broadcasts = 20, 10
	var log bytes.Buffer
	res, err := runSuite(exe, suiteOptions{
		Duration: 200 * time.Millisecond, Warmup: 100 * time.Millisecond,
		Conns: 4, Payload: 64, Rounds: 2, Heartbeat: time.Minute,
		Scenarios: []int{5, 7, 8}, Deploys: []string{deployEmbedded},
		PushSamples: 100, Members: members, Broadcasts: broadcasts,
	}, &log)
	t.Log(log.String())
	if err != nil {
		t.Fatal(err)
	}
	for name, set := range map[string]*LoadSet{"latency": res.ClusterLatency, "throughput": res.ClusterThroughput} {
		if set == nil || len(set.Servers) != 1 {
			t.Fatalf("scenario 5 %s: %+v", name, set)
		}
		for side, r := range map[string]LoadResult{"cluster": set.Servers[0].Result, "floor": set.Floor} {
			if r.Requests <= 0 || r.ReqPerSec <= 0 || r.P50Us <= 0 || r.P99Us < r.P50Us || r.ServerCPUTicks < 0 || r.Windows != 2 {
				t.Errorf("scenario 5 %s %s: %+v", name, side, r)
			}
		}
		if got := set.Servers[0].Processes; len(got) != 1 {
			t.Errorf("scenario 5 %s: processes %q, want the one embedded process", name, got)
		}
	}
	if len(res.Push) != 1 {
		t.Fatalf("scenario 7: %+v", res.Push)
	}
	for side, l := range map[string]LatencyStats{"push": res.Push[0].Push, "floor": res.Push[0].Floor} {
		if l.Samples <= 0 || l.P50Us <= 0 || l.P99Us < l.P50Us {
			t.Errorf("scenario 7 %s: %+v", side, l)
		}
	}
	if len(res.Broadcast) != 1 {
		t.Fatalf("scenario 8: %+v", res.Broadcast)
	}
	b := res.Broadcast[0]
	if b.Members != members || b.Broadcasts <= 0 || b.Expected != b.Broadcasts*members || b.Delivered != b.Expected ||
		b.FloorDelivered != b.Expected || b.Nopal.Samples != b.Broadcasts || b.Nopal.P50Us <= 0 || b.Floor.P50Us <= 0 {
		t.Errorf("scenario 8: %+v", b)
	}

	var out bytes.Buffer
	renderTable(&out, res)
	table := out.String()
	t.Log("\n" + table)
	for _, want := range []string{
		"5. cluster req/resp, embedded (1 process), 1 conn, 1 in flight",
		"server CPU per request, all processes (µs)",
		"7. push to a uid on the other frontend, embedded",
		fmt.Sprintf("8. broadcast to %d members on 2 frontends, embedded", members),
		fmt.Sprintf("pushes read (of %d)", b.Expected),
	} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q", want)
		}
	}
	if strings.Contains(table, "ERRORS") {
		t.Error("table reports errors")
	}
}

func TestPercentile(t *testing.T) {
	v := []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for q, want := range map[float64]int64{0.5: 5, 0.9: 9, 0.99: 10, 0: 1, 1: 10} {
		if got := percentile(v, q); got != want {
			t.Errorf("percentile(%v) = %d, want %d", q, got, want)
		}
	}
}

func TestProcFS(t *testing.T) {
	if _, _, err := cpuTimes(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	if n, si, err := machineBusy(); err != nil || n <= 0 || si < 0 || si > n {
		t.Fatalf("machine busy %d, softirq %d, %v", n, si, err)
	}
	if kb, err := rssKB(os.Getpid()); err != nil || kb <= 0 {
		t.Fatalf("rss %d, %v", kb, err)
	}
	if n, err := ctxSwitches(os.Getpid()); err != nil || n <= 0 {
		t.Fatalf("context switches %d, %v", n, err)
	}
}

// TestJobsSmall runs scenario 10 at a tiny scale (200 jobs) against a real
// jobs-server subprocess and checks that every job succeeded and the
// figures are positive.
func TestJobsSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a jobs-server subprocess and measures for a few seconds")
	}
	t.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	res, err := runSuite(exe, suiteOptions{
		Duration: 2 * time.Second, Warmup: 100 * time.Millisecond, Payload: 64,
		Rounds: 1, Heartbeat: time.Minute, Scenarios: []int{10}, JobsCap: 200,
	}, &log)
	t.Log(log.String())
	if err != nil {
		t.Fatal(err)
	}
	j := res.Jobs
	if j == nil {
		t.Fatal("no result")
	}
	if j.Jobs != 200 || j.Succeeded != 200 || j.Failed != 0 {
		t.Errorf("jobs %d, succeeded %d, failed %d", j.Jobs, j.Succeeded, j.Failed)
	}
	if j.Enqueue.Samples <= 0 || j.Enqueue.P50Us <= 0 || j.Floor.P50Us <= 0 || j.JobsPerSec <= 0 || j.RawPerSec <= 0 || j.JobsOverRawRate <= 0 {
		t.Errorf("figures: %+v", j)
	}
	var out bytes.Buffer
	renderTable(&out, res)
	table := out.String()
	t.Log("\n" + table)
	for _, want := range []string{"10. reliable jobs", "enqueue p50, 1 caller (µs)", "raw JetStream publish+consume (msg/s)", "jobs succeeded (of 200)"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q", want)
		}
	}
	if strings.Contains(table, "ERRORS") {
		t.Error("table reports errors")
	}
}

// TestChatSmall runs the chat scenario at a small scale (200 connections,
// half of them WebSockets, in rooms of 50) against real chat-floor and
// chat-server subprocesses and checks that every push of every message
// reached every member of its room and the figures are positive.
func TestChatSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("starts chat server subprocesses and measures for a few seconds")
	}
	t.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	const conns = 200
	var log bytes.Buffer
	rep, err := runChat(exe, chatOptions{
		Conns: conns, WSShare: 0.5, Room: 50, Rate: 2, Duration: time.Second, Warmup: 300 * time.Millisecond,
		Drain: time.Second, Settle: 100 * time.Millisecond, Payload: 32, Sources: 4, Dialers: 16,
		Floor: true, Heartbeat: time.Minute,
	}, false, &log)
	t.Log(log.String())
	if err != nil {
		t.Fatal(err)
	}
	for side, r := range map[string]*ChatResult{"nopal": rep.Nopal, "floor": rep.Floor} {
		if r == nil {
			t.Fatalf("%s: no result", side)
		}
		if r.Conns != conns || r.TCP != conns/2 || r.WS != conns/2 || r.Rooms != conns/50 || r.Held != conns || r.ConnErrors != 0 {
			t.Errorf("%s: connections %+v", side, r)
		}
		if r.Sent <= 0 || r.Expected != r.Sent*50 || r.Delivered != r.Expected || r.Skipped != 0 {
			t.Errorf("%s: sent %d, expected %d, delivered %d, skipped %d", side, r.Sent, r.Expected, r.Delivered, r.Skipped)
		}
		if r.Push.Samples != int(r.Delivered) || r.Push.P50Us <= 0 || r.Push.P99Us < r.Push.P50Us ||
			r.Request.Samples <= 0 || r.Request.P50Us <= 0 || r.ConnsPerSec <= 0 || r.RSSRampKB <= 0 || r.RSSEndKB <= 0 {
			t.Errorf("%s: figures %+v", side, r)
		}
	}
	var out bytes.Buffer
	renderChat(&out, rep)
	table := out.String()
	t.Log("\n" + table)
	for _, want := range []string{
		"| scenario | metric | nopal | relay floor | ratio | target | ok |",
		"chat, 200 conns (100 TCP, 100 WS), rooms of 50", "push delivery p99 (ms)", "request p99 (ms)",
		"server RSS per conn after the ramp (KB)", "server CPU in the window (cores)", "connections held to the end (of 200)",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q", want)
		}
	}
	if strings.Contains(table, "ERRORS") {
		t.Error("table reports errors")
	}
}

// TestFrameBuf parses packets and WebSocket frames split at every byte,
// as the chat load generator reads them.
func TestFrameBuf(t *testing.T) {
	small := appendPush(nil, chatPushRoute, []byte("hello"))
	big := appendPush(nil, chatPushRoute, bytes.Repeat([]byte("x"), 300)) // a 16-bit frame length
	for _, ws := range []bool{false, true} {
		var stream []byte
		for _, p := range [][]byte{small, big, small} {
			if ws {
				// A server's frame: unmasked, so cut the client's
				// masking key out and clear the mask bit.
				f := appendWSFrame(nil, p)
				hl := len(f) - len(p) - 4
				f[1] &^= 0x80
				stream = append(stream, f[:hl]...)
				stream = append(stream, p...)
				stream = append(stream, 0x89, 0) // a ping, skipped
			} else {
				stream = append(stream, p...)
			}
		}
		a, b := net.Pipe()
		go func() {
			for i := range stream { // one byte at a time
				if _, err := a.Write(stream[i : i+1]); err != nil {
					return
				}
			}
			_ = a.Close()
		}()
		fb := frameBuf{buf: make([]byte, 64)} // smaller than the big packet
		for i, want := range [][]byte{small, big, small} {
			got, err := fb.nextPacket(b, ws)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("ws %v, packet %d: % x, %v", ws, i, got, err)
			}
		}
		if _, err := fb.nextPacket(b, ws); err != io.EOF {
			t.Fatalf("ws %v: after the last packet: %v", ws, err)
		}
		_ = b.Close()
	}
}

func TestHist(t *testing.T) {
	var h histSet
	for i := int64(1); i <= 100000; i++ {
		h.record(int(i), i*1000) // 1 µs … 100 ms
	}
	s := h.stats()
	if s.Samples != 100000 || s.MaxUs != 100000 {
		t.Fatalf("%+v", s)
	}
	for _, c := range []struct{ got, want float64 }{{s.P50Us, 50000}, {s.P90Us, 90000}, {s.P99Us, 99000}, {s.MeanUs, 50000.5}} {
		if c.got < c.want*0.98 || c.got > c.want*1.02 {
			t.Errorf("%+v: %v, want %v ± 2 %%", s, c.got, c.want)
		}
	}
	for _, v := range []int64{0, 1, 63, 64, 127, 128, 1000, 1 << 40, 1<<63 - 1} {
		i := histIndex(v)
		if i < 0 || i >= histBuckets {
			t.Fatalf("histIndex(%d) = %d", v, i)
		}
		if m := histValue(i); float64(m) < float64(v)*0.98 || float64(m) > float64(v)*1.02+1 {
			t.Errorf("histValue(histIndex(%d)) = %d", v, m)
		}
	}
}

// TestSuiteIdleMixed runs scenario 11 small: every connection held on both
// servers, and the figures after the settle and after a GC reported.
func TestSuiteIdleMixed(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two servers with 200 idle connections each")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	res, err := runSuite(exe, suiteOptions{
		Heartbeat: time.Minute, Scenarios: []int{11}, IdleMixed: 200, IdleMixedSettle: 2500 * time.Millisecond,
	}, &log)
	t.Log(log.String())
	if err != nil {
		t.Fatal(err)
	}
	p := res.IdleMixed
	if p == nil {
		t.Fatal("no result")
	}
	for _, r := range []IdleConnsResult{p.Floor, p.Nopal} {
		if r.Conns != 200 || r.Held != 200 || r.TCP != 100 || r.WS != 100 || r.RSSSettleKB <= 0 || r.RSSGCKB <= 0 {
			t.Errorf("%s: %+v", r.Server, r)
		}
	}
	var out bytes.Buffer
	renderTable(&out, res)
	if table := out.String(); !strings.Contains(table, "server RSS per conn, idle, after a GC (KB)") || strings.Contains(table, "ERRORS") {
		t.Errorf("table:\n%s", table)
	}
}

// TestIdleCommand runs `bench idle` small, as the README shows it: its
// table holds the after-GC figure against the 8 KB target.
func TestIdleCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two servers with 100 idle connections each")
	}
	var out, log bytes.Buffer
	// The servers' stderr is copied to the log from other goroutines.
	err := run([]string{"idle", "-conns", "100", "-settle", "2500ms"}, strings.NewReader(""), &out, &lockedWriter{w: &log})
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	for _, want := range []string{"connections held (of 100)", "server RSS per conn, idle, after a GC (KB)", "≤ 8 KB"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
