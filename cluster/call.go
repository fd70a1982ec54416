package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/nopal-dev/nopal/codec"
	"github.com/nopal-dev/nopal/metrics"
	"github.com/nopal-dev/nopal/propagate"
	"github.com/nopal-dev/nopal/session"
	"github.com/nopal-dev/nopal/stream"
)

// ---- calls: client requests forwarded here, and user RPCs ----

func (c *Runtime) serveCall(m *nats.Msg) {
	var call stream.Call
	if err := stream.UnmarshalCall(m.Data, &call); err != nil {
		c.respond(m, nil, codec.NewError(codec.CodeBadRequest, "nopal: malformed call: "+err.Error(), nil))
		return
	}
	started := time.Now()
	// The handler's context ends when the server stops without waiting any
	// longer for the calls in flight.
	ctx := c.life
	// The caller's propagated values (package propagate).
	if b := m.Header.Get(stream.BaggageHeader); b != "" {
		var berr error
		if ctx, berr = propagate.FromHeader(ctx, b); berr != nil {
			c.log.Warn("propagated values dropped", "route", call.Route, "err", berr)
		}
	}
	var span trace.Span
	if t := c.cfg.Tracer; t != nil {
		if m.Header != nil {
			ctx = t.Extract(ctx, stream.HeaderCarrier(m.Header))
		}
		ctx, span = t.Start(ctx, "nopal.serve", call.Route, trace.SpanKindServer,
			attribute.String("nopal.call_kind", call.Kind.String()), attribute.String("nopal.frontend", call.FrontendId))
	}
	// The deadline is rebuilt from the time left when the call was sent
	// (both on the sender's clock), so clock skew between hosts does not
	// shorten or stretch it. Notifies have none.
	if call.DeadlineUnixNano > 0 && !call.Notify {
		left := time.Unix(0, call.DeadlineUnixNano).Sub(time.Unix(0, call.SentUnixNano))
		if call.SentUnixNano == 0 {
			left = time.Until(time.Unix(0, call.DeadlineUnixNano))
		}
		dctx := withDeadline(ctx, started.Add(left))
		defer dctx.release()
		ctx = dctx
	}
	var out []byte
	var err error
	switch call.Kind {
	case stream.CallKind_CALL_KIND_SYS:
		s, serr := c.backendSession(&call)
		if serr != nil {
			err = serr
			break
		}
		out, _, err = c.cfg.Handlers.Handle(session.NewContext(ctx, s), call.Route, call.Payload)
	case stream.CallKind_CALL_KIND_USER:
		out, _, err = c.cfg.Remotes.Handle(ctx, call.Route, call.Payload)
	default:
		err = codec.NewError(codec.CodeBadRequest, fmt.Sprintf("nopal: unknown call kind %d", call.Kind), nil)
	}
	if span != nil {
		metrics.Finish(span, err)
	}
	if o := c.cfg.Observer; o != nil {
		o.Served(call.Route, call.Kind == stream.CallKind_CALL_KIND_USER, call.SentUnixNano, started, err)
	}
	if call.Notify {
		if err != nil {
			c.log.Debug("notify failed", "route", call.Route, "err", err)
		}
		c.respond(m, nil, nil) // an acknowledgement: notifies never get error replies
		return
	}
	c.respond(m, out, err)
}

func (c *Runtime) respond(m *nats.Msg, out []byte, err error) {
	if m.Reply == "" {
		return
	}
	var e *stream.ErrorInfo
	if err != nil {
		e = errorInfo(codec.AsError(err))
	}
	buf := c.buffer()
	defer c.bufs.Put(buf)
	data, merr := stream.AppendReply((*buf)[:0], out, e)
	if merr != nil {
		c.log.Error("encoding reply", "err", merr)
		return
	}
	*buf = data
	if rerr := m.Respond(data); rerr != nil { // copied into the bus's buffer
		c.log.Warn("reply lost", "subject", m.Subject, "err", rerr)
	}
}

