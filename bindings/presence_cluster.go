package bindings

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nopal-dev/nopal/stream"
)

// ErrPresenceStopped is returned by a ClusterPresence that has stopped
// (Stop, or its bus closed).
var ErrPresenceStopped = errors.New("bindings: presence stopped")

// ClusterPresence is the Presence of a cluster: one watcher on the
// "bindings" bucket keeps every binding in memory, so Online, Count and
// List answer without a bus round trip, and Watch turns the bucket's
// changes into events (a Create is online, an Update to another frontend
// moved, a Delete or Purge offline). The watcher is re-created if it ends
// while the bus is up (the bucket re-provisioned, say); the differences
// found on reloading are reported as events. Until the watcher has loaded
// the bucket, the methods wait for it (bounded by their ctx).
type ClusterPresence struct {
	bus *stream.Bus
	log *slog.Logger
	hub *hub

	ready chan struct{}   // closed once the bucket is loaded
	ctx   context.Context // ended by Stop
	stop  context.CancelFunc
	done  chan struct{} // closed when the watch loop has ended
}

var _ Presence = (*ClusterPresence)(nil)

// NewClusterPresence starts following the bindings of bus's cluster. It
// returns at once: the bucket is provisioned (if missing) and loaded in
// the background, retried until it succeeds, Stop, or the bus closes. log
// nil means slog.Default().
func NewClusterPresence(bus *stream.Bus, log *slog.Logger) *ClusterPresence {
	if log == nil {
		log = slog.Default()
	}
	p := &ClusterPresence{bus: bus, log: log, hub: newHub(), ready: make(chan struct{}), done: make(chan struct{})}
	p.ctx, p.stop = context.WithCancel(context.Background())
	go p.loop()
	return p
}

// Stop ends the watcher and every Watch.
func (p *ClusterPresence) Stop() {
	p.stop()
	<-p.done
}

// Ready waits until the bucket is loaded; it fails when ctx ends first or
// the presence stopped.
func (p *ClusterPresence) Ready(ctx context.Context) error {
	select {
	case <-p.ready:
		select {
		case <-p.done:
			return ErrPresenceStopped
		default:
			return nil
		}
	case <-p.done:
		return ErrPresenceStopped
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Online reports whether uid is bound on any frontend.
func (p *ClusterPresence) Online(ctx context.Context, uid string) (bool, error) {
	if err := checkUID(uid); err != nil {
		return false, err
	}
	if err := p.Ready(ctx); err != nil {
		return false, err
	}
	return p.hub.online(uid), nil
}

// Count is the number of uids bound in the cluster.
func (p *ClusterPresence) Count(ctx context.Context) (int, error) {
	if err := p.Ready(ctx); err != nil {
		return 0, err
	}
	return p.hub.count(), nil
}

// List returns every bound uid with its frontend.
func (p *ClusterPresence) List(ctx context.Context) (map[string]string, error) {
	if err := p.Ready(ctx); err != nil {
		return nil, err
	}
	return p.hub.list(), nil
}

// Watch reports the uids online now, then the changes (see Presence).
func (p *ClusterPresence) Watch(ctx context.Context) (<-chan PresenceEvent, error) {
	if err := p.Ready(ctx); err != nil {
		return nil, err
	}
	return p.hub.watch(ctx), nil
}

// Route splits uids by the frontend their binding names, under one lock and
// without waiting: before the bucket is loaded every uid is unknown. It is
// what a sender uses to push straight to the frontend holding each uid.
func (p *ClusterPresence) Route(uids []string) (byFrontend map[string][]string, unknown []string) {
	select {
	case <-p.ready:
	default:
		return nil, uids
	}
	return p.hub.route(uids)
}

func (p *ClusterPresence) stopped() bool {
	return p.ctx.Err() != nil || p.bus.Closing()
}

// loop runs watchers until Stop or the bus closes for good.
func (p *ClusterPresence) loop() {
	defer close(p.done)
	defer p.hub.close()
	wait := time.Duration(0)
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-time.After(wait):
		}
		if p.stopped() {
			return
		}
		started := time.Now()
		err := p.watchOnce()
		if p.stopped() {
			return
		}
		switch {
		case err != nil:
			wait = min(max(2*wait, 100*time.Millisecond), 5*time.Second)
			p.log.Warn("presence: watching the bindings failed; retrying", "err", err, "retry", wait)
		case time.Since(started) < time.Second:
			wait = 250 * time.Millisecond // ended at once: no hot loop
		default:
			wait = 0
		}
	}
}

// watchOnce provisions the bucket, loads it into the hub and follows it
// until the watcher ends (nil) or Stop.
func (p *ClusterPresence) watchOnce() error {
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	store, err := NewStore(ctx, p.bus)
	cancel()
	if err != nil {
		return err
	}
	// The watcher's subscription lives as long as this context.
	life, end := context.WithCancel(p.ctx)
	defer end()
	w, err := store.kv.WatchAll(life)
	if err != nil {
		p.bus.RecoverMissing(err)
		return err
	}
	defer func() { _ = w.Stop() }()
	fresh := map[string]Binding{} // the initial values, until their end marker
	for {
		var e jetstream.KeyValueEntry
		var ok bool
		select {
		case <-p.ctx.Done():
			return nil
		case e, ok = <-w.Updates():
		}
		if !ok {
			return nil
		}
		if e == nil { // the initial values are all in
			if fresh != nil {
				p.hub.replace(fresh)
				fresh = nil
				select {
				case <-p.ready:
				default:
					close(p.ready)
				}
			}
			continue
		}
		uid, okUID := uidOf(e.Key())
		if !okUID {
			continue
		}
		var b Binding
		put := e.Operation() == jetstream.KeyValuePut
		if put && json.Unmarshal(e.Value(), &b) != nil {
			continue // not written by this package
		}
		switch {
		case fresh != nil && put:
			fresh[uid] = b
		case fresh != nil:
			delete(fresh, uid)
		case put:
			p.hub.set(uid, b)
		default:
			p.hub.remove(uid)
		}
	}
}
