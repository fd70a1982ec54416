package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/nopal-dev/nopal"
	"github.com/nopal-dev/nopal/backend"
	"github.com/nopal-dev/nopal/client"
	"github.com/nopal-dev/nopal/frontend"
	"github.com/nopal-dev/nopal/session"
)

// The session-resume benchmark (`bench resume`):
//
//   - the cost of the resume machinery when nobody drops: request/response
//     against the same server with resume on and off, side by side in
//     alternating windows, next to the TCP-echo floor;
//   - the time a client takes to resume a session that missed 100 pushes:
//     from the start of its dial to the 100th push, against the floor's
//     request p50.
//
// The server is `bench resume-server`, a subprocess: an echo route, a bind
// route, and "rs.burst" which pushes n numbered pushes to a uid once its
// session is suspended.

const (
	resumeEchoRoute  = "rs.echo"
	resumeBindRoute  = "rs.bind"
	resumeBurstRoute = "rs.burst"
	resumePushRoute  = "onR"
)

// burstArg asks for N pushes to UID once its session is suspended.
type burstArg struct {
	UID string `json:"uid"`
	N   int    `json:"n"`
}

// resumeComponent is the resume-server's component.
type resumeComponent struct {
	app *nopal.App

	mu        sync.Mutex
	suspended map[string]chan struct{} // closed when the uid's session is suspended
}

func (r *resumeComponent) waiter(uid string) chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	ch, ok := r.suspended[uid]
	if !ok {
		ch = make(chan struct{})
		r.suspended[uid] = ch
	}
	return ch
}

// Echo returns its input.
func (r *resumeComponent) Echo(_ context.Context, in []byte) ([]byte, error) { return in, nil }

// Bind binds the session to the uid in the payload.
func (r *resumeComponent) Bind(ctx context.Context, in []byte) ([]byte, error) {
	return nil, session.FromContext(ctx).Bind(ctx, string(in))
}

// Burst waits until the uid's session is suspended, then pushes N
// numbered pushes to it.
func (r *resumeComponent) Burst(ctx context.Context, in *burstArg) (*burstArg, error) {
	select {
	case <-r.waiter(in.UID):
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(10 * time.Second):
		return nil, errors.New("bench: the session was not suspended")
	}
	var seq [8]byte
	for i := 1; i <= in.N; i++ {
		binary.BigEndian.PutUint64(seq[:], uint64(i))
		failed, err := r.app.PushToUsers(ctx, resumePushRoute, seq[:], []string{in.UID})
		if err != nil || len(failed) > 0 {
			return nil, fmt.Errorf("bench: push %d: failed %v, %w", i, failed, err)
		}
	}
	r.mu.Lock()
	delete(r.suspended, in.UID)
	r.mu.Unlock()
	return in, nil
}

func cmdResumeServer(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("resume-server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:0", "TCP address to listen on")
	resume := fs.Bool("resume", true, "session resume (Config.Resume.Off when false)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	app, err := nopal.New(nopal.Config{
		ServerType: "rsbench", Heartbeat: time.Minute, Logger: log,
		Resume: frontend.ResumeConfig{Off: !*resume, MaxMissed: 4096},
	})
	if err != nil {
		return err
	}
	comp := &resumeComponent{app: app, suspended: map[string]chan struct{}{}}
	if err := app.Register(comp, backend.WithName("rs")); err != nil {
		return err
	}
	app.OnSessionSuspend(func(s *session.Session) {
		ch := comp.waiter(s.UID())
		comp.mu.Lock()
		select {
		case <-ch:
		default:
			close(ch)
		}
		comp.mu.Unlock()
	})
	tcp := frontend.NewTCPAcceptor(*addr)
	app.AddAcceptor(tcp)
	ctx, cancel := untilStopped(stdin)
	defer cancel()
	if err := app.Start(context.Background()); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "ADDR %s\n", tcp.Addr())
	<-ctx.Done()
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	return app.Shutdown(sctx)
}

