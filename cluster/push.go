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
// to each frontend (of frontendType, or any when it is "") that the uids'
// bindings name, carrying its uids; the uids the bindings do not name, or
// that a frontend did not hold, go to every such frontend after. It
// returns the uids no frontend held. A session suspended
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
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.RequestTimeout)
		defer cancel()
	}
	st := &fanState{delivered: make(map[string]bool, len(uids)), gone: map[string]bool{}}
	remaining := uids
	if !c.cfg.UniqueSessionPerType && len(targets) > 1 {
		// Straight to the frontend each uid's binding names; the uids
		// nobody is known to hold, and those a frontend turned out not to
		// hold (a binding the cache has not caught up with), go to every
		// frontend after.
		isTarget := make(map[string]bool, len(targets))
		for _, t := range targets {
			isTarget[t.ID] = true
		}
		by, unknown := c.bindings.Route(uids)
		direct := make(map[string][]string, len(by))
		remaining = unknown
		for fe, us := range by {
			if isTarget[fe] {
				direct[fe] = us
			} else {
				remaining = append(remaining, us...)
			}
		}
		c.deliverAll(ctx, kind, m, direct, false, st)
		for _, us := range direct {
			for _, u := range us {
				if !st.delivered[u] {
					remaining = append(remaining, u)
				}
			}
		}
	}
	if len(remaining) > 0 {
		all := make(map[string][]string, len(targets))
		for _, t := range targets {
			if !st.gone[t.ID] {
				all[t.ID] = remaining
			}
		}
		c.deliverAll(ctx, kind, withUids(m, remaining), all, true, st)
	}
	delivered, gone, firstErr := st.delivered, st.gone, st.firstErr
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

// fanState is what the deliveries of one fan-out found.
type fanState struct {
	mu        sync.Mutex
	delivered map[string]bool // uids a frontend held
	gone      map[string]bool // frontends that did not answer: dead, or hung
	firstErr  error
}

// deliverAll hands the frontends their push or kick at once and records
// what they held: to each a message for its own uids, or, shared (a
// broadcast: m carries the uids of every frontend), m itself, encoded once.
func (c *Runtime) deliverAll(ctx context.Context, kind string, m proto.Message, uidsOf map[string][]string, shared bool, st *fanState) {
	var sharedData []byte
	var sharedErr error
	if shared {
		sharedData, sharedErr = proto.Marshal(m)
	}
	var wg sync.WaitGroup
	for fe, us := range uidsOf {
		one := func() {
			msg, data, err := m, sharedData, sharedErr
			if !shared {
				msg = withUids(m, us)
				data, err = proto.Marshal(msg)
			}
			var failed []string
			if err == nil {
				failed, err = c.deliver(ctx, fe, kind, msg, data)
			}
			st.mu.Lock()
			defer st.mu.Unlock()
			if errors.Is(err, nats.ErrNoResponders) {
				st.gone[fe] = true
				return // a frontend gone (dead, not yet expired): it holds nobody
			}
			if err != nil {
				st.gone[fe] = true // or hung: its users' pushes are kept too
				if st.firstErr == nil {
					st.firstErr = err
				}
				return
			}
			missed := make(map[string]bool, len(failed))
			for _, u := range failed {
				missed[u] = true
			}
			for _, u := range us {
				if !missed[u] {
					st.delivered[u] = true
				}
			}
		}
		if len(uidsOf) == 1 { // a push to one user: no goroutine to wait for
			one()
			continue
		}
		wg.Go(one)
	}
	wg.Wait()
}

// withUids is m (a push or a kick) for uids only.
func withUids(m proto.Message, uids []string) proto.Message {
	switch p := m.(type) {
	case *stream.Push:
		return &stream.Push{Uids: uids, Route: p.Route, Payload: p.Payload, Id: p.Id}
	case *stream.Kick:
		return &stream.Kick{Uids: uids, SessionId: p.SessionId}
	}
	return m
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
