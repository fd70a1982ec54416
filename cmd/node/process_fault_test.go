package main

// Fault tests: real `node` processes (see process_test.go) hit by the
// faults a cluster meets in production, under load:
//
//   - TestProcessFaultBackendSIGKILL: a room server killed with SIGKILL
//     while clients send requests to it.
//   - TestProcessFaultNATSRestart: the process owning the NATS server
//     killed and restarted on the same port and JetStream store.
//   - TestProcessFaultDrainUnderLoad: a connector drained by SIGTERM while
//     its clients send requests.
//   - TestProcessFaultNATSClusterNodeKill: one of three clustered NATS
//     servers (replicas 3) killed with SIGKILL.
//
// NOPAL_LONG_FAULTS=1 runs the long variants: more clients, more jobs,
// longer runs.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nopal-dev/nopal/client"
	"github.com/nopal-dev/nopal/codec"
	"github.com/nopal-dev/nopal/examples/chat"
	rewards "github.com/nopal-dev/nopal/examples/reliable"
	"github.com/nopal-dev/nopal/reliable"
	"github.com/nopal-dev/nopal/stream"
)

// longFaults reports whether to run the long variants of the fault tests.
// It reads the variable as the tests run, not at package init, so that go
// test's cache knows the result depends on it.
func longFaults() bool { return os.Getenv("NOPAL_LONG_FAULTS") == "1" }

// scale returns short, or long under NOPAL_LONG_FAULTS=1.
func scale(short, long int) int {
	if longFaults() {
		return long
	}
	return short
}

func skipShortFault(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: skipping the multi-process fault test")
	}
}

// stepLogger logs steps with the time since the test began.
func stepLogger(t *testing.T) func(format string, a ...any) {
	begin := time.Now()
	return func(format string, a ...any) {
		t.Helper()
		t.Logf("%6.2fs "+format, append([]any{time.Since(begin).Seconds()}, a...)...)
	}
}

// outcome is one request made under load.
type outcome struct {
	worker     int
	start, end time.Time
	err        error
}

func (o outcome) took() time.Duration { return o.end.Sub(o.start) }

// code is the error code the server answered, "" for other errors.
func (o outcome) code() string {
	var ce *codec.Error
	if errors.As(o.err, &ce) {
		return ce.Code
	}
	return ""
}

// loadLog collects the outcomes of load workers; waitFor awaits a
// condition on them.
type loadLog struct {
	mu      sync.Mutex
	all     []outcome
	changed chan struct{} // closed and replaced on each add
}

func newLoadLog() *loadLog { return &loadLog{changed: make(chan struct{})} }

func (l *loadLog) add(o outcome) {
	l.mu.Lock()
	l.all = append(l.all, o)
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
}

func (l *loadLog) outcomes() []outcome {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.all)
}

// waitFor waits until cond holds for the outcomes so far.
func (l *loadLog) waitFor(t *testing.T, what string, timeout time.Duration, cond func([]outcome) bool) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		l.mu.Lock()
		all, changed := l.all, l.changed
		l.mu.Unlock()
		if cond(all) {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("%s: not within %v (%d outcomes)", what, timeout, len(all))
		}
	}
}

func countOK(all []outcome, keep func(outcome) bool) int {
	n := 0
	for _, o := range all {
		if o.err == nil && keep(o) {
			n++
		}
	}
	return n
}

