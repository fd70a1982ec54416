package nopal

import (
	"context"
	"sync"

	"github.com/nopal-dev/nopal/bindings"
	"github.com/nopal-dev/nopal/cluster"
)

// Presence tells who is online (bindings.Presence): Online(ctx, uid),
// Count, List and Watch (online, offline and moved events, each with its
// frontend id).
type Presence = bindings.Presence

// PresenceEvent is one change of presence; its Kind is
// bindings.PresenceOnline, PresenceOffline or PresenceMoved.
type PresenceEvent = bindings.PresenceEvent

// presenceState is the App's presence: a standalone server's, fed by the
// pool's hooks from New, or the cluster's, a watcher on the bindings
// bucket started on first use.
type presenceState struct {
	local *bindings.LocalPresence

	mu sync.Mutex
	rt *cluster.Runtime // the runtime cp follows the bus of
	cp *bindings.ClusterPresence
}

func (a *App) initPresence() {
	if a.cfg.Cluster == nil {
		a.presence.local = bindings.NewLocalPresence(a.pool, a.cfg.ServerID)
	}
}

// Presence tells who is online. Standalone, it is the users bound to a
// session of this server (from its session pool; it works before Start
// and never fails). In a cluster, it is every user bound on any frontend,
// from the bindings bucket: one watcher per app keeps them in memory,
// started by the first call to one of its methods (which waits for the
// bucket to load); before Start they fail, and after Shutdown too. A user
// is online from its bind until its session ends, its resume grace
// included; "moved" is a user taken over by another frontend (a bind
// there, or a resume).
func (a *App) Presence() Presence { return appPresence{a} }

// appPresence picks the app's presence at each call, so that what
// Presence returned before Start works after it.
type appPresence struct{ a *App }

func (p appPresence) get() (Presence, error) {
	a := p.a
	if a.cfg.Cluster == nil {
		return a.presence.local, nil
	}
	rt := a.cluster()
	if rt == nil {
		return nil, errNoCluster("Presence")
	}
	st := &a.presence
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.rt != rt {
		st.rt, st.cp = rt, bindings.NewClusterPresence(rt.Bus(), a.log)
	}
	return st.cp, nil
}

func (p appPresence) Online(ctx context.Context, uid string) (bool, error) {
	pr, err := p.get()
	if err != nil {
		return false, err
	}
	return pr.Online(ctx, uid)
}

func (p appPresence) Count(ctx context.Context) (int, error) {
	pr, err := p.get()
	if err != nil {
		return 0, err
	}
	return pr.Count(ctx)
}

func (p appPresence) List(ctx context.Context) (map[string]string, error) {
	pr, err := p.get()
	if err != nil {
		return nil, err
	}
	return pr.List(ctx)
}

func (p appPresence) Watch(ctx context.Context) (<-chan PresenceEvent, error) {
	pr, err := p.get()
	if err != nil {
		return nil, err
	}
	return pr.Watch(ctx)
}
