// Command bench is Nopal's load generator and benchmark suite. It prints
// one table in which every Nopal figure sits next to a floor measured in
// the same run, on the same machine, with the same load generator.
//
// # Running it
//
// From the module root:
//
//	go run ./bench suite                      # every scenario, 5 s windows (make bench)
//	go run ./bench suite -duration 2s -only 1,2
//	go run ./bench suite -json -out bench.json  # also the raw figures as JSON
//	go run ./bench suite -only 2 -cpuprofile /tmp/nopal.pprof
//	go tool pprof -top /tmp/nopal.pprof       # where the Nopal server spent scenario 2
//
// Suite flags: -duration (measured time of each server in a load
// scenario, default 5s), -rounds (5: the windows it is split into),
// -warmup (500ms), -conns (64), -idle (5000), -payload (64 bytes),
// -settle (1s), -start-runs (3), -compress and -heartbeat (passed to the
// Nopal server), -only (scenarios to run, e.g. 1,3), -cpuprofile (of the
// Nopal server during scenario 2), -json and -out (default bench.json).
// The suite exits non-zero if any request failed, any connection dropped or
// any server died; a missed target is only marked in the table.
//
// The servers can also be run alone, for a profiler or another client:
//
//	go run ./bench server -addr 127.0.0.1:0 [-compress] [-heartbeat 60s] [-cpuprofile f]
//	go run ./bench echo-server -addr 127.0.0.1:0
//
// Each prints exactly one line, "ADDR host:port", on stdout once it
// listens, logs nothing below warn, and serves until its stdin is closed
// (so it never outlives the suite that started it) or it gets SIGTERM or
// SIGINT. Mind the stdin rule when starting one by hand: with </dev/null
// it stops at once.
//
// `bench server` is a Nopal App of server type "bench" with one component,
// "echo", whose raw handler Echo(ctx, in []byte) ([]byte, error) returns its
// input (route echo.echo), behind one TCP acceptor. `bench echo-server` is
// the floor: a plain TCP echo server, one goroutine per connection reading
// into a 4 KiB buffer and writing back what it read.
//
// # How it measures
//
// The suite builds nothing for scenarios 1–3: it re-executes its own binary
// as the two servers, so each server's CPU time and memory are its own and
// are read from /proc/<pid>/stat and /proc/<pid>/status. Every scenario
// runs on the floor and on Nopal back to back, against fresh server
// processes. In the load scenarios (1 and 2) both servers run side by side
// and are measured in alternating windows, floor, Nopal, Nopal, floor, …
// (-rounds windows of -duration/-rounds each per server, the first after a
// -warmup, the others after 50 ms), so a burst of a neighbour's load or a
// clock change lands on both. The load generator speaks the protocol over
// raw sockets (no client library): the request packet is built once and
// written whole, and each answer is read as a 4-byte header then its body.
// The floor gets exactly the same loop: the same request bytes, echoed
// back. One goroutine per connection runs a closed loop (one request in
// flight), warms up, then times every request started in the window into
// its own slice, preallocated from the warm-up rate; the slices are merged
// and sorted for percentiles. Every loop is bounded in time and count, and
// each connection has a deadline. The number of requests measured is
// printed with the figures.
//
// The suite raises its soft RLIMIT_NOFILE to the hard limit with
// syscall.Setrlimit. That matters for the subprocesses: the Go runtime
// raises its own limit at start-up but restores the original one in the
// processes it starts, unless the program called Setrlimit itself, as the
// suite does, so the servers inherit the raised limit.
//
// # The figures
//
//  1. Request/response, 1 connection, 1 in flight. p50 and p99 latency in
//     µs of a Request packet for echo.echo with a -payload byte payload
//     (Nopal: after a raw-bytes handshake; answered by a Response), and of
//     writing and reading back the same number of bytes (floor). Target:
//     Nopal p50 ≤ 2 × floor p50. This is the server's added latency per
//     request: decoding, dispatch, the handler call, encoding, the write.
//  2. Request/response, -conns connections closed loop. Requests per
//     second, p50 and p99 latency, and the server's CPU per request: the
//     utime+stime of the server process over the window (clock ticks of
//     1/100 s, so ±10 ms per reading) × 1e6 / 100 / requests. Targets:
//     Nopal req/s ≥ 0.7 × floor; CPU per request ≤ 2 × floor. On a 2-core
//     machine the load generator and the server share the cores, so req/s
//     measures both; CPU per request is the server's alone and is the
//     steadier figure. The JSON also holds the user/system split and the
//     server's context switches per request.
//  3. Idle connections. -idle connections, spread over the source
//     addresses 127.0.0.2 … 127.0.0.9, each handshaken (Nopal answered its
//     handshake and got the ack) or, for the floor, answered one echoed
//     byte. After -settle, VmRSS is read three times 200 ms apart and the
//     last is kept: RSS per connection = (that − RSS before) / n, in KB,
//     plus the server's total RSS. Target: Nopal ≤ 12 KB per connection.
//     Kernel socket buffers are not in RSS, and a GC cannot be forced from
//     outside, so this is what the process holds, garbage included. The
//     suite then checks (MSG_PEEK) that no connection was dropped.
//  4. `make run` start time. `go build -o <tmp>/node ./cmd/node` from the
//     module root (its time reported apart: with a warm build cache it is
//     mostly linking), then `<tmp>/node serve -tcp 127.0.0.1:0 -ws
//     127.0.0.1:0` timed from exec to the line containing msg=ready on its
//     stderr, then SIGTERM; the median of -start-runs runs. The floor is the
//     bench binary's echo-server timed to its ADDR line. Target < 1000 ms.
//
// # Why ratios
//
// The machines this runs on are small (2 cores), shared and noisy: absolute
// numbers move by tens of percent from one run to the next, with a
// neighbour's load or the CPU's frequency. The floor is measured in the same
// run, back to back with Nopal, with the same client loop, payload and
// concurrency, so most of that noise hits both and cancels in the ratio.
// The ratio says what Nopal costs above a goroutine-per-connection echo,
// the least any Go TCP server can do; it is the figure to compare across
// runs and machines, and the one the targets are written against (except
// memory and start time, whose targets are absolute). BENCHMARKS.md records
// the latest table with the command that made it.
package main
