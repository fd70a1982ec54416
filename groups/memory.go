package groups

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// DefaultSweepInterval is how often [Memory.Start] removes expired groups
// unless [WithSweepInterval] says otherwise.
const DefaultSweepInterval = 30 * time.Second

// MemoryOption configures a [Memory] created by [NewMemory].
type MemoryOption func(*memoryConfig)

type memoryConfig struct {
	sweepInterval time.Duration
	clock         func() time.Time
}

// WithSweepInterval sets how often [Memory.Start] removes expired groups from
// memory (default [DefaultSweepInterval]). It does not affect when a group
// expires, only when its memory is reclaimed. A non-positive d is ignored.
func WithSweepInterval(d time.Duration) MemoryOption {
	return func(c *memoryConfig) {
		if d > 0 {
			c.sweepInterval = d
		}
	}
}

// WithClock makes the Memory read the current time from clock instead of
// [time.Now], for TTLs and for [Memory.Start]'s sweeps. It is meant for tests.
// A nil clock is ignored.
func WithClock(clock func() time.Time) MemoryOption {
	return func(c *memoryConfig) {
		if clock != nil {
			c.clock = clock
		}
	}
}

// Memory is the in-memory [Service], for a single server. It is safe for
// concurrent use by many goroutines.
//
// Expired groups are not found as soon as they expire; their memory is
// reclaimed by [Memory.Sweep], which [Memory.Start] calls periodically. Without
// Start (or Sweep), an expired group stays in memory until its name is created
// again or deleted.
type Memory struct {
	pusher        Pusher
	clock         func() time.Time
	sweepInterval time.Duration

	mu     sync.RWMutex
	groups map[string]*group
}

var _ Service = (*Memory)(nil)

// group is one group. Its fields are guarded by Memory.mu.
type group struct {
	members   map[string]struct{}
	ttl       time.Duration // 0: no TTL
	expiresAt time.Time     // meaningful when ttl > 0
}

func (g *group) expired(now time.Time) bool {
	return g.ttl > 0 && !now.Before(g.expiresAt)
}

// NewMemory returns an empty in-memory Service that pushes through p.
// It panics if p is nil. Call [Memory.Start] to reclaim expired groups.
func NewMemory(p Pusher, opts ...MemoryOption) *Memory {
	if p == nil {
		panic("groups: NewMemory: nil Pusher")
	}
	cfg := memoryConfig{sweepInterval: DefaultSweepInterval, clock: time.Now}
	for _, opt := range opts {
		opt(&cfg)
	}
	return &Memory{
		pusher:        p,
		clock:         cfg.clock,
		sweepInterval: cfg.sweepInterval,
		groups:        make(map[string]*group),
	}
}

// Start runs the sweeper in the calling goroutine: every sweep interval it
// calls [Memory.Sweep] with the current time. It returns ctx.Err() when ctx is
// done. Run it in its own goroutine, once per Memory:
//
//	go m.Start(ctx)
//
// Start is blocking, rather than starting a goroutine of its own, so that the
// caller decides how the sweeper is supervised and can wait for it to stop;
// Memory has no Close.
func (m *Memory) Start(ctx context.Context) error {
	ticker := time.NewTicker(m.sweepInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ticker.C:
			m.Sweep(m.clock())
		}
	}
}

// Sweep removes from memory the groups that have expired at now and returns
// how many it removed. Expired groups are already not found before they are
// swept; Sweep only reclaims their memory.
func (m *Memory) Sweep(now time.Time) int {
	// Find candidates under the read lock, so that a sweep that finds
	// nothing (the usual case) never blocks readers.
	var expired []string
	m.mu.RLock()
	for name, g := range m.groups {
		if g.expired(now) {
			expired = append(expired, name)
		}
	}
	m.mu.RUnlock()
	if len(expired) == 0 {
		return 0
	}

	removed := 0
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, name := range expired {
		// The group may have been renewed, deleted or re-created meanwhile.
		if g, ok := m.groups[name]; ok && g.expired(now) {
			delete(m.groups, name)
			removed++
		}
	}
	return removed
}

// Create implements [Service.Create].
func (m *Memory) Create(ctx context.Context, name string) error {
	return m.create(ctx, name, 0)
}

// CreateWithTTL implements [Service.CreateWithTTL].
func (m *Memory) CreateWithTTL(ctx context.Context, name string, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("groups: %q: ttl must be positive, got %v: %w", name, ttl, ErrInvalidTTL)
	}
	return m.create(ctx, name, ttl)
}

func (m *Memory) create(ctx context.Context, name string, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return wrap(name, err)
	}
	now := m.clock()
	m.mu.Lock()
	defer m.mu.Unlock()
	if g, ok := m.groups[name]; ok && !g.expired(now) {
		return wrap(name, ErrGroupAlreadyExists)
	}
	g := &group{members: make(map[string]struct{}), ttl: ttl}
	if ttl > 0 {
		g.expiresAt = now.Add(ttl)
	}
	m.groups[name] = g // replaces an expired group of that name, if any
	return nil
}

