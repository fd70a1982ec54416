package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/nopal-dev/nopal/codec"
	"github.com/nopal-dev/nopal/session"
	"github.com/nopal-dev/nopal/stream"
)

// onSessionOp binds a session or takes its data, for a backend session.
// Binds run the app's hooks (and the unique-session rule), which may talk
// to the bus: they run on their own goroutine.
func (c *Runtime) onSessionOp(m *nats.Msg) {
	c.calls.run(func() {
		var op stream.SessionOp
		if err := proto.Unmarshal(m.Data, &op); err != nil {
			c.respond(m, nil, codec.NewError(codec.CodeBadRequest, "nopal: malformed session op", nil))
			return
		}
		s := c.cfg.Pool.ByID(op.SessionId)
		if s == nil {
			c.respond(m, nil, codec.NewError(codec.CodeNotFound, fmt.Sprintf("nopal: session %d is gone", op.SessionId), nil))
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.RequestTimeout)
		defer cancel()
		if op.Uid != "" {
			if err := s.Bind(ctx, op.Uid); err != nil {
				c.respond(m, nil, codec.WrapError(codec.CodeBadRequest, err))
				return
			}
		}
		if op.SetData {
			var data map[string]any
			if len(op.Data) > 0 {
				if err := json.Unmarshal(op.Data, &data); err != nil {
					c.respond(m, nil, codec.NewError(codec.CodeBadRequest, "nopal: session data: "+err.Error(), nil))
					return
				}
			}
			s.SetData(data)
		}
		c.respond(m, nil, nil)
	})
}

// ---- backend sessions ----

func (c *Runtime) backendSession(call *stream.Call) (*session.Session, error) {
	snap := call.GetSession()
	var data map[string]any
	if len(snap.GetData()) > 0 {
		if err := json.Unmarshal(snap.GetData(), &data); err != nil {
			return nil, codec.NewError(codec.CodeBadRequest, "nopal: session data: "+err.Error(), nil)
		}
	}
	conn := &remoteConn{c: c, frontendID: call.FrontendId}
	s := session.NewBackend(snap.GetId(), snap.GetUid(), data, call.FrontendId, conn, c)
	conn.s = s
	return s, nil
}

// Bind implements session.Remote: the frontend binds its session.
func (c *Runtime) Bind(ctx context.Context, s *session.Session, uid string) error {
	return c.sessionOp(ctx, s, &stream.SessionOp{SessionId: s.ID(), Uid: uid})
}

// PushToFront implements session.Remote: the frontend session takes the
// backend session's data.
func (c *Runtime) PushToFront(ctx context.Context, s *session.Session) error {
	data, err := json.Marshal(s.Data())
	if err != nil {
		return fmt.Errorf("nopal: session data: %w", err)
	}
	return c.sessionOp(ctx, s, &stream.SessionOp{SessionId: s.ID(), SetData: true, Data: data})
}

func (c *Runtime) sessionOp(ctx context.Context, s *session.Session, op *stream.SessionOp) error {
	data, err := proto.Marshal(op)
	if err != nil {
		return err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.RequestTimeout)
		defer cancel()
	}
	subject := c.bus.ServerSessionOp(s.FrontendID())
	c.rec.Record(subject, "", nil, data)
	msg, err := c.bus.Request(ctx, subject, data, nil)
	if err != nil {
		return busError("session op", err)
	}
	var r stream.Reply
	if err := proto.Unmarshal(msg.Data, &r); err != nil {
		return err
	}
	if r.Error != nil {
		return fromErrorInfo(r.Error)
	}
	return nil
}

// remoteConn carries a backend session's pushes and kicks to its frontend.
type remoteConn struct {
	c          *Runtime
	frontendID string
	s          *session.Session
}

// Push waits for the frontend to take the push, so a handler's pushes
// reach the client before its response, as on a frontend.
func (r *remoteConn) Push(route string, v any) error {
	uid := r.s.UID()
	if uid == "" {
		return errors.New("nopal: push from a backend session needs a bound uid")
	}
	payload, err := r.c.cfg.Serializer.Marshal(v)
	if err != nil {
		return err
	}
	p := &stream.Push{Uids: []string{uid}, Route: route, Payload: payload}
	data, err := proto.Marshal(p)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.c.cfg.RequestTimeout)
	defer cancel()
	failed, err := r.c.deliver(ctx, r.frontendID, "push", p, data)
	if err != nil {
		return err
	}
	if len(failed) > 0 {
		return session.ErrClosed
	}
	return nil
}

func (r *remoteConn) Kick(ctx context.Context) error {
	return r.c.KickSession(ctx, r.frontendID, r.s.ID(), r.s.UID())
}

func (r *remoteConn) Close() error { return r.Kick(context.Background()) }

func (r *remoteConn) RemoteAddr() net.Addr { return frontendAddr(r.frontendID) }

// frontendAddr stands for a client reached through another frontend.
type frontendAddr string

func (f frontendAddr) Network() string { return "nopal" }

func (f frontendAddr) String() string { return string(f) }
