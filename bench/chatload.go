package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nopal-dev/nopal/codec"
)

// chatOptions configures `bench chat`.
type chatOptions struct {
	// Conns is how many connections to open; Wanted is what was asked
	// for, when RLIMIT_NOFILE cut Conns down.
	Conns  int `json:"conns"`
	Wanted int `json:"wanted"`
	// WSShare is the share of the connections that are WebSockets (the
	// rest TCP), interleaved so that every room has both.
	WSShare   float64       `json:"ws_share"`
	Room      int           `json:"room"`         // members per room
	Rate      float64       `json:"rate"`         // messages per second per connection
	Duration  time.Duration `json:"duration_ns"`  // the measured steady state
	Warmup    time.Duration `json:"warmup_ns"`    // sending before it
	Drain     time.Duration `json:"drain_ns"`     // reading after it
	Settle    time.Duration `json:"settle_ns"`    // between the ramp and the RSS sample
	Payload   int           `json:"payload"`      // message bytes (≥ 12)
	Sources   int           `json:"sources"`      // 127.0.0.2 … source addresses
	Dialers   int           `json:"dialers"`      // connections being opened at once
	Notify    bool          `json:"notify"`       // send notifies, not requests
	Floor     bool          `json:"floor"`        // measure the relay floor too
	Heartbeat time.Duration `json:"heartbeat_ns"` // of the Nopal server
	// SendBudget is the Nopal server's Config.SendBudget (0: none).
	SendBudget int64  `json:"send_budget"`
	Profile    string `json:"cpuprofile"`     // of the Nopal server, steady state only
	MemProf    string `json:"memprofile"`     // of the Nopal server, after the ramp (or at MemProfAt)
	MemProfAt  string `json:"memprofile_at"`  // "ramp" (default) or "end" of the measured window
	NoFile     uint64 `json:"rlimit_nofile"`  // the limit in force
	RaisedHL   bool   `json:"raised_hard"`    // the hard limit had to be raised
	HardWas    uint64 `json:"hard_limit_was"` // the hard limit before
}

// nofileMargin is the descriptors a process needs besides its connections
// (stdio, pipes, the poller, listeners, a profile).
const nofileMargin = 16

// chatIDs is how many requests a connection may have in flight (ids 1…).
// At 1 message/s that is 16 s of backlog; a send that finds its id still
// in flight is skipped and counted.
const chatIDs = 16

// chatReadBuffer is the load generator's read buffer per connection.
const chatReadBuffer = 4096

// ChatResult is one server's run of the chat scenario.
type ChatResult struct {
	Server      string  `json:"server"`
	Conns       int     `json:"conns"`
	TCP         int     `json:"tcp"`
	WS          int     `json:"ws"`
	Rooms       int     `json:"rooms"`
	RampSeconds float64 `json:"ramp_seconds"` // dial, upgrade, handshake and join of every connection
	ConnsPerSec float64 `json:"conns_per_sec"`
	RSSBeforeKB int64   `json:"rss_before_kb"`
	RSSRampKB   int64   `json:"rss_after_ramp_kb"`
	RSSEndKB    int64   `json:"rss_end_kb"` // at the end of the measured window
	PerConnKB   float64 `json:"per_conn_kb"`
	Seconds     float64 `json:"seconds"`
	// Sent is the messages sent in the window, Skipped those not sent
	// because the connection had chatIDs requests in flight.
	Sent    int64 `json:"sent"`
	Skipped int64 `json:"skipped"`
	// Expected is Sent × the sender's room size; Delivered the pushes of
	// those messages read before the end of the drain.
	Expected  int64 `json:"expected"`
	Delivered int64 `json:"delivered"`
	// Held is the connections that were still open and had seen no
	// error at the end.
	Held        int          `json:"held"`
	Request     LatencyStats `json:"request"`  // send → response (requests only)
	Push        LatencyStats `json:"push"`     // send → each member's push read
	SendLag     LatencyStats `json:"send_lag"` // how late the load generator sent
	ServerCores float64      `json:"server_cores"`
	ClientCores float64      `json:"client_cores"`
	// SoftirqCores is the machine's softirq time: mostly the loopback
	// network stack, charged to no process. OtherCores is the rest of the
	// machine's busy time (other processes): the noise of a shared machine.
	SoftirqCores float64 `json:"softirq_cores"`
	OtherCores   float64 `json:"other_cores"`
	// ServerCPUUsPerPush is the server's CPU time over the window / the
	// pushes it delivered.
	ServerCPUUsPerPush float64  `json:"server_cpu_us_per_push"`
	ServerUserTicks    int64    `json:"server_user_ticks"`
	ServerSysTicks     int64    `json:"server_sys_ticks"`
	Errors             []string `json:"errors,omitempty"` // the first few
	ConnErrors         int      `json:"conn_errors"`
}

