// Package timers holds Nopal's timers: Pitaya's local timers (every
// interval, a number of times, once after a delay, whenever a condition
// holds) on a Manager the App owns, and durable cluster timers, which fire
// once per tick across the whole cluster and outlive the server that set
// them.
//
// # Local timers
//
// A Manager runs Timers, each in a goroutine of its own:
//
//	NewTimer(interval, fn)            fn every interval, until Stop
//	NewCountTimer(interval, count, fn) fn every interval, count times
//	NewAfterTimer(d, fn)              fn once, after d
//	NewCondTimer(cond, fn)            fn at every check (every Precision,
//	                                   default 1 s) where cond.Check(now) is true
//
// The first call of an interval timer comes one interval after it is
// created. Calls of one timer never overlap: a call that takes longer than
// the interval delays the next one, and the ticks it missed are skipped
// rather than run in a burst. A callback that panics is recovered and
// logged (with the timer's id and the stack); the timer goes on. Stop ends
// a timer: no call begins after Stop returns, except one that had already
// been decided when Stop was called. Manager.Stop ends every timer and
// waits for the calls under way; a Manager that has stopped hands out
// timers that never fire. Nothing here is global (Pitaya keeps one timer
// manager per process): the App holds its Manager and stops it at the
// start of its Shutdown.
//
// # Durable timers
//
// A durable timer is named and lives on JetStream, not in a process. Every
// interval it calls a remote route ("svtype.component.method") with a
// Tick, once per tick for the whole cluster, through a reliable-RPC job
// (package reliable) run by a server of the type that declared it:
//
//	KV "timers"   key = timer name, value = its definition (DurableInfo):
//	              route, argument, interval, generation, epoch, last tick
//	jobs          one reliable job per tick, jid "timer=<name>=<gen>=<n>",
//	              route "<svtype>.nopaltimer.tick", NotBefore = epoch + n × interval
//
// Tick n of generation g is due at epoch + n × interval. The server whose
// worker runs tick n first enqueues the next tick (the first one still in
// the future, so ticks missed while no server of the type was up are
// skipped, not run in a burst), then calls the route, here when the route
// names its own type, by RPC otherwise. Since the next tick is enqueued
// before the route is called, a failing route never breaks the chain, and
// since a server's death only hands its jobs to another server of the
// type (reliable's AckWait), the timer outlives any server, the one that
// declared it included, as long as one server of the type is up or comes
// back.
//
// Guarantees. One job per tick: jobs are keyed by tick number, and
// reliable's enqueue is exactly-once per jid, so declaring the timer again
// (every server of the type does at start), two servers scheduling the
// same tick, or a clock that runs ahead never make a tick run twice as two
// jobs; chains started twice merge on the first tick number they share. A
// tick's job runs at least once, as every reliable job does: a server
// killed while calling the route hands the tick to another, which calls
// the route again. Routes must be idempotent: Tick.Key names the tick.
// A tick whose route keeps failing ends dead in JOBS_DLQ after its
// attempts (reliable.Client.Retry brings it back); the next ticks still
// run.
//
// Declaring. Declare with the definition already stored (same route,
// argument and interval) changes nothing and only makes sure the next tick
// is enqueued. A different definition replaces the stored one: the
// generation goes up, the epoch restarts, and the old chain ends at its
// next tick (it finds a newer generation and schedules nothing). The last
// declaration wins. Stop deletes the definition: the pending tick runs as
// a no-op and schedules nothing; declaring again starts afresh.
//
// Every tick leaves its job's record in the "jobs" bucket (reliable keeps
// records to deduplicate by jid): about 1,440 records a day for a timer of
// one minute. Prefer intervals of seconds or more; the precision of a tick
// is that of a delayed job (tens of milliseconds).
package timers
