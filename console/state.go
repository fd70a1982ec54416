package console

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nopal-dev/nopal/bindings"
	"github.com/nopal-dev/nopal/discovery"
	"github.com/nopal-dev/nopal/groups"
	"github.com/nopal-dev/nopal/reliable"
	"github.com/nopal-dev/nopal/stream"
)

// flushEvery is how often the coalesced changes go to the pages.
const flushEvery = 200 * time.Millisecond

// maxTrafficPerFlush bounds the traffic lines of one flush; the rest are
// counted as skipped (the page says so).
const maxTrafficPerFlush = 200

// maxUsersListed bounds the users a snapshot lists (the most recent binds).
const maxUsersListed = 200

// ServerView is a server as the console shows it.
type ServerView struct {
	discovery.Server
	// LastBeat is the time of its last heartbeat (the KV entry's time).
	LastBeat time.Time `json:"last_beat"`
	// Since is when the console first saw it (its entry's first time
	// when the console saw it join).
	Since time.Time `json:"since"`
	// Sessions is, for a frontend, the sessions bound to a uid on it
	// (connected or suspended: discovery does not tell them apart).
	Sessions int `json:"sessions"`
}

// ClusterEvent is a join, an update, a leave or a death.
type ClusterEvent struct {
	Kind   string           `json:"kind"` // joined, updated, left, died
	Server discovery.Server `json:"server"`
	At     time.Time        `json:"at"`
}

// UserView is a bound uid.
type UserView struct {
	UID      string    `json:"uid"`
	Frontend string    `json:"frontend"`
	Session  int64     `json:"session"`
	Since    time.Time `json:"since"`
}

// UserEvent is a bind, a move to another session or an unbind.
type UserEvent struct {
	Kind     string    `json:"kind"` // bound, moved, unbound
	UID      string    `json:"uid"`
	Frontend string    `json:"frontend,omitempty"`
	At       time.Time `json:"at"`
}

// UsersView is the users' summary.
type UsersView struct {
	Online      int            `json:"online"`
	PerFrontend map[string]int `json:"per_frontend"`
	// Recent are the latest binds (at most 200), newest first.
	Recent []UserView `json:"recent"`
}

