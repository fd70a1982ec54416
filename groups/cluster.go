package groups

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nopal-dev/nopal/stream"
)

// ClusterBucket is the name of the KV bucket that holds the cluster groups,
// before the bus adds its prefix ("nopal_groups").
const ClusterBucket = "groups"

// maxCASAttempts bounds the read-compare-write loops of Create, RenewTTL and
// Delete. Each failed attempt means another node changed the group in
// between, so running out of attempts takes sustained contention on one name.
const maxCASAttempts = 64

// errContention is returned when maxCASAttempts were not enough.
var errContention = errors.New("too many concurrent changes, try again")

// ClusterOption configures a [Cluster] created by [NewCluster]. [WithClock]
// and [WithSweepInterval] are ClusterOptions too, with the same meaning as for
// [Memory]; [WithSweepHook] applies to Cluster only.
type ClusterOption interface {
	applyCluster(*clusterConfig)
}

type clusterConfig struct {
	sweepInterval time.Duration
	clock         func() time.Time
	sweepHook     func(removed int, err error)
}

// applyCluster makes every MemoryOption a ClusterOption.
func (o MemoryOption) applyCluster(c *clusterConfig) {
	m := memoryConfig{sweepInterval: c.sweepInterval, clock: c.clock}
	o(&m)
	c.sweepInterval, c.clock = m.sweepInterval, m.clock
}

type clusterOption func(*clusterConfig)

func (o clusterOption) applyCluster(c *clusterConfig) { o(c) }

// WithSweepHook makes [Cluster.Start] call hook after every sweep with the
// number of groups that sweep removed and its error, if any, so that the app
// can log and count them: Start itself keeps going after a failed sweep (the
// next one retries). hook is called from Start's goroutine. A nil hook is
// ignored.
func WithSweepHook(hook func(removed int, err error)) ClusterOption {
	return clusterOption(func(c *clusterConfig) {
		if hook != nil {
			c.sweepHook = hook
		}
	})
}

// Cluster is the [Service] of a cluster of servers: its groups live in the
// JetStream KV bucket [ClusterBucket] (file storage), and every node that
// creates a Cluster on the same bus sees the same groups. It keeps no state
// of its own between calls, so it is safe for concurrent use and any number
// of nodes may use the bucket at once.
//
// # Storage
//
// A group called g is one meta key and one key per member:
//
//	<g>.meta                 {"ttl":ns,"expiresAt":unixNano,"created":unixNano,"gen":"…"}
//	<g>.m.<gen>.<uid>        empty value
//
// ttl is 0 and expiresAt 0 for a group without TTL. Names and uids made only
// of ASCII letters, digits, '-' and '_' are used as they are; any other one
// (including the empty string) becomes '=' followed by its unpadded base64url
// form, so "room 1" is stored as "=cm9vbSAx". The two forms cannot collide,
// since '=' is not a plain character, and neither can hold the '.' that
// separates the tokens of a key.
//
// gen is a random generation, chosen when the group is created. Members live
// under their group's generation, so a group created again after Delete or
// after expiry starts empty even if another node was adding to the old one
// at that moment: what was added to an older generation is never listed.
// Such leftovers are deleted by Create, Delete and the sweeper, and Add checks
// the group again after writing, undoing its own write if the group went away
// meanwhile, so no member key outlives its group except after a crash
// mid-Delete (the next Create of that name removes it).
//
// Keys are removed by purging their subjects from the bucket's stream
// (JetStream's stream purge with a subject filter) rather than with KV
// Delete, which would leave a delete marker per removed member for ever.
// Without markers, the bucket's stream holds exactly the live keys, so the
// members of a group are the subjects matching <g>.m.<gen>.*, which one
// stream-info request with a subject filter returns (paged by 100,000). That
// is the cheapest correct listing: a KV watcher or ListKeysFiltered creates
// and deletes an ordered consumer for each call and streams a message per
// key; a stream info costs one request/reply. The purge reply counts the
// messages it removed, which makes Remove atomic (0 means the uid was not a
// member) and, with a sequence bound, makes removing a meta key a
// compare-and-delete.
//
// # Operations
//
// Every method reads the meta key first (one KV get) and treats a missing or
// expired group as not found, at once, whether or not it has been swept.
// Create is a KV Create of the meta key; if the name is taken by an expired
// group, a KV Update on its revision replaces it. Add is a KV Create of the
// member key (ErrKeyExists gives [ErrMemberAlreadyExists]) followed by a
// second read of the meta key. Remove purges the member's subject; RemoveAll
// purges <g>.m.<gen>.>; Delete and the sweeper purge the meta key on the
// revision they read, then its members. RenewTTL is a KV Update on the
// revision it read. Read-compare-write loops retry when another node wins
// the race. Members, Count, Broadcast and Multicast list the members once;
// Broadcast and Multicast then call the Pusher once with all their uids.
//
// # TTL and sweeping
//
// Expiry is decided by the clock of the node that reads the group, against
// expiresAt written by the node that created or renewed it: keep the nodes'
// clocks in sync. [Cluster.Sweep] deletes the keys of expired groups;
// [Cluster.Start] runs it periodically. Several nodes may sweep at once: only
// one of them removes a given group (the others' conditional purges remove
// nothing), so running Start on every node is harmless.
//
// # Consistency
//
// On a bucket with one replica (the default) every read sees every write that
// returned before it. With more replicas, KV gets may be served by a
// follower that lags by a replication round trip.
//
// An operation on the bucket that fails because the bucket is missing (a
// NATS server restarted with an empty store, an operator's delete) has the
// bus create it again and is retried once ([stream.RetryMissing]); the
// groups it held are lost with it.
type Cluster struct {
	pusher        Pusher
	bus           *stream.Bus // re-creates the bucket when it is missing
	kv            jetstream.KeyValue
	str           jetstream.Stream
	subjPrefix    string // "$KV.<bucket>."
	purgeSubject  string // "$JS.API.STREAM.PURGE.KV_<bucket>"
	timeout       time.Duration
	clock         func() time.Time
	sweepInterval time.Duration
	sweepHook     func(int, error)
}

