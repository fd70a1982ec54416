package bindings

import (
	"context"
	"log/slog"
	"sync"

	"github.com/nopal-dev/nopal/stream"
)

// LazyPresence returns a Presence that resolves, at each call, the
// Presence get returns, and fails with get's error: an app hands it out
// before it knows which presence it will have (a cluster's is made once it
// has started), and what it handed out goes on working after.
func LazyPresence(get func() (Presence, error)) Presence { return lazyPresence(get) }

type lazyPresence func() (Presence, error)

func (get lazyPresence) Online(ctx context.Context, uid string) (bool, error) {
	p, err := get()
	if err != nil {
		return false, err
	}
	return p.Online(ctx, uid)
}

func (get lazyPresence) Count(ctx context.Context) (int, error) {
	p, err := get()
	if err != nil {
		return 0, err
	}
	return p.Count(ctx)
}

func (get lazyPresence) List(ctx context.Context) (map[string]string, error) {
	p, err := get()
	if err != nil {
		return nil, err
	}
	return p.List(ctx)
}

func (get lazyPresence) Watch(ctx context.Context) (<-chan PresenceEvent, error) {
	p, err := get()
	if err != nil {
		return nil, err
	}
	return p.Watch(ctx)
}

// ClusterPresenceCache holds one ClusterPresence per bus: For returns the
// one of the last bus it was given, made on first use. Its zero value is
// ready; it is safe for concurrent use.
type ClusterPresenceCache struct {
	mu  sync.Mutex
	bus *stream.Bus // the bus cp follows
	cp  *ClusterPresence
}

// For returns the ClusterPresence on bus, making it (NewClusterPresence
// with log) when the cache has none or one on another bus.
func (c *ClusterPresenceCache) For(bus *stream.Bus, log *slog.Logger) *ClusterPresence {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cp == nil || c.bus != bus {
		c.bus, c.cp = bus, NewClusterPresence(bus, log)
	}
	return c.cp
}