// ChatReport is the output of `bench chat`.
type ChatReport struct {
	Env     Env         `json:"env"`
	Options chatOptions `json:"options"`
	Floor   *ChatResult `json:"floor,omitempty"`
	Nopal   *ChatResult `json:"nopal,omitempty"`
	Rows    []Row       `json:"rows"`
	Errors  []string    `json:"errors,omitempty"`
}

func cmdChat(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("chat", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := chatOptions{}
	fs.IntVar(&o.Conns, "conns", 20000, "connections to hold (each also costs the server a descriptor)")
	fs.Float64Var(&o.WSShare, "ws", 0.5, "share of the connections that are WebSockets (0…1)")
	fs.IntVar(&o.Room, "room", 50, "members per room")
	fs.Float64Var(&o.Rate, "rate", 1, "messages per second sent by each connection")
	fs.DurationVar(&o.Duration, "duration", 20*time.Second, "measured steady state")
	fs.DurationVar(&o.Warmup, "warmup", 2*time.Second, "sending before the measured steady state")
	fs.DurationVar(&o.Drain, "drain", 3*time.Second, "reading after it, for the pushes of its last messages")
	fs.DurationVar(&o.Settle, "settle", time.Second, "wait after the ramp before sampling the server's RSS")
	fs.IntVar(&o.Payload, "payload", 32, "message bytes (at least 12: a timestamp and the sender)")
	fs.IntVar(&o.Sources, "sources", len(idleSources), "source addresses 127.0.0.2… the connections are spread over")
	fs.IntVar(&o.Dialers, "dialers", 64, "connections opened at once during the ramp")
	fs.BoolVar(&o.Notify, "notify", false, "send room.message as notifies (default: requests, timed to their response)")
	fs.BoolVar(&o.Floor, "floor", true, "also measure the relay floor (a plain goroutine-per-connection server)")
	fs.DurationVar(&o.Heartbeat, "heartbeat", 60*time.Second, "heartbeat interval of the Nopal server")
	fs.Int64Var(&o.SendBudget, "send-budget", 0, "bytes all send queues of the Nopal server may hold (Config.SendBudget; 0: no bound but each client's)")
	fs.StringVar(&o.Profile, "cpuprofile", "", "write a CPU profile of the Nopal server over the measured steady state to this file")
	fs.StringVar(&o.MemProf, "memprofile", "", "write a heap profile of the Nopal server (after a GC) to this file once the ramp's RSS is sampled (see -memprofile-at)")
	fs.StringVar(&o.MemProfAt, "memprofile-at", "ramp", `when -memprofile is written: "ramp" (after the ramp) or "end" (at the end of the measured window, once its RSS is read)`)
	keepHard := fs.Bool("keep-hard-limit", false, "do not raise the hard RLIMIT_NOFILE even if allowed: run fewer connections if it is too low")
	asJSON := fs.Bool("json", false, "also write the raw figures as JSON to -out")
	out := fs.String("out", "chat.json", "JSON output file (with -json)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("chat: unexpected arguments %q", fs.Args())
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	rep, err := runChat(exe, o, *keepHard, stderr)
	if rep != nil {
		renderChat(stdout, rep)
		if *asJSON {
			b, jerr := json.MarshalIndent(rep, "", "  ")
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

// checkChatOptions validates o.
func checkChatOptions(o chatOptions) error {
	switch {
	case o.Conns <= 0, o.Room <= 0, o.Rate <= 0, o.Duration <= 0, o.Dialers <= 0:
		return errors.New("chat: -conns, -room, -rate, -duration and -dialers must be positive")
	case o.Warmup < 0, o.Drain < 0, o.Settle < 0:
		return errors.New("chat: -warmup, -drain and -settle must not be negative")
	case o.WSShare < 0 || o.WSShare > 1:
		return errors.New("chat: -ws must be in [0, 1]")
	case o.Payload < 12 || o.Payload > 1<<16:
		return errors.New("chat: -payload must be in [12, 65536]")
	case o.Sources < 1 || o.Sources > 250:
		return errors.New("chat: -sources must be in [1, 250]")
	case o.Rate > 1000:
		return errors.New("chat: -rate above 1000 messages/s per connection")
	case o.Conns > 250000:
		return errors.New("chat: -conns above 250000")
	case o.MemProfAt != "" && o.MemProfAt != "ramp" && o.MemProfAt != "end":
		return fmt.Errorf("chat: -memprofile-at %q: ramp or end", o.MemProfAt)
	case o.SendBudget < 0:
		return errors.New("chat: -send-budget must not be negative")
	}
	return nil
}

// runChat fits the connection count to RLIMIT_NOFILE, then runs the floor
// (if o.Floor) and Nopal, one after the other, each against a fresh server
// subprocess of exe.
func runChat(exe string, o chatOptions, keepHard bool, log io.Writer) (*ChatReport, error) {
	log = &lockedWriter{w: log}
	if err := checkChatOptions(o); err != nil {
		return nil, err
	}
	o.Wanted = o.Conns
	var rl0 syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl0); err != nil {
		return nil, fmt.Errorf("chat: getrlimit: %w", err)
	}
	o.HardWas = rl0.Max
	need := uint64(o.Conns + nofileMargin)
	var err error
	if keepHard {
		o.NoFile, err = raiseNofile()
	} else {
		o.NoFile, o.RaisedHL, err = ensureNofile(need)
	}
	if err != nil {
		return nil, fmt.Errorf("chat: RLIMIT_NOFILE: %w", err)
	}
	switch {
	case o.RaisedHL:
		fmt.Fprintf(log, "RLIMIT_NOFILE: hard limit raised from %d to %d for %d connections (this process and the servers)\n", o.HardWas, o.NoFile, o.Conns)
	case o.NoFile < need:
		if o.NoFile <= nofileMargin+1 {
			return nil, fmt.Errorf("chat: RLIMIT_NOFILE %d leaves no room for connections", o.NoFile)
		}
		o.Conns = int(o.NoFile) - nofileMargin
		fmt.Fprintf(log, "RLIMIT_NOFILE: hard limit %d cannot be raised: %d connections fit in each process, not %d: RUNNING %d CONNECTIONS\n",
			o.NoFile, o.Conns, o.Wanted, o.Conns)
	}
	rep := &ChatReport{
		Env: Env{
			Date: time.Now().Format(time.RFC3339), GoVersion: runtime.Version(), GOOS: runtime.GOOS, GOARCH: runtime.GOARCH,
			GOMAXPROCS: runtime.GOMAXPROCS(0), NumCPU: runtime.NumCPU(), CPUModel: cpuModel(), Kernel: kernelRelease(), NoFile: o.NoFile,
		},
		Options: o,
	}
	var errs []error
	for _, nopal := range []bool{false, true} {
		if !nopal && !o.Floor {
			continue
		}
		r, err := runChatServer(exe, o, nopal, log)
		if err != nil {
			err = fmt.Errorf("%s: %w", r.Server, err)
			errs = append(errs, err)
			rep.Errors = append(rep.Errors, err.Error())
			fmt.Fprintf(log, "FAIL: %v\n", err)
		}
		if r.Conns > 0 {
			if nopal {
				rep.Nopal = &r
			} else {
				rep.Floor = &r
			}
		}
	}
	rep.Rows = chatRows(rep)
	return rep, errors.Join(errs...)
}

// chatRun is one server's run: the connections and the plan they follow,
// in nanoseconds since base.
type chatRun struct {
	o     chatOptions
	nopal bool
	base  time.Time
	conns []*chatConn

	// The plan, written before start is closed.
	start    chan struct{}
	abort    atomic.Bool
	interval int64 // between two messages of a connection
	t0, t1   int64 // the measured window
	drainEnd int64 // when the connections stop reading

	push, req, lag *histSet
}

func (r *chatRun) now() int64 { return int64(time.Since(r.base)) }

// roomSize is the size of connection i's room (the last may be short).
func (r *chatRun) roomSize(i int) int {
	first := i / r.o.Room * r.o.Room
	return min(r.o.Room, r.o.Conns-first)
}

// isWS tells whether connection i is a WebSocket: WSShare of them,
// interleaved.
func isWS(i int, share float64) bool {
	return int(float64(i+1)*share) > int(float64(i)*share)
}

// chatConn is one client connection of the load generator; all but the
// plan is its goroutine's own.
type chatConn struct {
	idx int
	ws  bool
	c   *net.TCPConn
	fb  frameBuf
	// msg is the message as written (a WebSocket frame for ws), with the
	// request id at idAt (-1: a notify) and the timestamp at tsAt patched
	// before each write.
	msg        []byte
	idAt, tsAt int
	nextID     byte
	inflight   [chatIDs]int64 // send time of each request id in flight; 0: none
	next       int64          // the next send

	sent, skipped, delivered int64 // in the window
	err                      error
}

// frame wraps a packet as this connection writes it.
func (c *chatConn) frame(pkt []byte) []byte {
	if c.ws {
		return appendWSFrame(nil, pkt)
	}
	return pkt
}

// open dials (from one of the source addresses), upgrades a WebSocket,
// handshakes with Nopal and joins the connection's room.
func (c *chatConn) open(r *chatRun, tcpAddr, wsAddr string) error {
	src := net.IPv4(127, 0, 0, byte(2+c.idx%r.o.Sources))
	d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: src}}
	addr := tcpAddr
	if c.ws {
		addr = wsAddr
	}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return fmt.Errorf("dial %s from %s: %w", addr, src, err)
	}
	c.c = nc.(*net.TCPConn)
	_ = c.c.SetDeadline(time.Now().Add(30 * time.Second))
	if c.ws {
		if err := wsUpgrade(c.c, &c.fb, addr); err != nil {
			return err
		}
	}
	if r.nopal {
		if _, err := c.c.Write(c.frame(handshakePacket)); err != nil {
			return fmt.Errorf("handshake: %w", err)
		}
		pkt, err := c.fb.nextPacket(c.c, c.ws)
		if err != nil {
			return fmt.Errorf("handshake response: %w", err)
		}
		if err := checkHandshakeResponse(codec.PacketType(pkt[0]), pkt[codec.HeaderLength:]); err != nil {
			return err
		}
		if _, err := c.c.Write(c.frame(ackPacket)); err != nil {
			return fmt.Errorf("handshake ack: %w", err)
		}
	}
	join, err := buildRequest(chatJoinRoute, 1, []byte("r"+strconv.Itoa(c.idx/r.o.Room)))
	if err != nil {
		return err
	}
	if _, err := c.c.Write(c.frame(join)); err != nil {
		return fmt.Errorf("join: %w", err)
	}
	for range 100 {
		pkt, err := c.fb.nextPacket(c.c, c.ws)
		if err != nil {
			return fmt.Errorf("join response: %w", err)
		}
		if codec.PacketType(pkt[0]) == codec.Heartbeat {
			continue
		}
		body := pkt[codec.HeaderLength:]
		if codec.PacketType(pkt[0]) != codec.Data || len(body) < 2 || body[0] != flagResponse || body[1] != 1 {
			return fmt.Errorf("join response: % x", pkt[:min(len(pkt), 32)])
		}
		return c.prepare(r)
	}
	return errors.New("join response: none among 100 packets")
}

// prepare builds the message this connection sends.
func (c *chatConn) prepare(r *chatRun) error {
	data := make([]byte, r.o.Payload)
	for i := range data {
		data[i] = 'a' + byte(i%26)
	}
	binary.BigEndian.PutUint32(data[8:], uint32(c.idx))
	t := codec.Request
	if r.o.Notify {
		t = codec.Notify
	}
	mc := &codec.MessageCodec{}
	pkt, err := mc.AppendPacket(nil, &codec.Message{Type: t, ID: 1, Route: chatMessageRoute, Data: data})
	if err != nil {
		return err
	}
	c.msg = c.frame(pkt)
	off := len(c.msg) - len(pkt)
	c.tsAt = len(c.msg) - len(data)
	c.idAt = -1
	if !r.o.Notify {
		c.idAt = off + codec.HeaderLength + 1
	}
	return nil
}

// loop sends the connection's messages on schedule and reads everything
// the server sends, until the end of the drain. The next send is the read
// deadline, so one goroutine does both.
func (c *chatConn) loop(r *chatRun) error {
	shard := c.idx
	_ = c.c.SetWriteDeadline(r.base.Add(time.Duration(r.drainEnd) + 30*time.Second))
	_ = c.c.SetReadDeadline(r.base.Add(time.Duration(c.next)))
	for {
		pkt, err := c.fb.nextPacket(c.c, c.ws)
		if err == nil {
			if err := c.handle(r, pkt, shard); err != nil {
				return err
			}
			continue
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return err
		}
		now := r.now()
		if c.next < r.t1 && now >= c.next {
			if err := c.send(r, now, shard); err != nil {
				return fmt.Errorf("send: %w", err)
			}
			c.next += r.interval
		}
		dl := c.next
		if c.next >= r.t1 {
			if now >= r.drainEnd {
				return nil
			}
			dl = r.drainEnd
		}
		_ = c.c.SetReadDeadline(r.base.Add(time.Duration(dl)))
	}
}

// send writes the message with the next request id and the time now.
func (c *chatConn) send(r *chatRun, now int64, shard int) error {
	in := now >= r.t0 && now < r.t1
	if in {
		r.lag.record(shard, now-c.next)
	}
	if c.idAt >= 0 {
		id := c.nextID%chatIDs + 1
		if c.inflight[id-1] != 0 {
			if in {
				c.skipped++
			}
			return nil
		}
		c.nextID = id
		c.msg[c.idAt] = id
		c.inflight[id-1] = now
	}
	binary.BigEndian.PutUint64(c.msg[c.tsAt:], uint64(now))
	if in {
		c.sent++
	}
	_, err := c.c.Write(c.msg)
	return err
}

// handle reads one packet from the server: a push of the room (timed from
// its sender's timestamp), a response (timed from its request), or a
// heartbeat.
func (c *chatConn) handle(r *chatRun, pkt []byte, shard int) error {
	switch codec.PacketType(pkt[0]) {
	case codec.Heartbeat:
		return nil
	case codec.Data:
	case codec.Kick:
		return errors.New("kicked by the server")
	default:
		return fmt.Errorf("unexpected packet %s", codec.PacketType(pkt[0]))
	}
	body := pkt[codec.HeaderLength:]
	if len(body) < 2 {
		return fmt.Errorf("message of %d bytes", len(body))
	}
	now := r.now()
	switch body[0] {
	case flagPush:
		route, data, err := parsePush(body)
		if err != nil {
			return err
		}
		if string(route) != chatPushRoute || len(data) != r.o.Payload {
			return fmt.Errorf("push on %q of %d bytes", route, len(data))
		}
		ts := int64(binary.BigEndian.Uint64(data))
		if from := int(binary.BigEndian.Uint32(data[8:])); from/r.o.Room != c.idx/r.o.Room {
			return fmt.Errorf("push from connection %d, in another room", from)
		}
		if ts >= r.t0 && ts < r.t1 {
			c.delivered++
			r.push.record(shard, now-ts)
		}
	case flagResponse:
		id := body[1]
		if id == 0 || id > chatIDs || c.inflight[id-1] == 0 {
			return fmt.Errorf("response to request %d, not in flight", id)
		}
		sent := c.inflight[id-1]
		c.inflight[id-1] = 0
		if sent >= r.t0 && sent < r.t1 {
			r.req.record(shard, now-sent)
		}
	default:
		if body[0]&flagError != 0 && len(body) >= 2 {
			return fmt.Errorf("error response: %q", body[2:])
		}
		return fmt.Errorf("unexpected message flag %#02x", body[0])
	}
	return nil
}

// runChatServer starts the floor (chat-floor) or Nopal (chat-server) and
// runs the scenario against it: ramp, RSS, warm-up, measured window,
// drain.
func runChatServer(exe string, o chatOptions, nopal bool, log io.Writer) (res ChatResult, err error) {
	var srv *child
	srv, res.Server, res.RSSBeforeKB, err = startChatServer(exe, o, nopal, log)
	if err != nil {
		return res, err
	}
	defer srv.kill() // a no-op once it has exited
	pid := srv.pid()

	r := &chatRun{
		o: o, nopal: nopal, base: time.Now(), start: make(chan struct{}),
		interval: int64(float64(time.Second) / o.Rate),
		push:     &histSet{}, req: &histSet{}, lag: &histSet{},
	}
	r.conns = make([]*chatConn, o.Conns)
	for i := range r.conns {
		r.conns[i] = &chatConn{idx: i, ws: isWS(i, o.WSShare), fb: frameBuf{buf: make([]byte, chatReadBuffer)}}
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
	res.Rooms = (o.Conns + o.Room - 1) / o.Room

	// Ramp: every connection's goroutine opens it, Dialers at a time.
	fmt.Fprintf(log, "%s: opening %d connections (%d TCP, %d WebSocket) in %d rooms of %d\n", res.Server, o.Conns, res.TCP, res.WS, res.Rooms, o.Room)
	sem := make(chan struct{}, o.Dialers)
	var opened, done sync.WaitGroup
	var rampErrs atomic.Int64
	rampStart := time.Now()
	for _, c := range r.conns {
		opened.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			sem <- struct{}{}
			c.err = c.open(r, srv.addrs[0], srv.addrs[1])
			<-sem
			if c.err != nil {
				c.err = fmt.Errorf("ramp: %w", c.err)
				rampErrs.Add(1)
			}
			opened.Done()
			<-r.start
			if c.err != nil || r.abort.Load() {
				return
			}
			c.err = c.loop(r)
		}()
	}
	opened.Wait()
	res.RampSeconds = time.Since(rampStart).Seconds()
	if n := rampErrs.Load(); n > 0 {
		r.abort.Store(true)
		close(r.start)
		done.Wait()
		res.collectErrors(r)
		return res, fmt.Errorf("%d of %d connections failed to open: %s", n, o.Conns, res.Errors[0])
	}
	res.Conns = o.Conns
	res.ConnsPerSec = float64(o.Conns) / res.RampSeconds
	time.Sleep(o.Settle)
	rss, err := sampleRSS(pid, 3)
	if err != nil {
		return res, err
	}
	res.RSSRampKB = rss[len(rss)-1]
	res.PerConnKB = float64(res.RSSRampKB-res.RSSBeforeKB) / float64(o.Conns)
	fds := -1
	if ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
		fds = len(ents)
	}
	fmt.Fprintf(log, "%s: %d connections open and joined in %.2f s (%.0f/s); RSS %d → %d KB (%.2f KB per connection); %d descriptors open in the server\n",
		res.Server, o.Conns, res.RampSeconds, res.ConnsPerSec, res.RSSBeforeKB, res.RSSRampKB, res.PerConnKB, fds)

	if nopal && o.MemProf != "" && o.MemProfAt != "end" {
		// Written during the warm-up; its GC lowers the RSS at the end.
		_, _ = io.WriteString(srv.stdin, "heap-profile\n")
	}

	// The plan: sends spread over the interval (the golden ratio scatters
	// neighbours), warm-up, measured window, drain.
	startAt := r.now() + int64(50*time.Millisecond)
	for i, c := range r.conns {
		phase := float64(i) * 0.6180339887498949
		phase -= float64(int64(phase))
		c.next = startAt + int64(phase*float64(r.interval))
	}
	r.t0 = startAt + int64(o.Warmup)
	r.t1 = r.t0 + int64(o.Duration)
	r.drainEnd = r.t1 + int64(o.Drain)
	fmt.Fprintf(log, "%s: %.3g messages/s per connection: %v warm-up, %v measured, %v drain\n", res.Server, o.Rate, o.Warmup, o.Duration, o.Drain)
	close(r.start)

	time.Sleep(time.Until(r.base.Add(time.Duration(r.t0))))
	u0, s0, err0 := cpuTimes(pid)
	cu0, cs0, err1 := cpuTimes(os.Getpid())
	m0, si0, errm0 := machineBusy()
	if nopal && o.Profile != "" {
		_, _ = io.WriteString(srv.stdin, "profile-start\n")
	}
	time.Sleep(time.Until(r.base.Add(time.Duration(r.t1))))
	u1, s1, err2 := cpuTimes(pid)
	cu1, cs1, err3 := cpuTimes(os.Getpid())
	m1, si1, errm1 := machineBusy()
	if nopal && o.Profile != "" {
		_, _ = io.WriteString(srv.stdin, "profile-stop\n")
	}
	res.RSSEndKB, err = rssKB(pid)
	if nopal && o.MemProf != "" && o.MemProfAt == "end" {
		// What the server holds at the end of the window (under
		// overload: its queues, kept pushes and stacks).
		_, _ = io.WriteString(srv.stdin, "heap-profile\n")
	}
	if err := errors.Join(err0, err1, err2, err3, errm0, errm1, err); err != nil {
		return res, fmt.Errorf("server CPU time and RSS: %w", err)
	}
	waited := make(chan struct{})
	go func() { done.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(time.Until(r.base.Add(time.Duration(r.drainEnd))) + 30*time.Second):
		for _, c := range r.conns {
			_ = c.c.Close()
		}
		<-waited
	}

	res.Seconds = o.Duration.Seconds()
	res.ServerUserTicks, res.ServerSysTicks = u1-u0, s1-s0
	res.ServerCores = float64(u1+s1-u0-s0) / clkTck / res.Seconds
	res.ClientCores = float64(cu1+cs1-cu0-cs0) / clkTck / res.Seconds
	res.SoftirqCores = float64(si1-si0) / clkTck / res.Seconds
	res.OtherCores = max(0, float64(m1-m0)/clkTck/res.Seconds-res.ServerCores-res.ClientCores-res.SoftirqCores)
	for _, c := range r.conns {
		res.Sent += c.sent
		res.Skipped += c.skipped
		res.Expected += c.sent * int64(r.roomSize(c.idx))
		res.Delivered += c.delivered
	}
	res.Push, res.Request, res.SendLag = r.push.stats(), r.req.stats(), r.lag.stats()
	if res.Delivered > 0 {
		res.ServerCPUUsPerPush = float64(u1+s1-u0-s0) * 1e6 / clkTck / float64(res.Delivered)
	}
	res.collectErrors(r)
	res.Held = o.Conns - res.ConnErrors
	fmt.Fprintf(log, "%s: %d messages sent in %v (%d skipped), %d of %d pushes delivered; push p50 %.2f ms p99 %.2f ms; request p50 %.2f ms p99 %.2f ms; server %.2f cores, load generator %.2f cores, softirq %.2f cores, other processes %.2f cores; %d connections failed\n",
		res.Server, res.Sent, o.Duration, res.Skipped, res.Delivered, res.Expected, res.Push.P50Us/1e3, res.Push.P99Us/1e3,
		res.Request.P50Us/1e3, res.Request.P99Us/1e3, res.ServerCores, res.ClientCores, res.SoftirqCores, res.OtherCores, res.ConnErrors)

	// Close the clients first, then stop the server.
	for _, c := range r.conns {
		_ = c.c.Close()
	}
	var errs []error
	if res.ConnErrors > 0 {
		errs = append(errs, fmt.Errorf("%d of %d connections failed: %s", res.ConnErrors, o.Conns, res.Errors[0]))
	}
	if res.Sent == 0 {
		errs = append(errs, errors.New("no message sent in the measured window"))
	}
	if err := srv.stop(); err != nil {
		errs = append(errs, err)
	}
	return res, errors.Join(errs...)
}

