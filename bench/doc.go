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
//	go run ./bench suite -only 5 -deploy external -cluster-cpuprofile /tmp/c.pprof
//	go tool pprof -top /tmp/c-5-external-front.pprof  # the external frontend in scenario 5
//	go run ./bench suite -only 10 -jobs-cpuprofile /tmp/jobs.pprof  # reliable jobs, profiling the jobs-server
//
// Suite flags: -duration (measured time of each server in a load
// scenario, default 5s), -rounds (5: the windows it is split into),
// -warmup (500ms), -conns (64), -idle (5000), -payload (64 bytes),
// -settle (1s), -start-runs (3), -compress and -heartbeat (passed to the
// Nopal server and the cluster frontends), -only (scenarios to run, e.g.
// 1,3; default all eleven), -cpuprofile (of the Nopal server during
// scenario 2), -json and -out (default bench.json). For the cluster
// scenarios: -deploy (the deployments of scenarios 5, 7 and 8, default
// embedded,external), -push-samples (3000, scenario 7), -members (1000) and
// -broadcasts (50, scenario 8), -cluster-cpuprofile (a base name: one CPU
// profile per cluster process of scenarios 5 (its -conns run), 6, 7 and 8,
// for the process's whole life, named after the scenario, the deployment
// and the process, so c.pprof gives c-5-embedded-echo+front.pprof,
// c-5-external-nats.pprof, c-5-external-echo.pprof, c-5-external-front.pprof,
// c-6-traffic-on-echo+front.pprof, c-7-external-front-b.pprof, …).
// Every CPU profile the bench writes has the process's allocation profile
// next to it, written as the process ends (c-5-external-front.pprof.allocs;
// go tool pprof -sample_index=alloc_space reads what the run allocated).
// For scenario 10: -jobs (20000: the most jobs, and raw messages, of its
// throughput phase) and -jobs-cpuprofile (a CPU profile of the jobs-server
// for its whole life).
// The suite exits non-zero if any request failed, any connection dropped,
// any server died or a broadcast did not reach every member; a missed
// target is only marked in the table.
//
// The servers can also be run alone, for a profiler or another client:
//
//	go run ./bench server -addr 127.0.0.1:0 [-compress] [-heartbeat 60s] [-cpuprofile f]
//	go run ./bench echo-server -addr 127.0.0.1:0
//	go run ./bench cluster-server [-mode embedded] [-role echo,front] [-traffic=true] [-cpuprofile f]
//	go run ./bench cluster-server -role nats [-nats-listen 127.0.0.1:0]
//	go run ./bench cluster-server -mode external -nats nats://127.0.0.1:port -role echo|front
//	go run ./bench jobs-server [-nats-listen 127.0.0.1:0] [-store dir] [-concurrency 64] [-cpuprofile f]
//	go run ./bench chat-server [-tcp 127.0.0.1:0] [-ws 127.0.0.1:0] [-nofile n] [-heartbeat 60s] [-send-budget bytes] [-cpuprofile f] [-memprofile f]
//	go run ./bench chat-floor [-tcp 127.0.0.1:0] [-ws 127.0.0.1:0] [-nofile n]
//
// Each prints "ADDR host:port" on stdout once it listens (the server and
// the echo-server exactly that one line), logs nothing below warn, and
// serves until its stdin is closed (so it never outlives the suite that
// started it) or it gets SIGTERM or SIGINT. Mind the stdin rule when
// starting one by hand: with </dev/null it stops at once.
//
// `bench server` is a Nopal App of server type "bench" with one component,
// "echo", whose raw handler Echo(ctx, in []byte) ([]byte, error) returns its
// input (route echo.echo), behind one TCP acceptor. `bench echo-server` is
// the floor: a plain TCP echo server, one goroutine per connection reading
// into a 4 KiB buffer and writing back what it read.
//
// `bench cluster-server` runs Nopal cluster apps, each with
// ClusterConfig.Traffic as -traffic (default true, as in `node serve`):
// -role lists them, started in that order: "echo", the backend (server
// type "echo": the raw echo handler as route echo.echo.echo, and a "bench"
// component: echo.bench.bind binds the caller's session to the uid in the
// payload, echo.bench.join binds it and adds the uid to the cluster group
// "g", which the backend creates at start, echo.bench.push calls
// SendPushToUsers with its payload, an 8-byte sequence number then a uid,
// on route onP to that uid and answers the uids not reached, and
// echo.bench.broadcast calls Groups().Broadcast of its payload on route
// onB to "g" and answers how many members it missed); and "front", a
// frontend (server type "front": a TCP acceptor on -addr, no handlers,
// so every request is forwarded over the bus). With -mode embedded (the
// default) the first app starts an embedded NATS server and the others
// share it in-process (App.UseEmbedded, as `node serve` does); with -mode
// external they connect to -nats over TCP. -role nats alone runs only a
// NATS server with JetStream (stream.Connect with Embedded.Listen,
// 127.0.0.1:0 unless -nats-listen says otherwise). The process prints an
// "ADDR host:port" line per frontend in -role order, a "NATS url" line if
// its embedded server listens, then "READY" once every app has started.
//
// `bench jobs-server` starts an embedded NATS server with JetStream on file
// storage (stream.Connect with Embedded{StoreDir, Listen}; the store is a
// new temporary folder, removed at exit, unless -store names one) and a
// reliable.Worker of server type "bench" with Concurrency 64 whose
// Invoker returns its argument at once; it prints "NATS url" then "READY".
//
// # The chat command
//
// `bench chat` is not part of the suite (nor of `make bench`): it holds
// 20,000 connections, which takes a minute and every descriptor the
// machine allows.
//
//	go run ./bench chat                                  # 20,000 conns, 1 msg/s each, 20 s
//	go run ./bench chat -rate 0.05 -cpuprofile /tmp/chat.pprof -memprofile /tmp/heap.pprof
//	go run ./bench chat -conns 2000 -ws 0 -duration 5s   # smaller, TCP only
//	go run ./bench chat -floor=false -send-budget 67108864 -memprofile /tmp/h.pprof -memprofile-at end
//	                                                     # overload: queues within 64 MiB, what is held at the end
//
// It runs the floor, then Nopal, each against a fresh server subprocess
// (this binary re-executed, so the server's CPU and RSS are its own). The
// Nopal server is `bench chat-server`: an App of server type "chat" with a
// TCP and a WebSocket acceptor and one component, "room": room.join (raw
// payload: the room's name) binds the session to its id, adds it to that
// group of the app's group service (creating it) and keeps the room in the
// session; room.message (request or notify) broadcasts its payload,
// untouched, as push onMessage to every member of the session's room,
// the sender included. The floor is `bench chat-floor`: the same packets
// served by a plain goroutine-per-connection relay (no handshake; each
// connection reads packets into a 4 KiB buffer, and a room.message is
// written to every member's socket by the sender's goroutine; WebSockets
// through gorilla/websocket with the Nopal acceptor's buffer sizes). Both
// print "ADDR" for their TCP then WebSocket listener, then "READY".
//
// The load generator opens -conns connections (default 20,000; -ws 0.5 of
// them WebSockets, interleaved), -dialers (64) at a time, bound to the
// source addresses 127.0.0.2 … (-sources 8) with net.Dialer.LocalAddr so
// that no source runs out of ephemeral ports. Each connection dials,
// upgrades (WebSocket: a minimal client, frames masked with a zero key),
// handshakes (Nopal) and requests room.join for room i/-room (rooms of
// 50); the ramp rate is the connections over the time until the last
// joined. After -settle the server's RSS is sampled (RSS per connection =
// (after − before) / conns). Then every connection sends room.message at
// -rate per second (1), phases spread over the interval, as requests with
// ids 1…16 (-notify: notifies), with a -payload (32 B) holding the send
// time and the sender's index: -warmup (2 s), the measured -duration (20
// s), then -drain (3 s) of reading only. A message counts if it was sent
// in the measured window: its response time (requests), and for each push
// of it read by a member, send → read (push delivery); every push must
// come from the reader's own room, and the pushes read are compared with
// messages × room size. One goroutine per connection both sends (its
// next send is its read deadline) and reads (packets and WebSocket frames
// parsed in place in a 4 KiB buffer); latencies go to lock-free log-linear
// histograms (±1.6 %): nothing is allocated per message. A send that
// finds 16 requests in flight on its connection is skipped and counted.
// The server's CPU (utime+stime) and the load generator's over the
// window are given in cores, with the machine's softirq time (loopback
// TCP is delivered there, charged to no process) and the rest of the
// machine's busy time (other processes: the noise). -cpuprofile profiles
// the Nopal server over the measured window exactly (the suite tells it
// on stdin); -memprofile writes its heap profile after the ramp and prints
// its live heap, goroutine stacks and freed memory not yet returned to
// the OS. -json writes the raw figures.
//
// Descriptors: each process needs one per connection plus about 11. The
// command makes RLIMIT_NOFILE at least conns + 16 in its process and the
// servers': the soft limit goes up to the hard one, and the hard one too
// where the process may (CAP_SYS_RESOURCE). If it cannot, it runs as many
// connections as fit and says so in its log, its header and the
// "connections held" row (with a hard limit of 20,000: 19,984).
//
// # The idle command
//
//	go run ./bench idle                                  # 20,000 idle conns, half WebSocket
//	go run ./bench idle -conns 5000 -settle 5s -memprofile /tmp/heap.pprof
//	go run ./bench idle -floor=false -server-exe /tmp/old-bench  # another build's server
//
// `bench idle` opens -conns connections (the chat command's ramp: -ws 0.5
// WebSockets, dial, upgrade, handshake, room.join) to a chat-floor, then to
// a chat-server, and leaves them idle for -settle (5 s: longer than the
// frontend's Config.ParkIdle, 2 s, after which an idle connection holds no
// reader goroutine). It samples the server's RSS then, and again after
// telling the server "gc" on its stdin (runtime.GC, then
// debug.FreeOSMemory: the freed goroutine stacks go back to the OS, as the
// runtime's scavenger does on its own after its next collection), and
// prints both per connection beside the floor's. -server-exe runs the
// servers from another bench binary (a build before a change) under the
// same load generator; a server without the "gc" line reports its RSS
// after one more second. -memprofile writes the Nopal server's heap
// profile (after a GC) before the "gc" line.
//
// # How it measures
//
// The suite builds nothing for scenarios 1–3 and 5–10: it re-executes its
// own binary as the servers, so each server's CPU time and memory are its
// own and are read from /proc/<pid>/stat and /proc/<pid>/status. Every scenario
// runs on the floor and on Nopal back to back, against fresh server
// processes. In the load scenarios (1 and 2) both servers run side by side
// and are measured in alternating windows, floor, Nopal, Nopal, floor, …
// (-rounds windows of -duration/-rounds each per server, the first after a
// -warmup, the others after 50 ms), so a burst of a neighbour's load or a
// clock change lands on both. The load generator speaks the protocol over
// raw sockets (no client library): the request packet is built once and
// written whole. The floor gets exactly the same loop: the same request
// bytes, echoed back. The measuring loop is light (light.go), so that it
// is not the bottleneck (DESIGN §6): once a connection is handshaken its
// socket leaves Go's netpoller, and one OS thread drives all of a
// server's connections with epoll: for each ready socket one read and,
// once the answer is whole, one write of the next request (one request in
// flight per connection). Requests started in the window are timed into
// each connection's slice; the slices are merged and sorted for
// percentiles. The table prints, for scenarios 2 and 5, the load
// generator's own CPU per request and how many cores each server kept
// busy, and flags the scenario CLIENT-BOUND when the floor's server used
// less than 0.9 of a core: its ratios then flatter Nopal. Every loop is
// bounded in time and count, and
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
//     Nopal req/s ≥ 0.85 × floor; CPU per request ≤ 1.2 × floor. On a 2-core
//     machine the load generator and the server share the cores, so req/s
//     measures both; CPU per request is the server's alone and is the
//     steadier figure. The JSON also holds the user/system split, the
//     server's context switches per request, its read and write system
//     calls per request (syscr + syscw of /proc/PID/io: how many socket
//     reads and writes a request costs, batching included) and the load
//     generator's own CPU time per request (the progress log prints them
//     too): server and client CPU per request × req/s says how busy the
//     cores were.
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
//  5. Cluster request/response: client → frontend → bus → backend →
//     frontend → client, route echo.echo.echo with the -payload bytes,
//     traffic recording on, on each -deploy deployment: "embedded", one
//     `cluster-server -mode embedded -role echo,front` process, and
//     "external", three processes: a NATS server (`-role nats`), the
//     backend and the frontend (`-mode external -nats <url>`). The floor
//     and every deployment run side by side and are measured in the same
//     alternating windows as scenarios 1 and 2 (floor, embedded, external,
//     external, embedded, floor, …), once with 1 connection (p50, p99;
//     targets p50 ≤ 6 × floor embedded, ≤ 15 × external) and once with
//     -conns connections closed loop (req/s, p50, p99, and the server CPU
//     per request summed over every process of the deployment, the NATS
//     server included; targets req/s ≥ 0.4 × floor embedded, ≥ 0.3 ×
//     external, external CPU per request ≤ 5 × floor). Before measuring, the suite
//     waits until the frontend answers the route (its discovery has the
//     backend).
//  6. Traffic recording on vs off: two embedded deployments, one with
//     -traffic=true and one with -traffic=false, measured with -conns
//     connections in the same alternating windows as the floor. The table
//     gives req/s and CPU per request of both next to the floor, and the
//     ratio of req/s on / off (target ≥ 0.8).
//  7. Push to a uid bound on another frontend, on each deployment with two
//     frontends A and B (embedded: one process `-role echo,front,front`;
//     external: four processes). A client on B calls echo.bench.bind; a
//     client on A then sends echo.bench.push requests one at a time, each
//     with the next sequence number, and each sample is the time from just
//     before the request is written on A to the push read on B (the same
//     goroutine writes on A, reads B, then reads A's response, which must
//     report the uid reached). Warm-up first waits until the backend's
//     discovery has B (the response reports the uid unreached until then),
//     then runs for -warmup. Up to -push-samples samples within -duration,
//     in -rounds blocks alternating with blocks of as many 1-connection
//     floor round trips (-payload bytes, as in scenario 1): p50, p99,
//     target p50 ≤ 4 × the floor's p50; and the CPU time of all the
//     cluster's processes per push over the push blocks, next to the floor
//     server's per round trip over the floor blocks (the JSON adds the
//     context switches of each).
//  8. Broadcast to a cluster group across two frontends, on each
//     deployment. -members clients, alternately on frontends A and B and
//     spread over the source addresses 127.0.0.2 … 127.0.0.9, each call
//     echo.bench.join (bind to m<i> and join group "g"), 32 at a time; the
//     floor gets as many connections. One goroutine per connection reads
//     pushes. A trigger client on A (not a member) sends
//     echo.bench.broadcast with a sequence number; a broadcast's time runs
//     from just before that request is written to the moment the last
//     member read the push (the max over receivers), and the response
//     must report no member missed. The floor is a fan-out: the load
//     generator writes the same 17-byte packet to each of its connections
//     of the echo server, one after the other, timed to the last echo read;
//     it shows what delivering that many packets to that many goroutines
//     costs this machine. Floor and Nopal alternate, up to -broadcasts each
//     within 2 × -duration, after a warm-up (sequence 0, until one
//     broadcast reaches everybody, then -warmup). p50 and p99 (target p99 ≤
//     20 ms), and the pushes read, which must be exactly broadcasts ×
//     members: a broadcast that does not reach every member within 5 s, a
//     duplicate or a stray push fails the scenario (and the suite).
//  9. Metrics on vs off: the standalone server with -metrics and without,
//     next to the floor, with -conns connections in alternating windows:
//     req/s and CPU per request of both, and the ratios on / off (targets
//     req/s ≥ 0.9, CPU per request ≤ 1.1).
//  10. Reliable jobs (package reliable), against a `bench jobs-server`
//     process; the suite connects to its NATS server over TCP
//     (stream.Connect with URL) and makes a reliable.Client. First the
//     floor: the TCP echo server's 1-connection, 1-in-flight round trip
//     (-payload bytes, as in scenario 1) for min(1 s, -duration) after
//     -warmup. Then (a) enqueue latency: sequential Client.Enqueue calls
//     of route bench.jobs.echo with the -payload bytes, one caller, for
//     -warmup then -duration/2 measured: p50 and p99 (target p50 ≤ 6 ×
//     the floor's p50). An Enqueue is one publish to the job's own
//     subject, acked by the JOBS stream (file storage), which refuses a
//     second message for a jid: one JetStream round trip.
//     (b) End-to-end throughput: 16 goroutines enqueue jobs with jids
//     tput-0, tput-1, … until -duration has passed or -jobs were
//     enqueued (N); the suite watches the jobs KV bucket (WatchAll,
//     updates only, started before the first enqueue) and counts each
//     jid once when its record turns succeeded (or failed, dead,
//     cancelled). jobs/s = N / (first enqueue → last success), target
//     at least 20000 jobs/s. Every job must succeed within 30 s + -duration, or the
//     scenario (and the suite) fails. The jobs-server's CPU time (NATS
//     and worker, one process) over the phase / N is the CPU per job.
//     (c) Raw JetStream on the same NATS server: a work-queue stream
//     BENCH_RAW (file storage), 16 goroutines making N acked publishes
//     and one pull consumer in the suite acking each message: msg/s, the
//     server CPU per message, and the ratio jobs/s / raw msg/s (target ≥
//     0.5), what the job bookkeeping (claim, result, acks) costs on top of
//     moving the message. The table also gives the JetStream writes per
//     job: the growth of the JOBS stream's and the jobs bucket's last
//     sequences over the phase / N (3: the job, its claim, its result).
//  11. Idle connections, half WebSocket: `bench idle` (see its section)
//     with -idle-mixed connections (default 20,000), each handshaken and
//     in a chat room, on the chat server and on the relay floor, idle for
//     -idle-mixed-settle (5 s, past the frontend's 2 s ParkIdle); the
//     server's RSS per connection then, and again after it collected
//     garbage and returned freed memory to the OS. Target ≤ 8 KB per
//     connection after the GC (the floor column is the relay's).
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
// memory, start time and broadcast latency, whose targets are absolute).
// In the cluster scenarios the load generator, the floor and every process
// of the cluster share the same cores, so the external deployment, with
// three or four server processes, pays for its extra process hops and
// context switches in latency and in CPU. BENCHMARKS.md records
// the latest table with the command that made it.
package main
