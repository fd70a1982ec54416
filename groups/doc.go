// Package groups keeps named groups of users (by uid) and pushes messages to
// their members, like Pitaya's groups.
//
// It owns the group abstraction, [Service], and its two implementations:
// [Memory], for a single server, and [Cluster], whose groups live in a NATS
// JetStream KV bucket shared by every node (see [Cluster] for the storage
// layout). They follow the same rules and return the same errors, so
// application code depends on Service only. The package does not own
// delivery: pushing to users is the [Pusher]'s job (the app), which
// serializes a message once and encodes one packet for all recipients, and
// reports the uids it could not reach. Broadcast and Multicast therefore
// make one PushToUsers call per message, never one per member.
//
// # Errors
//
// Failures are reported with the sentinel errors [ErrGroupAlreadyExists],
// [ErrGroupNotFound], [ErrMemberAlreadyExists], [ErrMemberNotFound], [ErrNoTTL]
// and [ErrInvalidTTL], always wrapped with the package prefix and the group
// name (`groups: "lobby": group not found`), and tested with [errors.Is]. A
// done context fails every method with the context's error, wrapped likewise;
// Memory checks the context before doing anything, as the cluster
// implementation must before its I/O.
//
// # TTL
//
// A group created with [Service.CreateWithTTL] expires when its TTL passes
// without [Service.RenewTTL]; membership changes do not renew it. Memory checks
// expiry on every access, so an expired group is not found the moment it
// expires, and the name can be created again. Reclaiming the memory of
// expired groups is a separate matter, done by [Memory.Sweep]: [Memory.Start]
// calls it every sweep interval (30 s by default) and blocks until its context
// is done, so the caller owns the sweeper goroutine and Memory needs no Close.
// Tests call Sweep directly with the time they want, and inject a clock with
// [WithClock] instead of sleeping.
//
// # Concurrency
//
// Memory is safe for concurrent use. One [sync.RWMutex] guards a map of
// groups, each a map[string]struct{} of uids. Reads (Members, Contains, Count,
// and the member copy of Broadcast and Multicast) share the read lock. The
// Pusher and Multicast's keep function are called with no lock held, on a copy
// of the member list, so a slow push never blocks the groups, and a member
// added or removed during a broadcast may or may not receive it. Members sorts
// its copy after releasing the lock; Broadcast does not sort at all (the
// Pusher gets uids in no particular order).
//
// Cluster keeps no state between calls: every call reads the bucket, so
// nodes see each other's changes at once. Its Broadcast and Multicast read
// the member list once and make one PushToUsers call too; in a cluster the
// app's Pusher sends one bus message per frontend carrying its uids. Its
// sweeper, [Cluster.Start], deletes the keys of expired groups and may run on
// every node.
package groups
