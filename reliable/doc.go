// Package reliable is Nopal's reliable RPC: jobs that call a remote
// ("svtype.component.method") on some server of a type, survive crashes of
// the caller, the worker and the NATS server, are retried with back-off, and
// end in a dead-letter stream when every attempt failed. Pitaya calls these
// reliable RPCs (its worker package); here they live on JetStream.
//
// # Storage
//
// Under the bus's prefix p (names get it too: "nopal_jobs"):
//
//	KV "jobs"         key = jid, value = the job's record (Job): the source of truth
//	stream JOBS       work queue on p.job.>, one message per job to run:
//	                    p.job.<svtype>.<jid>               any server of the type
//	                    p.job.<svtype>.srv.<serverID>.<jid> WithTarget
//	stream JOBS_DLQ   p.jobdlq.<svtype>.<jid>: a copy of each dead or failed job with its attempts
//
// Every server of a type shares one durable pull consumer "jobs_<svtype>"
// (filter p.job.<svtype>.*); each server also has "jobsrv_<serverID>" for
// jobs targeted at it. The two filters never overlap, as a work-queue stream
// requires. A jid is a ULID unless the caller gives one (WithJID).
//
// # States
//
//	queued ──► running ──► succeeded
//	  │  ▲        │ ├──► retrying ──► running … (NotBefore = now + back-off)
//	  │  │        │ ├──► dead       (MaxAttempts attempts failed; copied to JOBS_DLQ)
//	  │  │        │ └──► failed     (deadline passed, or the remote returned a Permanent error; copied to JOBS_DLQ)
//	  │  └── Retry ◄──── dead, failed (attempts start from scratch)
//	  └──► cancelled   (Cancel, from queued or retrying)
//
// Succeeded, failed, dead and cancelled are terminal; Client.Wait returns on
// them. Every transition is a compare-and-set on the record's KV revision, so
// of two writers (a worker and a Cancel, two workers after a redelivery)
// exactly one wins and the other re-reads.
//
// # Guarantees
//
// Exactly-once enqueue per jid. Enqueue first Creates the jid in KV (which
// fails if it exists) and only then publishes, with Nats-Msg-Id = jid, and
// waits for the stream's ack. Enqueueing an existing jid returns it with no
// error and never runs the job again, minutes or months later: the KV record
// is what deduplicates, not JetStream's 2-minute Nats-Msg-Id window. If the
// publish fails, Enqueue removes the record (on its revision) and returns the
// error with the jid; enqueueing the same jid again is always safe. The crash
// window between Create and publish (the process dies in between) leaves a
// queued record with no message: the next Enqueue of the jid publishes it,
// and every Worker's sweeper (WorkerConfig.SweepInterval) publishes such
// records of its type that are older than 30 s. Should that ever produce a
// second message for a jid, the worker that claims the job writes the
// message's stream sequence into the record and any other message for the
// jid is acked unrun.
//
// At-least-once execution. A job runs until one attempt succeeds, it fails
// permanently, or MaxAttempts attempts have failed. A worker killed or cut
// off mid-job never acks; after AckWait JetStream hands the message to
// another worker, which closes the abandoned attempt (code JOB-ABANDONED,
// counted against MaxAttempts) and runs the job again. A worker that was
// only slow (no progress signal got through for AckWait) may therefore still
// be running when the next one starts; it loses the compare-and-set when it
// finishes and its result is dropped, but its side effects happened.
// REMOTES CALLED BY JOBS MUST BE IDEMPOTENT: take the jid (or a key in the
// argument) and make a second call with it a no-op.
//
// Never after success. Once a job's record says succeeded (or cancelled),
// no delivery of its message runs it again: the worker acks and skips.
//
// Durability. A job is durable when Enqueue returns: record and message are
// both acked by JetStream with file storage. A NATS server restarted on the
// same store loses nothing; clients and workers reconnect by themselves. (A
// single server flushes to disk periodically, so an OS crash can lose the
// last writes: run 3 replicas in production.)
//
// # Retries, attempts and the consumer
//
// Attempts are counted in the record against the job's own MaxAttempts
// (default 5), not by the consumer's MaxDeliver, which is unlimited: a
// per-job limit cannot be a consumer setting, and deliveries that only wait
// for a delay or a back-off are not attempts. A failed attempt records the
// error (code, message, metadata of a *codec.Error) and naks the message
// with NakWithDelay(back-off) (default 1s, 5s, 30s, 2m, the last repeating);
// the consumer has no BackOff, which would replace AckWait and does not apply
// to naks. The worker that sees the last attempt fail records the job dead,
// publishes the copy to JOBS_DLQ and then acks, removing it from the work
// queue: no message stays behind past its last attempt and no
// MAX_DELIVERIES advisory is needed. Client.Retry brings a dead or failed
// job back, from its KV record.
//
// # Flow control
//
// A Worker runs at most Concurrency jobs at once and pulls no more than it
// can start. While a job runs it signals progress every AckWait/3, so
// AckWait bounds how long a dead worker's jobs wait, not how long a job may
// run. Jobs waiting for WithDelay or a back-off stay delivered and
// unacknowledged: they count against the consumer's MaxAckPending, and
// JetStream stops delivering, silently, when that is reached. Watch
// WorkerStats.AckPending against WorkerStats.MaxAckPending (exported for the
// worker_* metrics), and raise MaxAckPending when many delayed jobs are
// expected. A cancelled job's message is deleted from JOBS at once, freeing
// its slot.
package reliable
