package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nopal-dev/nopal/codec"
)

// PushResult is scenario 7 on one deployment: a request on frontend A
// whose backend handler pushes to a uid bound on frontend B, timed from
// just before the request is written to the push read on B; next to it, the
// floor's 1-connection echo round trip, measured in the same blocks.
type PushResult struct {
	Deploy    string       `json:"deployment"`
	Processes []string     `json:"processes"`
	Describe  string       `json:"describe"`
	Push      LatencyStats `json:"push"`
	Floor     LatencyStats `json:"floor"`
	// CPU time (utime+stime, µs) and thread context switches per sample,
	// of every cluster process over the push blocks and of the floor
	// server over the floor blocks.
	ServerCPUUsPerPush       float64 `json:"server_cpu_us_per_push"`
	ServerCtxSwitchesPerPush float64 `json:"server_ctx_switches_per_push"`
	FloorCPUUsPerReq         float64 `json:"floor_cpu_us_per_req"`
	FloorCtxSwitchesPerReq   float64 `json:"floor_ctx_switches_per_req"`
}

// pushUID is the uid the pushes of scenario 7 go to.
const pushUID = "pushee"

// pushLatency runs scenario 7 on a deployment of kind: two frontends, a
// client bound on B, a client on A sending pushRoute requests one at a
// time, up to -push-samples of them within -duration, interleaved in
// -rounds blocks with as many floor round trips.
func (s suiteServers) pushLatency(kind string, payload []byte) (res PushResult, err error) {
	floor, err := s.start(false, "")
	if err != nil {
		return res, err
	}
	defer func() {
		if floor.alive() {
			floor.kill()
		}
	}()
	d, err := s.startDeployment(kind, 2, true, profilePath(s.o.ClusterCPUProfile, "7-"+kind))
	if err != nil {
		return res, err
	}
	defer d.kill()
	res.Deploy, res.Processes, res.Describe = kind, d.processes(), d.describe()

	floorEx, err := newExchange(payload, false)
	if err != nil {
		return res, err
	}
	fc, err := dialRaw(floor.addr, nil, 5*time.Second)
	if err != nil {
		return res, err
	}
	defer fc.Close()
	if err := fc.ping(5 * time.Second); err != nil {
		return res, err
	}
	b, err := dialNopal(d.fronts[1], nil)
	if err != nil {
		return res, fmt.Errorf("frontend B: %w", err)
	}
	defer b.Close()
	a, err := dialNopal(d.fronts[0], nil)
	if err != nil {
		return res, fmt.Errorf("frontend A: %w", err)
	}
	defer a.Close()
	end := time.Now().Add(2*s.o.Duration + 60*time.Second)
	for _, c := range []*rawConn{fc, a, b} {
		_ = c.c.SetDeadline(end)
	}

	// Bind B, waiting for the backend to be discovered.
	bind, err := buildRequest(bindRoute, 1, []byte(pushUID))
	if err != nil {
		return res, err
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := b.call(bind, 1)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("binding %q on frontend B: %w", pushUID, err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	data := make([]byte, seqLen+len(pushUID))
	copy(data[seqLen:], pushUID)
	req, err := buildRequest(pushRoute, 1, data)
	if err != nil {
		return res, err
	}
	seqAt := len(req) - len(data)
	seq := uint64(0)
	// sample sends one push request with the next sequence number and
	// returns the time until B read the push, then reads A's response.
	sample := func() (time.Duration, error) {
		seq++
		binary.BigEndian.PutUint64(req[seqAt:], seq)
		t0 := time.Now()
		if _, err := a.c.Write(req); err != nil {
			return 0, err
		}
		route, got, err := b.readPush()
		lat := time.Since(t0)
		if err != nil {
			return 0, fmt.Errorf("push on B: %w", err)
		}
		if string(route) != pushOnRoute || len(got) != len(data) || binary.BigEndian.Uint64(got) != seq {
			return 0, fmt.Errorf("push on B: route %q data % x, want %q sequence %d", route, got, pushOnRoute, seq)
		}
		failed, err := a.readResponse(1)
		if err != nil {
			return 0, fmt.Errorf("response on A: %w", err)
		}
		if len(failed) != 0 {
			return 0, fmt.Errorf("push to %q reported undelivered after it arrived: %q", pushUID, failed)
		}
		return lat, nil
	}
	// Warm up: until the backend sees frontend B (the push is delivered),
	// then for -warmup.
	warmEnd := time.Time{}
	for n := 0; n < 1_000_000; n++ {
		seq++
		binary.BigEndian.PutUint64(req[seqAt:], seq)
		failed, err := a.call(req, 1)
		if err != nil {
			return res, fmt.Errorf("warm-up push: %w", err)
		}
		if len(failed) != 0 { // B is not in the backend's discovery yet
			if time.Now().After(deadline) {
				return res, fmt.Errorf("warm-up push: %q not reachable from the backend: %q", pushUID, failed)
			}
			time.Sleep(20 * time.Millisecond)
			continue
		}
		if _, _, err := b.readPush(); err != nil {
			return res, fmt.Errorf("warm-up push on B: %w", err)
		}
		if warmEnd.IsZero() {
			warmEnd = time.Now().Add(s.o.Warmup)
		}
		if time.Now().After(warmEnd) {
			break
		}
	}
	for range 100 {
		if err := fc.roundTrip(floorEx); err != nil {
			return res, fmt.Errorf("floor warm-up: %w", err)
		}
	}

	rounds := max(1, s.o.Rounds)
	perBlock := max(1, s.o.PushSamples/rounds)
	blockTime := s.o.Duration / time.Duration(rounds)
	pushLat := make([]int64, 0, perBlock*rounds)
	floorLat := make([]int64, 0, perBlock*rounds)
	// CPU ticks and context switches: [0] floor, [1] cluster.
	var ticks, ctxsws [2]int64
	pids := [2][]int{{floor.pid()}, d.pids()}
	for r := range rounds {
		for k := range 2 {
			isPush := (k == 1) != (r%2 == 1) // floor, push, push, floor, …
			side := 0
			if isPush {
				side = 1
			}
			u0, s0, err0 := cpuTimesAll(pids[side])
			c0, err1 := ctxSwitchesAll(pids[side])
			stop := time.Now().Add(blockTime)
			for n := 0; n < perBlock && time.Now().Before(stop); n++ {
				if isPush {
					lat, err := sample()
					if err != nil {
						return res, err
					}
					pushLat = append(pushLat, int64(lat))
					continue
				}
				t0 := time.Now()
				if err := fc.roundTrip(floorEx); err != nil {
					return res, fmt.Errorf("floor: %w", err)
				}
				floorLat = append(floorLat, int64(time.Since(t0)))
			}
			u1, s1, err2 := cpuTimesAll(pids[side])
			c1, err3 := ctxSwitchesAll(pids[side])
			if err := errors.Join(err0, err1, err2, err3); err != nil {
				return res, fmt.Errorf("server CPU time: %w", err)
			}
			ticks[side] += u1 + s1 - u0 - s0
			ctxsws[side] += c1 - c0
		}
	}
	if len(pushLat) == 0 || len(floorLat) == 0 {
		return res, errors.New("no sample measured")
	}
	res.Push, res.Floor = latencyStats(pushLat), latencyStats(floorLat)
	res.ServerCPUUsPerPush = float64(ticks[1]) * 1e6 / clkTck / float64(len(pushLat))
	res.ServerCtxSwitchesPerPush = float64(ctxsws[1]) / float64(len(pushLat))
	res.FloorCPUUsPerReq = float64(ticks[0]) * 1e6 / clkTck / float64(len(floorLat))
	res.FloorCtxSwitchesPerReq = float64(ctxsws[0]) / float64(len(floorLat))
	fmt.Fprintf(s.log, "  %-20s %6d pushes, p50 %7.1f µs, p99 %7.1f µs, server CPU %5.1f µs/push, %.2f ctx switches/push; floor %d round trips, p50 %7.1f µs, p99 %7.1f µs, server CPU %5.1f µs/req, %.2f ctx switches/req\n",
		"cluster "+kind, res.Push.Samples, res.Push.P50Us, res.Push.P99Us, res.ServerCPUUsPerPush, res.ServerCtxSwitchesPerPush,
		res.Floor.Samples, res.Floor.P50Us, res.Floor.P99Us, res.FloorCPUUsPerReq, res.FloorCtxSwitchesPerReq)
	_ = a.Close()
	_ = b.Close()
	return res, errors.Join(d.stop(), floor.stop())
}

// BroadcastResult is scenario 8 on one deployment: Members clients spread
// over two frontends, all in the cluster group, and Broadcasts broadcasts,
// each timed from just before the trigger request is written to the moment
// the last member read it. The floor is a fan-out of the same packet to as
// many connections of the echo server, written one after the other by the
// load generator and timed to the last echo read, in the same alternation.
type BroadcastResult struct {
	Deploy      string   `json:"deployment"`
	Processes   []string `json:"processes"`
	Describe    string   `json:"describe"`
	Members     int      `json:"members"`
	Frontends   int      `json:"frontends"`
	JoinSeconds float64  `json:"join_seconds"` // binding and adding every member
	Broadcasts  int      `json:"broadcasts"`   // measured
	// Expected is Broadcasts × Members; Delivered counts the pushes the
	// members read.
	Expected       int          `json:"expected"`
	Delivered      int          `json:"delivered"`
	FloorDelivered int          `json:"floor_delivered"`
	Nopal          LatencyStats `json:"nopal"`
	Floor          LatencyStats `json:"floor"`
}

// broadcastTimeout bounds the wait for one broadcast to reach every member.
const broadcastTimeout = 5 * time.Second

// fanIn collects, per sequence number, when each of m receivers read it.
type fanIn struct {
	m        int
	base     time.Time
	arrivals []int64        // [seq*m + i]: ns since base; 0: not yet
	counts   []atomic.Int64 // per seq
	done     []chan struct{}
	warm     atomic.Int64 // sequence 0 (warm-up) reads
	bad      atomic.Int64 // duplicates and unknown sequences
	badMsg   atomic.Value // the first one, a string
}

func newFanIn(m, n int, base time.Time) *fanIn {
	f := &fanIn{m: m, base: base, arrivals: make([]int64, (n+1)*m), counts: make([]atomic.Int64, n+1), done: make([]chan struct{}, n+1)}
	for i := range f.done {
		f.done[i] = make(chan struct{})
	}
	return f
}

// got records that receiver i read sequence seq now.
func (f *fanIn) got(seq uint64, i int) {
	now := int64(time.Since(f.base))
	switch {
	case seq == 0:
		f.warm.Add(1)
		return
	case seq >= uint64(len(f.counts)):
		f.badMsg.CompareAndSwap(nil, fmt.Sprintf("receiver %d read unknown sequence %d", i, seq))
		f.bad.Add(1)
		return
	case f.arrivals[int(seq)*f.m+i] != 0:
		f.badMsg.CompareAndSwap(nil, fmt.Sprintf("receiver %d read sequence %d twice", i, seq))
		f.bad.Add(1)
		return
	}
	f.arrivals[int(seq)*f.m+i] = now
	if f.counts[seq].Add(1) == int64(f.m) {
		close(f.done[seq])
	}
}

// wait waits until every receiver read seq (or timeout) and returns the
// time from t0 (ns since base) to the last read.
func (f *fanIn) wait(seq int, t0 int64, timeout time.Duration) (int64, error) {
	select {
	case <-f.done[seq]:
	case <-time.After(timeout):
		return 0, fmt.Errorf("%d of %d receivers read it within %v", f.counts[seq].Load(), f.m, timeout)
	}
	last := int64(0)
	for _, t := range f.arrivals[seq*f.m : (seq+1)*f.m] {
		last = max(last, t)
	}
	return last - t0, nil
}

// delivered counts the reads of sequences 1..n.
func (f *fanIn) delivered() int {
	n := 0
	for i := 1; i < len(f.counts); i++ {
		n += int(f.counts[i].Load())
	}
	return n
}

// broadcastRun runs scenario 8 on a deployment of kind.
func (s suiteServers) broadcastRun(kind string) (res BroadcastResult, err error) {
	const fronts = 2
	m, n := s.o.Members, s.o.Broadcasts
	res = BroadcastResult{Deploy: kind, Members: m, Frontends: fronts}
	floor, err := s.start(false, "")
	if err != nil {
		return res, err
	}
	defer func() {
		if floor.alive() {
			floor.kill()
		}
	}()
	d, err := s.startDeployment(kind, fronts, true, profilePath(s.o.ClusterCPUProfile, "8-"+kind))
	if err != nil {
		return res, err
	}
	defer d.kill()
	res.Processes, res.Describe = d.processes(), d.describe()

	members := make([]*rawConn, m)
	floors := make([]*rawConn, m)
	var closing atomic.Bool
	var readers sync.WaitGroup
	defer func() {
		closing.Store(true)
		for _, cs := range [][]*rawConn{members, floors} {
			for _, c := range cs {
				if c != nil {
					_ = c.Close()
				}
			}
		}
		readers.Wait()
	}()
	end := time.Now().Add(2*s.o.Duration + time.Duration(n)*broadcastTimeout + 2*time.Minute)

	// Members: dial, handshake and join (bind and group add), 32 at a time.
	start := time.Now()
	var next atomic.Int64
	errs := make([]error, idleDialers)
	var wg sync.WaitGroup
	for w := range idleDialers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= m {
					return
				}
				src := idleSources[i%len(idleSources)]
				c, err := dialNopal(d.fronts[i%fronts], src)
				if err != nil {
					errs[w] = fmt.Errorf("member %d: %w", i, err)
					return
				}
				members[i] = c
				_ = c.c.SetDeadline(end)
				join, err := buildRequest(joinRoute, 1, []byte("m"+strconv.Itoa(i)))
				if err == nil {
					_, err = c.call(join, 1)
				}
				if err != nil {
					errs[w] = fmt.Errorf("member %d joining: %w", i, err)
					return
				}
				f, err := dialRaw(floor.addr, src, 5*time.Second)
				if err == nil {
					floors[i] = f
					err = f.ping(10 * time.Second)
					_ = f.c.SetDeadline(end)
				}
				if err != nil {
					errs[w] = fmt.Errorf("floor connection %d: %w", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	res.JoinSeconds = time.Since(start).Seconds()
	if err := errors.Join(errs...); err != nil {
		return res, err
	}
	trigger, err := dialNopal(d.fronts[0], nil)
	if err != nil {
		return res, fmt.Errorf("trigger: %w", err)
	}
	defer trigger.Close()
	_ = trigger.c.SetDeadline(end)

	// Receivers: one goroutine per connection.
	base := time.Now()
	nopalIn, floorIn := newFanIn(m, n, base), newFanIn(m, n, base)
	var readMu sync.Mutex
	var readErr error // the first reader's failure
	fail := func(err error) {
		readMu.Lock()
		defer readMu.Unlock()
		if readErr == nil && !closing.Load() {
			readErr = err
		}
	}
	floorPkt := mustPacket(codec.Data, append([]byte{flagPush, byte(len(broadcastOnRoute))}, broadcastOnRoute+"\x00\x00\x00\x00\x00\x00\x00\x00"...))
	for i := range m {
		readers.Add(2)
		go func() {
			defer readers.Done()
			for {
				route, data, err := members[i].readPush()
				if err != nil {
					fail(fmt.Errorf("member %d: %w", i, err))
					return
				}
				if string(route) != broadcastOnRoute || len(data) != seqLen {
					fail(fmt.Errorf("member %d: push %q of %d bytes", i, route, len(data)))
					return
				}
				nopalIn.got(binary.BigEndian.Uint64(data), i)
			}
		}()
		go func() {
			defer readers.Done()
			buf := make([]byte, len(floorPkt))
			for {
				if _, err := io.ReadFull(floors[i].c, buf); err != nil {
					fail(fmt.Errorf("floor connection %d: %w", i, err))
					return
				}
				floorIn.got(binary.BigEndian.Uint64(buf[len(buf)-seqLen:]), i)
			}
		}()
	}

	seqBuf := make([]byte, seqLen)
	req, err := buildRequest(broadcastRoute, 1, seqBuf)
	if err != nil {
		return res, err
	}
	seqAt := len(req) - seqLen
	// broadcast writes the trigger of sequence seq and returns when (since
	// base); response reads its response.
	broadcast := func(seq uint64) (time.Duration, error) {
		binary.BigEndian.PutUint64(req[seqAt:], seq)
		t0 := time.Since(base)
		_, err := trigger.c.Write(req)
		return t0, err
	}
	response := func() error {
		failed, err := trigger.readResponse(1)
		if err != nil {
			return fmt.Errorf("trigger: %w", err)
		}
		if string(failed) != "0" {
			return fmt.Errorf("the backend reported %s members unreachable", failed)
		}
		return nil
	}
	fanOut := func(seq uint64) (time.Duration, error) {
		binary.BigEndian.PutUint64(floorPkt[len(floorPkt)-seqLen:], seq)
		t0 := time.Since(base)
		for i, c := range floors {
			if _, err := c.c.Write(floorPkt); err != nil {
				return 0, fmt.Errorf("floor connection %d: %w", i, err)
			}
		}
		return t0, nil
	}

	// Warm up with sequence 0 until one broadcast reaches every member
	// (the backend has discovered both frontends), then for -warmup.
	deadline := time.Now().Add(15 * time.Second)
	var warmEnd time.Time
	for {
		if _, err := broadcast(0); err != nil {
			return res, err
		}
		err := response()
		if err == nil && warmEnd.IsZero() {
			warmEnd = time.Now().Add(s.o.Warmup)
		}
		if err != nil && time.Now().After(deadline) {
			return res, fmt.Errorf("warm-up broadcast: %w", err)
		}
		if _, err := fanOut(0); err != nil {
			return res, err
		}
		if !warmEnd.IsZero() && time.Now().After(warmEnd) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}

	nopalLat := make([]int64, 0, n)
	floorLat := make([]int64, 0, n)
	stop := time.Now().Add(2 * s.o.Duration)
	var loopErr error
measure:
	for seq := 1; seq <= n && time.Now().Before(stop); seq++ {
		for k := range 2 {
			if (k == 1) != (seq%2 == 0) { // floor, Nopal, Nopal, floor, …
				t0, err := fanOut(uint64(seq))
				if err == nil {
					var lat int64
					if lat, err = floorIn.wait(seq, int64(t0), broadcastTimeout); err == nil {
						floorLat = append(floorLat, lat)
						continue
					}
				}
				loopErr = fmt.Errorf("floor fan-out %d: %w", seq, err)
				break measure
			}
			res.Broadcasts = seq
			t0, err := broadcast(uint64(seq))
			if err != nil {
				loopErr = err
				break measure
			}
			lat, werr := nopalIn.wait(seq, int64(t0), broadcastTimeout)
			rerr := response()
			if werr != nil || rerr != nil {
				loopErr = fmt.Errorf("broadcast %d: %w", seq, errors.Join(werr, rerr))
				break measure
			}
			nopalLat = append(nopalLat, lat)
		}
	}
	// Give stragglers of a broken server a moment to show up as
	// duplicates, then count what the members read.
	time.Sleep(20 * time.Millisecond)
	res.Expected = res.Broadcasts * m
	res.Delivered, res.FloorDelivered = nopalIn.delivered(), floorIn.delivered()
	res.Nopal, res.Floor = latencyStats(nopalLat), latencyStats(floorLat)
	fmt.Fprintf(s.log, "  %-20s %d members joined in %.2f s; %d broadcasts, %d of %d pushes read, p50 %.2f ms, p99 %.2f ms; floor fan-out p50 %.2f ms, p99 %.2f ms\n",
		"cluster "+kind, m, res.JoinSeconds, res.Broadcasts, res.Delivered, res.Expected,
		res.Nopal.P50Us/1e3, res.Nopal.P99Us/1e3, res.Floor.P50Us/1e3, res.Floor.P99Us/1e3)
	readMu.Lock()
	bad := []error{loopErr, readErr}
	readMu.Unlock()
	for name, f := range map[string]*fanIn{"member": nopalIn, "floor": floorIn} {
		if f.bad.Load() > 0 {
			bad = append(bad, fmt.Errorf("%d bad %s reads, first: %v", f.bad.Load(), name, f.badMsg.Load()))
		}
	}
	if res.Delivered != res.Expected {
		bad = append(bad, fmt.Errorf("%d of %d broadcast pushes read", res.Delivered, res.Expected))
	}
	if err := errors.Join(bad...); err != nil {
		return res, err
	}
	closing.Store(true)
	_ = trigger.Close()
	for i := range members {
		_ = members[i].Close()
		_ = floors[i].Close()
	}
	readers.Wait()
	return res, errors.Join(d.stop(), floor.stop())
}
