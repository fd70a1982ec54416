package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"
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
	if kb, err := rssKB(os.Getpid()); err != nil || kb <= 0 {
		t.Fatalf("rss %d, %v", kb, err)
	}
	if n, err := ctxSwitches(os.Getpid()); err != nil || n <= 0 {
		t.Fatalf("context switches %d, %v", n, err)
	}
}
