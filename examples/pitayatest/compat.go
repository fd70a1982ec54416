package main

// Pitaya's rules and words where Nopal's differ. Codes and the error shape
// ({"code","msg","metadata"}) are the same in both; the texts below are
// Pitaya's, and those rewritten from Nopal's apply with -pitaya-errors
// (on by default).

import (
	"context"
	"reflect"
	"strings"

	"github.com/nopal-dev/nopal/codec"
	"github.com/nopal-dev/nopal/frontend"
)

// Pitaya's texts.
const (
	msgNilReply        = "reply must not be null"
	msgSessionNotFound = "session not found"
	msgRouteNotFound   = "route not found"
	msgLocalRPC        = "you are making a rpc that may be processed locally, either specify a different server type or specify a server id"
	// Nopal's "route not found" for handlers starts with nopalHandler,
	// Pitaya's with pitayaHandler; the rest is the same.
	nopalHandler  = "nopal/handler: "
	pitayaHandler = "pitaya/handler: "
)

func errSessionNotFound() error {
	return codec.NewError(codec.CodeNotFound, msgSessionNotFound, nil)
}

// refuseNilReply is an After step: a request handler that answers a nil
// pointer or nil bytes without an error fails with PIT-000, as in Pitaya
// (Nopal would send "null" or an empty payload). Notify handlers have no
// reply: the step sees an untyped nil and lets it pass.
func refuseNilReply(_ context.Context, out any, err error) (any, error) {
	if err != nil || out == nil {
		return out, err
	}
	switch v := reflect.ValueOf(out); v.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Map, reflect.Interface:
		if v.IsNil() {
			return nil, codec.NewError(codec.CodeUnknown, msgNilReply, nil)
		}
	}
	return out, nil
}

// rpc is App.RPC under Pitaya's rules: an RPC to this server's own type
// is refused unless loopback is on (PITAYA_CLUSTER_RPC_SERVER_LOOPBACKENABLED),
// and then this server answers it; with pitayaErrors, a route without a
// remote fails as in Pitaya (message "route not found", the route in the
// metadata).
func (t *TestSvc) rpc(ctx context.Context, route string, in, out any) error {
	r, err := codec.ParseRoute(route)
	if err != nil || r.ServerType == "" {
		// Nopal's own answer for a route that names no server type.
		return t.app.RPC(ctx, route, in, out)
	}
	if r.ServerType == t.app.ServerType() {
		if !t.loopback {
			return codec.NewError(codec.CodeUnknown, msgLocalRPC, nil)
		}
		err = t.app.RPCTo(ctx, t.app.ServerID(), route, in, out)
	} else {
		err = t.app.RPC(ctx, route, in, out)
	}
	if err != nil && t.pitayaErrors {
		if e := codec.AsError(err); e.Code == codec.CodeNotFound && strings.HasPrefix(e.Message, nopalHandler) {
			return codec.NewError(codec.CodeNotFound, msgRouteNotFound, map[string]string{"route": r.Short()})
		}
	}
	return err
}

// pitayaErrorWrapper wraps an acceptor's connections so that the error
// responses they carry say "pitaya/handler: …" where Nopal says
// "nopal/handler: …" (a route without a handler, a bad argument). The
// frontend answers those before any pipeline runs, and a backend's come
// back over the bus, so the frontend's socket is the one place that sees
// them all.
type pitayaErrorWrapper struct {
	ser codec.Serializer
}

func (w pitayaErrorWrapper) Wrap(a frontend.Acceptor) frontend.Acceptor {
	return frontend.NewBaseWrapper(a, func(c frontend.PlayerConn) frontend.PlayerConn {
		return &pitayaErrorConn{PlayerConn: c, ser: w.ser}
	})
}

type pitayaErrorConn struct {
	frontend.PlayerConn
	ser codec.Serializer
}

// MaxPacketSize passes on the wrapped connection's bound.
func (c *pitayaErrorConn) MaxPacketSize() int {
	if p, ok := c.PlayerConn.(frontend.PacketLimited); ok {
		return p.MaxPacketSize()
	}
	return 0
}

// Write sends one packet, rewritten if it is an error response to rewrite.
func (c *pitayaErrorConn) Write(pkt []byte) (int, error) {
	if _, err := c.PlayerConn.Write(rewriteErrorPacket(c.ser, pkt)); err != nil {
		return 0, err
	}
	return len(pkt), nil
}

// WriteBatch sends packets, each rewritten as Write does.
func (c *pitayaErrorConn) WriteBatch(pkts [][]byte) error {
	out := make([][]byte, len(pkts))
	for i, p := range pkts {
		out[i] = rewriteErrorPacket(c.ser, p)
	}
	if bw, ok := c.PlayerConn.(frontend.BatchWriter); ok {
		return bw.WriteBatch(out)
	}
	for _, p := range out {
		if _, err := c.PlayerConn.Write(p); err != nil {
			return err
		}
	}
	return nil
}

// Flags of a message (see DESIGN.md §2).
const (
	flagZlib  = 0x10
	flagError = 0x20
)

// rewriteErrorPacket returns pkt, or, when pkt is an uncompressed error
// Response whose message starts with nopalHandler, the same packet with
// pitayaHandler in its place.
func rewriteErrorPacket(ser codec.Serializer, pkt []byte) []byte {
	t, body, err := codec.ParsePacket(pkt, 0)
	if err != nil || t != codec.Data || len(body) < 2 {
		return pkt
	}
	flag := body[0]
	if codec.MessageType(flag>>1&0x07) != codec.Response || flag&flagError == 0 || flag&flagZlib != 0 {
		return pkt
	}
	_, n := codec.Varint(body[1:])
	if n <= 0 {
		return pkt
	}
	head, data := body[:1+n], body[1+n:]
	e, err := codec.DecodeError(ser, data)
	if err != nil || !strings.HasPrefix(e.Message, nopalHandler) {
		return pkt
	}
	e.Message = pitayaHandler + strings.TrimPrefix(e.Message, nopalHandler)
	data, err = codec.EncodeError(ser, e)
	if err != nil {
		return pkt
	}
	out, err := codec.AppendPacket(nil, codec.Data, append(append([]byte(nil), head...), data...))
	if err != nil {
		return pkt
	}
	return out
}
