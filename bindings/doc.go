// Package bindings keeps, for the whole cluster, which frontend and session
// each user id (uid) is bound to, and enforces one live session per uid.
//
// # Store
//
// A [Store] keeps uid → [Binding] (frontend id and session id, JSON) in the
// JetStream KV bucket "bindings" (under the bus's prefix: "nopal_bindings";
// file storage, one revision per key). Any server uses it to find where a
// uid lives ([Store.FrontendOf]) and push to or kick it there.
//
//   - [Store.Bind] Creates the key on a first bind; when it exists, Bind
//     reads it and replaces it with a compare-and-set Update on the revision
//     read, retrying when another writer got in between. The newest Bind
//     wins, and it returns the binding it replaced, so under any concurrency
//     each replaced binding is returned to exactly one caller: the one that
//     kicks it.
//   - [Store.Unbind] deletes the key only if it still holds exactly the given
//     binding (read, compare, delete on the revision read). A session that
//     closes after being replaced therefore never removes its successor's
//     binding; a conflict or another value is not an error.
//   - [Store.Get] returns [ErrNotFound] for a uid that is not bound.
//
// # Keys
//
// Uids come from the game and may hold anything; KV keys allow only
// [-/_=.a-zA-Z0-9], with no leading or trailing dot and no "..". A uid that
// is already such a key and does not start with "b64." is its own key, so
// `nats kv get nopal_bindings alice` reads well. Any other uid (spaces,
// unicode, "a..b", ".x", or anything starting with "b64.") is stored under
// "b64." + base64.RawURLEncoding(uid). The mapping is collision-free: keys
// starting with "b64." come only from the (injective) encoding, all others
// are the uid itself. The empty uid and uids longer than [MaxUIDLen] bytes
// are refused with [ErrInvalidUID]: a key is part of a NATS subject, and a
// subject over the server's 4 KB control line would make the server drop
// the whole connection.
//
// # Unique session
//
// [UniqueSession] is the unique-session module of a frontend; [UniqueSession.Attach]
// hooks it on the frontend's session pool:
//
//   - After a session binds a uid, it records {frontend, session} with Bind.
//     If that replaced a session of another frontend, it asks the [Kicker]
//     (the app, which sends a kick message over the bus) to kick that
//     session; the remote frontend kicks it only if it still exists and is
//     bound to the uid. An older session of the same frontend is not kicked
//     here: the pool has kicked it already.
//   - When a bound session closes, it Unbinds {frontend, session}, which
//     removes nothing if a newer session holds the uid.
//
// Writes for one uid from one frontend are serialized, and a session writes
// its binding only if it is still its pool's session for the uid and open.
// So the store sees a frontend's binds in the pool's order, an older session
// whose write comes late never overwrites a newer one, and a session closed
// before its write leaves nothing behind. With that, however binds of a uid
// on several frontends interleave, the last binding in the store names a
// session nobody kicked, and every other session was kicked (by its pool, or
// by the bind that replaced it in the store).
//
// The store calls of a bind run on the bind's context without its
// cancellation (the local bind has happened; the record must follow), and
// those of a close on a background context, both bounded by
// [DefaultTimeout]. Failures are logged with the uid and session, never
// returned or panicked: a failed record leaves the session bound locally but
// not findable by other servers.
package bindings
