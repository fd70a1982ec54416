package console

import (
	"encoding/json"
	"sync"
)

// event is one Server-Sent Event: its name and its JSON data.
type event struct {
	name string
	data []byte
}

func newEvent(name string, v any) event {
	b, err := json.Marshal(v)
	if err != nil {
		b = []byte(`{"error":"encode"}`)
	}
	return event{name: name, data: b}
}

// hub hands events to the open event streams. A stream that falls behind
// (its buffer full) is ended: the page's EventSource reconnects and gets a
// fresh snapshot, so a slow page never slows the console.
type hub struct {
	mu     sync.Mutex
	subs   map[*sub]struct{}
	closed bool
}

type sub struct {
	ch   chan event
	gone chan struct{}
	once sync.Once
}

func (s *sub) end() { s.once.Do(func() { close(s.gone) }) }

func newHub() *hub { return &hub{subs: map[*sub]struct{}{}} }

// subscribe adds a stream; first runs under the hub's lock, so no event is
// published between it (the snapshot) and the stream's first live event.
func (h *hub) subscribe(first func() []event) (*sub, []event) {
	s := &sub{ch: make(chan event, 512), gone: make(chan struct{})}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		s.end()
		return s, nil
	}
	h.subs[s] = struct{}{}
	return s, first()
}

func (h *hub) unsubscribe(s *sub) {
	h.mu.Lock()
	delete(h.subs, s)
	h.mu.Unlock()
	s.end()
}

// publish sends evs to every stream; build runs under the hub's lock (so
// it is ordered with snapshots).
func (h *hub) publish(build func() []event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	evs := build()
	if len(evs) == 0 {
		return
	}
	for s := range h.subs {
		for _, ev := range evs {
			select {
			case s.ch <- ev:
			default:
				delete(h.subs, s)
				s.end()
			}
		}
	}
}

func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for s := range h.subs {
		s.end()
	}
	clear(h.subs)
}