var _ Service = (*Cluster)(nil)

// NewCluster provisions the KV bucket [ClusterBucket] (file storage) on bus,
// or opens it if it exists, and returns a Cluster that pushes through p.
// Every node calls NewCluster with its own bus and sees the same groups.
// Call [Cluster.Start] to delete expired groups.
func NewCluster(ctx context.Context, bus *stream.Bus, p Pusher, opts ...ClusterOption) (*Cluster, error) {
	switch {
	case bus == nil || bus.JetStream() == nil:
		return nil, errors.New("groups: NewCluster: bus is not connected")
	case p == nil:
		return nil, errors.New("groups: NewCluster: nil Pusher")
	}
	cfg := clusterConfig{sweepInterval: DefaultSweepInterval, clock: time.Now}
	for _, opt := range opts {
		if opt != nil {
			opt.applyCluster(&cfg)
		}
	}
	kv, err := bus.KV(ctx, jetstream.KeyValueConfig{
		Bucket:      ClusterBucket,
		Description: "nopal groups: <group>.meta and <group>.m.<gen>.<uid>",
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("groups: NewCluster: %w", err)
	}
	streamName := "KV_" + kv.Bucket()
	js := bus.JetStream()
	str, err := bus.KVStream(ctx, kv)
	if err != nil {
		return nil, fmt.Errorf("groups: NewCluster: stream %s: %w", streamName, err)
	}
	jsOpts := js.Options()
	timeout := jsOpts.DefaultTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	return &Cluster{
		pusher:        p,
		bus:           bus,
		kv:            kv,
		str:           str,
		subjPrefix:    "$KV." + kv.Bucket() + ".",
		purgeSubject:  apiPrefix(jsOpts) + "STREAM.PURGE." + streamName,
		timeout:       timeout,
		clock:         cfg.clock,
		sweepInterval: cfg.sweepInterval,
		sweepHook:     cfg.sweepHook,
	}, nil
}

// apiPrefix is the JetStream API prefix the bus's JetStream uses.
func apiPrefix(o jetstream.JetStreamOptions) string {
	switch {
	case o.Domain != "":
		return "$JS." + o.Domain + ".API."
	case o.APIPrefix != "":
		return strings.TrimSuffix(o.APIPrefix, ".") + "."
	default:
		return jetstream.DefaultAPIPrefix
	}
}

// Start runs the sweeper in the calling goroutine: every sweep interval it
// calls [Cluster.Sweep] with the current time, then the hook set by
// [WithSweepHook], if any. A failed sweep does not stop it. It returns
// ctx.Err() when ctx is done. Run it in its own goroutine, on any number of
// nodes:
//
//	go c.Start(ctx)
func (c *Cluster) Start(ctx context.Context) error {
	ticker := time.NewTicker(c.sweepInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ticker.C:
			n, err := c.Sweep(ctx, c.clock())
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if c.sweepHook != nil {
				c.sweepHook(n, err)
			}
		}
	}
}

