package bindings

import (
	"context"
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
