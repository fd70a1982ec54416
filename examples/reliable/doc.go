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
package reliable
