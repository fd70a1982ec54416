// Package session is Nopal's session model.
//
// A [Session] stands for one connected client. On a frontend it owns the
// client's connection through a [Conn] (the frontend's per-connection agent):
// Push sends to the client, Kick sends a Kick packet and closes. A session is
// bound to a user id with [Session.Bind]; it carries data ([Session.Set],
// [Session.Get], the typed [Get] helper) and per-session close callbacks.
//
// A [Pool] holds the sessions of one frontend, finds them by id or uid and
// runs the app-wide hooks: OnSessionBind (may veto a bind, and a resume),
// OnAfterSessionBind, OnSessionClose, and OnSessionSuspend and
// OnSessionResume for a session whose connection dropped and whose client
// came back.
//
// One uid has at most one session per pool. Binding a uid that another
// session of the pool holds kicks the older session; the older session's
// close never removes the newer session's uid entry (Pitaya has a race there
// where a quick reconnect loses its own binding).
//
// Handlers find their session with [FromContext].
package session