// buffer is an encoding buffer from the Runtime's pool: the bus copies
// what it sends, so a Call or Reply's bytes go back to the pool once
// sent.
func (c *Runtime) buffer() *[]byte {
	if b, ok := c.bufs.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 0, 512)
	return &b
}

func errorInfo(e *codec.Error) *stream.ErrorInfo {
	return &stream.ErrorInfo{Code: e.Code, Msg: e.Message, Metadata: e.Metadata}
}

func fromErrorInfo(e *stream.ErrorInfo) *codec.Error {
	return codec.NewError(e.GetCode(), e.GetMsg(), e.GetMetadata())
}

// busError turns a failed bus request into what the client sees.
func busError(route string, err error) error {
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return codec.NewError(codec.CodeTimeout, fmt.Sprintf("nopal: %s timed out", route), nil)
	case errors.Is(err, nats.ErrNoResponders):
		return codec.NewError(codec.CodeServiceMissing, fmt.Sprintf("nopal: no server answers %s", route), nil)
	case errors.Is(err, context.Canceled):
		return codec.NewError(codec.CodeTimeout, fmt.Sprintf("nopal: %s cancelled", route), nil)
	}
	return codec.NewError(codec.CodeServiceMissing, fmt.Sprintf("nopal: bus unavailable for %s: %v", route, err), nil)
}

// request sends a call and waits for its reply.
func (c *Runtime) request(ctx context.Context, subject, route string, call *stream.Call) (_ []byte, err error) {
	if !c.bus.Connected() {
		return nil, codec.NewError(codec.CodeServiceMissing, fmt.Sprintf("nopal: bus unavailable for %s", route), nil)
	}
	// The call's time: RequestTimeout, or less if ctx ends sooner. It is
	// not put on ctx (a context with a deadline per request cost 15 % of
	// this path in a frontend's profile); Bus.Call takes it as a timeout.
	now := time.Now()
	timeout := c.cfg.RequestTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, dl.Sub(now))
	}
	call.DeadlineUnixNano = now.Add(timeout).UnixNano()
	call.SourceId = c.cfg.ServerID
	call.SentUnixNano = now.UnixNano()
	buf := c.buffer()
	defer c.bufs.Put(buf)
	data := stream.AppendCall((*buf)[:0], call) // sent (copied) before this returns
	*buf = data
	out := &nats.Msg{Subject: subject, Data: data}
	if t := c.cfg.Tracer; t != nil {
		var span trace.Span
		ctx, span = t.Start(ctx, "nopal.call", route, trace.SpanKindClient,
			attribute.String("nopal.call_kind", call.Kind.String()), attribute.String("nats.subject", subject))
		defer func() { metrics.Finish(span, err) }()
		out.Header = nats.Header{}
		t.Inject(ctx, stream.HeaderCarrier(out.Header))
	}
	if b, berr := propagate.Header(ctx); b != "" {
		if out.Header == nil {
			out.Header = nats.Header{}
		}
		out.Header.Set(stream.BaggageHeader, b)
	} else if berr != nil {
		c.log.Warn("propagated values not sent", "route", route, "err", berr)
	}
	c.rec.Record(subject, "", out.Header, data)
	// A notify waits for the backend's acknowledgement too: the next
	// message of the session is only sent once it is handled, so a
	// session's messages run in order on the backends as on a frontend.
	msg, err := c.bus.Call(ctx, out.Subject, out.Data, out.Header, timeout)
	if err != nil {
		return nil, busError(route, err)
	}
	if call.Notify {
		return nil, nil
	}
	if c.rec != nil {
		c.rec.Record(msg.Subject, "", map[string][]string{stream.RouteHeader: {route}}, msg.Data)
	}
	var r stream.Reply
	if err := stream.UnmarshalReply(msg.Data, &r); err != nil {
		return nil, codec.NewError(codec.CodeInternal, "nopal: malformed reply: "+err.Error(), nil)
	}
	if r.Error != nil {
		return nil, fromErrorInfo(r.Error)
	}
	return r.Payload, nil
}

