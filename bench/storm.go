package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nopal-dev/nopal"
	"github.com/nopal-dev/nopal/backend"
	"github.com/nopal-dev/nopal/bindings"
	"github.com/nopal-dev/nopal/client"
	"github.com/nopal-dev/nopal/frontend"
	"github.com/nopal-dev/nopal/session"
	"github.com/nopal-dev/nopal/stream"
)

// The reconnect storm (`bench storm`): clients bound on two frontends of
// one cluster (an embedded NATS server, a backend, two frontends, all in
// this process) get numbered pushes from the backend; half way, every
// client drops its connection at once and resumes while the pushes go on:
// half of them on their own frontend (client.WithAutoResume), half on the
// other one (the session moves). Every session must come back whole: each client
// gets every push once, in order, and each uid's binding points at the
// frontend that holds its session.

// StormResult is what the storm measured.
type StormResult struct {
	Clients     int     `json:"clients"`
	Pushes      int     `json:"pushes"` // per client
	Lost        int     `json:"lost"`
	Duplicated  int     `json:"duplicated"`
	OutOfOrder  int     `json:"out_of_order"`
	Orphaned    int     `json:"orphaned_bindings"`
	Sessions    int     `json:"sessions"` // live sessions on both frontends at the end
	ResumeP50Ms float64 `json:"resume_p50_ms"`
	ResumeP99Ms float64 `json:"resume_p99_ms"`
	Seconds     float64 `json:"seconds"`
}

// stormComponent is the storm backend's component: rs.bind binds the
// caller.
type stormComponent struct{}

func (stormComponent) Bind(ctx context.Context, in []byte) ([]byte, error) {
	return nil, session.FromContext(ctx).Bind(ctx, string(in))
}

func cmdStorm(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("storm", flag.ContinueOnError)
	fs.SetOutput(stderr)
	clients := fs.Int("clients", 1000, "clients, half on each frontend")
	pushes := fs.Int("pushes", 100, "numbered pushes each client gets")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if _, err := raiseNofile(); err != nil {
		fmt.Fprintf(stderr, "warning: cannot raise RLIMIT_NOFILE: %v\n", err)
	}
	r, err := runStorm(*clients, *pushes, stderr)
	if err != nil {
		return err
	}
	printStorm(stdout, r)
	if r.Lost+r.Duplicated+r.OutOfOrder+r.Orphaned > 0 || r.Sessions != r.Clients {
		return errors.New("the storm broke sessions")
	}
	return nil
}

// stormCluster is an in-process cluster: an embedded NATS server owned by
// the backend, and two frontends.
type stormCluster struct {
	back, feA, feB *nopal.App
	addrA, addrB   string
	apps           []*nopal.App
}

func (c *stormCluster) stop() {
	for i := len(c.apps) - 1; i >= 0; i-- {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = c.apps[i].Shutdown(sctx)
		cancel()
	}
}

func startStormCluster(log io.Writer, resume frontend.ResumeConfig) (*stormCluster, error) {
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelError}))
	sc := &stormCluster{}
	start := func(svType, id string, bus stream.Config, inProc *nopal.App, front bool) (*nopal.App, string, error) {
		app, err := nopal.New(nopal.Config{
			ServerType: svType, ServerID: id, Logger: quiet, Heartbeat: time.Minute, Resume: resume,
			Cluster: &nopal.ClusterConfig{Bus: bus, Traffic: false, RequestTimeout: 10 * time.Second},
		})
		if err != nil {
			return nil, "", err
		}
		if inProc != nil {
			app.UseEmbedded(inProc.Bus().Server)
		}
		var tcp *frontend.TCPAcceptor
		if front {
			tcp = frontend.NewTCPAcceptor("127.0.0.1:0")
			app.AddAcceptor(tcp)
		} else if err := app.Register(stormComponent{}, backend.WithName("rs")); err != nil {
			return nil, "", err
		}
		if err := app.Start(ctx); err != nil {
			return nil, "", err
		}
		sc.apps = append(sc.apps, app)
		if tcp != nil {
			return app, tcp.Addr().String(), nil
		}
		return app, "", nil
	}
	var err error
	if sc.back, _, err = start("storm", "storm-back", stream.Config{}, nil, false); err != nil {
		sc.stop()
		return nil, err
	}
	if sc.feA, sc.addrA, err = start("front", "front-a", stream.Config{}, sc.back, true); err != nil {
		sc.stop()
		return nil, err
	}
	if sc.feB, sc.addrB, err = start("front", "front-b", stream.Config{}, sc.back, true); err != nil {
		sc.stop()
		return nil, err
	}
	for deadline := time.Now().Add(10 * time.Second); len(sc.back.Discovery().ServersByType("front")) < 2; {
		if time.Now().After(deadline) {
			sc.stop()
			return nil, errors.New("the backend does not see both frontends")
		}
		time.Sleep(10 * time.Millisecond) // discovery has no "seen both" event
	}
	return sc, nil
}

