package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/nopal-dev/nopal/discovery"
	"github.com/nopal-dev/nopal/stream"
)

// ---- pushes and kicks to users anywhere ----

// SendPush pushes v to users wherever they are connected: one bus message
// per frontend (of frontendType, or every frontend when it is "") carrying
// the uid list. It returns the uids no frontend held. A session suspended
// while its client reconnects counts as held. When a user's frontend died,
// the push is kept in the bus for the user's resume on another frontend
// (within the resume grace), and the uid is still returned.
func (c *Runtime) SendPush(ctx context.Context, route string, v any, uids []string, frontendType string) ([]string, error) {
	payload, err := c.cfg.Serializer.Marshal(v)
	if err != nil {
		return uids, fmt.Errorf("cluster: push %s: %w", route, err)
	}
	return c.fanOut(ctx, "push", frontendType, uids, &stream.Push{Uids: uids, Route: route, Payload: payload, Id: pushID()})
}

// PushToUsers pushes v to users on every frontend (groups.Pusher).
func (c *Runtime) PushToUsers(ctx context.Context, route string, v any, uids []string) ([]string, error) {
	return c.SendPush(ctx, route, v, uids, "")
}

// SendKick kicks users wherever they are connected and returns the uids no
// frontend held.
func (c *Runtime) SendKick(ctx context.Context, uids []string, frontendType string) ([]string, error) {
	return c.fanOut(ctx, "kick", frontendType, uids, &stream.Kick{Uids: uids})
}

func (c *Runtime) fanOut(ctx context.Context, kind, frontendType string, uids []string, m proto.Message) ([]string, error) {
	if len(uids) == 0 {
		return nil, nil
	}
	var targets []discovery.Server
	for _, s := range c.disc.Servers() {
		if s.Frontend && (frontendType == "" || s.Type == frontendType) {
			targets = append(targets, s)
		}
	}
	data, err := proto.Marshal(m)
	if err != nil {
		return uids, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.RequestTimeout)
		defer cancel()
	}
	delivered := make(map[string]bool, len(uids))
	gone := map[string]bool{} // frontends that did not answer: dead
	var mu sync.Mutex
	var wg sync.WaitGroup
	var firstErr error
	for _, t := range targets {
		wg.Go(func() {
			failed, err := c.deliver(ctx, t.ID, kind, m, data)
			mu.Lock()
			defer mu.Unlock()
			if errors.Is(err, nats.ErrNoResponders) {
				gone[t.ID] = true
				return // a frontend gone (dead, not yet expired): it holds nobody
			}
			if err != nil {
				gone[t.ID] = true // or hung: its users' pushes are kept too
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			missed := make(map[string]bool, len(failed))
			for _, u := range failed {
				missed[u] = true
			}
			for _, u := range uids {
				if !missed[u] {
					delivered[u] = true
				}
			}
		})
	}
	wg.Wait()
	var failed []string
	for _, u := range uids {
		if !delivered[u] {
			failed = append(failed, u)
		}
	}
	if p, ok := m.(*stream.Push); ok && len(failed) > 0 && !c.cfg.Resume.Off && c.bus.Connected() {
		// Bound users whose frontend is gone (it did not answer, or
		// died lately) may resume elsewhere: keep the push for them.
		// They are still reported: it may never be delivered. With no
		// frontend gone, a failed uid is simply offline: no lookup.
		for id := range c.lateDead() {
			gone[id] = true
		}
		if len(gone) > 0 {
			c.fallback(ctx, failed, p.Route, p.Payload, p.Id, gone)
		}
	}
	if len(failed) > 0 && firstErr != nil {
		return failed, fmt.Errorf("cluster: %s: %w", kind, firstErr)
	}
	return failed, nil
}

// deliver hands a push or kick to one frontend (this one directly) and
// returns the uids it did not hold.
func (c *Runtime) deliver(ctx context.Context, frontendID, kind string, m proto.Message, data []byte) ([]string, error) {
	if frontendID == c.cfg.ServerID {
		switch p := m.(type) {
		case *stream.Push:
			return c.pushLocal(ctx, p)
		case *stream.Kick:
			return c.kickLocal(ctx, p.Uids, p.SessionId), nil
		}
	}
	subject := c.bus.ServerPush(frontendID)
	if kind == "kick" {
		subject = c.bus.ServerKick(frontendID)
	}
	if !c.bus.Connected() {
		return nil, errors.New("bus unavailable")
	}
	c.rec.Record(subject, "", nil, data)
	msg, err := c.bus.Request(ctx, subject, data, nil)
	if err != nil {
		return nil, err
	}
	var d stream.Delivery
	if err := proto.Unmarshal(msg.Data, &d); err != nil {
		return nil, err
	}
	return d.Failed, nil
}

func (c *Runtime) pushLocal(ctx context.Context, p *stream.Push) ([]string, error) {
	fe := c.frontend()
	if fe == nil {
		return p.Uids, nil
	}
	return fe.PushToUsersID(ctx, p.Route, p.Payload, p.Uids, p.Id)
}

// kickLocal kicks users of this frontend (only session sid when sid != 0)
// and returns the uids it did not hold.
func (c *Runtime) kickLocal(ctx context.Context, uids []string, sid int64) []string {
	var failed []string
	for _, uid := range uids {
		s := c.cfg.Pool.ByUID(uid)
		if sid != 0 {
			s = c.cfg.Pool.ByID(sid)
			if s != nil && s.UID() != uid {
				s = nil
			}
		}
		if s == nil || s.Kick(ctx) != nil {
			failed = append(failed, uid)
		}
	}
	return failed
}

// KickSession implements bindings.Kicker: it kicks one session of another
// frontend, which the unique-session rule has replaced.
func (c *Runtime) KickSession(ctx context.Context, frontendID string, sessionID int64, uid string) error {
	k := &stream.Kick{Uids: []string{uid}, SessionId: sessionID}
	data, err := proto.Marshal(k)
	if err != nil {
		return err
	}
	failed, err := c.deliver(ctx, frontendID, "kick", k, data)
	if err != nil {
		return err
	}
	if len(failed) > 0 {
		return fmt.Errorf("nopal: session %d of %q not found on %s", sessionID, uid, frontendID)
	}
	return nil
}

// ---- frontend side: what backends and other servers ask of this one ----

func (c *Runtime) onPush(m *nats.Msg) {
	var p stream.Push
	if err := proto.Unmarshal(m.Data, &p); err != nil {
		c.log.Warn("malformed push", "err", err)
		return
	}
	failed, _ := c.pushLocal(context.Background(), &p)
	c.respondDelivery(m, failed)
}

func (c *Runtime) onKick(m *nats.Msg) {
	var k stream.Kick
	if err := proto.Unmarshal(m.Data, &k); err != nil {
		c.log.Warn("malformed kick", "err", err)
		return
	}
	c.respondDelivery(m, c.kickLocal(context.Background(), k.Uids, k.SessionId))
}

func (c *Runtime) respondDelivery(m *nats.Msg, failed []string) {
	if m.Reply == "" {
		return
	}
	data, _ := proto.Marshal(&stream.Delivery{Failed: failed})
	_ = m.Respond(data)
}
