package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// idleConnsOptions configures `bench idle`.
type idleConnsOptions struct {
	chat   chatOptions   // conns, ws share, room, sources, dialers, heartbeat, memprofile
	settle time.Duration // after the ramp, before the first RSS sample
	floor  bool
}

// IdleConnsResult is one server's run of `bench idle`.
type IdleConnsResult struct {
	Server      string  `json:"server"`
	Conns       int     `json:"conns"`
	TCP         int     `json:"tcp"`
	WS          int     `json:"ws"`
	RampSeconds float64 `json:"ramp_seconds"`
	RSSBeforeKB int64   `json:"rss_before_kb"`
	RSSSettleKB int64   `json:"rss_settle_kb"` // after the ramp and the settle
	RSSGCKB     int64   `json:"rss_gc_kb"`     // after a GC that returned freed memory to the OS
	PerConnKB   float64 `json:"per_conn_kb"`   // (RSSSettleKB - RSSBeforeKB) / Conns
	PerConnGCKB float64 `json:"per_conn_gc_kb"`
	Held        int     `json:"held"`
}

// cmdIdleConns runs `bench idle`: -conns idle connections, half of them
// WebSocket, each handshaken and in a chat room, to a chat-server child
// and to the chat-floor relay, and the server's RSS per connection: once
// the connections have been idle for -settle (long enough for the
// frontend to park their readers, Config.ParkIdle), and again after the
// server has collected garbage and returned freed memory to the OS
// ("gc" on its stdin), which is the steady state of a server whose
// connections stay idle (the runtime does the same on its own, later).
func cmdIdleConns(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("idle", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o idleConnsOptions
	o.chat = chatOptions{Room: 50, Rate: 1, Duration: time.Second, Payload: 32}
	fs.IntVar(&o.chat.Conns, "conns", 20000, "connections to hold")
	fs.Float64Var(&o.chat.WSShare, "ws", 0.5, "share of the connections that are WebSockets (0…1)")
	fs.IntVar(&o.chat.Sources, "sources", len(idleSources), "source addresses 127.0.0.2… the connections are spread over")
	fs.IntVar(&o.chat.Dialers, "dialers", 64, "connections opened at once during the ramp")
	fs.DurationVar(&o.chat.Heartbeat, "heartbeat", 60*time.Second, "heartbeat interval of the Nopal server")
	fs.StringVar(&o.chat.MemProf, "memprofile", "", "write a heap profile of the Nopal server (after a GC) to this file after the settle")
	fs.DurationVar(&o.settle, "settle", 5*time.Second, "idle time after the ramp before sampling the server's RSS (the frontend parks readers idle for 2 s)")
	fs.BoolVar(&o.floor, "floor", true, "also measure the relay floor")
	serverExe := fs.String("server-exe", "", "run the servers from this bench binary (default: this one), to compare two builds with one load generator")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := checkChatOptions(o.chat); err != nil {
		return fmt.Errorf("idle: %w", err)
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	if *serverExe != "" {
		exe = *serverExe
	}
	o.chat.Wanted = o.chat.Conns
	need := uint64(o.chat.Conns + nofileMargin)
	if o.chat.NoFile, o.chat.RaisedHL, err = ensureNofile(need); err != nil {
		return fmt.Errorf("idle: RLIMIT_NOFILE: %w", err)
	}
	if o.chat.NoFile < need {
		o.chat.Conns = int(o.chat.NoFile) - nofileMargin
		fmt.Fprintf(stderr, "RLIMIT_NOFILE %d: running %d connections, not %d\n", o.chat.NoFile, o.chat.Conns, o.chat.Wanted)
	}
	env := Env{
		Date: time.Now().Format(time.RFC3339), GoVersion: runtime.Version(), GOOS: runtime.GOOS, GOARCH: runtime.GOARCH,
		GOMAXPROCS: runtime.GOMAXPROCS(0), NumCPU: runtime.NumCPU(), CPUModel: cpuModel(), Kernel: kernelRelease(), NoFile: o.chat.NoFile,
	}
	var res [2]*IdleConnsResult // floor, nopal
	var errs []error
	for i, nopal := range []bool{false, true} {
		if !nopal && !o.floor {
			continue
		}
		r, err := runIdleConns(exe, o, nopal, stderr)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", r.Server, err))
		}
		if r.Conns > 0 {
			res[i] = &r
		}
	}
	printEnv(stdout, env)
	fmt.Fprintf(stdout, "idle: %d connections (%.2f WebSocket), each handshaken and in a room of 50, then idle for %v\n\n", o.chat.Conns, o.chat.WSShare, o.settle)
	if n := res[1]; n != nil {
		f := res[0]
		if f == nil {
			f = &IdleConnsResult{}
		}
		sc := fmt.Sprintf("idle, %d conns (%d TCP, %d WS)", n.Conns, n.TCP, n.WS)
		var rows []Row
		pair := func(metric string, nv, fv float64, prec int, target string, ok *bool) {
			row := Row{Scenario: sc, Metric: metric, Nopal: nv, Floor: fv, HasFloor: res[0] != nil, Target: target, OK: ok, prec: prec}
			if fv != 0 {
				row.Ratio = nv / fv
			}
			rows = append(rows, row)
		}
		pair(fmt.Sprintf("connections held (of %d)", n.Conns), float64(n.Held), float64(f.Held), 0, "all", okp(n.Held == n.Conns))
		pair("server RSS per conn, idle (KB)", n.PerConnKB, f.PerConnKB, 2, "", nil)
		pair("server RSS per conn, idle, after a GC (KB)", n.PerConnGCKB, f.PerConnGCKB, 2, "≤ 8 KB", okp(n.PerConnGCKB <= 8))
		pair("server RSS, idle (MB)", float64(n.RSSSettleKB)/1024, float64(f.RSSSettleKB)/1024, 1, "", nil)
		pair("server RSS, idle, after a GC (MB)", float64(n.RSSGCKB)/1024, float64(f.RSSGCKB)/1024, 1, "", nil)
		printRows(stdout, rows, "relay floor")
	}
	return errors.Join(errs...)
}

// runIdleConns opens the connections to one server, lets them idle, and
// samples the server's RSS.
func runIdleConns(exe string, o idleConnsOptions, nopal bool, log io.Writer) (res IdleConnsResult, err error) {
	var srv *child
	srv, res.Server, res.RSSBeforeKB, err = startChatServer(exe, o.chat, nopal, log)
	if err != nil {
		return res, err
	}
	defer srv.kill() // a no-op once it has exited
	pid := srv.pid()

	r := &chatRun{o: o.chat, nopal: nopal, base: time.Now()}
	r.conns = make([]*chatConn, o.chat.Conns)
	for i := range r.conns {
		r.conns[i] = &chatConn{idx: i, ws: isWS(i, o.chat.WSShare), fb: frameBuf{buf: make([]byte, 512)}}
		if r.conns[i].ws {
			res.WS++
		} else {
			res.TCP++
		}
	}
	defer func() {
		for _, c := range r.conns {
			if c.c != nil {
				_ = c.c.Close()
			}
		}
	}()
	fmt.Fprintf(log, "%s: opening %d idle connections (%d TCP, %d WebSocket)\n", res.Server, o.chat.Conns, res.TCP, res.WS)
	start := time.Now()
	var next atomic.Int64
	var failed atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for range o.chat.Dialers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(r.conns) || failed.Load() > 0 {
					return
				}
				if err := r.conns[i].open(r, srv.addrs[0], srv.addrs[1]); err != nil {
					failed.Add(1)
					once.Do(func() { firstErr = fmt.Errorf("connection %d: %w", i, err) })
					return
				}
			}
		})
	}
	wg.Wait()
	res.RampSeconds = time.Since(start).Seconds()
	if firstErr != nil {
		return res, firstErr
	}
	res.Conns = o.chat.Conns
	time.Sleep(o.settle) // idle: nothing to wait for but time
	rss, err := sampleRSS(pid, 3)
	if err != nil {
		return res, err
	}
	res.RSSSettleKB = rss[len(rss)-1]
	if nopal && o.chat.MemProf != "" {
		_, _ = io.WriteString(srv.stdin, "heap-profile\n")
	}
	_, _ = io.WriteString(srv.stdin, "gc\n")
	if rss, err = sampleRSS(pid, 6); err != nil { // 1 s: the server's GC has run
		return res, err
	}
	res.RSSGCKB = rss[len(rss)-1]
	res.PerConnKB = float64(res.RSSSettleKB-res.RSSBeforeKB) / float64(res.Conns)
	res.PerConnGCKB = float64(res.RSSGCKB-res.RSSBeforeKB) / float64(res.Conns)
	for _, c := range r.conns {
		if c.c != nil && idleConnAlive(c) {
			res.Held++
		}
	}
	fmt.Fprintf(log, "%s: %d idle connections in %.2f s; RSS %d → %d KB idle (%.2f KB per connection), %d KB after a GC (%.2f KB); %d held\n",
		res.Server, res.Conns, res.RampSeconds, res.RSSBeforeKB, res.RSSSettleKB, res.PerConnKB, res.RSSGCKB, res.PerConnGCKB, res.Held)
	if res.Held != res.Conns {
		return res, fmt.Errorf("%d of %d idle connections were dropped", res.Conns-res.Held, res.Conns)
	}
	return res, nil
}

// idleConnAlive reports whether the server kept c open: a read finds
// nothing (a timeout) or a heartbeat, not the end.
func idleConnAlive(c *chatConn) bool {
	_ = c.c.SetReadDeadline(time.Now().Add(time.Millisecond))
	_, err := c.fb.nextPacket(c.c, c.ws)
	return err == nil || errors.Is(err, os.ErrDeadlineExceeded)
}