// Forward sends a client request or notify, whose route r names another
// server type, to a server of that type (the one the type's Router picks,
// if it has one) and returns its answer.
func (c *Runtime) Forward(ctx context.Context, r codec.Route, msg *codec.Message) ([]byte, error) {
	svType := r.ServerType
	if svType == "" {
		return nil, codec.NewError(codec.CodeNotFound, fmt.Sprintf("nopal/handler: %s not found", msg.Route), nil)
	}
	if !c.disc.HasType(svType) {
		return nil, codec.NewError(codec.CodeServiceMissing, fmt.Sprintf("nopal: no server of type %q for %s", svType, msg.Route), nil)
	}
	subject := c.bus.RPCSubject(msg.Route)
	if router := c.cfg.Router(svType); router != nil {
		servers := c.disc.ServersByType(svType)
		if len(servers) == 0 {
			return nil, codec.NewError(codec.CodeServiceMissing, fmt.Sprintf("nopal: no server of type %q for %s", svType, msg.Route), nil)
		}
		sv, err := router(ctx, msg.Route, msg.Data, servers)
		if err != nil {
			return nil, err
		}
		subject = c.bus.ServerRPC(sv.ID)
	}
	call := &stream.Call{
		Kind:       stream.CallKind_CALL_KIND_SYS,
		Route:      msg.Route,
		Payload:    msg.Data,
		FrontendId: c.cfg.ServerID,
		RequestId:  msg.ID,
		Notify:     msg.Type == codec.Notify,
	}
	if s := session.FromContext(ctx); s != nil {
		snap, err := snapshot(s)
		if err != nil {
			return nil, err
		}
		call.Session = snap
	}
	return c.request(ctx, subject, msg.Route, call)
}

func snapshot(s *session.Session) (*stream.SessionSnapshot, error) {
	snap := &stream.SessionSnapshot{Id: s.ID(), Uid: s.UID()}
	if data := s.Data(); len(data) > 0 {
		b, err := json.Marshal(data)
		if err != nil {
			return nil, codec.WrapError(codec.CodeInternal, fmt.Errorf("nopal: session data: %w", err))
		}
		snap.Data = b
	}
	return snap, nil
}

// RPC calls a remote (route "svtype.component.method") on serverID, or on
// any server of the route's type when serverID is "", and decodes its
// result into out. Arguments and results are protobuf for proto.Message
// types, JSON otherwise. Errors returned by the remote keep their code,
// message and metadata.
func (c *Runtime) RPC(ctx context.Context, serverID, route string, in, out any) error {
	r, err := codec.ParseFullRoute(route)
	if err != nil {
		return fmt.Errorf("cluster: RPC route: %w", err)
	}
	subject := c.bus.RPCSubject(route)
	if serverID != "" {
		if _, ok := c.disc.ServerByID(serverID); !ok {
			return codec.NewError(codec.CodeServiceMissing, fmt.Sprintf("nopal: no server %q", serverID), nil)
		}
		subject = c.bus.ServerRPC(serverID)
	} else if !c.disc.HasType(r.ServerType) {
		return codec.NewError(codec.CodeServiceMissing, fmt.Sprintf("nopal: no server of type %q for %s", r.ServerType, route), nil)
	}
	payload, err := (codec.Auto{}).Marshal(in)
	if err != nil {
		return fmt.Errorf("cluster: RPC %s: encode: %w", route, err)
	}
	res, err := c.request(ctx, subject, route, &stream.Call{Kind: stream.CallKind_CALL_KIND_USER, Route: route, Payload: payload})
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	if err := (codec.Auto{}).Unmarshal(res, out); err != nil {
		return fmt.Errorf("cluster: RPC %s: decode: %w", route, err)
	}
	return nil
}
