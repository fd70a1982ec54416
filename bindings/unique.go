package bindings

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/nopal-dev/nopal/session"
)

// DefaultTimeout bounds each store call and kick UniqueSession makes.
const DefaultTimeout = 5 * time.Second

// Kicker kicks one session of a frontend. The app sends a bus message to
// that frontend, which kicks the session only if it still exists and is
// bound to uid (session ids restart with a frontend, so the uid check keeps
// a stale binding from kicking an unrelated session).
type Kicker interface {
	KickSession(ctx context.Context, frontendID string, sessionID int64, uid string) error
}

// UniqueSession is the unique-session module: one live session per uid in
// the whole cluster. Attach it to a frontend's pool: every bind records the
// session in the Store and kicks the session it replaced on another
// frontend (the pool itself kicks an older session of the same frontend);
// every close of a bound session removes its binding if it still holds it.
type UniqueSession struct {
	store      *Store
	frontendID string
	kicker     Kicker
	log        *slog.Logger
	timeout    time.Duration
	// ownType and typeOf, set by PerType, limit kicks to frontends of this
	// frontend's type.
	ownType string
	typeOf  func(frontendID string) (string, bool)

	locks keyedMutex
}

// NewUniqueSession returns the module for the frontend frontendID. log nil
// means slog.Default().
func NewUniqueSession(store *Store, frontendID string, kicker Kicker, log *slog.Logger) *UniqueSession {
	if log == nil {
		log = slog.Default()
	}
	return &UniqueSession{store: store, frontendID: frontendID, kicker: kicker, log: log, timeout: DefaultTimeout}
}

// PerType makes the rule Pitaya's: one session per uid per frontend type.
// A bind kicks the session it replaced only when that session's frontend is
// of type ownType, as typeOf tells (a frontend typeOf does not know is
// kicked as before: it is gone, or not yet discovered). The uid's binding
// names its latest session, whatever its type: pushes reach every session
// anyway, but presence and the resume of a dead frontend's users see only
// that one. Call it before Attach.
func (u *UniqueSession) PerType(ownType string, typeOf func(frontendID string) (string, bool)) *UniqueSession {
	u.ownType, u.typeOf = ownType, typeOf
	return u
}

// Attach registers the module's hooks on pool (before the frontend starts).
func (u *UniqueSession) Attach(pool *session.Pool) {
	pool.OnAfterSessionBind(func(ctx context.Context, s *session.Session) { u.afterBind(ctx, pool, s) })
	pool.OnSessionClose(u.onClose)
}

// afterBind records s as uid's session and kicks the remote session it
// replaced.
//
// The local bind has happened by now, so the record must follow even if the
// request that bound ends: the store calls run on ctx without its
// cancellation, bounded by the module's timeout.
//
// Writes for one uid from this frontend are serialized, and a session writes
// only while it is still the pool's session for uid: the pool orders local
// binds (and kicks the older session), so the store sees them in the same
// order, and an older session finishing late never overwrites a newer one's
// binding. A session that closed before writing writes nothing, and its
// close's Unbind runs under the same lock, so a closed session never leaves
// a binding behind.
func (u *UniqueSession) afterBind(ctx context.Context, pool *session.Pool, s *session.Session) {
	uid := s.UID()
	if uid == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), u.timeout)
	defer cancel()
	b := Binding{FrontendID: u.frontendID, SessionID: s.ID()}

	unlock := u.locks.lock(uid)
	if s.Closed() || pool.ByUID(uid) != s {
		unlock()
		u.log.Debug("unique session: superseded before recording its binding", "uid", uid, "session", s.ID())
		return
	}
	prev, err := u.store.Bind(ctx, uid, b)
	unlock()
	if err != nil {
		u.log.Error("unique session: bind failed", "uid", uid, "session", s.ID(), "err", err)
		return
	}
	if prev == nil || *prev == b || prev.FrontendID == u.frontendID {
		return
	}
	if u.typeOf != nil {
		if t, ok := u.typeOf(prev.FrontendID); ok && t != u.ownType {
			u.log.Debug("unique session: the session on a frontend of another type stays", "uid", uid,
				"old_frontend", prev.FrontendID, "old_type", t)
			return
		}
	}
	u.log.Info("unique session: kicking the session on another frontend", "uid", uid, "session", s.ID(),
		"old_frontend", prev.FrontendID, "old_session", prev.SessionID)
	if err := u.kicker.KickSession(ctx, prev.FrontendID, prev.SessionID, uid); err != nil {
		u.log.Error("unique session: kick failed", "uid", uid, "session", s.ID(),
			"old_frontend", prev.FrontendID, "old_session", prev.SessionID, "err", err)
	}
}

// onClose removes the closed session's binding if it still holds it.
func (u *UniqueSession) onClose(s *session.Session) {
	uid := s.UID()
	if uid == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), u.timeout)
	defer cancel()
	unlock := u.locks.lock(uid)
	defer unlock()
	if err := u.store.Unbind(ctx, uid, Binding{FrontendID: u.frontendID, SessionID: s.ID()}); err != nil {
		u.log.Error("unique session: unbind failed", "uid", uid, "session", s.ID(), "err", err)
	}
}

// keyedMutex is one mutex per key, allocated while in use.
type keyedMutex struct {
	mu sync.Mutex
	m  map[string]*keyedEntry
}

type keyedEntry struct {
	mu   sync.Mutex
	refs int
}

func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.m == nil {
		k.m = make(map[string]*keyedEntry)
	}
	e := k.m[key]
	if e == nil {
		e = &keyedEntry{}
		k.m[key] = e
	}
	e.refs++
	k.mu.Unlock()

	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}