// TestProcessFaultBackendSIGKILL: two room servers and a connector; client
// workers join the room over and over (each join on a new connection: a
// session joins once, and join is the room's only request). One room
// server is killed with SIGKILL mid-load. A join it had taken fails with
// PIT-408 (the connector's -request-timeout) or PIT-503, never later than
// the timeout; joins sent once the kill is known go to the survivor and
// succeed (NATS drops the dead server's subscription when its socket
// closes; discovery forgets it within its 3 s TTL): every join started 5 s
// after the kill succeeds.
func TestProcessFaultBackendSIGKILL(t *testing.T) {
	skipShortFault(t)
	bin := nodeBinary(t)
	step := stepLogger(t)
	const (
		reqTimeout = 2 * time.Second
		slack      = 1500 * time.Millisecond // a -race connector on a busy 2-core machine
		recovery   = 5 * time.Second         // discovery TTL (3 s) and a margin
	)
	// room-2 owns the bus and survives; room-1 is killed.
	r2 := startProc(t, bin, "room-2", "serve", "-type", "room", "-id", "room-2", "-tcp", "", "-ws", "",
		"-nats-listen", "127.0.0.1:0", "-nats-store", t.TempDir())
	url := r2.waitLine(t, natsURLRe, startTimeout)[1]
	r1 := startProc(t, bin, "room-1", "serve", "-type", "room", "-id", "room-1", "-tcp", "", "-ws", "", "-nats", url)
	// -resume-grace 0: a closed connection ends its session at once (the
	// connector then tells the room), so the room does not fill up with
	// suspended sessions.
	c := startProc(t, bin, "conn", "serve", "-type", "connector", "-id", "conn", "-nats", url,
		"-tcp", "127.0.0.1:0", "-ws", "127.0.0.1:0", "-request-timeout", reqTimeout.String(), "-resume-grace", "0")
	r2.waitLine(t, readyRe, startTimeout)
	r1.waitLine(t, readyRe, startTimeout)
	addr, _ := connectorAddrs(t, c)
	step("room-1, room-2 and the connector ready")

	workers := scale(6, 16)
	log := newLoadLog()
	stop := make(chan struct{})
	var dialErrs sync.Map
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				cl, err := client.Dial(ctx, addr)
				if err != nil {
					cancel()
					dialErrs.Store(w, err)
					return
				}
				var res chat.JoinResponse
				o := outcome{worker: w, start: time.Now()}
				// The client's own deadline is far past the connector's:
				// a request the connector leaves hanging shows as slow.
				o.err = cl.Request(ctx, "room.room.join", struct{}{}, &res)
				o.end = time.Now()
				if o.err == nil && res.Result != "success" {
					o.err = fmt.Errorf("join answered %+v", res)
				}
				cancel()
				_ = cl.Close()
				log.add(o)
			}
		})
	}
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()

	warm := scale(100, 1000)
	log.waitFor(t, "joins before the kill", 20*time.Second, func(all []outcome) bool {
		return countOK(all, func(outcome) bool { return true }) >= warm
	})
	step("%d joins done; SIGKILL room-1", warm)
	killed := time.Now()
	if code, _ := r1.signalAndWait(t, syscall.SIGKILL, 10*time.Second); code == 0 {
		t.Fatal("room-1 exited cleanly after SIGKILL")
	}
	after := killed.Add(recovery)
	want := scale(30, 1000)
	log.waitFor(t, "joins after the recovery window", recovery+time.Duration(scale(20, 60))*time.Second, func(all []outcome) bool {
		return countOK(all, func(o outcome) bool { return o.start.After(after) }) >= want
	})
	close(stop)
	wg.Wait()
	dialErrs.Range(func(k, v any) bool {
		t.Errorf("worker %v: dial: %v", k, v)
		return true
	})

	all := log.outcomes()
	var failed []outcome
	var firstOK time.Duration = -1
	slowest := time.Duration(0)
	for _, o := range all {
		slowest = max(slowest, o.took())
		if o.took() > reqTimeout+slack {
			t.Errorf("worker %d: a join took %v (request timeout %v): %v", o.worker, o.took().Round(time.Millisecond), reqTimeout, o.err)
		}
		if o.err == nil {
			if o.start.After(killed) && (firstOK < 0 || o.end.Sub(killed) < firstOK) {
				firstOK = o.end.Sub(killed)
			}
			continue
		}
		failed = append(failed, o)
		switch {
		case o.end.Before(killed):
			t.Errorf("worker %d: a join failed before the kill: %v", o.worker, o.err)
		case o.code() != codec.CodeTimeout && o.code() != codec.CodeServiceMissing:
			t.Errorf("worker %d: a join failed with %v, want %s or %s", o.worker, o.err, codec.CodeTimeout, codec.CodeServiceMissing)
		case o.start.After(after):
			t.Errorf("worker %d: a join sent %v after the kill failed: %v", o.worker, o.start.Sub(killed).Round(time.Millisecond), o.err)
		}
	}
	codes := map[string]int{}
	lastStart := -time.Hour // of a failed join, relative to the kill
	for _, o := range failed {
		codes[o.code()]++
		lastStart = max(lastStart, o.start.Sub(killed))
	}
	step("%d joins by %d workers; %d failed %v (the last one sent %v after the kill); first join sent after the kill answered %v after it; slowest join %v",
		len(all), workers, len(failed), codes, lastStart.Round(time.Millisecond), firstOK.Round(time.Millisecond), slowest.Round(time.Millisecond))
}

