package session

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"sync"
)

// Errors returned by sessions; check them with errors.Is.
var (
	ErrIllegalUID   = errors.New("session: illegal uid")
	ErrAlreadyBound = errors.New("session: already bound to a uid")
	ErrClosed       = errors.New("session: closed")
	ErrNotBackend   = errors.New("session: PushToFront is for backend sessions")
)

// Remote is how a backend session reaches the frontend that holds its
// client: a bind is made there, and data changes reach it only through
// PushToFront.
type Remote interface {
	Bind(ctx context.Context, s *Session, uid string) error
	PushToFront(ctx context.Context, s *Session) error
}

// Conn is the link a session talks through. The frontend's agent implements
// it for a client connection.
type Conn interface {
	// Push sends a push message with route and payload v (serialized by the
	// connection's serializer; a []byte passes through).
	Push(route string, v any) error
	// Kick sends a Kick packet and closes the connection once it is written.
	Kick(ctx context.Context) error
	// Close closes the connection at once.
	Close() error
	RemoteAddr() net.Addr
}

// Session is one client's session. It is safe for concurrent use.
type Session struct {
	id   int64
	conn Conn
	pool *Pool // frontend sessions

	remote     Remote // backend sessions
	frontendID string

	mu      sync.RWMutex
	uid     string
	data    map[string]any
	onClose []func()
	closed  bool
}

// NewBackend returns a backend session: a copy of the frontend session id
// of frontendID, made for one forwarded request. conn carries its pushes
// and kicks to the frontend. A backend session has no callbacks and is not
// found by uid.
func NewBackend(id int64, uid string, data map[string]any, frontendID string, conn Conn, remote Remote) *Session {
	return &Session{id: id, uid: uid, data: data, frontendID: frontendID, conn: conn, remote: remote}
}

// IsFrontend reports whether this is the frontend session (the one that
// owns the connection) rather than a backend copy.
func (s *Session) IsFrontend() bool { return s.remote == nil }

// FrontendID is the server holding the client's connection ("" for a
// frontend session of this server).
func (s *Session) FrontendID() string { return s.frontendID }

// PushToFront sends the backend session's data to its frontend session.
func (s *Session) PushToFront(ctx context.Context) error {
	if s.remote == nil {
		return ErrNotBackend
	}
	return s.remote.PushToFront(ctx, s)
}

// ID is the session's id, unique within its pool.
func (s *Session) ID() int64 { return s.id }

// UID is the user id the session is bound to, or "".
func (s *Session) UID() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.uid
}

// RemoteAddr is the client's address.
func (s *Session) RemoteAddr() net.Addr { return s.conn.RemoteAddr() }

// Bind binds the session to uid. The pool's OnSessionBind hooks may veto it;
// a session is bound once. If another session of the pool holds uid, that
// older session is kicked.
func (s *Session) Bind(ctx context.Context, uid string) error {
	if s.remote == nil {
		return s.pool.bind(ctx, s, uid)
	}
	if uid == "" {
		return ErrIllegalUID
	}
	if bound := s.UID(); bound != "" {
		return fmt.Errorf("%w: %q", ErrAlreadyBound, bound)
	}
	if err := s.remote.Bind(ctx, s, uid); err != nil {
		return err
	}
	s.mu.Lock()
	s.uid = uid
	s.mu.Unlock()
	return nil
}

// Push sends a push to the client.
func (s *Session) Push(route string, v any) error {
	if s.Closed() {
		return ErrClosed
	}
	return s.conn.Push(route, v)
}

// Kick sends the client a Kick packet and closes its connection.
func (s *Session) Kick(ctx context.Context) error { return s.conn.Kick(ctx) }

// Close closes the client's connection without a Kick packet.
func (s *Session) Close() error { return s.conn.Close() }

// Closed reports whether the session has ended.
func (s *Session) Closed() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.closed
}

// OnClose registers f to run when the session ends. If it has already
// ended, f runs at once. Backend sessions have no callbacks: f is ignored.
func (s *Session) OnClose(f func()) {
	if s.remote != nil {
		return
	}
	s.mu.Lock()
	if !s.closed {
		s.onClose = append(s.onClose, f)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	f()
}

// Set stores a value under key.
func (s *Session) Set(key string, v any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.data == nil {
		s.data = make(map[string]any)
	}
	s.data[key] = v
}

// Get returns the value under key.
func (s *Session) Get(key string) (any, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, ok := s.data[key]
	return v, ok
}

// Has reports whether key holds a value.
func (s *Session) Has(key string) bool {
	_, ok := s.Get(key)
	return ok
}

// Remove deletes key.
func (s *Session) Remove(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.data, key)
}

// Clear deletes every key.
func (s *Session) Clear() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.data)
}

// Data returns a copy of the session's data.
func (s *Session) Data() map[string]any {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return maps.Clone(s.data)
}

// SetData replaces the session's data with a copy of data.
func (s *Session) SetData(data map[string]any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data = maps.Clone(data)
}

// Get returns the value under key as a T. It reports false when the key is
// missing or holds another type.
func Get[T any](s *Session, key string) (T, bool) {
	v, ok := s.Get(key)
	if !ok {
		var zero T
		return zero, false
	}
	t, ok := v.(T)
	return t, ok
}

func (s *Session) String() string {
	return fmt.Sprintf("session %d (uid %q)", s.id, s.UID())
}

type ctxKey struct{}

// NewContext returns ctx carrying s.
func NewContext(ctx context.Context, s *Session) context.Context {
	return context.WithValue(ctx, ctxKey{}, s)
}

// FromContext returns the session a handler runs for, or nil.
func FromContext(ctx context.Context) *Session {
	s, _ := ctx.Value(ctxKey{}).(*Session)
	return s
}

// Conn returns the link the session talks through.
func (s *Session) Conn() Conn { return s.conn }
