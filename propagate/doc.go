// Package propagate holds the values a handler puts on its context for the
// handlers and remotes it calls on other servers: Pitaya's propagated
// context (nopal.AddToPropagateCtx, nopal.GetFromPropagateCtx).
//
// The values travel as W3C baggage (https://www.w3.org/TR/baggage/): in a
// context they are the OpenTelemetry baggage of go.opentelemetry.io/otel/baggage,
// and on the bus the "baggage" header (stream.BaggageHeader) of every call
// (a client request a frontend forwards, an RPC) and of every reliable job
// message. OpenTelemetry code sees them as baggage members, and baggage
// members OpenTelemetry code sets travel the same way.
//
// Each value is one member: the key as it was given, and the value encoded
// as JSON (then percent-encoded in the header, as the format requires). So a
// value is anything encoding/json can encode, and it comes back as
// encoding/json decodes it into an any: numbers are float64, objects
// map[string]any, arrays []any. That holds on every hop, and on the server
// that added the value too, so a handler reads the same thing wherever it
// runs; Decode reads a value into a type of your own. A member that is not
// JSON (set by other OpenTelemetry code) reads as its string.
//
// Limits are W3C's, which OpenTelemetry enforces when it reads the header:
// at most MaxSize (8192) bytes of encoded header and MaxValues (64)
// values in all. Add refuses a value that would go past them, or whose key
// is not a W3C token (letters, digits and !#$%&'*+-.^_`|~), and returns
// the context it was given with ErrTooLarge or ErrInvalidKey: the
// values already there stay, and nothing is silently cut on the way.
//
// Header and FromHeader write and read the header; the cluster runtime and
// the reliable-RPC worker call them, applications need not.
package propagate