// TestProcessFaultDrainUnderLoad: clients over TCP and WebSocket join the
// room, then send claims (a request the connector serves with JetStream
// round trips) and, now and then, chat messages (notifies forwarded to the
// room) back to back; the connector gets SIGTERM. It drains: each client's
// request in flight gets its answer, then a Kick. So every request ends in
// a success or, once the Kick arrived, in an error wrapping
// client.ErrKicked, and every connection ends kicked, never broken; the
// connector exits 0.
func TestProcessFaultDrainUnderLoad(t *testing.T) {
	skipShortFault(t)
	bin := nodeBinary(t)
	step := stepLogger(t)
	n := startProc(t, bin, "room-1", "serve", "-type", "room", "-id", "room-1", "-tcp", "", "-ws", "",
		"-nats-listen", "127.0.0.1:0", "-nats-store", t.TempDir())
	url := n.waitLine(t, natsURLRe, startTimeout)[1]
	c := serveConnector(t, bin, "conn", url)
	n.waitLine(t, readyRe, startTimeout)
	tcp, ws := connectorAddrs(t, c)
	step("room and connector ready")

	workers := scale(6, 32)
	clients := make([]*chatClient, workers)
	for i := range clients {
		addr := tcp
		if i%2 == 1 {
			addr = "ws://" + ws + "/"
		}
		clients[i] = dialChat(t, fmt.Sprintf("player-%d", i), addr)
		clients[i].join(t)
	}
	step("%d clients joined", workers)

	log := newLoadLog()
	var wg sync.WaitGroup
	for i, cl := range clients {
		wg.Go(func() {
			for k := 0; ; k++ {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				o := outcome{worker: i, start: time.Now()}
				var res rewards.ClaimRes
				o.err = cl.Request(ctx, "claims.claim", rewards.ClaimReq{Reward: "gold"}, &res)
				if o.err == nil && res.JID == "" {
					o.err = errors.New("claim answered no jid")
				}
				if o.err == nil && k%5 == 0 {
					o.err = cl.Notify(ctx, "room.room.message", &chat.UserMessage{Name: cl.name, Content: fmt.Sprint(k)})
				}
				o.end = time.Now()
				cancel()
				log.add(o)
				if o.err != nil {
					return
				}
			}
		})
	}
	warm := scale(500, 5000)
	log.waitFor(t, "claims before SIGTERM", 20*time.Second, func(all []outcome) bool {
		return countOK(all, func(outcome) bool { return true }) >= warm
	})
	step("%d claims done; SIGTERM the connector", warm)
	termed := time.Now()
	code, took := c.signalAndWait(t, syscall.SIGTERM, 15*time.Second)
	if code != 0 {
		t.Errorf("the connector exited %d after SIGTERM", code)
	}
	step("the connector exited %d %.2fs after SIGTERM", code, took.Seconds())
	wg.Wait()

	okAfter, kickedReqs := 0, 0
	for _, o := range log.outcomes() {
		switch {
		case o.err == nil:
			if o.end.After(termed) {
				okAfter++
			}
		case errors.Is(o.err, client.ErrKicked):
			kickedReqs++
		default:
			t.Errorf("player-%d: a request sent %v after SIGTERM failed: %v", o.worker, o.start.Sub(termed).Round(time.Millisecond), o.err)
		}
	}
	for _, cl := range clients {
		select {
		case <-cl.Done():
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: still connected after the connector exited", cl.name)
		}
		if !cl.Kicked() {
			t.Errorf("%s: the connection ended with %v, want a kick", cl.name, cl.Err())
		}
	}
	step("%d requests answered with success after SIGTERM; %d ended by the kick; every client kicked", okAfter, kickedReqs)
}

