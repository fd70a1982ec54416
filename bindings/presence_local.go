package bindings

import (
	"context"

	"github.com/nopal-dev/nopal/session"
)

// LocalPresence is the Presence of a standalone server: the uids bound in
// its session pool, followed through the pool's hooks. Its methods never
// fail.
type LocalPresence struct {
	hub        *hub
	pool       *session.Pool
	frontendID string
}

var _ Presence = (*LocalPresence)(nil)

// NewLocalPresence follows the binds and closes of pool, whose server is
// frontendID. Call it before the frontend starts: it registers hooks on
// the pool (OnAfterSessionBind, OnSessionClose).
func NewLocalPresence(pool *session.Pool, frontendID string) *LocalPresence {
	p := &LocalPresence{hub: newHub(), pool: pool, frontendID: frontendID}
	pool.OnAfterSessionBind(p.afterBind)
	pool.OnSessionClose(p.onClose)
	return p
}

// afterBind and onClose decide from the pool's state, under the hub's
// lock: whatever the order of a uid's binds and closes and of their hooks,
// the last hook to run leaves uid online exactly when the pool holds a
// session for it.
func (p *LocalPresence) afterBind(_ context.Context, s *session.Session) {
	uid := s.UID()
	if uid == "" {
		return
	}
	h := p.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if !s.Closed() && p.pool.ByUID(uid) == s {
		h.setLocked(uid, Binding{FrontendID: p.frontendID, SessionID: s.ID()})
	}
}

func (p *LocalPresence) onClose(s *session.Session) {
	uid := s.UID()
	if uid == "" {
		return
	}
	h := p.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if cur := p.pool.ByUID(uid); cur == nil || cur == s {
		h.removeLocked(uid)
	}
	// Otherwise a newer session holds uid: still online, no flap.
}

// Online reports whether a session of the pool is bound to uid.
func (p *LocalPresence) Online(_ context.Context, uid string) (bool, error) {
	return p.hub.online(uid), nil
}

// Count is the number of uids bound in the pool.
func (p *LocalPresence) Count(context.Context) (int, error) { return p.hub.count(), nil }

// List returns the uids bound in the pool, all on this server.
func (p *LocalPresence) List(context.Context) (map[string]string, error) { return p.hub.list(), nil }

// Watch reports the uids bound now, then binds and closes (see Presence).
// A standalone server has no moves.
func (p *LocalPresence) Watch(ctx context.Context) (<-chan PresenceEvent, error) {
	return p.hub.watch(ctx), nil
}