// Sweep deletes the keys of the groups that have expired at now and returns
// how many groups it deleted. Expired groups are already not found before
// they are swept. A group deleted, renewed or replaced by another node during
// the sweep is left alone and not counted, so concurrent sweeps on several
// nodes remove each group once. Sweep carries on after a failure and returns
// the first error with the count of what it did remove.
func (c *Cluster) Sweep(ctx context.Context, now time.Time) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("groups: sweep: %w", err)
	}
	type candidate struct {
		key string
		rev uint64
		gen string
	}
	w, err := stream.RetryMissing(ctx, c.bus, func(ctx context.Context) (jetstream.KeyWatcher, error) {
		return c.kv.Watch(ctx, "*.meta", jetstream.IgnoreDeletes())
	})
	if err != nil {
		return 0, fmt.Errorf("groups: sweep: list groups: %w", err)
	}
	var expired []candidate
	var firstErr error
	func() {
		defer func() {
			_ = w.Stop()
			// The watcher's delivery goroutine blocks on a full channel;
			// drain it until Stop closes it.
			go func() {
				for range w.Updates() {
				}
			}()
		}()
		for {
			select {
			case <-ctx.Done():
				firstErr = fmt.Errorf("groups: sweep: list groups: %w", ctx.Err())
				return
			case e, ok := <-w.Updates():
				if !ok {
					firstErr = errors.New("groups: sweep: list groups: watcher closed")
					return
				}
				if e == nil { // every meta key seen
					return
				}
				var m clusterMeta
				if err := json.Unmarshal(e.Value(), &m); err != nil {
					if firstErr == nil {
						firstErr = fmt.Errorf("groups: sweep: key %q: %w", e.Key(), err)
					}
					continue
				}
				if m.expired(now) {
					expired = append(expired, candidate{e.Key(), e.Revision(), m.Gen})
				}
			}
		}
	}()
	if firstErr != nil && len(expired) == 0 {
		return 0, firstErr
	}

	removed := 0
	for _, cand := range expired {
		group := strings.TrimSuffix(cand.key, ".meta")
		// Only the sweeper whose purge removes the meta key at the
		// revision it saw deletes the group; anybody else's purge
		// removes nothing.
		n, err := c.purge(ctx, cand.key, cand.rev+1)
		if err == nil && n > 0 {
			removed++
			_, err = c.purge(ctx, group+".m."+cand.gen+".>", 0)
		}
		if err != nil && firstErr == nil {
			name, _ := untoken(group)
			firstErr = fmt.Errorf("groups: %q: sweep: %w", name, err)
		}
	}
	return removed, firstErr
}

// Create implements [Service.Create].
func (c *Cluster) Create(ctx context.Context, name string) error {
	return c.create(ctx, name, 0)
}

// CreateWithTTL implements [Service.CreateWithTTL].
func (c *Cluster) CreateWithTTL(ctx context.Context, name string, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("groups: %q: ttl must be positive, got %v: %w", name, ttl, ErrInvalidTTL)
	}
	return c.create(ctx, name, ttl)
}