// jobLoad enqueues reliable jobs (rewards.rewards.grant, each its own jid)
// until stopped and keeps the jids whose enqueue was acknowledged.
type jobLoad struct {
	*loadLog // every enqueue's outcome

	mu      sync.Mutex
	acked   []string
	refused int
	stop    chan struct{}
	done    chan struct{}
}

// startJobLoad starts enqueuing with jids prefix-0, prefix-1...; each
// enqueue gets timeout.
func startJobLoad(jobs *reliable.Client, prefix string, timeout time.Duration) *jobLoad {
	l := &jobLoad{loadLog: newLoadLog(), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for i := 0; ; i++ {
			select {
			case <-l.stop:
				return
			default:
			}
			jid := fmt.Sprintf("%s-%d", prefix, i)
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			o := outcome{start: time.Now()}
			_, o.err = jobs.Enqueue(ctx, rewards.GrantRoute, &rewards.GrantArg{UID: jid, Reward: "gold"}, reliable.WithJID(jid))
			o.end = time.Now()
			cancel()
			l.mu.Lock()
			if o.err == nil {
				l.acked = append(l.acked, jid)
			} else {
				l.refused++
			}
			l.mu.Unlock()
			l.add(o)
		}
	}()
	return l
}

// end stops the load and returns the acknowledged jids and the number of
// enqueues that failed.
func (l *jobLoad) end() ([]string, int) {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.acked), l.refused
}

// waitJobsSucceeded waits until every job of jids has succeeded. It polls
// List: the states of a thousand jobs have no single event to await.
//
// A job List does not return is looked up with Get: one Get finds is a
// List bug (it missed jobs rewritten during its scan, once), one Get does
// not find either is lost.
func waitJobsSucceeded(t *testing.T, jobs *reliable.Client, jids []string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last map[reliable.State]int
	var lastErr error
	listMisses := 0
	for {
		lastErr = func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			states := map[string]reliable.State{}
			f := reliable.Filter{Limit: 1000}
			for {
				page, err := jobs.List(ctx, f)
				if err != nil {
					return err
				}
				for _, j := range page.Jobs {
					states[j.JID] = j.State
				}
				if f.Cursor = page.Next; f.Cursor == "" {
					break
				}
			}
			counts := map[reliable.State]int{}
			var bad []string
			for _, jid := range jids {
				s, ok := states[jid]
				if !ok {
					j, err := jobs.Get(ctx, jid)
					switch {
					case errors.Is(err, reliable.ErrNotFound):
						s = "lost"
					case err != nil:
						return err
					default:
						s = j.State
						listMisses++
					}
				}
				counts[s]++
				if s == reliable.Dead || s == reliable.Failed || s == reliable.Cancelled || s == "lost" {
					bad = append(bad, jid+" "+string(s))
				}
			}
			last = counts
			if len(bad) > 0 {
				slices.Sort(bad)
				t.Fatalf("acknowledged jobs lost or failed (%v): %v", counts, bad[:min(len(bad), 20)])
			}
			return nil
		}()
		if lastErr == nil && last[reliable.Succeeded] == len(jids) {
			if listMisses > 0 {
				t.Errorf("List missed %d jobs that Get found", listMisses)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("acknowledged jobs not all succeeded within %v: %v (last error: %v)", timeout, last, lastErr)
		}
		time.Sleep(200 * time.Millisecond) // polling, see above
	}
}

// chatUntil makes from say numbered lines until to gets one, within
// timeout: after a fault the way back (the frontends' bus connections,
// discovery, the room's group) has no one event to await, so it polls.
func chatUntil(t *testing.T, from, to *chatClient, what string, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for k := 0; ; k++ {
		line := fmt.Sprintf("%s #%d", what, k)
		from.say(t, line)
		wait := time.After(time.Second)
	read:
		for {
			select {
			case p := <-to.Pushes():
				if p.Route == "onMessage" && strings.Contains(string(p.Data), what+" #") {
					return time.Since(start)
				}
			case <-to.Done():
				t.Fatalf("%s: connection ended (%v) waiting for %q", to.name, to.Err(), what)
			case <-wait:
				break read
			}
		}
		if time.Since(start) > timeout {
			t.Fatalf("%s: no %q from %s within %v", to.name, what, from.name, timeout)
		}
	}
}

