package session

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
)

// BindHook runs before a session is bound to uid; an error vetoes the bind.
type BindHook func(ctx context.Context, s *Session, uid string) error

// Pool holds the sessions of one frontend. It is safe for concurrent use.
// Register hooks before the frontend starts.
type Pool struct {
	log    *slog.Logger
	nextID atomic.Int64
	count  atomic.Int64

	mu    sync.RWMutex
	byID  map[int64]*Session
	byUID map[string]*Session

	onBind      []BindHook
	onAfterBind []func(ctx context.Context, s *Session)
	onClose     []func(s *Session)
	onSuspend   []func(s *Session)
	onResume    []func(ctx context.Context, s *Session)
}

// NewPool returns an empty pool that logs to log (nil: slog.Default()).
func NewPool(log *slog.Logger) *Pool {
	if log == nil {
		log = slog.Default()
	}
	return &Pool{log: log, byID: make(map[int64]*Session), byUID: make(map[string]*Session)}
}

// OnSessionBind adds a hook that runs before every bind and may veto it.
func (p *Pool) OnSessionBind(h BindHook) { p.onBind = append(p.onBind, h) }

// OnAfterSessionBind adds a hook that runs after every successful bind.
func (p *Pool) OnAfterSessionBind(f func(ctx context.Context, s *Session)) {
	p.onAfterBind = append(p.onAfterBind, f)
}

// OnSessionClose adds a hook that runs when any session ends, after the
// session's own OnClose callbacks.
func (p *Pool) OnSessionClose(f func(s *Session)) { p.onClose = append(p.onClose, f) }

// OnSessionSuspend adds a hook that runs when a session's connection drops
// and the session waits, suspended, for its client to resume it. The uid
// binding, data and group memberships stay; OnSessionClose runs only if the
// wait ends without a resume.
func (p *Pool) OnSessionSuspend(f func(s *Session)) { p.onSuspend = append(p.onSuspend, f) }

// OnSessionResume adds a hook that runs when a client resumes its session on
// this frontend: the same session object when it was suspended here, or a
// session moved from another frontend (same uid and data, a new id).
func (p *Pool) OnSessionResume(f func(ctx context.Context, s *Session)) {
	p.onResume = append(p.onResume, f)
}

// Suspended runs the OnSessionSuspend hooks for s; the frontend calls it
// when s's connection drops and s may be resumed.
func (p *Pool) Suspended(s *Session) {
	for _, f := range p.onSuspend {
		p.safe("OnSessionSuspend", s, func() { f(s) })
	}
}

// Resumed runs the OnSessionResume hooks for s.
func (p *Pool) Resumed(ctx context.Context, s *Session) {
	for _, f := range p.onResume {
		p.safe("OnSessionResume", s, func() { f(ctx, s) })
	}
}

// CheckResume runs the OnSessionBind hooks for a resume of s bound to uid: a
// resume passes through the same vetoes as a bind. An unbound session
// passes.
func (p *Pool) CheckResume(ctx context.Context, s *Session, uid string) error {
	if uid == "" {
		return nil
	}
	for _, h := range p.onBind {
		if err := h(ctx, s, uid); err != nil {
			return fmt.Errorf("session: resume of %q vetoed: %w", uid, err)
		}
	}
	return nil
}

// Adopt creates the session of a client that resumed here a session begun
// on another frontend: it holds uid and data, and is registered under uid
// (kicking an older session of uid on this frontend) without running the
// after-bind hooks. When check is set, the OnSessionBind hooks run first
// and may veto the resume; the session is then not registered.
func (p *Pool) Adopt(ctx context.Context, conn Conn, uid string, data map[string]any, check bool) (*Session, error) {
	s := &Session{id: p.nextID.Add(1), conn: conn, pool: p, data: data}
	if check {
		if err := p.CheckResume(ctx, s, uid); err != nil {
			return nil, err
		}
	}
	s.uid = uid
	p.mu.Lock()
	p.byID[s.id] = s
	var old *Session
	if uid != "" {
		old = p.byUID[uid]
		p.byUID[uid] = s
	}
	p.mu.Unlock()
	p.count.Add(1)
	if old != nil && old != s {
		p.log.Info("uid resumed here: kicking the older session", "uid", uid, "old", old.id, "new", s.id)
		if err := old.Kick(ctx); err != nil {
			_ = old.Close()
		}
	}
	return s, nil
}

