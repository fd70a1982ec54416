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
//	stream JOBS       one message per job, as enqueued, on a subject of its own:
//	                    p.job.<svtype>.<jid>               any server of the type
//	                    p.job.<svtype>.srv.<serverID>.<jid> WithTarget
//	                  limits retention, one message per subject, a second one
//	                  refused (DiscardNew + DiscardNewPerSubject), rollup allowed
//	KV "jobs"         key = jid, value = the job's record (Job), written from the
//	                  first claim (or Cancel) on: from then on the source of truth
//	stream JOBS_DLQ   p.jobdlq.<svtype>.<jid>: a copy of each dead or failed job with its attempts
//
// A job that no worker has taken yet has no record: its message is the job
// (Get, Wait, List and Cancel read it there). Every server of a type shares
// one durable pull consumer "jobs_<svtype>" (filter p.job.<svtype>.*); each
// server also has "jobsrv_<serverID>" for jobs targeted at it. A jid is a
// ULID unless the caller gives one (WithJID).
//
// # Writes per job
//
// A job that succeeds at its first attempt costs three JetStream writes:
// its message (Enqueue), its record created running (the claim) and its
// record updated succeeded. The consumer's ack stores nothing in JOBS
// (limits retention: a work queue would remove the message on each ack,
// which the file store pays for with a tombstone write). States are written
// when they change what a reader can do: queued is not written (the message
// says it), running is (Cancel must then fail, and a worker that takes over
// a job must see the abandoned attempt), and so are the outcomes.
//
// Finished jobs leave JOBS in bulk: once per SweepInterval each worker
// purges its consumers' subjects below their ack floors (a job's message is
// acked only when its record is final), one request for every job finished
// since the last purge. A job waiting for a retry holds its consumer's
// floor until it finishes. Records stay in the bucket: it grows with the
// number of jobs ever enqueued, and keeps a finished jid from running
// again.
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
// Exactly-once enqueue per jid, with one write. Enqueue publishes the job's
// message to its own subject, and JOBS refuses a second message for a
// subject that has one: enqueueing an existing jid returns it with no error
// and never runs the job again, minutes or months later (JetStream's
// 2-minute Nats-Msg-Id window plays no part). Once a finished job's message
// is purged, JOBS takes a new one for its jid, and the worker that receives
// it acks it unrun: the jid's record is final. A job is durable when Enqueue
// returns; when Enqueue fails (the stream's ack never came), enqueueing the
// same jid again is always safe, and there is no window in which a crash
// leaves half a job. A jid whose message Cancel removed, or enqueued again
// for another target or server type, may get a second message: the claim
// creates the record with a KV Create, which fails when the jid has a record,
// and the record decides (a finished or cancelled job is acked unrun; a job
// owned by another message, whose stream sequence the record holds, too).
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
// Durability. A job is durable when Enqueue returns: its message is acked
// by JetStream with file storage. A NATS server restarted on the
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
// publishes the copy to JOBS_DLQ and then acks, so the consumer delivers
// it no more: no delivery is pending past its last attempt and no
// MAX_DELIVERIES advisory is needed. Client.Retry brings a dead or failed
// job back, from its KV record: it records the job queued (a new
// generation) and publishes its message again, replacing the old one in
// JOBS (rollup). A Retry killed between the two leaves a queued record whose
// message is missing or of an older generation: every Worker's sweeper
// (WorkerConfig.SweepInterval) publishes the messages of such records that
// are older than 30 s.
//
// # Flow control
//
// A Worker runs at most Concurrency jobs at once and pulls no more than it
// can start. While a job runs it signals progress every AckWait/3, so
// AckWait bounds how long a dead worker's jobs wait, not how long a job may
// run (one goroutine per worker sends those signals). Jobs waiting for WithDelay or a back-off stay delivered and
// unacknowledged: they count against the consumer's MaxAckPending, and
// JetStream stops delivering, silently, when that is reached. Watch
// WorkerStats.AckPending against WorkerStats.MaxAckPending (exported for the
// worker_* metrics), and raise MaxAckPending when many delayed jobs are
// expected. A cancelled job's message is deleted from JOBS at once, freeing
// its slot.
package reliable
