package stream

import "github.com/nats-io/nats.go"

// Headers the bus's messages carry. Every one is declared here; the
// protobuf envelope carries the rest. (JetStream's own, such as
// Nats-Msg-Id, are jetstream.MsgIDHeader and friends; the W3C trace
// context is written by the tracer through HeaderCarrier.)
const (
	// RouteHeader names a route. On a reply's traffic record it is the
	// route of the call the reply answers ("room.room.join"): Replay
	// reports it as the reply's route and filters replies by it. On a
	// mailbox entry it is the route of a push kept by its sender rather
	// than by a frontend: the entry's body is then the push's payload,
	// not a client packet.
	RouteHeader = "Nopal-Route"
	// SeqHeader is, on a mailbox entry kept by a frontend, the push's
	// number in its session.
	SeqHeader = "Nopal-Seq"
	// SessionHeader is, on a mailbox entry kept by a frontend, the session
	// it was pushed to, "<frontend id>.<session id>".
	SessionHeader = "Nopal-Session"
	// PushIDHeader is, on a mailbox entry, the cluster push's id: copies
	// of one push carry the same id, and a resume drops all but one.
	PushIDHeader = "Nopal-Push-Id"

	// JobRouteHeader is the route of a reliable job, on its dead letter
	// (a job message carries its route in its body).
	JobRouteHeader = "Nopal-Job-Route"
	// JobStateHeader is the final state of a job, on its dead letter.
	JobStateHeader = "Nopal-Job-State"

	// BaggageHeader is the W3C baggage (https://www.w3.org/TR/baggage/)
	// of a call (a forwarded request, an RPC) or of a job message: the
	// caller's propagated values (package propagate). It is sent only when
	// there are some; OpenTelemetry's baggage propagator reads it too.
	BaggageHeader = "baggage"
)

// HeaderCarrier carries a trace context in NATS headers: it is an
// OpenTelemetry propagation.TextMapCarrier (Get, Set, Keys) over
// nats.Header, for a propagator's Inject and Extract:
//
//	prop.Inject(ctx, stream.HeaderCarrier(msg.Header))
//	ctx = prop.Extract(ctx, stream.HeaderCarrier(msg.Header))
//
// Set needs a non-nil header (nats.NewMsg makes one).
type HeaderCarrier nats.Header

// Get returns the first value of key, or "".
func (c HeaderCarrier) Get(key string) string { return nats.Header(c).Get(key) }

// Set sets key to value, replacing its values.
func (c HeaderCarrier) Set(key, value string) { nats.Header(c).Set(key, value) }

// Keys lists the keys present.
func (c HeaderCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}