// EndedElsewhere runs the OnSessionClose hooks for s, a session that was
// not in this pool: one whose frontend died, ended by another frontend on
// its behalf. s must not be in any pool.
func (p *Pool) EndedElsewhere(s *Session) {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	for _, f := range p.onClose {
		p.safe("OnSessionClose", s, func() { f(s) })
	}
}

// Forget removes s from the pool without running any callback: for a
// session that never started (its connection resumed another session), or
// one that moved to another frontend.
func (p *Pool) Forget(s *Session) { p.remove(s) }

// remove marks s closed and takes it out of the pool (never a newer
// session's uid entry). It returns s's OnClose callbacks, and false if s
// was closed already.
func (p *Pool) remove(s *Session) (callbacks []func(), ok bool) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, false
	}
	s.closed = true
	callbacks, s.onClose = s.onClose, nil
	uid := s.uid
	s.mu.Unlock()
	p.mu.Lock()
	delete(p.byID, s.id)
	if uid != "" && p.byUID[uid] == s {
		delete(p.byUID, uid)
	}
	p.mu.Unlock()
	p.count.Add(-1)
	return callbacks, true
}

// New creates a session for conn and adds it to the pool.
func (p *Pool) New(conn Conn) *Session {
	s := &Session{id: p.nextID.Add(1), conn: conn, pool: p}
	p.mu.Lock()
	p.byID[s.id] = s
	p.mu.Unlock()
	p.count.Add(1)
	return s
}

// ByID returns the session with id, or nil.
func (p *Pool) ByID(id int64) *Session {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.byID[id]
}

// ByUID returns the session bound to uid, or nil.
func (p *Pool) ByUID(uid string) *Session {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.byUID[uid]
}

// Count is the number of live sessions.
func (p *Pool) Count() int { return int(p.count.Load()) }

// Range calls f for every live session until f returns false.
func (p *Pool) Range(f func(*Session) bool) {
	p.mu.RLock()
	all := make([]*Session, 0, len(p.byID))
	for _, s := range p.byID {
		all = append(all, s)
	}
	p.mu.RUnlock()
	for _, s := range all {
		if !f(s) {
			return
		}
	}
}

func (p *Pool) bind(ctx context.Context, s *Session, uid string) error {
	if uid == "" {
		return ErrIllegalUID
	}
	s.mu.RLock()
	bound, closed := s.uid, s.closed
	s.mu.RUnlock()
	switch {
	case closed:
		return ErrClosed
	case bound != "":
		return fmt.Errorf("%w: %q", ErrAlreadyBound, bound)
	}
	for _, h := range p.onBind {
		if err := h(ctx, s, uid); err != nil {
			return fmt.Errorf("session: bind of %q vetoed: %w", uid, err)
		}
	}
	p.mu.Lock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		p.mu.Unlock()
		return ErrClosed
	}
	if s.uid != "" {
		bound := s.uid
		s.mu.Unlock()
		p.mu.Unlock()
		return fmt.Errorf("%w: %q", ErrAlreadyBound, bound)
	}
	s.uid = uid
	s.mu.Unlock()
	old := p.byUID[uid]
	p.byUID[uid] = s
	p.mu.Unlock()

	if old != nil && old != s {
		p.log.Info("uid bound again: kicking the older session", "uid", uid, "old", old.id, "new", s.id)
		if err := old.Kick(ctx); err != nil {
			_ = old.Close()
		}
	}
	for _, f := range p.onAfterBind {
		f(ctx, s)
	}
	return nil
}

// Closed ends s: the frontend calls it once the connection is gone. It
// removes s from the pool (never a newer session's uid entry) and runs the
// session's OnClose callbacks, then the pool's OnSessionClose hooks.
func (p *Pool) Closed(s *Session) {
	callbacks, ok := p.remove(s)
	if !ok {
		return
	}
	for _, f := range callbacks {
		p.safe("OnClose", s, f)
	}
	for _, f := range p.onClose {
		p.safe("OnSessionClose", s, func() { f(s) })
	}
}

func (p *Pool) safe(what string, s *Session, f func()) {
	defer func() {
		if r := recover(); r != nil {
			p.log.Error("session callback panicked", "callback", what, "session", s.id, "uid", s.UID(), "panic", r)
		}
	}()
	f()
}