// collectErrors counts the connections that failed and keeps the first
// few errors.
func (res *ChatResult) collectErrors(r *chatRun) {
	res.ConnErrors = 0
	res.Errors = nil
	for _, c := range r.conns {
		if c.err == nil {
			continue
		}
		res.ConnErrors++
		if len(res.Errors) < 5 {
			res.Errors = append(res.Errors, fmt.Sprintf("connection %d: %v", c.idx, c.err))
		}
	}
}

// chatRows builds the table: Nopal next to the relay floor.
func chatRows(rep *ChatReport) []Row {
	n, f := rep.Nopal, rep.Floor
	if n == nil {
		return nil
	}
	if f == nil {
		f = &ChatResult{}
	}
	o := rep.Options
	var rows []Row
	sc := fmt.Sprintf("chat, %d conns (%d TCP, %d WS), rooms of %d, %.3g msg/s each", n.Conns, n.TCP, n.WS, o.Room, o.Rate)
	pair := func(metric string, nv, fv float64, prec int, target string, ok *bool) {
		row := Row{Scenario: sc, Metric: metric, Nopal: nv, Floor: fv, HasFloor: rep.Floor != nil, Target: target, OK: ok, prec: prec}
		if fv != 0 {
			row.Ratio = nv / fv
		}
		rows = append(rows, row)
	}
	ms := func(us float64) float64 { return us / 1e3 }
	pct := func(r *ChatResult) float64 {
		if r.Expected == 0 {
			return 0
		}
		return 100 * float64(r.Delivered) / float64(r.Expected)
	}
	target := fmt.Sprintf("all %d", o.Conns)
	if o.Conns < o.Wanted {
		target += fmt.Sprintf(" (%d asked: RLIMIT_NOFILE)", o.Wanted)
	}
	pair(fmt.Sprintf("connections held to the end (of %d)", o.Conns), float64(n.Held), float64(f.Held), 0,
		target, okp(n.Held == o.Conns))
	pair("ramp-up: dial, handshake, join (conns/s)", n.ConnsPerSec, f.ConnsPerSec, 0, "", nil)
	if !o.Notify {
		pair("request p50 (ms)", ms(n.Request.P50Us), ms(f.Request.P50Us), 2, "", nil)
		pair("request p99 (ms)", ms(n.Request.P99Us), ms(f.Request.P99Us), 2, "", nil)
	}
	pair("push delivery p50 (ms)", ms(n.Push.P50Us), ms(f.Push.P50Us), 2, "", nil)
	pair("push delivery p99 (ms)", ms(n.Push.P99Us), ms(f.Push.P99Us), 2, "≤ 50 ms", okp(n.Push.Samples > 0 && n.Push.P99Us <= 50e3))
	pair("push delivery max (ms)", ms(n.Push.MaxUs), ms(f.Push.MaxUs), 1, "", nil)
	pair("pushes delivered (% of messages × room)", pct(n), pct(f), 2, "100 %", okp(n.Expected > 0 && n.Delivered == n.Expected))
	pair("messages sent in the window (msg/s)", float64(n.Sent)/n.Seconds, float64(f.Sent)/max(f.Seconds, 1e-9), 0, "", nil)
	pair("pushes delivered (pushes/s)", float64(n.Delivered)/n.Seconds, float64(f.Delivered)/max(f.Seconds, 1e-9), 0, "", nil)
	pair("server RSS per conn after the ramp (KB)", n.PerConnKB, f.PerConnKB, 2, "≤ 10 KB", okp(n.PerConnKB <= 10))
	pair("server RSS after the ramp (MB)", float64(n.RSSRampKB)/1024, float64(f.RSSRampKB)/1024, 1, "", nil)
	pair("server RSS at the end of the window (MB)", float64(n.RSSEndKB)/1024, float64(f.RSSEndKB)/1024, 1, "", nil)
	pair("server CPU in the window (cores)", n.ServerCores, f.ServerCores, 2, "", nil)
	pair("server CPU per push delivered (µs)", n.ServerCPUUsPerPush, f.ServerCPUUsPerPush, 2, "", nil)
	pair("load generator CPU (cores)", n.ClientCores, f.ClientCores, 2, "", nil)
	pair("kernel softirq, mostly loopback TCP (cores)", n.SoftirqCores, f.SoftirqCores, 2, "", nil)
	pair("other processes (cores)", n.OtherCores, f.OtherCores, 2, "", nil)
	pair("load generator send lag p99 (ms)", ms(n.SendLag.P99Us), ms(f.SendLag.P99Us), 2, "", nil)
	if !o.Notify {
		pair("sends skipped (16 requests in flight)", float64(n.Skipped), float64(f.Skipped), 0, "", nil)
	}
	return rows
}

