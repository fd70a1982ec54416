package bindings

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
)

// Presence tells who is online: a uid is online while a session is bound
// to it (a session suspended while its client reconnects included). Two
// implementations: [ClusterPresence] follows the "bindings" bucket of a
// cluster, [LocalPresence] the session pool of a standalone server. Both
// are safe for concurrent use.
type Presence interface {
	// Online reports whether uid is bound to a session.
	Online(ctx context.Context, uid string) (bool, error)
	// Count is the number of uids online.
	Count(ctx context.Context) (int, error)
	// List returns the uids online, each with the id of its frontend.
	List(ctx context.Context) (map[string]string, error)
	// Watch reports the uids online at the call (PresenceOnline events
	// with Initial set, in uid order), then every change, in order: a uid
	// coming online, going offline, or moving to another frontend. The
	// channel is closed when ctx ends, when the presence stops (its bus
	// closed), or when the reader falls more than [MaxPresenceBacklog]
	// events behind; read it until then.
	Watch(ctx context.Context) (<-chan PresenceEvent, error)
}

// MaxPresenceBacklog is how many events a Watch may hold for a reader that
// does not keep up (besides the initial ones) before it gives up on it and
// closes its channel.
const MaxPresenceBacklog = 1 << 16

// PresenceKind says what happened to a uid.
type PresenceKind int

const (
	// PresenceOnline: the uid got a binding (a session bound it).
	PresenceOnline PresenceKind = iota + 1
	// PresenceOffline: the uid's binding was removed (its session ended,
	// or its frontend died and the janitor cleaned up after it).
	PresenceOffline
	// PresenceMoved: the uid is bound on another frontend (a bind there
	// took it over, or its session resumed there).
	PresenceMoved
)

// String returns "online", "offline" or "moved".
func (k PresenceKind) String() string {
	switch k {
	case PresenceOnline:
		return "online"
	case PresenceOffline:
		return "offline"
	case PresenceMoved:
		return "moved"
	}
	return fmt.Sprintf("PresenceKind(%d)", int(k))
}

// MarshalText makes the kind read as its name in JSON.
func (k PresenceKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// PresenceEvent is one change of presence.
type PresenceEvent struct {
	Kind PresenceKind `json:"kind"`
	UID  string       `json:"uid"`
	// Frontend is the uid's frontend: the one it is on (online, moved) or
	// the one it left (offline).
	Frontend string `json:"frontend"`
	// From is the frontend a moved uid left.
	From string `json:"from,omitempty"`
	// Initial marks the events that report the state at the Watch call.
	Initial bool `json:"initial,omitempty"`
}

func (e PresenceEvent) String() string {
	switch e.Kind {
	case PresenceMoved:
		return fmt.Sprintf("%s %s %s -> %s", e.Kind, e.UID, e.From, e.Frontend)
	default:
		return fmt.Sprintf("%s %s %s", e.Kind, e.UID, e.Frontend)
	}
}

// hub is the state both implementations keep (uid → binding) and the
// watches it feeds. Changes and the snapshots new watches start from are
// taken under one lock, so every watch sees one consistent sequence.
type hub struct {
	mu     sync.Mutex
	users  map[string]Binding
	subs   map[*presenceSub]struct{}
	closed bool
}

func newHub() *hub {
	return &hub{users: map[string]Binding{}, subs: map[*presenceSub]struct{}{}}
}

// emit queues ev for every watch (mu held).
func (h *hub) emit(ev PresenceEvent) {
	for s := range h.subs {
		s.push(ev)
	}
}

// set records uid's binding b and reports the change.
func (h *hub) set(uid string, b Binding) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.setLocked(uid, b)
}

func (h *hub) setLocked(uid string, b Binding) {
	old, known := h.users[uid]
	h.users[uid] = b
	switch {
	case !known:
		h.emit(PresenceEvent{Kind: PresenceOnline, UID: uid, Frontend: b.FrontendID})
	case old.FrontendID != b.FrontendID:
		h.emit(PresenceEvent{Kind: PresenceMoved, UID: uid, Frontend: b.FrontendID, From: old.FrontendID})
	}
	// Another session on the same frontend: still online there.
}