func (c *Cluster) create(ctx context.Context, name string, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return wrap(name, err)
	}
	key := metaKey(name)
	for range maxCASAttempts {
		now := c.clock()
		m := clusterMeta{TTL: int64(ttl), Created: now.UnixNano(), Gen: newGen()}
		if ttl > 0 {
			m.ExpiresAt = now.Add(ttl).UnixNano()
		}
		val, err := json.Marshal(m)
		if err != nil {
			return ioErr(name, "create", err)
		}
		rev, err := stream.RetryMissing(ctx, c.bus, func(ctx context.Context) (uint64, error) {
			return c.kv.Create(ctx, key, val)
		})
		if err == nil {
			c.dropOldMembers(ctx, name, rev)
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return ioErr(name, "create", err)
		}
		old, oldRev, found, err := c.getMeta(ctx, name)
		if err != nil {
			return err
		}
		if !found {
			continue // deleted meanwhile: Create again
		}
		if !old.expired(now) {
			return wrap(name, ErrGroupAlreadyExists)
		}
		// Replace the expired group, unless another node changes it first.
		rev, err = stream.RetryMissing(ctx, c.bus, func(ctx context.Context) (uint64, error) {
			return c.kv.Update(ctx, key, val, oldRev)
		})
		if err == nil {
			c.dropOldMembers(ctx, name, rev)
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return ioErr(name, "create", err)
		}
	}
	return ioErr(name, "create", errContention)
}

// dropOldMembers deletes, on a best-effort basis, the member keys of the
// group called name written before revision rev, at which a new generation
// of the group was written: they belong to older generations. Members of the
// new generation are written after it, so they are not touched. A failure
// leaves only keys that are never read.
func (c *Cluster) dropOldMembers(ctx context.Context, name string, rev uint64) {
	_, _ = c.purge(ctx, token(name)+".m.>", rev)
}

// Add implements [Service.Add].
func (c *Cluster) Add(ctx context.Context, name, uid string) error {
	m, err := c.live(ctx, name)
	if err != nil {
		return err
	}
	key := memberKey(name, m.Gen, uid)
	rev, err := stream.RetryMissing(ctx, c.bus, func(ctx context.Context) (uint64, error) {
		return c.kv.Create(ctx, key, nil)
	})
	if errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("groups: %q: uid %q: %w", name, uid, ErrMemberAlreadyExists)
	}
	if err != nil {
		return ioErr(name, "add", err)
	}
	// If the group was deleted or replaced between the first read and the
	// write, nobody will delete this key: undo the write. Delete purges the
	// meta key before the members, so a group still seen here deletes the
	// key itself.
	cur, _, found, err := c.getMeta(ctx, name)
	if err != nil {
		return err
	}
	if !found || cur.Gen != m.Gen {
		_, _ = c.purge(ctx, key, rev+1)
		return wrap(name, ErrGroupNotFound)
	}
	return nil
}

// Remove implements [Service.Remove].
func (c *Cluster) Remove(ctx context.Context, name, uid string) error {
	m, err := c.live(ctx, name)
	if err != nil {
		return err
	}
	n, err := c.purge(ctx, memberKey(name, m.Gen, uid), 0)
	if err != nil {
		return ioErr(name, "remove", err)
	}
	if n == 0 {
		return fmt.Errorf("groups: %q: uid %q: %w", name, uid, ErrMemberNotFound)
	}
	return nil
}

// RemoveAll implements [Service.RemoveAll].
func (c *Cluster) RemoveAll(ctx context.Context, name string) error {
	m, err := c.live(ctx, name)
	if err != nil {
		return err
	}
	if _, err := c.purge(ctx, memberPrefix(name, m.Gen)+">", 0); err != nil {
		return ioErr(name, "remove all", err)
	}
	return nil
}

// RenewTTL implements [Service.RenewTTL].
func (c *Cluster) RenewTTL(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return wrap(name, err)
	}
	for range maxCASAttempts {
		now := c.clock()
		m, rev, found, err := c.getMeta(ctx, name)
		if err != nil {
			return err
		}
		if !found || m.expired(now) {
			return wrap(name, ErrGroupNotFound)
		}
		if m.TTL == 0 {
			return wrap(name, ErrNoTTL)
		}
		m.ExpiresAt = now.Add(time.Duration(m.TTL)).UnixNano()
		val, err := json.Marshal(m)
		if err != nil {
			return ioErr(name, "renew TTL", err)
		}
		_, err = stream.RetryMissing(ctx, c.bus, func(ctx context.Context) (uint64, error) {
			return c.kv.Update(ctx, metaKey(name), val, rev)
		})
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return ioErr(name, "renew TTL", err)
		}
	}
	return ioErr(name, "renew TTL", errContention)
}

