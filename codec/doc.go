// Package codec is Nopal's client wire protocol, byte-compatible with Pitaya and
// Pomelo clients (libpitaya, the Pitaya Go client, Pomelo JS clients).
//
// Two layers:
//
//   - Packets: [type:1][length:3 big-endian][body]. [AppendPacket] encodes one,
//     [ParsePacket] decodes exactly one (a WebSocket frame), and [PacketReader]
//     splits a byte stream (TCP), coping with packets that arrive in pieces or
//     several in one read.
//   - Messages, the body of a Data packet: a flag byte (route compressed, type,
//     zlib payload, error), a base-128 varint id, a route (length-prefixed or a
//     2-byte code from the route [Dictionary]) and the payload. [MessageCodec]
//     encodes and decodes them.
//
// Decoding a Data packet into a reused [Message] does not allocate when the
// route is known to the dictionary and the payload is not compressed: the
// message's Data aliases the packet body, and the route string is interned.
//
// Outgoing payloads are zlib-compressed (flag 0x10) only when they are at least
// [MessageCodec.CompressThreshold] bytes long and compressing makes them
// shorter. Pitaya tries every message with a fresh zlib writer, which costs most
// of its CPU on small messages; here writers and readers are pooled per codec.
//
// Payloads are (de)serialized by a [Serializer]: [JSON] and [Protobuf] are
// provided, and both pass raw []byte through untouched. Errors sent to clients
// are [Error] values (code, msg, metadata) encoded with [EncodeError].
//
// The handshake bodies are [HandshakeRequest] and [HandshakeResponse].
//
// Routes are parsed once, where they enter (a client's message, an RPC, a
// job), by [ParseRoute] into a [Route]: "svtype.component.method", or
// "component.method" for "this server". It is the module's only route
// parser, and it accepts only routes whose parts are safe as NATS subject
// tokens (no wildcard, separator, whitespace, control character or invalid
// UTF-8); its errors wrap [ErrInvalidRoute]. [ParseFullRoute] also requires
// the server type. Route.String gives the canonical form back, Route.Short
// the "component.method" a handler is registered under.
package codec
