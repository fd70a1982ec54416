package main

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// IdleResult is the server's memory with n idle connections open.
type IdleResult struct {
	Conns       int     `json:"conns"`
	OpenSeconds float64 `json:"open_seconds"` // dialing and handshaking them all
	RSSBeforeKB int64   `json:"rss_before_kb"`
	RSSAfterKB  int64   `json:"rss_after_kb"` // the last sample
	// RSSSamplesKB are the samples taken after settling, 200 ms apart.
	RSSSamplesKB []int64 `json:"rss_samples_kb"`
	PerConnKB    float64 `json:"per_conn_kb"`
}

// idleSources are the source addresses connections are spread over, so
// that one source's ephemeral ports never limit the count.
var idleSources = func() []net.IP {
	var ips []net.IP
	for i := 2; i <= 9; i++ {
		ips = append(ips, net.IPv4(127, 0, 0, byte(i)))
	}
	return ips
}()

// idleSpec describes one idle run.
type idleSpec struct {
	addr   string
	nopal  bool // handshake (Nopal) or ping one byte (floor)
	conns  int
	settle time.Duration
	pid    int
}

// idleDialers is how many connections are opened at once.
const idleDialers = 32

// runIdle samples the server's RSS, opens s.conns connections (each one
// handshaken, or for the floor answered one byte), lets the server settle,
// samples RSS again, checks no connection dropped and closes them all.
func runIdle(s idleSpec) (IdleResult, error) {
	res := IdleResult{Conns: s.conns}
	before, err := sampleRSS(s.pid, 2)
	if err != nil {
		return res, err
	}
	res.RSSBeforeKB = before[len(before)-1]

	conns := make([]*rawConn, s.conns)
	defer func() {
		for _, c := range conns {
			if c != nil {
				_ = c.Close()
			}
		}
	}()
	start := time.Now()
	var next atomic.Int64
	errs := make([]error, idleDialers)
	var wg sync.WaitGroup
	for w := range idleDialers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= s.conns || errs[w] != nil {
					return
				}
				c, err := dialRaw(s.addr, idleSources[i%len(idleSources)], 5*time.Second)
				if err != nil {
					errs[w] = fmt.Errorf("dial %d: %w", i, err)
					return
				}
				conns[i] = c
				if s.nopal {
					err = c.handshake(10 * time.Second)
				} else {
					err = c.ping(10 * time.Second)
				}
				if err != nil {
					errs[w] = fmt.Errorf("connection %d: %w", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	res.OpenSeconds = time.Since(start).Seconds()
	if err := errors.Join(errs...); err != nil {
		return res, err
	}

	time.Sleep(s.settle)
	if res.RSSSamplesKB, err = sampleRSS(s.pid, 3); err != nil {
		return res, err
	}
	res.RSSAfterKB = res.RSSSamplesKB[len(res.RSSSamplesKB)-1]
	res.PerConnKB = float64(res.RSSAfterKB-res.RSSBeforeKB) / float64(s.conns)

	dropped := 0
	for _, c := range conns {
		if !c.alive() {
			dropped++
		}
	}
	if dropped > 0 {
		return res, fmt.Errorf("%d of %d idle connections were dropped by the server", dropped, s.conns)
	}
	return res, nil
}

// sampleRSS reads the RSS of pid n times, 200 ms apart.
func sampleRSS(pid, n int) ([]int64, error) {
	out := make([]int64, 0, n)
	for i := range n {
		if i > 0 {
			time.Sleep(200 * time.Millisecond)
		}
		kb, err := rssKB(pid)
		if err != nil {
			return out, err
		}
		out = append(out, kb)
	}
	return out, nil
}