// Delete implements [Service.Delete]. Like [Memory.Delete], it deletes the
// keys of an expired group too, and reports it as not found.
func (c *Cluster) Delete(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return wrap(name, err)
	}
	for range maxCASAttempts {
		now := c.clock()
		m, rev, found, err := c.getMeta(ctx, name)
		if err != nil {
			return err
		}
		if !found {
			return wrap(name, ErrGroupNotFound)
		}
		n, err := c.purge(ctx, metaKey(name), rev+1)
		if err != nil {
			return ioErr(name, "delete", err)
		}
		if n == 0 {
			continue // renewed, replaced or deleted meanwhile: look again
		}
		if _, err := c.purge(ctx, memberPrefix(name, m.Gen)+">", 0); err != nil {
			return ioErr(name, "delete members", err)
		}
		if m.expired(now) {
			return wrap(name, ErrGroupNotFound)
		}
		return nil
	}
	return ioErr(name, "delete", errContention)
}

// Members implements [Service.Members].
func (c *Cluster) Members(ctx context.Context, name string) ([]string, error) {
	uids, err := c.snapshot(ctx, name)
	if err != nil {
		return nil, err
	}
	slices.Sort(uids)
	return uids, nil
}

// Contains implements [Service.Contains].
func (c *Cluster) Contains(ctx context.Context, name, uid string) (bool, error) {
	m, err := c.live(ctx, name)
	if err != nil {
		return false, err
	}
	_, err = stream.RetryMissing(ctx, c.bus, func(ctx context.Context) (jetstream.KeyValueEntry, error) {
		return c.kv.Get(ctx, memberKey(name, m.Gen, uid))
	})
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return false, nil
	default:
		return false, ioErr(name, "contains", err)
	}
}

// Count implements [Service.Count].
func (c *Cluster) Count(ctx context.Context, name string) (int, error) {
	uids, err := c.snapshot(ctx, name)
	return len(uids), err
}

// Broadcast implements [Service.Broadcast].
func (c *Cluster) Broadcast(ctx context.Context, name, route string, v any) ([]string, error) {
	return c.push(ctx, name, route, v, nil)
}

// Multicast implements [Service.Multicast].
func (c *Cluster) Multicast(ctx context.Context, name, route string, v any, keep func(uid string) bool) ([]string, error) {
	return c.push(ctx, name, route, v, keep)
}

// push lists the members once, filters them with keep (if not nil) and
// pushes to the rest with one call to the Pusher.
func (c *Cluster) push(ctx context.Context, name, route string, v any, keep func(string) bool) ([]string, error) {
	uids, err := c.snapshot(ctx, name)
	if err != nil {
		return nil, err
	}
	return pushTo(ctx, c.pusher, name, route, v, uids, keep)
}

// snapshot returns the members of the live group called name, in no
// particular order; the slice is non-nil.
func (c *Cluster) snapshot(ctx context.Context, name string) ([]string, error) {
	m, err := c.live(ctx, name)
	if err != nil {
		return nil, err
	}
	prefix := c.subjPrefix + memberPrefix(name, m.Gen)
	info, err := stream.RetryMissing(ctx, c.bus, func(ctx context.Context) (*jetstream.StreamInfo, error) {
		return c.str.Info(ctx, jetstream.WithSubjectFilter(prefix+"*"))
	})
	if err != nil {
		return nil, ioErr(name, "list members", err)
	}
	uids := make([]string, 0, len(info.State.Subjects))
	for subj := range info.State.Subjects {
		uid, ok := untoken(strings.TrimPrefix(subj, prefix))
		if !ok {
			continue // not written by this package
		}
		uids = append(uids, uid)
	}
	return uids, nil
}

// clusterMeta is the value of a group's meta key.
type clusterMeta struct {
	TTL       int64  `json:"ttl"`       // nanoseconds; 0: no TTL
	ExpiresAt int64  `json:"expiresAt"` // Unix nanoseconds; 0: never
	Created   int64  `json:"created"`   // Unix nanoseconds
	Gen       string `json:"gen"`       // generation: the members' key prefix
}

func (m *clusterMeta) expired(now time.Time) bool {
	return m.TTL > 0 && now.UnixNano() >= m.ExpiresAt
}

