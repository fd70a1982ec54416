// Package client is a Go client for Nopal servers and any server speaking
// Pitaya's client wire protocol (package codec). Integration tests, the
// command-line REPL and the load generator use it.
//
// # Connecting
//
// [Dial] connects over TCP ("host:port") or WebSocket ("ws://host:port/path",
// "wss://..."; one packet per binary frame), sends the handshake, reads the
// server's answer (code, route dictionary, heartbeat interval, serializer),
// sends HandshakeAck and starts the client's reader goroutine:
//
//	c, err := client.Dial(ctx, "127.0.0.1:3250")
//	if err != nil { ... }
//	defer c.Close()
//	var res struct{ Code int }
//	err = c.Request(ctx, "room.join", map[string]any{"name": "ann"}, &res)
//
// A refused handshake makes Dial fail with an error wrapping
// [ErrHandshakeRefused]. Routes that the server's dictionary knows are sent as
// their 2-byte code, and pushed codes are expanded back to routes.
//
// # Requests, notifies and pushes
//
// [Client.Request] sends a request and waits for the response with the same
// id; an error response comes back as a *codec.Error (code such as "PIT-404",
// message, metadata). [Client.Notify] sends a message that gets no answer.
// Pushes arrive in order on the channel of [Client.Pushes]; the reader never
// waits for it, so pushes that find it full are dropped and counted
// ([Client.DroppedPushes]).
//
// Payloads are marshaled with the serializer: by default the one the server
// announces (JSON, or protobuf for "protos"), or the one given with
// [WithSerializer]. A []byte passes through untouched; [Client.RequestRaw]
// works on bytes both ways.
//
// # End of the connection
//
// [Client.Done] is closed when the connection ends and [Client.Err] says why:
// [ErrKicked] after a Kick packet, [ErrClosed] after [Client.Close], io.EOF
// (possibly wrapped) when the server closed it, or the read, write or
// protocol error that ended it. Pending and later calls fail with an error
// wrapping [ErrClosed] and that reason.
//
// # Resume and connection state
//
// With [WithAutoResume] a dropped connection does not end the client: it
// reconnects, to the address it dialed or to other frontends, and takes its
// session over ([Client.Resumes] counts the times, [Client.Addr] says where
// it is now connected). Failing that, it ends with an error wrapping
// [ErrSessionLost].
//
// [WithOnState] tells a program about these changes as they happen, for
// example to show them to a user while nothing else is going on: each
// [StateEvent] carries its kind ([StateResuming], [StateResumed], and
// finally one of [StateLost], [StateKicked] and [StateClosed]), the address
// concerned and the error. The function runs on a goroutine of its own, in
// order, one event at a time, so it never holds up the reader; the final
// event comes last, exactly once, [Client.Close] included:
//
//	c, err := client.Dial(ctx, addr, client.WithAutoResume(0, otherAddr),
//		client.WithOnState(func(e client.StateEvent) {
//			log.Printf("%s %s: %v", e.Kind, e.Addr, e.Err)
//		}))
//
// # Cost
//
// The client is built for load generation (thousands of connections per
// process), so each connection has exactly one goroutine, the reader. Writes
// are made by the calling goroutine under a mutex, each message encoded into
// a buffer and written with one write and a write deadline. Pending requests
// are a map from a uint64 id to a one-slot channel; no goroutine is started
// per request. The reader answers every server Heartbeat; with
// [WithHeartbeat] on (the default) one lazily re-armed timer per client also
// sends a heartbeat when nothing was written for the interval the server
// announced (its function runs briefly on a goroutine of its own when it
// fires); so does the function of [WithOnState], while events wait for
// it. Over TCP an idle connection holds no pooled read buffer (see
// [WithBufferPool] to share the pool between clients); over WebSocket each
// packet is read into a buffer of its exact size. [WithPushBuffer](0) saves
// the push channel's buffer on connections that ignore pushes.
//
// [Client.SendRaw] writes arbitrary bytes, for protocol tests that need
// malformed input.
package client
