package discovery

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nopal-dev/nopal/stream"
)

// Bucket is the name of the KV bucket, under the bus's prefix
// ("nopal_servers" with the default prefix).
const Bucket = "servers"

// DefaultHeartbeat is the heartbeat interval when Config.Heartbeat is zero.
const DefaultHeartbeat = time.Second

// MinHeartbeat is the shortest heartbeat accepted: the server checks for
// expired messages at most every 250 ms, so shorter beats buy nothing.
const MinHeartbeat = 100 * time.Millisecond

// ErrConfig is wrapped by the errors New returns for a bad Server or Config.
var ErrConfig = errors.New("discovery: bad configuration")

// ErrState is returned by Start on a Discovery that was already started.
var ErrState = errors.New("discovery: already started")

// Server is one node of the cluster as the others see it.
type Server struct {
	ID       string            `json:"id"`
	Type     string            `json:"type"`
	Frontend bool              `json:"frontend"`
	Metadata map[string]string `json:"metadata,omitempty"`
	Hostname string            `json:"hostname"`
	Version  string            `json:"version"`
}

// EventKind says what happened to a server.
type EventKind int

const (
	// Joined: a server appeared (also reported for every server found when
	// the view is first loaded, this node's own included).
	Joined EventKind = iota + 1
	// Updated: a known server put a different value (metadata, version...).
	// Heartbeats that repeat the same value are not events.
	Updated
	// Left: the server deleted its key (graceful stop).
	Left
	// Died: the server's key was purged, normally by the bucket's TTL
	// because its heartbeats stopped (the MaxAge limit marker); also reported
	// for a server that vanished while the watcher was being re-created.
	Died
)

