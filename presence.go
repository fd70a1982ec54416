package nopal

import "github.com/nopal-dev/nopal/bindings"

// Presence tells who is online (bindings.Presence): Online(ctx, uid),
// Count, List and Watch (online, offline and moved events, each with its
// frontend id).
type Presence = bindings.Presence

// PresenceEvent is one change of presence; its Kind is
// bindings.PresenceOnline, PresenceOffline or PresenceMoved.
type PresenceEvent = bindings.PresenceEvent

// presenceState is a standalone App's presence, fed by the pool's hooks
// from New; in a cluster the runtime's bindings watch answers.
type presenceState struct {
	local *bindings.LocalPresence
}

func (a *App) initPresence() {
	if a.cfg.Cluster == nil {
		a.presence.local = bindings.NewLocalPresence(a.pool, a.cfg.ServerID)
	}
}

// Presence tells who is online. Standalone, it is the users bound to a
// session of this server (it works before Start and never fails). In a
// cluster, it is every user bound on any frontend, from the bindings
// bucket, watched from the first call (which waits for the bucket to
// load); it fails before Start and after Shutdown. A user is online from
// its bind until its session ends, resume grace included; "moved" is a
// user taken over by another frontend (a bind there, or a resume).
func (a *App) Presence() Presence { return bindings.LazyPresence(a.presenceNow) }

func (a *App) presenceNow() (Presence, error) {
	if a.cfg.Cluster == nil {
		return a.presence.local, nil
	} else if rt := a.cluster(); rt != nil {
		return rt.Presence(), nil // the runtime's watch, which also routes pushes
	}
	return nil, errNoCluster("Presence")
}
