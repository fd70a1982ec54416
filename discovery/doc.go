// Package discovery is Nopal's service discovery: each server registers
// itself in a JetStream KV bucket and keeps a live view of every server of
// the cluster, with events when one joins, changes, leaves or dies. It is
// what Pitaya's etcd service discovery was, on the bus instead of etcd.
//
// # Bucket
//
// The bucket is "servers" under the bus prefix ("nopal_servers"), memory
// storage, the bus's replica count. Key = server id, value = the Server as
// JSON. Ids and types are restricted to letters, digits, '-' and '_' so an
// id is always one KV key token (and one subject token).
//
// # Liveness: bucket TTL, limit markers and plain Puts
//
// The bucket has a TTL of 3 × Config.Heartbeat and every server Puts its
// key again each Heartbeat. Each Put replaces the key's previous value
// (history 1), so the key's age restarts with every beat and only a server
// that stopped beating ages out. Facts that shape this design, measured with
// nats-server 2.15 and nats.go 1.55:
//
//   - Without LimitMarkerTTL an expiry by MaxAge is silent: the message just
//     disappears and watchers learn nothing. With LimitMarkerTTL the server
//     writes a marker in place of the expired value (header
//     Nats-Marker-Reason: MaxAge) and watchers receive it as a
//     KeyValuePurge entry. That entry is how deaths are seen.
//   - The marker arrives TTL + 0–250 ms after the last stored heartbeat with
//     memory storage (the server's expiry timer fires no more often than
//     every 250 ms): 750–1000 ms for a 250 ms heartbeat, 3.0–3.25 s for the
//     default 1 s heartbeat. Watchers get it within a millisecond.
//   - LimitMarkerTTL (the marker's own lifetime) must be at least 1 s and
//     the server keeps it in whole seconds; it is set to the TTL rounded up
//     to a second. The marker expires silently (markers leave no marker).
//   - A per-key TTL (KeyTTL) applies only to Create, which fails once the
//     key exists, so it cannot carry heartbeats; that is why heartbeats are
//     plain Puts under a bucket-wide TTL.
//   - A KV Delete is also subject to the TTL: TTL after a graceful stop the
//     delete marker itself expires and leaves a MaxAge marker, a Purge of a
//     key nobody knows any more. Such entries are ignored.
//   - The bucket's TTL is a stream setting: the last node to start with a
//     different Heartbeat changes it for all. Use one Heartbeat per cluster.
//
// # Events
//
// A Put of an unknown id is Joined; of a known id with a different value,
// Updated (heartbeats repeat the same bytes: no event); a Delete is Left
// (graceful Stop: the others see it within a millisecond); a Purge — the
// MaxAge marker, or anyone's purge — is Died. Subscribers run in order on
// the watcher goroutine, after the view has been updated. A node's own key
// appears in its own view and events too.
//
// # Failures
//
//   - A node whose own key vanishes while it is alive (it was paused past
//     the TTL, or someone deleted the key) puts it again at once; the
//     others see it Died, then Joined.
//   - Heartbeat errors are logged (warn, throttled), never fatal; the beats
//     go on through a reconnect. After a failed Put the bucket is provisioned
//     again (a no-op if it exists): a memory bucket is lost when a
//     single NATS server restarts.
//   - The watcher is an ordered consumer that nats.go re-creates after gaps
//     and reconnects. Discovery also re-creates it when its channel closes,
//     when a Put's revision goes back (the bucket was re-created), or when
//     it has not seen this node's own heartbeats for max(TTL, 2 s). A
//     re-created watcher reloads the bucket: differences become events, and
//     servers that vanished meanwhile are reported Died.
//   - If the bus connection is closed for good, heartbeats stop and the view
//     freezes.
//
// List reads the registered servers once, without joining (for tools).
package discovery
