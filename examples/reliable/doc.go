// Package reliable is the reliable-RPC example: rewards that are granted
// once, even when servers die.
//
// A client asks its frontend for a reward with the request claims.claim
// {"reward":"gold"}; the frontend's handler enqueues the reliable RPC
// rewards.rewards.grant with the job id "grant-<uid>-<reward>" and answers
// the jid at once. A "rewards" backend runs the job; its remote is
// idempotent (a grant is recorded in the KV bucket "rewards" with Create,
// which fails when it exists), because a reliable RPC runs at least once:
// a worker killed after granting but before acknowledging is run again
// elsewhere. Enqueuing the same jid twice makes one job, so a client that
// claims twice gets the same jid and one grant.
//
//	node serve -type connector,room,rewards        # everything in one process
//	node jobs wait <jid> -nats nats://127.0.0.1:4222
//
// A grant takes milliseconds. To watch a worker die in the middle of a job,
// give the job some work: GrantArg.Work is a Go duration (at most MaxWork,
// 10 minutes) that the grant spends before granting, cut short if the
// attempt's context ends. A Work that does not parse, is negative or is
// too long fails the job at once with PIT-400 (a reliable.Permanent error:
// no retries).
//
//	node jobs enqueue -nats nats://127.0.0.1:4222 -jid grant-ana-gold \
//	    rewards.rewards.grant '{"uid":"ana","reward":"gold","work":"20s"}'
//
// Kill the worker (kill -9) during those 20 s: another rewards server takes
// the job over once its lease (JobsConfig.AckWait) lapses, works 20 s again
// and grants; the killed attempt stays in the job's history.
package reliable