// GroupView is a group of the cluster.
type GroupView struct {
	Name      string    `json:"name"`
	Members   int       `json:"members"`
	TTL       string    `json:"ttl,omitempty"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	Expired   bool      `json:"expired,omitempty"`
	Created   time.Time `json:"created,omitzero"`
}

// JobSummary is a job as the live view keeps it.
type JobSummary struct {
	JID     string         `json:"jid"`
	Route   string         `json:"route"`
	State   reliable.State `json:"state"`
	Tries   int            `json:"tries"`
	Created time.Time      `json:"created"`
	Updated time.Time      `json:"updated"`
	Deleted bool           `json:"deleted,omitempty"`
}

type binding struct {
	frontend string
	session  int64
	since    time.Time
}

type serverEntry struct {
	view ServerView
	raw  []byte
}

// state is what the watchers know, and what changed since the last flush.
type state struct {
	c *Console

	mu           sync.Mutex
	servers      map[string]*serverEntry
	serverSeen   map[string]bool // keys seen in a reloading watcher's initial values
	serverEvents []ClusterEvent  // the latest 100
	users        map[string]binding
	userEvents   []UserEvent // the latest 100
	groups       []GroupView
	groupsJSON   []byte
	jobs         map[string]JobSummary
	traffic      []stream.Entry // the latest TrafficLines
	maxTraffic   int

	// Pending changes, for the next flush.
	beats          map[string]time.Time
	usersDirty     bool
	newUserEvents  []UserEvent
	jobsChanged    map[string]JobSummary
	groupsChanged  bool
	dlqChanged     bool // a dead letter was published since the last flush
	trafficPending []stream.Entry
	trafficSkipped int

	groupsSvc  *groups.Cluster
	groupsKick chan struct{}
	ready      map[string]chan struct{}
}

func newState(c *Console, lines int) *state {
	st := &state{
		c:           c,
		servers:     map[string]*serverEntry{},
		users:       map[string]binding{},
		jobs:        map[string]JobSummary{},
		maxTraffic:  lines,
		beats:       map[string]time.Time{},
		jobsChanged: map[string]JobSummary{},
		groupsKick:  make(chan struct{}, 1),
		ready:       map[string]chan struct{}{},
	}
	for _, k := range []string{"servers", "bindings", "groups", "jobs"} {
		st.ready[k] = make(chan struct{})
	}
	return st
}

func (st *state) markReady(k string) {
	select {
	case <-st.ready[k]:
	default:
		close(st.ready[k])
	}
}

// waitReady waits (at most d) for the watchers' first loads.
func (st *state) waitReady(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	for _, ch := range st.ready {
		select {
		case <-ch:
		case <-t.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// start provisions the buckets the console watches (as their owners do;
// not the servers bucket, which discovery configures) and starts the
// watchers, the groups lister, the traffic tail and the flusher.
func (st *state) start(ctx context.Context) error {
	c := st.c
	if _, err := bindings.NewStore(ctx, c.bus); err != nil {
		return err
	}
	g, err := groups.NewCluster(ctx, c.bus, noPusher{})
	if err != nil {
		return err
	}
	st.groupsSvc = g
	js := c.bus.JetStream()
	open := func(bucket string) func(context.Context) (jetstream.KeyValue, error) {
		return func(ctx context.Context) (jetstream.KeyValue, error) {
			return js.KeyValue(ctx, c.bus.Name(bucket))
		}
	}
	c.wg.Add(6)
	go st.watch("servers", open(discovery.Bucket), nil, st.applyServer, st.serversLoaded)
	go st.watch("bindings", open(bindings.Bucket), nil, st.applyBinding, func() {})
	go st.watch("groups", open(groups.ClusterBucket), []jetstream.WatchOpt{jetstream.MetaOnly()}, st.applyGroupKey, func() { st.kickGroups() })
	go st.watch("jobs", open(reliable.Bucket), nil, st.applyJob, func() {})
	go st.groupsLoop()
	go st.tail()
	// Groups leave by stream purges, which watchers do not see: the purge
	// requests to the bucket's stream say when to list them again.
	purge := jetstream.DefaultAPIPrefix + "STREAM.PURGE.KV_" + c.bus.Name(groups.ClusterBucket)
	if sub, err := c.bus.Subscribe(purge, "", func(*nats.Msg) { st.kickGroups() }); err == nil {
		context.AfterFunc(c.life, func() { _ = sub.Unsubscribe() })
	} else {
		c.log.Warn("console: cannot follow group removals", "err", err)
	}
	// A job's dead letter is published just after its record turns dead
	// or failed: the record's event alone made the page read the dead
	// letters too early, so the page hears of each one as it is published.
	if sub, err := c.bus.Subscribe(c.bus.DLQWildcard(), "", func(*nats.Msg) {
		st.mu.Lock()
		st.dlqChanged = true
		st.mu.Unlock()
	}); err == nil {
		context.AfterFunc(c.life, func() { _ = sub.Unsubscribe() })
	} else {
		c.log.Warn("console: cannot follow dead letters", "err", err)
	}
	c.wg.Add(1)
	go st.flushLoop()
	st.waitReady(ctx, 3*time.Second)
	return nil
}

// watch keeps a watcher on a bucket, re-creating it when it ends (and
// waiting for the bucket to exist).
func (st *state) watch(name string, open func(context.Context) (jetstream.KeyValue, error), opts []jetstream.WatchOpt,
	apply func(e jetstream.KeyValueEntry, initial bool), loaded func()) {
	defer st.c.wg.Done()
	life := st.c.life
	wait := time.Duration(0)
	reload := false
	for {
		select {
		case <-life.Done():
			return
		case <-time.After(wait):
		}
		wait = min(max(2*wait, 250*time.Millisecond), 3*time.Second)
		octx, cancel := context.WithTimeout(life, 5*time.Second)
		kv, err := open(octx)
		cancel()
		if err != nil {
			if errors.Is(err, jetstream.ErrBucketNotFound) {
				st.markReady(name) // nothing there yet
			} else if life.Err() == nil {
				st.c.log.Debug("console: open bucket", "bucket", name, "err", err)
			}
			continue
		}
		w, err := kv.WatchAll(life, opts...)
		if err != nil {
			continue
		}
		if reload && name == "servers" {
			st.mu.Lock()
			st.serverSeen = map[string]bool{}
			st.mu.Unlock()
		}
		initial := true
		for e := range w.Updates() {
			if e == nil {
				if initial {
					initial = false
					loaded()
					st.markReady(name)
					wait = 0
				}
				continue
			}
			apply(e, initial)
		}
		_ = w.Stop()
		reload = true
	}
}

// ---- servers ----

func (st *state) applyServer(e jetstream.KeyValueEntry, initial bool) {
	key := e.Key()
	switch e.Operation() {
	case jetstream.KeyValuePut:
		var s discovery.Server
		if json.Unmarshal(e.Value(), &s) != nil || s.ID != key {
			return
		}
		st.mu.Lock()
		if st.serverSeen != nil {
			st.serverSeen[key] = true
		}
		old, known := st.servers[key]
		if known && bytes.Equal(old.raw, e.Value()) {
			old.view.LastBeat = e.Created()
			st.beats[key] = e.Created()
			st.mu.Unlock()
			return
		}
		v := ServerView{Server: s, LastBeat: e.Created(), Since: e.Created()}
		if known {
			v.Since = old.view.Since
		}
		st.servers[key] = &serverEntry{view: v, raw: bytes.Clone(e.Value())}
		st.mu.Unlock()
		kind := "joined"
		if known {
			kind = "updated"
		}
		if initial && !known {
			kind = "" // found at start: not news
		}
		st.serverChanged(kind, s, e.Created())
	case jetstream.KeyValueDelete, jetstream.KeyValuePurge:
		if initial {
			return
		}
		kind := "left"
		if e.Operation() == jetstream.KeyValuePurge {
			kind = "died"
		}
		st.removeServer(key, kind, e.Created())
	}
}

func (st *state) removeServer(key, kind string, at time.Time) {
	st.mu.Lock()
	old, known := st.servers[key]
	delete(st.servers, key)
	st.mu.Unlock()
	if known {
		st.serverChanged(kind, old.view.Server, at)
	}
}

// serversLoaded reports as dead the servers that vanished while no watcher
// ran.
func (st *state) serversLoaded() {
	st.mu.Lock()
	seen := st.serverSeen
	st.serverSeen = nil
	var gone []string
	if seen != nil {
		for id := range st.servers {
			if !seen[id] {
				gone = append(gone, id)
			}
		}
	}
	st.mu.Unlock()
	for _, id := range gone {
		st.removeServer(id, "died", time.Now())
	}
}

// serverChanged sends the servers at once (joins, leaves and deaths are
// news), with the event when kind is set.
func (st *state) serverChanged(kind string, s discovery.Server, at time.Time) {
	st.c.hub.publish(func() []event {
		st.mu.Lock()
		defer st.mu.Unlock()
		var evs []event
		if kind != "" {
			ev := ClusterEvent{Kind: kind, Server: s, At: at}
			st.serverEvents = appendCapped(st.serverEvents, ev, 100)
			evs = append(evs, newEvent("cluster", ev))
		}
		return append(evs, newEvent("servers", st.serverList()))
	})
}

// serverList (mu held) lists the servers by type then id.
func (st *state) serverList() []ServerView {
	per := st.perFrontend()
	out := make([]ServerView, 0, len(st.servers))
	for _, e := range st.servers {
		v := e.view
		if v.Frontend {
			v.Sessions = per[v.ID]
		}
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b ServerView) int {
		return cmp.Or(cmp.Compare(a.Type, b.Type), cmp.Compare(a.ID, b.ID))
	})
	return out
}

// ---- bindings ----

// uidOfKey is bindings.Key's inverse.
func uidOfKey(k string) string {
	if rest, ok := strings.CutPrefix(k, "b64."); ok {
		if b, err := base64.RawURLEncoding.DecodeString(rest); err == nil {
			return string(b)
		}
	}
	return k
}

func (st *state) applyBinding(e jetstream.KeyValueEntry, initial bool) {
	uid := uidOfKey(e.Key())
	st.mu.Lock()
	defer st.mu.Unlock()
	old, known := st.users[uid]
	switch e.Operation() {
	case jetstream.KeyValuePut:
		var b bindings.Binding
		if json.Unmarshal(e.Value(), &b) != nil {
			return
		}
		st.users[uid] = binding{frontend: b.FrontendID, session: b.SessionID, since: e.Created()}
		st.usersDirty = true
		if initial {
			return
		}
		kind := "bound"
		if known {
			kind = "moved"
		}
		st.addUserEvent(UserEvent{Kind: kind, UID: uid, Frontend: b.FrontendID, At: e.Created()})
	default:
		if !known {
			return
		}
		delete(st.users, uid)
		st.usersDirty = true
		if !initial {
			st.addUserEvent(UserEvent{Kind: "unbound", UID: uid, Frontend: old.frontend, At: e.Created()})
		}
	}
}

func (st *state) addUserEvent(ev UserEvent) {
	st.userEvents = appendCapped(st.userEvents, ev, 100)
	st.newUserEvents = append(st.newUserEvents, ev)
}

// perFrontend (mu held) counts the bound sessions of each frontend.
func (st *state) perFrontend() map[string]int {
	per := map[string]int{}
	for _, b := range st.users {
		per[b.frontend]++
	}
	return per
}

// usersView (mu held).
func (st *state) usersView() UsersView {
	v := UsersView{Online: len(st.users), PerFrontend: st.perFrontend()}
	all := make([]UserView, 0, len(st.users))
	for uid, b := range st.users {
		all = append(all, UserView{UID: uid, Frontend: b.frontend, Session: b.session, Since: b.since})
	}
	slices.SortFunc(all, func(a, b UserView) int {
		return cmp.Or(b.Since.Compare(a.Since), cmp.Compare(a.UID, b.UID))
	})
	if len(all) > maxUsersListed {
		all = all[:maxUsersListed]
	}
	v.Recent = all
	return v
}

// ---- groups ----

func (st *state) applyGroupKey(e jetstream.KeyValueEntry, initial bool) {
	if !initial {
		st.kickGroups()
	}
}

func (st *state) kickGroups() {
	select {
	case st.groupsKick <- struct{}{}:
	default:
	}
}

// groupsLoop lists the groups again after a change (coalescing changes
// within 150 ms).
func (st *state) groupsLoop() {
	defer st.c.wg.Done()
	life := st.c.life
	for {
		select {
		case <-life.Done():
			return
		case <-st.groupsKick:
		}
		select {
		case <-life.Done():
			return
		case <-time.After(150 * time.Millisecond):
		}
		ctx, cancel := context.WithTimeout(life, 10*time.Second)
		list, err := listGroups(ctx, st.c.bus)
		cancel()
		if err != nil {
			if life.Err() == nil {
				st.c.log.Debug("console: list groups", "err", err)
			}
			continue
		}
		b, _ := json.Marshal(list)
		st.mu.Lock()
		if !bytes.Equal(b, st.groupsJSON) {
			st.groups, st.groupsJSON, st.groupsChanged = list, b, true
		}
		st.mu.Unlock()
		st.markReady("groups")
	}
}

// ---- jobs ----

func (st *state) applyJob(e jetstream.KeyValueEntry, initial bool) {
	jid := e.Key()
	st.mu.Lock()
	defer st.mu.Unlock()
	if e.Operation() != jetstream.KeyValuePut {
		if j, ok := st.jobs[jid]; ok {
			delete(st.jobs, jid)
			j.Deleted = true
			st.jobsChanged[jid] = j
		}
		return
	}
	var j reliable.Job
	if json.Unmarshal(e.Value(), &j) != nil {
		return
	}
	s := JobSummary{JID: j.JID, Route: j.Route, State: j.State, Tries: j.Tries(), Created: j.Created, Updated: j.Updated}
	st.jobs[jid] = s
	st.jobsChanged[jid] = s
}

// jobCounts (mu held) counts the jobs by state, every state present.
func (st *state) jobCounts() map[reliable.State]int {
	counts := map[reliable.State]int{}
	for _, s := range allStates {
		counts[s] = 0
	}
	for _, j := range st.jobs {
		counts[j.State]++
	}
	return counts
}

var allStates = []reliable.State{reliable.Queued, reliable.Running, reliable.Retrying, reliable.Succeeded, reliable.Failed, reliable.Dead, reliable.Cancelled}

// ---- traffic ----

// tail follows the traffic log from a minute ago, and again from where it
// stopped when the tail fails (no TRAFFIC stream yet, a lost bus).
func (st *state) tail() {
	defer st.c.wg.Done()
	life := st.c.life
	since := time.Now().Add(-time.Minute)
	for {
		err := stream.Replay(life, st.c.bus, stream.Filter{Follow: true, Since: since}, func(e stream.Entry) error {
			since = e.Time.Add(time.Nanosecond)
			st.addTraffic(e)
			return nil
		})
		select {
		case <-life.Done():
			return
		case <-time.After(2 * time.Second):
		}
		st.c.log.Debug("console: traffic tail restarts", "err", err)
	}
}

func (st *state) addTraffic(e stream.Entry) {
	e.Payload = clip(e.Payload)
	st.mu.Lock()
	defer st.mu.Unlock()
	st.traffic = appendCapped(st.traffic, e, st.maxTraffic)
	if len(st.trafficPending) < maxTrafficPerFlush {
		st.trafficPending = append(st.trafficPending, e)
	} else {
		st.trafficSkipped++
	}
}

// clip replaces a payload longer than 4 KB with a note (the page shows
// lines, not documents; GET /api/traffic has them whole).
func clip(p json.RawMessage) json.RawMessage {
	if len(p) <= 4096 {
		return p
	}
	b, _ := json.Marshal(map[string]any{"clipped": len(p)})
	return b
}

// TrafficBatch is the live traffic of one flush.
type TrafficBatch struct {
	Lines   []stream.Entry `json:"lines"`
	Skipped int            `json:"skipped,omitempty"`
}

// ---- flushes and snapshots ----

func (st *state) flushLoop() {
	defer st.c.wg.Done()
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	for {
		select {
		case <-st.c.life.Done():
			return
		case <-t.C:
		}
		st.c.hub.publish(st.flush)
	}
}

// flush (under the hub's lock) turns the pending changes into events.
func (st *state) flush() []event {
	st.mu.Lock()
	defer st.mu.Unlock()
	var evs []event
	if len(st.beats) > 0 {
		evs = append(evs, newEvent("beats", map[string]any{"now": time.Now(), "beats": st.beats}))
		st.beats = map[string]time.Time{}
	}
	if st.usersDirty {
		evs = append(evs, newEvent("users", map[string]any{"users": st.usersView(), "events": st.newUserEvents}))
		evs = append(evs, newEvent("servers", st.serverList()))
		st.usersDirty, st.newUserEvents = false, nil
	}
	if st.groupsChanged {
		evs = append(evs, newEvent("groups", st.groups))
		st.groupsChanged = false
	}
	if len(st.jobsChanged) > 0 {
		changed := make([]JobSummary, 0, len(st.jobsChanged))
		for _, j := range st.jobsChanged {
			changed = append(changed, j)
		}
		slices.SortFunc(changed, func(a, b JobSummary) int { return a.Updated.Compare(b.Updated) })
		if len(changed) > 200 {
			changed = changed[len(changed)-200:]
		}
		evs = append(evs, newEvent("jobs", map[string]any{"counts": st.jobCounts(), "changed": changed}))
		clear(st.jobsChanged)
	}
	if st.dlqChanged {
		evs = append(evs, newEvent("dlq", struct{}{}))
		st.dlqChanged = false
	}
	if len(st.trafficPending) > 0 || st.trafficSkipped > 0 {
		evs = append(evs, newEvent("traffic", TrafficBatch{Lines: st.trafficPending, Skipped: st.trafficSkipped}))
		st.trafficPending, st.trafficSkipped = nil, 0
	}
	return evs
}

// Snapshot is everything a page needs when it opens (GET /api/overview,
// and the first event of /api/events).
type Snapshot struct {
	Now          time.Time              `json:"now"`
	Prefix       string                 `json:"prefix"`
	Servers      []ServerView           `json:"servers"`
	ServerEvents []ClusterEvent         `json:"server_events"`
	Users        UsersView              `json:"users"`
	UserEvents   []UserEvent            `json:"user_events"`
	Groups       []GroupView            `json:"groups"`
	JobCounts    map[reliable.State]int `json:"job_counts"`
	Traffic      []stream.Entry         `json:"traffic"`
}

func (st *state) snapshot() Snapshot {
	st.mu.Lock()
	defer st.mu.Unlock()
	return Snapshot{
		Now:          time.Now(),
		Prefix:       st.c.bus.Prefix(),
		Servers:      st.serverList(),
		ServerEvents: slices.Clone(st.serverEvents),
		Users:        st.usersView(),
		UserEvents:   slices.Clone(st.userEvents),
		Groups:       slices.Clone(st.groups),
		JobCounts:    st.jobCounts(),
		Traffic:      slices.Clone(st.traffic),
	}
}

func appendCapped[T any](s []T, v T, n int) []T {
	s = append(s, v)
	if len(s) > n {
		s = slices.Delete(s, 0, len(s)-n)
	}
	return s
}