// connectJobs connects a reliable-jobs client to the bus at url.
func connectJobs(t *testing.T, url string, replicas int) (*stream.Bus, *reliable.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bus, err := stream.Connect(ctx, stream.Config{URL: url, ServerID: "fault-test", Replicas: replicas,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bus.Close)
	jobs, err := reliable.NewClient(ctx, bus)
	if err != nil {
		t.Fatal(err)
	}
	return bus, jobs
}

// TestProcessFaultNATSRestart: the process owning the NATS server (with a
// JetStream store on disk, on a fixed port) is killed with SIGKILL while
// jobs are being enqueued, kept down until enqueues fail, and restarted on
// the same port and store (three times under NOPAL_LONG_FAULTS=1). The
// room, both connectors and the rewards worker reconnect by themselves;
// the chat works again across frontends and the room's members are still
// there; every job whose enqueue was acknowledged (queued with a delay
// before the kill, or enqueued around it) is there and succeeds.
func TestProcessFaultNATSRestart(t *testing.T) {
	skipShortFault(t)
	bin := nodeBinary(t)
	step := stepLogger(t)
	listen := fmt.Sprintf("127.0.0.1:%d", freePorts(t, 1)[0]) // a restart comes back on the same address
	owner := []string{"serve", "-type", "connector", "-id", "nats-owner", "-tcp", "", "-ws", "",
		"-nats-listen", listen, "-nats-store", t.TempDir()}
	n := startProc(t, bin, "N", owner...)
	url := n.waitLine(t, natsURLRe, startTimeout)[1]
	r := startProc(t, bin, "room-1", "serve", "-type", "room", "-id", "room-1", "-tcp", "", "-ws", "", "-nats", url)
	w := startProc(t, bin, "rewards-1", "serve", "-type", "rewards", "-id", "rewards-1", "-tcp", "", "-ws", "",
		"-nats", url, "-job-ack-wait", "1s", "-job-concurrency", "8")
	c1 := serveConnector(t, bin, "conn-1", url)
	c2 := serveConnector(t, bin, "conn-2", url)
	for _, p := range []*proc{n, r, w} {
		p.waitLine(t, readyRe, startTimeout)
	}
	c1tcp, _ := connectorAddrs(t, c1)
	_, c2ws := connectorAddrs(t, c2)
	step("N (NATS at %s), room, worker, two connectors ready", url)

	alice := dialChat(t, "alice", c1tcp) // uid conn-1-1
	bob := dialChat(t, "bob", "ws://"+c2ws+"/")
	alice.join(t)
	bob.join(t) // uid conn-2-1
	alice.waitPush(t, "onNewUser", "New user: conn-2-1")
	chatUntil(t, bob, alice, "before", 10*time.Second)
	step("chat across conn-1 and conn-2 works")

	_, jobs := connectJobs(t, url, 1)
	// Delayed jobs are still queued when the server goes: their messages
	// wait in the stream across the restart.
	delayed := scale(200, 800)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var acked []string
	for i := range delayed {
		jid := fmt.Sprintf("delayed-%d", i)
		if _, err := jobs.Enqueue(ctx, rewards.GrantRoute, &rewards.GrantArg{UID: jid, Reward: "gold"},
			reliable.WithJID(jid), reliable.WithDelay(3*time.Second)); err != nil {
			t.Fatalf("enqueue %s: %v", jid, err)
		}
		acked = append(acked, jid)
	}
	step("%d delayed jobs enqueued", delayed)
	load := startJobLoad(jobs, "live", time.Second)
	defer load.end()
	live := scale(50, 300)
	load.waitFor(t, "live enqueues before the kill", 20*time.Second, func(all []outcome) bool {
		return countOK(all, func(outcome) bool { return true }) >= live
	})

	for cycle := 1; cycle <= scale(1, 3); cycle++ {
		killed := time.Now()
		if code, _ := n.signalAndWait(t, syscall.SIGKILL, 10*time.Second); code == 0 {
			t.Fatal("N exited cleanly after SIGKILL")
		}
		// NATS stays down until the load has felt it.
		load.waitFor(t, "enqueues refused while NATS is down", 20*time.Second, func(all []outcome) bool {
			n := 0
			for _, o := range all {
				if o.err != nil && o.start.After(killed) {
					n++
				}
			}
			return n >= 2
		})
		step("cycle %d: N killed, enqueues refused", cycle)
		n = startProc(t, bin, fmt.Sprintf("N-%d", cycle), owner...)
		if got := n.waitLine(t, natsURLRe, startTimeout)[1]; got != url {
			t.Fatalf("the restarted NATS listens at %s, not %s", got, url)
		}
		n.waitLine(t, readyRe, startTimeout)
		for _, p := range []*proc{r, w, c1, c2} {
			p.waitLines(t, busReconnectedRe, cycle, 20*time.Second)
		}
		step("cycle %d: N restarted %.2fs after the kill; room, worker and connectors reconnected", cycle, time.Since(killed).Seconds())
		restarted := time.Now()
		took := chatUntil(t, bob, alice, fmt.Sprintf("after restart %d", cycle), 15*time.Second)
		chatUntil(t, alice, bob, fmt.Sprintf("back to bob %d", cycle), 15*time.Second)
		step("cycle %d: chat across frontends works again, %v after the reconnections", cycle, took.Round(time.Millisecond))
		load.waitFor(t, "live enqueues after the restart", 20*time.Second, func(all []outcome) bool {
			return countOK(all, func(o outcome) bool { return o.start.After(restarted) }) >= live
		})
	}
	carol := dialChat(t, "carol", c1tcp)
	carol.join(t)
	carol.waitPush(t, "onMembers", "conn-2-1") // the room's members survived
	step("carol joined and sees the members from before the kill")

	ok, refused := load.end()
	acked = append(acked, ok...)
	step("%d live enqueues acknowledged, %d refused while NATS was down", len(ok), refused)
	waitJobsSucceeded(t, jobs, acked, 30*time.Second)
	step("all %d acknowledged jobs succeeded", len(acked))
}

var busReconnectedRe = regexp.MustCompile(`msg="bus reconnected"`)

const (
	procStarting = iota
	procReady
	procExited // before logging ready
)

// state says whether the process has logged ready, or exited without.
func (p *proc) state() int {
	exited := false
	select {
	case <-p.done: // its lines are all in (Wait came after the copy)
		exited = true
	default:
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.lines {
		if readyRe.MatchString(l) {
			return procReady
		}
	}
	if exited {
		return procExited
	}
	return procStarting
}

// waitLines waits until n lines of stderr match re.
func (p *proc) waitLines(t *testing.T, re *regexp.Regexp, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for seen, i := 0, 0; ; {
		p.mu.Lock()
		lines, changed := p.lines, p.changed
		p.mu.Unlock()
		for ; i < len(lines); i++ {
			if re.MatchString(lines[i]) {
				if seen++; seen == n {
					return
				}
			}
		}
		select {
		case <-changed:
		case <-p.done:
			t.Fatalf("%s exited (%v) before logging %q %d times", p.name, p.err, re, n)
		case <-deadline:
			t.Fatalf("%s did not log %q %d times within %v (%d so far)", p.name, re, n, timeout, seen)
		}
	}
}

// TestProcessFaultNATSClusterNodeKill: three connectors, nats-1 to nats-3,
// each on its own embedded NATS server, the three servers routed into one
// cluster, and a room server and a rewards worker connected to the
// cluster; everything with -replicas 3. Jobs are enqueued while the
// process whose server leads the JOBS stream is killed with SIGKILL:
// the room and the worker fail over to the survivors by themselves, the
// chat works through the two surviving connectors, and every acknowledged
// job succeeds.
func TestProcessFaultNATSClusterNodeKill(t *testing.T) {
	skipShortFault(t)
	bin := nodeBinary(t)
	step := stepLogger(t)
	routes := freePorts(t, 3) // routes are dialled by address: fixed, picked now
	args := make([][]string, 3)
	procs := make([]*proc, 3)
	for i := range procs {
		var others []string
		for j, p := range routes {
			if j != i {
				others = append(others, fmt.Sprintf("nats://127.0.0.1:%d", p))
			}
		}
		// -id names the NATS server too: a node started again is the same
		// JetStream peer.
		args[i] = []string{"serve", "-type", "connector", "-id", fmt.Sprintf("nats-%d", i+1),
			"-tcp", "127.0.0.1:0", "-ws", "127.0.0.1:0",
			"-nats-listen", "127.0.0.1:0", "-nats-store", t.TempDir(),
			"-nats-cluster-listen", fmt.Sprintf("127.0.0.1:%d", routes[i]), "-nats-routes", strings.Join(others, ","),
			"-replicas", "3"}
		procs[i] = startProc(t, bin, fmt.Sprintf("nats-%d", i+1), args[i]...)
	}
	// The three nodes provision the same buckets at the same moment, while
	// JetStream elects its leaders: none may fail at start (they did, with
	// "context deadline exceeded", before stream.Bus provisioned with
	// create-only calls and retries).
	for deadline := time.Now().Add(3 * startTimeout); ; {
		ready := 0
		for i, p := range procs {
			switch p.state() {
			case procReady:
				ready++
			case procExited:
				t.Fatalf("nats-%d exited at start (%v):\n%s", i+1, p.err, p.stderr())
			}
		}
		if ready == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the three nodes were not ready within %v", 3*startTimeout)
		}
		// Three processes' logs and exits: polled rather than selected.
		time.Sleep(50 * time.Millisecond)
	}
	urls := make([]string, 3)
	addrs := make([]string, 3)
	for i, p := range procs {
		urls[i] = p.waitLine(t, natsURLRe, startTimeout)[1]
		addrs[i], _ = connectorAddrs(t, p)
	}
	all := strings.Join(urls, ",")
	room := startProc(t, bin, "room-1", "serve", "-type", "room", "-id", "room-1", "-tcp", "", "-ws", "",
		"-nats", all, "-replicas", "3")
	worker := startProc(t, bin, "rewards-1", "serve", "-type", "rewards", "-id", "rewards-1", "-tcp", "", "-ws", "",
		"-nats", all, "-replicas", "3", "-job-ack-wait", "1s", "-job-concurrency", "8")
	room.waitLine(t, readyRe, startTimeout)
	worker.waitLine(t, readyRe, startTimeout)
	step("three connectors with NATS at %v, a room and a worker ready", urls)

	bus, jobs := connectJobs(t, all, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The node whose NATS server leads the JOBS stream (server names are
	// the node ids).
	st, err := bus.JetStream().Stream(ctx, bus.Name(reliable.Stream))
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil || info.Cluster == nil {
		t.Fatalf("the JOBS stream's cluster info: %+v, %v", info, err)
	}
	victim := -1
	for i := range procs {
		if info.Cluster.Leader == fmt.Sprintf("nats-%d", i+1) {
			victim = i
		}
	}
	if victim < 0 {
		t.Fatalf("the JOBS stream's leader %q is none of the three servers", info.Cluster.Leader)
	}
	a, b := (victim+1)%3, (victim+2)%3
	step("nats-%d leads the JOBS stream", victim+1)

	alice := dialChat(t, "alice", addrs[a])
	bob := dialChat(t, "bob", addrs[b])
	alice.join(t)
	bob.join(t)
	chatUntil(t, bob, alice, "before", 10*time.Second)
	step("alice on nats-%d and bob on nats-%d chat", a+1, b+1)

	load := startJobLoad(jobs, "job", 2*time.Second)
	defer load.end()
	load.waitFor(t, "enqueues before the kill", 20*time.Second, func(all []outcome) bool {
		return countOK(all, func(outcome) bool { return true }) >= scale(100, 500)
	})
	killed := time.Now()
	if code, _ := procs[victim].signalAndWait(t, syscall.SIGKILL, 10*time.Second); code == 0 {
		t.Fatal("the killed node exited cleanly")
	}
	step("nats-%d killed", victim+1)
	took := chatUntil(t, bob, alice, "after the kill", 15*time.Second)
	chatUntil(t, alice, bob, "back to bob", 15*time.Second)
	step("chat works through the survivors (%v after the kill)", took.Round(time.Millisecond))
	load.waitFor(t, "enqueues after the kill", 20*time.Second, func(all []outcome) bool {
		return countOK(all, func(o outcome) bool { return o.start.After(killed) }) >= scale(100, 500)
	})
	acked, refused := load.end()
	step("%d enqueues acknowledged, %d refused", len(acked), refused)
	waitJobsSucceeded(t, jobs, acked, 30*time.Second)
	step("all %d acknowledged jobs succeeded", len(acked))
}