// remove drops uid and reports it offline.
func (h *hub) remove(uid string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.removeLocked(uid)
}

func (h *hub) removeLocked(uid string) {
	old, known := h.users[uid]
	if !known {
		return
	}
	delete(h.users, uid)
	h.emit(PresenceEvent{Kind: PresenceOffline, UID: uid, Frontend: old.FrontendID})
}

// replace makes fresh the state, reporting the differences (a watcher
// re-created after the bucket changed unseen).
func (h *hub) replace(fresh map[string]Binding) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, uid := range slices.Sorted(maps.Keys(h.users)) {
		if _, ok := fresh[uid]; !ok {
			h.removeLocked(uid)
		}
	}
	for _, uid := range slices.Sorted(maps.Keys(fresh)) {
		if cur, ok := h.users[uid]; !ok || cur != fresh[uid] {
			h.setLocked(uid, fresh[uid])
		}
	}
}

func (h *hub) route(uids []string) (map[string][]string, []string) {
	by := map[string][]string{}
	var unknown []string
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, uid := range uids {
		if b, ok := h.users[uid]; ok {
			by[b.FrontendID] = append(by[b.FrontendID], uid)
		} else {
			unknown = append(unknown, uid)
		}
	}
	return by, unknown
}

func (h *hub) online(uid string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.users[uid]
	return ok
}

func (h *hub) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.users)
}

func (h *hub) list() map[string]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]string, len(h.users))
	for uid, b := range h.users {
		out[uid] = b.FrontendID
	}
	return out
}

// watch starts a watch: the state now, then the changes.
func (h *hub) watch(ctx context.Context) <-chan PresenceEvent {
	s := &presenceSub{ch: make(chan PresenceEvent, 64), wake: make(chan struct{}, 1)}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		close(s.ch)
		return s.ch
	}
	s.queue = make([]PresenceEvent, 0, len(h.users))
	for _, uid := range slices.Sorted(maps.Keys(h.users)) {
		s.queue = append(s.queue, PresenceEvent{Kind: PresenceOnline, UID: uid, Frontend: h.users[uid].FrontendID, Initial: true})
	}
	s.limit = len(s.queue) + MaxPresenceBacklog
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	go func() {
		defer func() {
			h.mu.Lock()
			delete(h.subs, s)
			h.mu.Unlock()
			close(s.ch)
		}()
		s.run(ctx)
	}()
	return s.ch
}

// close ends every watch once it has delivered what it holds.
func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for s := range h.subs {
		s.end()
	}
}

// presenceSub is one Watch: a queue without bound but MaxPresenceBacklog,
// emptied into ch by its goroutine, so a slow reader never holds up the
// others or the source.
type presenceSub struct {
	ch   chan PresenceEvent
	wake chan struct{}

	mu    sync.Mutex
	queue []PresenceEvent
	limit int
	over  bool // the reader fell too far behind
	ended bool // the hub closed
}

func (s *presenceSub) push(ev PresenceEvent) {
	s.mu.Lock()
	if len(s.queue) >= s.limit {
		s.over = true
	} else {
		s.queue = append(s.queue, ev)
	}
	s.mu.Unlock()
	s.notify()
}

func (s *presenceSub) end() {
	s.mu.Lock()
	s.ended = true
	s.mu.Unlock()
	s.notify()
}

func (s *presenceSub) notify() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *presenceSub) run(ctx context.Context) {
	for {
		s.mu.Lock()
		q, over, ended := s.queue, s.over, s.ended
		s.queue = nil
		s.mu.Unlock()
		if over {
			return
		}
		for _, ev := range q {
			select {
			case s.ch <- ev:
			case <-ctx.Done():
				return
			}
		}
		if len(q) > 0 {
			continue
		}
		if ended {
			return
		}
		select {
		case <-s.wake:
		case <-ctx.Done():
			return
		}
	}
}