func runStorm(clients, pushes int, log io.Writer) (*StormResult, error) {
	ctx := context.Background()
	sc, err := startStormCluster(log, frontend.ResumeConfig{})
	if err != nil {
		return nil, err
	}
	defer sc.stop()
	back, feA, feB, addrA, addrB := sc.back, sc.feA, sc.feB, sc.addrA, sc.addrB

	fmt.Fprintf(log, "storm: %d clients on two frontends, %d pushes each, all dropping half way\n", clients, pushes)
	began := time.Now()
	cls := make([]*client.Client, clients)
	uids := make([]string, clients)
	var bindErr error
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i := range cls {
		uids[i] = fmt.Sprintf("storm-%d", i)
		home, other := addrA, addrB
		if i%2 == 1 {
			home, other = addrB, addrA
		}
		wg.Go(func() {
			// Even clients resume by themselves on their own frontend;
			// odd ones ("movers") resume on the other frontend, by hand.
			opts := []client.Option{client.WithPushBuffer(pushes + 16)}
			if i%2 == 0 {
				opts = append(opts, client.WithAutoResume(30*time.Second, other))
			}
			c, err := client.Dial(ctx, home, opts...)
			if err == nil {
				_, err = c.RequestRaw(ctx, "storm.rs.bind", []byte(uids[i]))
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil && bindErr == nil {
				bindErr = err
			}
			cls[i] = c
		})
	}
	wg.Wait()
	defer func() {
		for _, c := range cls {
			if c != nil {
				_ = c.Close()
			}
		}
	}()
	if bindErr != nil {
		return nil, fmt.Errorf("bind: %w", bindErr)
	}

	res := &StormResult{Clients: clients, Pushes: pushes}
	var lost, dup, order atomic.Int64
	resumeLat := make([]int64, clients)
	half := make(chan struct{})
	pushed := make(chan error, 1)
	go func() {
		var seq [8]byte
		for n := 1; n <= pushes; n++ {
			if n == pushes/2 {
				close(half)
			}
			binary.BigEndian.PutUint64(seq[:], uint64(n))
			if _, err := back.SendPushToUsers(ctx, "onStorm", seq[:], uids, ""); err != nil {
				pushed <- err
				return
			}
			time.Sleep(2 * time.Millisecond) // a steady stream across the storm
		}
		pushed <- nil
	}()
	for i, c := range cls {
		other := addrB
		if i%2 == 1 {
			other = addrA
		}
		wg.Go(func() {
			next := uint64(1)
			drop := half // nil once dropped
			timeout := time.NewTimer(20 * time.Second)
			defer timeout.Stop()
			pushesC := c.Pushes()
			for next <= uint64(pushes) {
				select {
				case <-drop:
					drop = nil
					t0 := time.Now()
					if i%2 == 0 {
						before := c.Resumes()
						c.Drop()
						go func() {
							for c.Resumes() == before && c.Err() == nil {
								time.Sleep(time.Millisecond) // the client has no resume event
							}
							resumeLat[i] = int64(time.Since(t0))
						}()
						continue
					}
					// A mover: its connection ends; it counts what it
					// got, then resumes on the other frontend.
					token := c.ResumeToken()
					c.Drop()
					for p := range pushesC { // until the old reader stops
						n := binary.BigEndian.Uint64(p.Data)
						if n == next {
							next++
						} else if n < next {
							dup.Add(1)
						}
					}
					nc, err := client.Dial(ctx, other, client.WithResume(token, c.PushesReceived()), client.WithPushBuffer(pushes+16))
					if err != nil || !nc.Handshake().Sys.Resumed {
						lost.Add(int64(uint64(pushes) - next + 1))
						return
					}
					resumeLat[i] = int64(time.Since(t0))
					mu.Lock()
					cls[i] = nc // closed with the others
					mu.Unlock()
					pushesC = nc.Pushes()
				case p, ok := <-pushesC:
					if !ok {
						lost.Add(int64(uint64(pushes) - next + 1))
						return
					}
					n := binary.BigEndian.Uint64(p.Data)
					switch {
					case n == next:
						next++
					case n < next:
						dup.Add(1)
					default:
						order.Add(1)
						lost.Add(int64(n - next))
						next = n + 1
					}
				case <-timeout.C:
					lost.Add(int64(uint64(pushes) - next + 1))
					return
				}
			}
		})
	}
	wg.Wait()
	if err := <-pushed; err != nil {
		return nil, fmt.Errorf("push: %w", err)
	}
	res.Seconds = time.Since(began).Seconds()
	res.Lost, res.Duplicated, res.OutOfOrder = int(lost.Load()), int(dup.Load()), int(order.Load())

	store, err := bindings.NewStore(ctx, back.Bus())
	if err != nil {
		return nil, err
	}
	for _, uid := range uids {
		sa, sb := feA.Sessions().ByUID(uid), feB.Sessions().ByUID(uid)
		want := bindings.Binding{}
		switch {
		case sa != nil && sb == nil:
			want = bindings.Binding{FrontendID: "front-a", SessionID: sa.ID()}
		case sb != nil && sa == nil:
			want = bindings.Binding{FrontendID: "front-b", SessionID: sb.ID()}
		}
		if got, err := store.Get(ctx, uid); err != nil || got != want {
			res.Orphaned++
		}
	}
	res.Sessions = feA.Sessions().Count() + feB.Sessions().Count()
	slices.Sort(resumeLat)
	res.ResumeP50Ms = float64(percentile(resumeLat, 0.5)) / 1e6
	res.ResumeP99Ms = float64(percentile(resumeLat, 0.99)) / 1e6
	return res, nil
}

func printStorm(w io.Writer, r *StormResult) {
	fmt.Fprintf(w, "| reconnect storm | value | target |\n|---|---|---|\n")
	fmt.Fprintf(w, "| clients dropping at once, two frontends | %d | 1,000 |\n", r.Clients)
	fmt.Fprintf(w, "| pushes per client | %d | |\n", r.Pushes)
	fmt.Fprintf(w, "| lost / duplicated / out of order | %d / %d / %d | 0 / 0 / 0 |\n", r.Lost, r.Duplicated, r.OutOfOrder)
	fmt.Fprintf(w, "| orphaned or wrong bindings | %d | 0 |\n", r.Orphaned)
	fmt.Fprintf(w, "| live sessions at the end | %d | %d |\n", r.Sessions, r.Clients)
	fmt.Fprintf(w, "| drop to resumed, p50 / p99 | %.1f / %.1f ms | |\n", r.ResumeP50Ms, r.ResumeP99Ms)
}

// DurableResult compares pushes to bound sessions with and without
// durable pushes (every push also written to the bus).
type DurableResult struct {
	Clients         int     `json:"clients"`
	OffPushesPerS   float64 `json:"off_pushes_per_s"`
	OnPushesPerS    float64 `json:"on_pushes_per_s"`
	OffCPUUsPerPush float64 `json:"off_cpu_us_per_push"`
	OnCPUUsPerPush  float64 `json:"on_cpu_us_per_push"`
}

// pushRate binds clients on one frontend and pushes to all of them from
// the backend for d, in batches of one bus message per push; it returns
// the pushes received per second and this process's CPU per push.
func pushRate(clients int, d time.Duration, durable bool, log io.Writer) (float64, float64, error) {
	ctx := context.Background()
	sc, err := startStormCluster(log, frontend.ResumeConfig{Durable: durable})
	if err != nil {
		return 0, 0, err
	}
	defer sc.stop()
	uids := make([]string, clients)
	var got atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := range uids {
		uids[i] = fmt.Sprintf("d-%d", i)
		c, err := client.Dial(ctx, sc.addrA, client.WithPushBuffer(1024))
		if err != nil {
			return 0, 0, err
		}
		defer c.Close()
		if _, err := c.RequestRaw(ctx, "storm.rs.bind", []byte(uids[i])); err != nil {
			return 0, 0, err
		}
		wg.Go(func() {
			for {
				select {
				case _, ok := <-c.Pushes():
					if !ok {
						return
					}
					got.Add(1)
				case <-stop:
					return
				}
			}
		})
	}
	payload := make([]byte, 64)
	u0, s0, err := cpuTimes(os.Getpid())
	if err != nil {
		return 0, 0, err
	}
	t0 := time.Now()
	g0 := got.Load()
	for time.Since(t0) < d {
		if _, err := sc.back.SendPushToUsers(ctx, "onD", payload, uids, ""); err != nil {
			return 0, 0, err
		}
	}
	n := got.Load() - g0
	el := time.Since(t0)
	u1, s1, err := cpuTimes(os.Getpid())
	if err != nil {
		return 0, 0, err
	}
	close(stop)
	wg.Wait()
	return float64(n) / el.Seconds(), float64(u1+s1-u0-s0) * 1e6 / clkTck / float64(max(n, 1)), nil
}

func cmdDurable(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("durable", flag.ContinueOnError)
	fs.SetOutput(stderr)
	clients := fs.Int("clients", 100, "bound clients, all pushed to at once")
	d := fs.Duration("duration", 3*time.Second, "pushing time per mode")
	if err := fs.Parse(args); err != nil {
		return err
	}
	r := DurableResult{Clients: *clients}
	var err error
	fmt.Fprintf(stderr, "durable: %d clients, pushes off then on, %v each\n", *clients, *d)
	if r.OffPushesPerS, r.OffCPUUsPerPush, err = pushRate(*clients, *d, false, stderr); err != nil {
		return err
	}
	if r.OnPushesPerS, r.OnCPUUsPerPush, err = pushRate(*clients, *d, true, stderr); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "| pushes to %d bound sessions (one process: NATS, backend, frontend, clients) | durable off | durable on | on / off |\n|---|---|---|---|\n", r.Clients)
	fmt.Fprintf(stdout, "| pushes delivered per second | %.0f | %.0f | %.2f× |\n", r.OffPushesPerS, r.OnPushesPerS, r.OnPushesPerS/r.OffPushesPerS)
	fmt.Fprintf(stdout, "| CPU µs per push (whole process) | %.1f | %.1f | %.2f× |\n", r.OffCPUUsPerPush, r.OnCPUUsPerPush, r.OnCPUUsPerPush/r.OffCPUUsPerPush)
	return nil
}
