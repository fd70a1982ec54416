package main

import (
	"math"
	"math/bits"
	"sync/atomic"
)

// A histSet records latencies from many goroutines without locks or
// allocation: log-linear buckets (64 per power of two, so a value is
// known to within 1.6 %), in shards that goroutines pick by index so that
// the two cores seldom touch the same counters.
const (
	histSub     = 64
	histBuckets = histSub * 59 // every int64 ≥ 0
	histShards  = 32
)

type histShard struct {
	sum atomic.Int64
	max atomic.Int64
	b   [histBuckets]atomic.Uint64
	_   [64]byte // keeps the next shard's counters off this cache line
}

type histSet struct {
	shards [histShards]histShard
}

// histIndex is v's bucket.
func histIndex(v int64) int {
	u := uint64(max(v, 0))
	if u < histSub {
		return int(u)
	}
	e := bits.Len64(u) - 7 // u>>e is in [64, 128)
	return (e+1)*histSub + int(u>>e) - histSub
}

// histValue is the middle of bucket i.
func histValue(i int) int64 {
	if i < histSub {
		return int64(i)
	}
	e := i/histSub - 1
	m := int64(i%histSub + histSub)
	return m<<e + (int64(1)<<e)/2
}

// record adds one value (nanoseconds) to shard (any int; taken modulo the
// shard count).
func (h *histSet) record(shard int, ns int64) {
	ns = max(ns, 0)
	s := &h.shards[shard%histShards]
	s.b[histIndex(ns)].Add(1)
	s.sum.Add(ns)
	for {
		m := s.max.Load()
		if ns <= m || s.max.CompareAndSwap(m, ns) {
			break
		}
	}
}

// stats merges the shards: count, mean, nearest-rank quantiles (each the
// middle of its bucket) and the exact maximum.
func (h *histSet) stats() LatencyStats {
	var all [histBuckets]uint64
	var n uint64
	var sum, mx int64
	for i := range h.shards {
		s := &h.shards[i]
		for j := range all {
			c := s.b[j].Load()
			all[j] += c
			n += c
		}
		sum += s.sum.Load()
		mx = max(mx, s.max.Load())
	}
	if n == 0 {
		return LatencyStats{}
	}
	q := func(p float64) float64 {
		rank := uint64(math.Ceil(p * float64(n)))
		rank = max(rank, 1)
		var c uint64
		for j, k := range all {
			if c += k; c >= rank {
				return float64(min(histValue(j), mx)) / 1e3
			}
		}
		return float64(mx) / 1e3
	}
	return LatencyStats{
		Samples: int(n), MeanUs: float64(sum) / float64(n) / 1e3,
		P50Us: q(0.5), P90Us: q(0.9), P99Us: q(0.99), MaxUs: float64(mx) / 1e3,
	}
}