// ResumeResults are the figures of `bench resume`.
type ResumeResults struct {
	Env Env `json:"env"`
	// Floor, Off and On are request/response at Conns connections: the
	// TCP-echo floor, Nopal with resume off, Nopal with resume on.
	Conns          int        `json:"conns"`
	Floor, Off, On LoadResult `json:"-"`
	Floor1         LoadResult `json:"floor_1conn"`
	// Missed is the pushes each resumed session missed; Resumes the
	// resumes timed; ResumeP50Us and ResumeP99Us the time from dialing to
	// the last missed push.
	Missed      int     `json:"missed"`
	Resumes     int     `json:"resumes"`
	ResumeP50Us float64 `json:"resume_p50_us"`
	ResumeP99Us float64 `json:"resume_p99_us"`
}

func cmdResume(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("resume", flag.ContinueOnError)
	fs.SetOutput(stderr)
	duration := fs.Duration("duration", 3*time.Second, "measured time per server and load")
	conns := fs.Int("conns", 64, "connections of the request/response load")
	missed := fs.Int("missed", 100, "pushes each resumed session missed")
	resumes := fs.Int("resumes", 200, "resumes timed")
	jsonOut := fs.Bool("json", false, "print the results as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	res, err := runResume(exe, resumeOptions{Duration: *duration, Conns: *conns, Missed: *missed, Resumes: *resumes}, stderr)
	if err != nil {
		return err
	}
	if *jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	printResume(stdout, res)
	return nil
}

type resumeOptions struct {
	Duration time.Duration
	Conns    int
	Missed   int
	Resumes  int
}

func runResume(exe string, o resumeOptions, log io.Writer) (*ResumeResults, error) {
	log = &lockedWriter{w: log}
	floor, err := startChild("echo-server", exe, []string{"echo-server", "-addr", "127.0.0.1:0"}, log, 15*time.Second)
	if err != nil {
		return nil, err
	}
	defer floor.stop()
	off, err := startChild("resume-server off", exe, []string{"resume-server", "-resume=false"}, log, 15*time.Second)
	if err != nil {
		return nil, err
	}
	defer off.stop()
	on, err := startChild("resume-server on", exe, []string{"resume-server"}, log, 15*time.Second)
	if err != nil {
		return nil, err
	}
	defer on.stop()

	payload := make([]byte, 32)
	for i := range payload {
		payload[i] = 'a' + byte(i%26)
	}
	fex, err := newExchange(payload, false)
	if err != nil {
		return nil, err
	}
	nex, err := newRouteExchange(resumeEchoRoute, payload, true)
	if err != nil {
		return nil, err
	}
	s := suiteServers{exe: exe, o: suiteOptions{Duration: o.Duration, Warmup: 300 * time.Millisecond, Rounds: 6}, log: log}
	res := &ResumeResults{Conns: o.Conns, Missed: o.Missed}
	fmt.Fprintf(log, "resume: request/response, %d connections, resume off and on, %v each\n", o.Conns, o.Duration)
	rs, err := s.measureLoad([]loadTarget{
		{name: "floor", addr: floor.addr, ex: fex, pids: []int{floor.pid()}},
		{name: "resume off", addr: off.addr, ex: nex, pids: []int{off.pid()}},
		{name: "resume on", addr: on.addr, ex: nex, pids: []int{on.pid()}},
	}, o.Conns)
	if err != nil {
		return nil, err
	}
	res.Floor, res.Off, res.On = rs[0], rs[1], rs[2]
	fmt.Fprintf(log, "resume: floor at 1 connection, %v\n", o.Duration)
	rs, err = s.measureLoad([]loadTarget{{name: "floor 1 conn", addr: floor.addr, ex: fex, pids: []int{floor.pid()}}}, 1)
	if err != nil {
		return nil, err
	}
	res.Floor1 = rs[0]

	fmt.Fprintf(log, "resume: %d resumes of a session that missed %d pushes\n", o.Resumes, o.Missed)
	lat, err := timeResumes(on.addr, o.Missed, o.Resumes)
	if err != nil {
		return nil, err
	}
	slices.Sort(lat)
	res.Resumes = len(lat)
	res.ResumeP50Us = float64(percentile(lat, 0.5)) / 1e3
	res.ResumeP99Us = float64(percentile(lat, 0.99)) / 1e3
	res.Env = Env{Date: time.Now().Format(time.RFC3339)}
	return res, nil
}

// timeResumes binds a session, drops it, has the server push missed pushes
// to it once suspended, then times the resume: from dialing to the last
// missed push, checking that each arrives once, in order.
func timeResumes(addr string, missed, n int) ([]int64, error) {
	ctx := context.Background()
	ctl, err := client.Dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	defer ctl.Close()
	lat := make([]int64, 0, n)
	for i := range n {
		uid := fmt.Sprintf("r%d", i)
		c, err := client.Dial(ctx, addr, client.WithPushBuffer(missed+8))
		if err != nil {
			return nil, err
		}
		if _, err := c.RequestRaw(ctx, resumeBindRoute, []byte(uid)); err != nil {
			_ = c.Close()
			return nil, err
		}
		token, got := c.ResumeToken(), c.PushesReceived()
		c.Drop()
		<-c.Done()
		if err := ctl.Request(ctx, resumeBurstRoute, &burstArg{UID: uid, N: missed}, nil); err != nil {
			return nil, fmt.Errorf("burst: %w", err)
		}
		start := time.Now()
		r, err := client.Dial(ctx, addr, client.WithResume(token, got), client.WithPushBuffer(missed+8))
		if err != nil {
			return nil, err
		}
		if !r.Handshake().Sys.Resumed {
			_ = r.Close()
			return nil, fmt.Errorf("resume %d: the server gave a fresh session", i)
		}
		for want := uint64(1); want <= uint64(missed); want++ {
			select {
			case p := <-r.Pushes():
				if len(p.Data) != 8 || binary.BigEndian.Uint64(p.Data) != want {
					_ = r.Close()
					return nil, fmt.Errorf("resume %d: push %x, want %d", i, p.Data, want)
				}
			case <-time.After(10 * time.Second):
				_ = r.Close()
				return nil, fmt.Errorf("resume %d: push %d missing", i, want)
			}
		}
		lat = append(lat, int64(time.Since(start)))
		_ = r.Close()
	}
	return lat, nil
}

func printResume(w io.Writer, r *ResumeResults) {
	ratio := func(a, b float64) string {
		if b == 0 {
			return "—"
		}
		return fmt.Sprintf("%.2f×", a/b)
	}
	fmt.Fprintf(w, "| metric | floor (TCP echo) | Nopal | ratio | target |\n|---|---|---|---|---|\n")
	fmt.Fprintf(w, "| req/s, %d conns, resume off | %.0f | %.0f | %s floor | |\n", r.Conns, r.Floor.ReqPerSec, r.Off.ReqPerSec, ratio(r.Off.ReqPerSec, r.Floor.ReqPerSec))
	fmt.Fprintf(w, "| req/s, %d conns, resume on | %.0f | %.0f | %s floor | |\n", r.Conns, r.Floor.ReqPerSec, r.On.ReqPerSec, ratio(r.On.ReqPerSec, r.Floor.ReqPerSec))
	cost := 0.0
	if r.Off.ReqPerSec > 0 {
		cost = (1 - r.On.ReqPerSec/r.Off.ReqPerSec) * 100
	}
	fmt.Fprintf(w, "| cost of resume when nobody drops (req/s) | | %+.1f %% | | ≤ 5 %% |\n", cost)
	fmt.Fprintf(w, "| server CPU µs/req, resume off / on | %.1f | %.1f / %.1f | %s | |\n", r.Floor.ServerCPUUsPerReq, r.Off.ServerCPUUsPerReq, r.On.ServerCPUUsPerReq, ratio(r.On.ServerCPUUsPerReq, r.Off.ServerCPUUsPerReq))
	fmt.Fprintf(w, "| resume with %d missed pushes, p50 (dial to last push) | %.1f µs (request p50, 1 conn) | %.1f µs | %s floor p50 | ≤ 20× |\n",
		r.Missed, r.Floor1.P50Us, r.ResumeP50Us, ratio(r.ResumeP50Us, r.Floor1.P50Us))
	fmt.Fprintf(w, "| same, p99 | | %.1f µs | %s floor p50 | |\n", r.ResumeP99Us, ratio(r.ResumeP99Us, r.Floor1.P50Us))
}
