// Package limiter drops excess requests from one client connection before its
// session is bound, so that a flooding client cannot make the server decode,
// route and answer every message it sends.
//
// # Semantics
//
// A [Limiter] allows at most limit requests per interval. It remembers the
// times of the last limit arrivals, and every arrival counts, whether it was
// accepted or dropped. A request is accepted when fewer than limit arrivals are
// remembered, or when the oldest remembered arrival is at least interval before
// the request; either way the request is then remembered, evicting the oldest
// arrival. Put differently: a request is accepted if and only if fewer than
// limit earlier requests (accepted or dropped) arrived in the interval that
// ends with it.
//
// With 1 request per second:
//
//	0.0 s accepted (nothing remembered)
//	0.2 s dropped  (0.0 s is only 0.2 s ago)
//	1.1 s dropped  (0.2 s is only 0.9 s ago: the dropped request counts)
//	2.2 s accepted (1.1 s is 1.1 s ago)
//
// Because dropped requests count, a client that keeps flooding stays throttled
// until it slows down: as long as it sends limit requests or more in every
// interval, nothing it sends gets through. This is deliberate. A limiter that
// only counted accepted requests would accept one request per interval from a
// flooding client for ever, and the client would have no reason to back off.
// A client that sends a burst of up to limit requests after a quiet interval
// has them all accepted.
//
// # Memory and cost
//
// The server keeps one Limiter per connection (tens of thousands of them), so a
// Limiter is a fixed ring of limit int64 nanosecond timestamps plus a few words,
// allocated once by [New]. [Limiter.Allow] and [Limiter.AllowAt] do constant
// work and never allocate.
//
// The timestamps are nanoseconds since a base time read from the clock when the
// Limiter is created. With the default clock ([time.Now]) the differences are
// taken on the monotonic clock, so a step of the wall clock (NTP, a manual
// change) neither lets a burst through nor throttles every client for the
// length of the step.
//
// Times are expected not to go backwards. If they do, the ring still compares
// each request with the arrival that came limit requests earlier (in call
// order); a request timed before that arrival is dropped.
//
// # Concurrency
//
// A Limiter is not safe for concurrent use. It belongs to one connection and
// is used by that connection's reader goroutine only, so it has no mutex;
// sharing one between goroutines needs external locking.
//
// The limiter does not count what it drops: [Limiter.Allow] reports the
// decision and the caller keeps whatever statistics it needs.
package limiter
