// Package frontend holds client connections: acceptors (TCP, WebSocket, or
// your own [Acceptor]), acceptor [Wrapper]s such as the [RateLimiter], the
// handshake, heartbeats and the per-connection agent that decodes packets,
// hands requests to a [Handler] and writes responses and pushes back.
//
// Per connection: one reader goroutine handles the client's packets in
// arrival order, so one session's requests run one after the other while
// different sessions run in parallel. A connection silent for
// Config.ParkIdle gives its reader back: the frontend's poller waits for
// the client's next bytes and starts a reader again (Linux, plain TCP and
// WebSocket), so an idle connection holds no goroutine and no read buffer.
// Outgoing packets go through a send queue bounded in packets and bytes
// (and, optionally, a budget for the whole frontend); a connection with
// something queued joins the line of the frontend's writer pool, a few
// goroutines that write a connection's whole queue with one non-blocking
// writev, and only what the socket does not take is left to a writer
// goroutine of the connection's own, with a write deadline. A client whose
// queue passes a bound is disconnected and never slows down anyone else: a
// broadcast never waits for a socket.
//
// Rules of the protocol enforced here: a Data packet before the
// HandshakeAck, a second handshake, an unknown packet type, an oversized or
// malformed packet close that connection (and are counted in [Stats]); a
// handshake that is bad JSON or fails a [HandshakeValidator] is answered with
// code 400, then closed. The server sends a heartbeat every interval and
// closes a connection silent for twice that. A socket that does not
// handshake within HandshakeTimeout is closed.
//
// Sessions outlive their connections (see [ResumeConfig]): the handshake
// response carries a resume token; when a connection drops its session is
// suspended for a grace window, and a client that comes back with the token
// and the count of pushes it received takes the session over, here or on
// another frontend ([ResumeCluster]), and gets the pushes it missed in
// order, once. A per-session link numbers every push under the same lock
// that queues it, so the numbers are the wire order, and keeps the latest
// for replay.
//
// [Frontend.Shutdown] drains: acceptors stop, requests in flight finish,
// every client gets a Kick packet, then its connection closes.
//
// Behind a load balancer, the client's address is the connection's
// RemoteAddr, so the session, the logs and any wrapper see it:
// [WithProxyProtocol] reads a PROXY protocol header (v1 or v2) at the start
// of each connection from a trusted peer (the header of any other peer is
// read and ignored), and [WithTrustedProxies] takes a WebSocket client's
// address from the X-Forwarded-For (or, with [WithForwardedHeader],
// Forwarded) header of a trusted peer's upgrade request, reading it from
// the right and stopping at the first address that is not a trusted proxy.
// A malformed header closes that connection only: a PROXY header as bad
// input, a forwarding header with 400 Bad Request. The [RateLimiter] counts
// per connection, not per address, so a load balancer's connections never
// share a budget.
//
// The rate limiter lives here rather than in package limiter (which holds the
// bucket alone) because it wraps this package's Acceptor.
//
// A Frontend is built and tested on its own ([New] with a [Config], a
// [HandlerFunc] and a session.Pool); the App wires it, and a cluster reaches
// it through [ResumeCluster] and the hand-over methods ([Frontend.HandOver],
// [Frontend.Drain], [Frontend.PushPacket]).
//
// # Files
//
//   - frontend.go: [Frontend] and [Config]: accepting connections, the
//     heartbeat ticker, Shutdown (drain), PushToUsers.
//   - acceptor.go, ws.go: the TCP and WebSocket acceptors and their
//     connections ([PlayerConn]); wsconn.go: WebSocket frames after the
//     upgrade (gorilla/websocket answers the upgrade), parsed, checked,
//     unmasked and encoded with github.com/gobwas/ws; the buffering that
//     resumes after a parked read, the size limits, fragment assembly and
//     the batched writes are ours.
//   - socket.go: the writer pool and its writes that cannot block,
//     straight to a connection's socket; park.go: idle connections
//     giving their reader back, and the poller (epoll) that wakes them.
//   - proxy.go: client addresses behind a load balancer: the PROXY protocol
//     ([WithProxyProtocol], with github.com/pires/go-proxyproto) and
//     forwarding headers ([WithTrustedProxies], [WithForwardedHeader]).
//   - wrapper.go: acceptor wrappers ([Wrapper]) and the [RateLimiter].
//   - agent.go: the agent, one per connection: the reader (handshake,
//     packets, requests in order), the bounded send queue and the writer
//     goroutine of a connection whose socket is full.
//   - link.go: the link, one per session, outliving its connections: the
//     session.Conn of the session, push numbering, kept pushes for replay,
//     suspension and the end of the session. The frontend finds a session's
//     link in its own table, never by casting session.Conn.
//   - resume.go: the resume protocol: [ResumeConfig] and its defaults
//     ([ResumeConfig.Resolved]), tokens, claiming a session on a resume
//     handshake (here or from another frontend through [ResumeCluster]),
//     and the hand-over to another frontend with its tombstones.
package frontend
