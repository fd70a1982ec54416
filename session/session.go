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
)

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
	pool *Pool

	mu      sync.RWMutex
	uid     string
	data    map[string]any
	onClose []func()
	closed  bool
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
	return s.pool.bind(ctx, s, uid)
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
// ended, f runs at once.
func (s *Session) OnClose(f func()) {
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