// live returns the meta of the live group called name, after checking ctx.
func (c *Cluster) live(ctx context.Context, name string) (clusterMeta, error) {
	if err := ctx.Err(); err != nil {
		return clusterMeta{}, wrap(name, err)
	}
	m, _, found, err := c.getMeta(ctx, name)
	if err != nil {
		return clusterMeta{}, err
	}
	if !found || m.expired(c.clock()) {
		return clusterMeta{}, wrap(name, ErrGroupNotFound)
	}
	return m, nil
}

// getMeta reads the meta key of the group called name, expired or not.
func (c *Cluster) getMeta(ctx context.Context, name string) (m clusterMeta, rev uint64, found bool, err error) {
	e, err := stream.RetryMissing(ctx, c.bus, func(ctx context.Context) (jetstream.KeyValueEntry, error) {
		return c.kv.Get(ctx, metaKey(name))
	})
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return m, 0, false, nil
	}
	if err != nil {
		return m, 0, false, ioErr(name, "read", err)
	}
	if err := json.Unmarshal(e.Value(), &m); err != nil {
		return m, 0, false, ioErr(name, "read", err)
	}
	return m, e.Revision(), true, nil
}

type purgeRequest struct {
	Filter string `json:"filter"`
	Seq    uint64 `json:"seq,omitempty"`
}

type purgeResponse struct {
	Error   *jetstream.APIError `json:"error,omitempty"`
	Success bool                `json:"success"`
	Purged  uint64              `json:"purged"`
}

// purge removes from the bucket's stream the messages of the keys matching
// filter (a key or a pattern with wildcards), leaving no delete marker, and
// returns how many it removed. If before > 0, only messages with a revision
// lower than before are removed: with before = rev+1 on one key, that is
// "delete if unchanged since rev". It is a raw JetStream API request because
// [jetstream.Stream.Purge] does not return the count.
func (c *Cluster) purge(ctx context.Context, filter string, before uint64) (uint64, error) {
	return stream.RetryMissing(ctx, c.bus, func(ctx context.Context) (uint64, error) {
		return c.purgeOnce(ctx, filter, before)
	})
}

func (c *Cluster) purgeOnce(ctx context.Context, filter string, before uint64) (uint64, error) {
	body, err := json.Marshal(purgeRequest{Filter: c.subjPrefix + filter, Seq: before})
	if err != nil {
		return 0, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	msg, err := c.bus.Request(ctx, c.purgeSubject, body, nil)
	if err != nil {
		return 0, fmt.Errorf("purge: %w", err)
	}
	var resp purgeResponse
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return 0, fmt.Errorf("purge: %w", err)
	}
	if resp.Error != nil {
		return 0, fmt.Errorf("purge: %w", resp.Error)
	}
	if !resp.Success {
		return 0, errors.New("purge: not successful")
	}
	return resp.Purged, nil
}

// ioErr wraps an error of the bus with the package prefix, the group name
// and what was being done.
func ioErr(name, op string, err error) error {
	return fmt.Errorf("groups: %q: %s: %w", name, op, err)
}

// Keys.

func metaKey(name string) string { return token(name) + ".meta" }

func memberPrefix(name, gen string) string { return token(name) + ".m." + gen + "." }

func memberKey(name, gen, uid string) string { return memberPrefix(name, gen) + token(uid) }

// newGen returns a new random generation: 13 characters or fewer of [0-9a-z].
func newGen() string { return strconv.FormatUint(rand.Uint64(), 36) }

// token encodes s as one KV key token: s itself if it is made of ASCII
// letters, digits, '-' and '_' only, otherwise '=' and the unpadded base64url
// encoding of s (whose alphabet is that same set).
func token(s string) string {
	if plain(s) {
		return s
	}
	return "=" + base64.RawURLEncoding.EncodeToString([]byte(s))
}

// untoken decodes a token made by token; ok is false if t is not one.
func untoken(t string) (s string, ok bool) {
	if enc, found := strings.CutPrefix(t, "="); found {
		b, err := base64.RawURLEncoding.DecodeString(enc)
		if err != nil {
			return "", false
		}
		return string(b), true
	}
	return t, plain(t)
}

func plain(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch b := s[i]; {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9', b == '-', b == '_':
		default:
			return false
		}
	}
	return true
}