// renderChat prints the environment and the table.
func renderChat(w io.Writer, rep *ChatReport) {
	printEnv(w, rep.Env)
	o := rep.Options
	fmt.Fprintf(w, "options: conns %d (asked %d), WebSocket share %.2f, room %d, rate %.3g msg/s per conn, %s, payload %d B, warm-up %v, measured %v, drain %v, sources %d, dialers %d, heartbeat %v\n",
		o.Conns, o.Wanted, o.WSShare, o.Room, o.Rate, map[bool]string{false: "requests", true: "notifies"}[o.Notify],
		o.Payload, o.Warmup, o.Duration, o.Drain, o.Sources, o.Dialers, o.Heartbeat)
	switch {
	case o.RaisedHL:
		fmt.Fprintf(w, "RLIMIT_NOFILE: hard limit raised from %d to %d (CAP_SYS_RESOURCE) in the load generator and the servers\n", o.HardWas, o.NoFile)
	case o.Conns < o.Wanted:
		fmt.Fprintf(w, "RLIMIT_NOFILE: hard limit %d: only %d of the %d connections asked for fit in each process\n", o.NoFile, o.Conns, o.Wanted)
	}
	fmt.Fprintln(w, "floor: a plain goroutine-per-connection relay (chat-floor): same packets and rooms, no handshake, no framework")
	fmt.Fprintln(w)
	printRows(w, rep.Rows, "relay floor")
	if len(rep.Errors) > 0 {
		fmt.Fprintf(w, "\nERRORS (%d):\n", len(rep.Errors))
		for _, e := range rep.Errors {
			fmt.Fprintf(w, "- %s\n", e)
		}
	}
}