// Add implements [Service.Add].
func (m *Memory) Add(ctx context.Context, name, uid string) error {
	return m.write(ctx, name, func(g *group) error {
		if _, ok := g.members[uid]; ok {
			return fmt.Errorf("groups: %q: uid %q: %w", name, uid, ErrMemberAlreadyExists)
		}
		g.members[uid] = struct{}{}
		return nil
	})
}

// Remove implements [Service.Remove].
func (m *Memory) Remove(ctx context.Context, name, uid string) error {
	return m.write(ctx, name, func(g *group) error {
		if _, ok := g.members[uid]; !ok {
			return fmt.Errorf("groups: %q: uid %q: %w", name, uid, ErrMemberNotFound)
		}
		delete(g.members, uid)
		return nil
	})
}

// RemoveAll implements [Service.RemoveAll].
func (m *Memory) RemoveAll(ctx context.Context, name string) error {
	return m.write(ctx, name, func(g *group) error {
		clear(g.members)
		return nil
	})
}

// RenewTTL implements [Service.RenewTTL].
func (m *Memory) RenewTTL(ctx context.Context, name string) error {
	now := m.clock()
	return m.write(ctx, name, func(g *group) error {
		if g.ttl == 0 {
			return wrap(name, ErrNoTTL)
		}
		g.expiresAt = now.Add(g.ttl)
		return nil
	})
}

// Delete implements [Service.Delete].
func (m *Memory) Delete(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return wrap(name, err)
	}
	now := m.clock()
	m.mu.Lock()
	defer m.mu.Unlock()
	g, ok := m.groups[name]
	if !ok {
		return wrap(name, ErrGroupNotFound)
	}
	delete(m.groups, name) // an expired group is reclaimed too
	if g.expired(now) {
		return wrap(name, ErrGroupNotFound)
	}
	return nil
}

// Members implements [Service.Members].
func (m *Memory) Members(ctx context.Context, name string) ([]string, error) {
	uids, err := m.snapshot(ctx, name)
	if err != nil {
		return nil, err
	}
	slices.Sort(uids) // outside the lock
	return uids, nil
}

// Contains implements [Service.Contains].
func (m *Memory) Contains(ctx context.Context, name, uid string) (bool, error) {
	var found bool
	err := m.read(ctx, name, func(g *group) {
		_, found = g.members[uid]
	})
	return found, err
}

// Count implements [Service.Count].
func (m *Memory) Count(ctx context.Context, name string) (int, error) {
	var n int
	err := m.read(ctx, name, func(g *group) {
		n = len(g.members)
	})
	return n, err
}

// Broadcast implements [Service.Broadcast].
func (m *Memory) Broadcast(ctx context.Context, name, route string, v any) ([]string, error) {
	return m.push(ctx, name, route, v, nil)
}

// Multicast implements [Service.Multicast].
func (m *Memory) Multicast(ctx context.Context, name, route string, v any, keep func(uid string) bool) ([]string, error) {
	return m.push(ctx, name, route, v, keep)
}

// push copies the members under the read lock, filters them with keep (if
// not nil) and pushes to the rest, without holding the lock.
func (m *Memory) push(ctx context.Context, name, route string, v any, keep func(string) bool) ([]string, error) {
	uids, err := m.snapshot(ctx, name)
	if err != nil {
		return nil, err
	}
	return pushTo(ctx, m.pusher, name, route, v, uids, keep)
}

// snapshot returns a copy of the members of the live group called name, in
// no particular order; the slice is non-nil.
func (m *Memory) snapshot(ctx context.Context, name string) ([]string, error) {
	var uids []string
	err := m.read(ctx, name, func(g *group) {
		uids = make([]string, 0, len(g.members))
		for uid := range g.members {
			uids = append(uids, uid)
		}
	})
	return uids, err
}

// read calls f with the live group called name under the read lock.
func (m *Memory) read(ctx context.Context, name string, f func(*group)) error {
	if err := ctx.Err(); err != nil {
		return wrap(name, err)
	}
	now := m.clock()
	m.mu.RLock()
	defer m.mu.RUnlock()
	g, ok := m.groups[name]
	if !ok || g.expired(now) {
		return wrap(name, ErrGroupNotFound)
	}
	f(g)
	return nil
}

// write calls f with the live group called name under the write lock and
// returns f's error.
func (m *Memory) write(ctx context.Context, name string, f func(*group) error) error {
	if err := ctx.Err(); err != nil {
		return wrap(name, err)
	}
	now := m.clock()
	m.mu.Lock()
	defer m.mu.Unlock()
	g, ok := m.groups[name]
	if !ok || g.expired(now) {
		return wrap(name, ErrGroupNotFound)
	}
	return f(g)
}

// wrap wraps err with the package prefix and the group name.
func wrap(name string, err error) error {
	return fmt.Errorf("groups: %q: %w", name, err)
}