// String returns "joined", "updated", "left" or "died".
func (k EventKind) String() string {
	switch k {
	case Joined:
		return "joined"
	case Updated:
		return "updated"
	case Left:
		return "left"
	case Died:
		return "died"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event is a change of the cluster's membership. For Left and Died, Server is
// the last value known for the server.
type Event struct {
	Kind   EventKind
	Server Server
}

// Config tunes a Discovery.
type Config struct {
	// Heartbeat is how often the server's key is put again (default 1 s,
	// at least 100 ms). The bucket's TTL is 3 × Heartbeat: a node is
	// declared dead about 3 heartbeats after its last one. All nodes of a
	// cluster should use the same value: the last node to start sets the
	// bucket's TTL for everyone.
	Heartbeat time.Duration
	// Logger (default slog.Default()).
	Logger *slog.Logger
}

// TTL is the bucket's TTL for this configuration: 3 × Heartbeat.
func (c Config) TTL() time.Duration {
	hb := c.Heartbeat
	if hb == 0 {
		hb = DefaultHeartbeat
	}
	return 3 * hb
}

// markerTTL is how long the purge marker left by an expired key stays in the
// bucket: the TTL rounded up to whole seconds, at least 1 s (the server
// refuses less, and keeps marker TTLs in whole seconds).
func markerTTL(ttl time.Duration) time.Duration {
	m := (ttl + time.Second - 1).Truncate(time.Second)
	return max(m, time.Second)
}

type entry struct {
	srv Server
	raw []byte
}

type subscriber struct {
	id uint64
	f  func(Event)
}

// Discovery registers this server in the cluster and keeps a view of all
// servers. Its lookups are safe for concurrent use and cheap (a read lock
// and a copy), meant for the request path.
type Discovery struct {
	bus       *stream.Bus
	id        string // self.ID, which never changes
	log       *slog.Logger
	heartbeat time.Duration
	ttl       time.Duration
	kvCfg     jetstream.KeyValueConfig

	// The view, rebuilt on every change (not on heartbeats).
	mu      sync.RWMutex
	servers map[string]entry
	all     []Server // sorted by ID
	byType  map[string][]Server
	counts  map[string]int

	// putMu serialises puts of the own key (heartbeats, SetMetadata) so an
	// older value never lands after a newer one, and orders them before
	// the delete of Stop.
	putMu    sync.Mutex
	self     Server
	selfJSON []byte
	running  bool // own key is being kept alive (under putMu)

	subMu   sync.Mutex
	subs    []subscriber
	nextSub uint64

	lifeMu  sync.Mutex
	started bool
	stopped bool
	kv      jetstream.KeyValue // set by Start, then read-only
	stop    chan struct{}
	beatNow chan struct{} // cap 1: put the own key now
	rewatch chan struct{} // cap 1: re-create the watcher
	ready   chan struct{} // closed once the first initial load is done
	wg      sync.WaitGroup

	seenSelfRev atomic.Uint64 // revision of the last own entry the watcher saw
	lastBeat    atomic.Int64  // unix ns at which the last successful put was sent
}

// New returns a Discovery for self on bus; Start registers it. self.ID and
// self.Type must be valid KV key tokens (letters, digits, '-' and '_'); an
// empty Hostname is filled with os.Hostname().
func New(bus *stream.Bus, self Server, cfg Config) (*Discovery, error) {
	if bus == nil || bus.JetStream() == nil {
		return nil, fmt.Errorf("%w: nil bus", ErrConfig)
	}
	if !validToken(self.ID) {
		return nil, fmt.Errorf("%w: server id %q must be letters, digits, '-' or '_'", ErrConfig, self.ID)
	}
	if !validToken(self.Type) {
		return nil, fmt.Errorf("%w: server type %q must be letters, digits, '-' or '_'", ErrConfig, self.Type)
	}
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	if cfg.Heartbeat < MinHeartbeat {
		return nil, fmt.Errorf("%w: heartbeat %v is shorter than %v", ErrConfig, cfg.Heartbeat, MinHeartbeat)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if self.Hostname == "" {
		self.Hostname, _ = os.Hostname()
	}
	self.Metadata = maps.Clone(self.Metadata)
	raw, err := json.Marshal(self)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	ttl := cfg.TTL()
	return &Discovery{
		bus:       bus,
		id:        self.ID,
		log:       cfg.Logger.With("component", "discovery", "server", self.ID),
		heartbeat: cfg.Heartbeat,
		ttl:       ttl,
		kvCfg: jetstream.KeyValueConfig{
			Bucket:         Bucket,
			Description:    "nopal servers: key = server id, value = server JSON, kept alive by heartbeats",
			Storage:        jetstream.MemoryStorage,
			TTL:            ttl,
			LimitMarkerTTL: markerTTL(ttl),
		},
		servers:  map[string]entry{},
		byType:   map[string][]Server{},
		counts:   map[string]int{},
		self:     self,
		selfJSON: raw,
		stop:     make(chan struct{}),
		beatNow:  make(chan struct{}, 1),
		rewatch:  make(chan struct{}, 1),
		ready:    make(chan struct{}),
	}, nil
}

// Start provisions the bucket, puts this server, starts the heartbeats and
// the watcher, and returns once the watcher has loaded the bucket's current
// content: Servers() is complete when Start returns. A Start that fails
// before the initial load may be retried; once the heartbeats and watcher
// have run (Start succeeded, or timed out waiting for the initial load), a
// Discovery does not start again.
func (d *Discovery) Start(ctx context.Context) error {
	d.lifeMu.Lock()
	defer d.lifeMu.Unlock()
	if d.started {
		return ErrState
	}
	kv, err := d.bus.KV(ctx, d.kvCfg)
	if err != nil {
		return fmt.Errorf("discovery: %w", err)
	}
	d.kv = kv

	d.putMu.Lock()
	sent := time.Now()
	rev, err := kv.Put(ctx, d.id, d.selfJSON)
	if err == nil {
		d.running = true
	}
	d.putMu.Unlock()
	if err != nil {
		return fmt.Errorf("discovery: put %s: %w", d.id, err)
	}
	d.lastBeat.Store(sent.UnixNano())

	w, err := d.watch(ctx)
	if err != nil {
		dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = d.deleteSelf(dctx)
		return fmt.Errorf("discovery: watch: %w", err)
	}
	d.started = true
	d.wg.Add(2)
	go d.heartbeatLoop(rev)
	go d.watchLoop(w)
	select {
	case <-d.ready:
		d.log.Debug("discovery started", "servers", len(d.Servers()), "ttl", d.ttl)
		return nil
	case <-ctx.Done():
		d.abortStart()
		return fmt.Errorf("discovery: initial load: %w", ctx.Err())
	}
}

// abortStart undoes a failed Start (lifeMu held).
func (d *Discovery) abortStart() {
	d.stopped = true
	close(d.stop)
	d.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = d.deleteSelf(ctx)
}

// Stop stops the heartbeats, deletes this server's key (the other nodes see
// it Left within milliseconds) and stops the watcher. The view keeps its
// last content. Stop is idempotent; the error is the delete's.
func (d *Discovery) Stop(ctx context.Context) error {
	d.lifeMu.Lock()
	defer d.lifeMu.Unlock()
	if !d.started || d.stopped {
		return nil
	}
	d.stopped = true
	close(d.stop) // ends a heartbeat under way, too
	done := make(chan struct{})
	go func() { d.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("discovery: stop %s: %w", d.id, ctx.Err())
	}
	if err := d.deleteSelf(ctx); err != nil {
		return fmt.Errorf("discovery: delete %s: %w", d.id, err)
	}
	return nil
}

// deleteSelf stops SetMetadata's puts and deletes the own key. The
// heartbeat goroutine has ended, so its last put (if any) was written to the
// connection before this delete and the stream stores them in that order.
func (d *Discovery) deleteSelf(ctx context.Context) error {
	d.putMu.Lock()
	defer d.putMu.Unlock()
	if !d.running {
		return nil
	}
	d.running = false
	return d.kv.Delete(ctx, d.id)
}

// Self returns this server as published.
func (d *Discovery) Self() Server {
	d.putMu.Lock()
	defer d.putMu.Unlock()
	return d.self
}

// SetMetadata replaces this server's metadata and, when started, puts the
// new value at once (the others see Updated). The heartbeats carry it on.
// The map is copied.
func (d *Discovery) SetMetadata(ctx context.Context, md map[string]string) error {
	d.putMu.Lock()
	defer d.putMu.Unlock()
	raw, err := d.replaceMetadata(md)
	if err != nil || !d.running {
		return err
	}
	sent := time.Now()
	if _, err := d.kv.Put(ctx, d.id, raw); err != nil {
		return fmt.Errorf("discovery: put %s: %w", d.id, err)
	}
	d.lastBeat.Store(sent.UnixNano())
	return nil
}

// UpdateMetadata replaces this server's metadata for the next heartbeat to
// carry, without a put of its own: for values that change often (a
// frontend's session counts), at no cost beyond the heartbeats. The map is
// copied.
func (d *Discovery) UpdateMetadata(md map[string]string) error {
	d.putMu.Lock()
	defer d.putMu.Unlock()
	_, err := d.replaceMetadata(md)
	return err
}

// replaceMetadata sets the metadata and the JSON the heartbeats put
// (putMu held).
func (d *Discovery) replaceMetadata(md map[string]string) ([]byte, error) {
	self := d.self
	self.Metadata = maps.Clone(md)
	raw, err := json.Marshal(self)
	if err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	d.self, d.selfJSON = self, raw
	return raw, nil
}

// Servers returns every known server, this one included, sorted by ID. The
// slice is the caller's; the Metadata maps are shared and must not be
// modified.
func (d *Discovery) Servers() []Server {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return slices.Clone(d.all)
}

// ServersByType returns the known servers of a type, sorted by ID.
func (d *Discovery) ServersByType(svType string) []Server {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return slices.Clone(d.byType[svType])
}

// HasType reports whether any server of svType is known (cheaper than
// ServersByType on a request path: no copy).
func (d *Discovery) HasType(svType string) bool {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return len(d.byType[svType]) > 0
}

// ServerByID returns a known server.
func (d *Discovery) ServerByID(id string) (Server, bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	e, ok := d.servers[id]
	return e.srv, ok
}

// CountByType returns how many servers of each type are known (the
// service_discovery_count_servers metric).
func (d *Discovery) CountByType() map[string]int {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return maps.Clone(d.counts)
}

// Subscribe calls f for every event, in order, on the watcher goroutine:
// f must not block long (hand slow work to a goroutine of your own) and may
// call the lookups, which already reflect the event, but not Stop (which
// waits for the watcher goroutine). Subscribe before Start to also get a
// Joined for every server found at start. cancel removes f; an event being
// delivered concurrently may still reach it once.
func (d *Discovery) Subscribe(f func(Event)) (cancel func()) {
	d.subMu.Lock()
	defer d.subMu.Unlock()
	d.nextSub++
	id := d.nextSub
	d.subs = append(d.subs, subscriber{id: id, f: f})
	return func() {
		d.subMu.Lock()
		defer d.subMu.Unlock()
		d.subs = slices.DeleteFunc(d.subs, func(s subscriber) bool { return s.id == id })
	}
}

func (d *Discovery) emit(ev Event) {
	d.subMu.Lock()
	subs := slices.Clone(d.subs)
	d.subMu.Unlock()
	for _, s := range subs {
		s.f(ev)
	}
}

// heartbeatLoop puts the own key every heartbeat, re-provisions the bucket
// when puts fail, and asks for a new watcher when the watcher stops seeing
// the puts or the bucket was re-created (revisions went back).
func (d *Discovery) heartbeatLoop(lastRev uint64) {
	defer d.wg.Done()
	t := time.NewTicker(d.heartbeat)
	defer t.Stop()
	var (
		failingSince time.Time // zero while puts succeed
		lastWarn     time.Time
		provision    bool
		pendingRev   uint64 // first put the watcher has not confirmed yet
		pendingAt    time.Time
	)
	staleAfter := max(d.ttl, 2*time.Second)
	timeout := max(d.heartbeat, 500*time.Millisecond)
	// A beat under way when Stop is called ends at once: Stop waits for
	// this loop before it deletes the key.
	life, end := context.WithCancel(context.Background())
	defer end()
	go func() {
		select {
		case <-d.stop:
			end()
		case <-life.Done():
		}
	}()
	for {
		select {
		case <-d.stop:
			return
		case <-t.C:
		case <-d.beatNow:
		}
		if d.busGone() {
			d.log.Error("bus connection closed: heartbeats stop")
			return
		}
		ctx, cancel := context.WithTimeout(life, timeout)
		if provision && d.bus.Connected() {
			// A put failed: the bucket may be gone (memory storage on a
			// restarted server, an operator's delete). If so, the bus
			// creates it again, with whatever else it provisioned that
			// went with it (a put failing on a short deadline does not
			// always say why, so ask). Creating it is a no-op if it exists.
			if _, err := d.bus.JetStream().KeyValue(ctx, d.bus.Name(Bucket)); err != nil {
				d.bus.RecoverMissing(err)
			}
			if _, err := d.bus.KV(ctx, d.kvCfg); err == nil {
				provision = false
				d.requestRewatch()
			}
		}
		d.putMu.Lock()
		sent := time.Now()
		rev, err := d.kv.Put(ctx, d.id, d.selfJSON)
		d.putMu.Unlock()
		cancel()
		if err != nil && life.Err() != nil {
			return // stopped during the beat
		}
		if err != nil {
			now := time.Now()
			if failingSince.IsZero() {
				failingSince, lastWarn = now, now
				d.log.Warn("heartbeat failed", "err", err)
			} else if now.Sub(lastWarn) >= 10*time.Second {
				lastWarn = now
				d.log.Warn("heartbeat still failing", "since", failingSince, "err", err)
			}
			provision = true
			d.bus.RecoverMissing(err) // and the next beat provisions
			continue
		}
		if !failingSince.IsZero() {
			d.log.Info("heartbeat recovered", "after", time.Since(failingSince).Round(time.Millisecond))
			failingSince = time.Time{}
		}
		d.lastBeat.Store(sent.UnixNano())
		if rev < lastRev {
			// The bucket was re-created: the watcher's consumer points past
			// its end.
			d.requestRewatch()
			pendingRev = 0
		}
		lastRev = rev
		// Watchdog: the watcher must see our own puts.
		switch {
		case pendingRev == 0:
			pendingRev, pendingAt = rev, time.Now()
		case d.seenSelfRev.Load() >= pendingRev:
			pendingRev, pendingAt = rev, time.Now()
		case time.Since(pendingAt) > staleAfter:
			d.log.Warn("watcher has not seen our heartbeats; re-creating it", "for", time.Since(pendingAt).Round(time.Millisecond))
			d.requestRewatch()
			pendingRev, pendingAt = rev, time.Now()
		}
	}
}

func (d *Discovery) requestRewatch() {
	select {
	case d.rewatch <- struct{}{}:
	default:
	}
}

func (d *Discovery) nudgeHeartbeat() {
	select {
	case d.beatNow <- struct{}{}:
	default:
	}
}

// watcher is a KeyWatcher with the context its subscription lives in: the
// client unsubscribes when that context ends, so it must outlive the call
// that creates the watcher.
type watcher struct {
	jetstream.KeyWatcher
	cancel  context.CancelFunc
	created time.Time
}

// watch creates a watcher; ctx (capped at 10 s) bounds only the creation.
func (d *Discovery) watch(ctx context.Context) (*watcher, error) {
	life, cancel := context.WithCancel(context.Background())
	ctx, done := context.WithTimeout(ctx, 10*time.Second)
	defer done()
	unbind := context.AfterFunc(ctx, cancel)
	w, err := d.kv.WatchAll(life)
	if !unbind() { // ctx ended during the creation: life is cancelled
		err = errors.Join(ctx.Err(), err)
	}
	if err != nil {
		cancel()
		return nil, err
	}
	return &watcher{KeyWatcher: w, cancel: cancel, created: time.Now()}, nil
}

// watchLoop consumes the watcher and re-creates it when it ends (its
// channel closed) or the heartbeat loop asks for it.
func (d *Discovery) watchLoop(w *watcher) {
	defer d.wg.Done()
	reload := false
	for {
		stopped := d.consume(w, reload)
		d.stopWatcher(w)
		if stopped {
			return
		}
		// A watcher that ended at once must not be re-created in a hot loop.
		var wait time.Duration
		if time.Since(w.created) < time.Second {
			wait = 250 * time.Millisecond
		}
		reload = true
		if w = d.newWatcher(wait); w == nil {
			return
		}
		select { // this watcher answers any request made meanwhile
		case <-d.rewatch:
		default:
		}
	}
}

// busGone reports whether the connection is closed or closing for good.
func (d *Discovery) busGone() bool {
	return d.bus.Closing()
}

// newWatcher creates a watcher after wait, retrying with back-off; nil when
// stopping or when the connection is closed for good.
func (d *Discovery) newWatcher(wait time.Duration) *watcher {
	for {
		select {
		case <-d.stop:
			return nil
		case <-time.After(wait):
		}
		if d.busGone() {
			d.log.Error("bus connection closed: the server view is frozen")
			return nil
		}
		w, err := d.watch(context.Background())
		if err != nil && d.bus.Connected() {
			// The bucket may be gone (memory storage on a restarted
			// server): create it again (a no-op if it exists) and retry;
			// the bus re-creates the rest of what it provisioned.
			d.bus.RecoverMissing(err)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, perr := d.bus.KV(ctx, d.kvCfg)
			cancel()
			if perr == nil {
				w, err = d.watch(context.Background())
			}
		}
		if err == nil {
			return w
		}
		wait = min(max(2*wait, 100*time.Millisecond), 5*time.Second)
		d.log.Warn("re-creating watcher failed", "err", err, "retry", wait)
	}
}

// stopWatcher unsubscribes and drains the watcher so the client's delivery
// goroutine, which blocks on a full channel, can end.
func (d *Discovery) stopWatcher(w *watcher) {
	_ = w.Stop()
	defer w.cancel()
	deadline := time.NewTimer(5 * time.Second)
	defer deadline.Stop()
	for {
		select {
		case _, ok := <-w.Updates():
			if !ok {
				return
			}
		case <-deadline.C:
			d.log.Warn("watcher did not close after stop")
			return
		}
	}
}

// consume applies the watcher's entries until it ends (false) or Stop
// (true). On a reload, servers of the view absent from the watcher's initial
// values are reported Died once they have all arrived.
func (d *Discovery) consume(w *watcher, reload bool) (stopped bool) {
	initial := true
	var seen map[string]bool
	if reload {
		seen = map[string]bool{}
		d.log.Info("watcher re-created; reloading the server view")
	}
	for {
		select {
		case <-d.stop:
			return true
		case <-d.rewatch:
			return false
		case e, ok := <-w.Updates():
			if !ok {
				select {
				case <-d.stop:
					return true
				default:
				}
				d.log.Warn("watcher ended; re-creating it")
				return false
			}
			if e == nil {
				if initial {
					initial = false
					if reload {
						d.sweep(seen)
					}
					select {
					case <-d.ready:
					default:
						close(d.ready)
					}
				}
				continue
			}
			if initial && reload {
				seen[e.Key()] = true
			}
			d.apply(e)
		}
	}
}

// apply folds one watcher entry into the view and emits its event.
func (d *Discovery) apply(e jetstream.KeyValueEntry) {
	key := e.Key()
	if key == d.id {
		d.seenSelfRev.Store(e.Revision())
	}
	switch e.Operation() {
	case jetstream.KeyValuePut:
		var s Server
		if err := json.Unmarshal(e.Value(), &s); err != nil {
			d.log.Warn("ignoring a server entry that is not JSON", "key", key, "err", err)
			return
		}
		if s.ID != key {
			d.log.Warn("ignoring a server entry whose id is not its key", "key", key, "id", s.ID)
			return
		}
		d.mu.Lock()
		old, known := d.servers[key]
		if known && bytes.Equal(old.raw, e.Value()) {
			d.mu.Unlock()
			return // a heartbeat
		}
		d.servers[key] = entry{srv: s, raw: bytes.Clone(e.Value())}
		d.rebuild()
		d.mu.Unlock()
		kind := Joined
		if known {
			kind = Updated
		}
		d.emit(Event{Kind: kind, Server: s})
	case jetstream.KeyValueDelete, jetstream.KeyValuePurge:
		kind := Left
		if e.Operation() == jetstream.KeyValuePurge {
			kind = Died
		}
		if key == d.id {
			d.ownKeyGone(kind)
		}
		d.remove(key, kind)
	}
}

// ownKeyGone re-puts the own key at once if it vanished while we are alive
// (paused past the TTL, or deleted by hand).
func (d *Discovery) ownKeyGone(kind EventKind) {
	select {
	case <-d.stop:
	default:
		d.log.Warn("own key removed while alive (paused past the TTL?); putting it again", "event", kind)
		d.nudgeHeartbeat()
	}
}

func (d *Discovery) remove(key string, kind EventKind) {
	d.mu.Lock()
	old, known := d.servers[key]
	if !known {
		d.mu.Unlock()
		return // e.g. the MaxAge marker left when a delete marker expires
	}
	delete(d.servers, key)
	d.rebuild()
	d.mu.Unlock()
	d.emit(Event{Kind: kind, Server: old.srv})
}

// sweep reports Died for servers that vanished while no watcher was running.
func (d *Discovery) sweep(seen map[string]bool) {
	d.mu.RLock()
	var gone []string
	for id := range d.servers {
		if !seen[id] {
			gone = append(gone, id)
		}
	}
	d.mu.RUnlock()
	slices.Sort(gone)
	for _, id := range gone {
		if id == d.id {
			d.ownKeyGone(Died)
		}
		d.remove(id, Died)
	}
}

// rebuild recomputes the sorted slices and counts (mu held).
func (d *Discovery) rebuild() {
	all := make([]Server, 0, len(d.servers))
	for _, e := range d.servers {
		all = append(all, e.srv)
	}
	slices.SortFunc(all, func(a, b Server) int { return cmp.Compare(a.ID, b.ID) })
	byType := map[string][]Server{}
	counts := map[string]int{}
	for _, s := range all {
		byType[s.Type] = append(byType[s.Type], s)
		counts[s.Type]++
	}
	d.all, d.byType, d.counts = all, byType, counts
}

// List reads the servers currently registered in the bus's bucket, without
// joining the cluster (for tools such as `node servers`). A missing bucket
// means no servers. The list is sorted by ID.
func List(ctx context.Context, bus *stream.Bus) ([]Server, error) {
	kv, err := bus.JetStream().KeyValue(ctx, bus.Name(Bucket))
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("discovery: bucket: %w", err)
	}
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("discovery: watch: %w", err)
	}
	defer func() {
		_ = w.Stop()
		go func() { // let the client's delivery goroutine end
			for range w.Updates() {
			}
		}()
	}()
	var list []Server
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("discovery: list: %w", ctx.Err())
		case e, ok := <-w.Updates():
			if !ok {
				return nil, errors.New("discovery: list: watcher closed")
			}
			if e == nil {
				slices.SortFunc(list, func(a, b Server) int { return cmp.Compare(a.ID, b.ID) })
				return list, nil
			}
			var s Server
			if json.Unmarshal(e.Value(), &s) == nil && s.ID == e.Key() {
				list = append(list, s)
			}
		}
	}
}

func validToken(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
		default:
			return false
		}
	}
	return true
}