// startChatServer starts Nopal's chat server (chat-server, with o's
// heartbeat, send budget and profiles) or the floor (chat-floor), with
// descriptors for o.Conns, checks that it listens on TCP and WebSocket,
// and reads its RSS before any connection (rssKB). server is "nopal" or
// "floor".
func startChatServer(exe string, o chatOptions, nopal bool, log io.Writer) (srv *child, server string, rssKB int64, err error) {
	server = "floor"
	args := []string{"chat-floor"}
	if nopal {
		server = "nopal"
		args = []string{"chat-server", "-heartbeat", o.Heartbeat.String(), "-send-budget", strconv.FormatInt(o.SendBudget, 10)}
		if o.Profile != "" {
			args = append(args, "-cpuprofile", o.Profile)
		}
		if o.MemProf != "" {
			args = append(args, "-memprofile", o.MemProf)
		}
	}
	args = append(args, "-nofile", strconv.Itoa(o.Conns+nofileMargin))
	srv, err = startChildReady(server, exe, args, log, 15*time.Second)
	if err != nil {
		return nil, server, 0, err
	}
	if len(srv.addrs) != 2 {
		srv.kill()
		return nil, server, 0, fmt.Errorf("addresses %q, want TCP and WebSocket", srv.addrs)
	}
	if rssKB, err = rssNow(srv.pid()); err != nil {
		srv.kill()
		return nil, server, 0, err
	}
	return srv, server, rssKB, nil
}

// rssNow is pid's RSS now, the last of two samples.
func rssNow(pid int) (int64, error) {
	rss, err := sampleRSS(pid, 2)
	if err != nil {
		return 0, err
	}
	return rss[len(rss)-1], nil
}
