package stream

import (
	"cmp"
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// reprovisionInterval is the shortest time between the starts of two
// re-provisioning runs: a burst of failures costs one run, not one each.
const reprovisionInterval = time.Second

// object is a stream or a bucket provisioned through the Bus, with what it
// takes to provision it again.
type object struct {
	kind string // "stream" or "bucket"
	name string // with the prefix
	// ensure creates the object if it does not exist (create-only) and
	// reports whether it did.
	ensure func(context.Context) (created bool, err error)
}

// provisioner remembers every object provisioned through the Bus and
// re-provisions them, one run at a time, in a goroutine started on demand.
// Runs are numbered: a request is served by the first run that starts after
// it, so the requests made while a run waits for its turn share it.
type provisioner struct {
	mu        sync.Mutex
	objects   map[string]object // by kind and name
	requested uint64            // the run the latest request waits for
	started   uint64            // the last run started
	finished  uint64            // the last run finished
	ok        bool              // whether run finished provisioned every object
	running   bool              // the run loop goroutine is alive
	closed    bool              // the Bus is closing: no more runs
	lastStart time.Time
	done      chan struct{} // closed, then replaced, when a run finishes
}

// remember records how to provision an object again (the last
// configuration given for a name wins).
func (b *Bus) remember(o object) {
	p := &b.prov
	p.mu.Lock()
	defer p.mu.Unlock()
	p.objects[o.kind+" "+o.name] = o
}

// IsMissing reports whether err, returned by a JetStream operation (a KV
// get, put or watch, a publish to a stream, a stream or consumer API call),
// means that the stream or bucket it used does not exist: stream not found
// (API error 10059), bucket not found, or no response from the stream (no
// responders: nothing stores the subject). A NATS server restarted with an
// empty store, a rebuilt cluster or an operator's delete leave a node with
// such errors until the object is created again. No responders is also
// the answer while JetStream itself is not up yet: re-provisioning then
// finds it (or not) once it is.
func IsMissing(err error) bool {
	if err == nil {
		return false
	}
	for _, target := range []error{
		jetstream.ErrStreamNotFound, jetstream.ErrBucketNotFound, jetstream.ErrNoStreamResponse,
		nats.ErrStreamNotFound, nats.ErrBucketNotFound, nats.ErrNoStreamResponse, // the legacy API (KV watchers)
		nats.ErrNoResponders,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamNotFound {
		return true
	}
	var legacy *nats.APIError
	return errors.As(err, &legacy) && legacy.ErrorCode == nats.JSErrCodeStreamNotFound
}

// RecoverMissing reports whether err means that a stream or bucket is
// missing (see IsMissing) and, if so, has the Bus re-provision every stream
// and bucket provisioned through KV and Stream, in the background
// (create-only, as they were first provisioned): a later retry of the
// failed operation can then succeed. Concurrent calls share one run, and
// runs start at most once a second. It does not wait: see
// RecoverMissingWait and RetryMissing for that.
func (b *Bus) RecoverMissing(err error) bool {
	if !IsMissing(err) {
		return false
	}
	b.requestReprovision()
	return true
}

// RecoverMissingWait is RecoverMissing, then waits until the run it asked
// for has ended or ctx is done. It returns true when err meant a missing
// object and the run provisioned every object: retrying the failed
// operation at once makes sense.
func (b *Bus) RecoverMissingWait(ctx context.Context, err error) bool {
	if !IsMissing(err) {
		return false
	}
	return b.awaitRun(ctx, b.requestReprovision())
}

// awaitRun waits until run has finished and reports whether it provisioned
// every object; false if ctx ends first or the Bus closes.
func (b *Bus) awaitRun(ctx context.Context, run uint64) bool {
	if run == 0 {
		return false // closing
	}
	p := &b.prov
	for {
		p.mu.Lock()
		finished, ok, done := p.finished, p.ok, p.done
		p.mu.Unlock()
		if finished >= run {
			return ok
		}
		select {
		case <-ctx.Done():
			return false
		case <-b.life.Done():
			return false
		case <-done:
		}
	}
}

// RetryMissing runs op; when it fails because a stream or bucket is missing,
// RetryMissing has b re-provision them (RecoverMissingWait, bounded by ctx)
// and runs op again. A stream just created may answer "no responders" for a
// while more (its direct-get responders start after it: milliseconds, more
// on a loaded machine), so op is tried again, 20 ms apart at first, for up
// to missingPatience while it still fails that way. A nil b runs op once.
// Use it around an operation that has not happened when it failed that way
// (a KV write or read, a purge, a publish that no stream took).
func RetryMissing[T any](ctx context.Context, b *Bus, op func(context.Context) (T, error)) (T, error) {
	v, err := op(ctx)
	if err == nil || b == nil || !b.RecoverMissingWait(ctx, err) {
		return v, err
	}
	give := time.Now().Add(missingPatience)
	wait := 20 * time.Millisecond
	for {
		if v, err = op(ctx); err == nil || !IsMissing(err) || !time.Now().Before(give) {
			return v, err
		}
		t := time.NewTimer(min(wait, time.Until(give)))
		select {
		case <-ctx.Done():
			t.Stop()
			return v, err
		case <-t.C:
		}
		wait = min(2*wait, 250*time.Millisecond)
	}
}

// missingPatience bounds RetryMissing's tries after a re-provisioning.
const missingPatience = 2 * time.Second

// Reprovision re-provisions now every stream and bucket provisioned through
// the Bus that is missing (create-only) and waits until that is done or ctx
// ends; it reports whether every object was provisioned. The Bus does it on
// its own when its connection comes back after a disconnect.
func (b *Bus) Reprovision(ctx context.Context) bool {
	return b.awaitRun(ctx, b.requestReprovision())
}

// requestReprovision asks for a run and returns its number (0 once the Bus
// is closing).
func (b *Bus) requestReprovision() uint64 {
	p := &b.prov
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0
	}
	p.requested = p.started + 1
	if !p.running {
		p.running = true
		b.loops.Add(1)
		go b.reprovisionLoop()
	}
	return p.requested
}

// reprovisionLoop runs re-provisioning until no request is pending.
func (b *Bus) reprovisionLoop() {
	defer b.loops.Done()
	p := &b.prov
	for {
		p.mu.Lock()
		if p.closed || p.started >= p.requested {
			p.running = false
			p.mu.Unlock()
			return
		}
		wait := time.Until(p.lastStart.Add(reprovisionInterval))
		p.mu.Unlock()
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-b.life.Done():
				t.Stop()
				continue // closed: the loop ends above
			case <-t.C:
			}
		}
		p.mu.Lock()
		p.started++
		run := p.started
		p.lastStart = time.Now()
		objs := slices.Collect(maps.Values(p.objects))
		p.mu.Unlock()

		ok := b.reprovisionAll(objs)

		p.mu.Lock()
		p.finished, p.ok = run, ok
		close(p.done)
		p.done = make(chan struct{})
		p.mu.Unlock()
	}
}

// reprovisionAll provisions objs, create-only, with provision's retries,
// within provisionTimeout in all, and logs each one it had to create.
func (b *Bus) reprovisionAll(objs []object) bool {
	if !b.Connected() {
		// The reconnection asks for another run.
		b.log.Debug("bus disconnected: re-provisioning waits for the reconnection")
		return false
	}
	slices.SortFunc(objs, func(x, y object) int {
		return cmp.Or(cmp.Compare(x.kind, y.kind), cmp.Compare(x.name, y.name))
	})
	ctx, cancel := context.WithTimeout(b.life, provisionTimeout)
	defer cancel()
	created, failed := 0, 0
	for _, o := range objs {
		made, err := provision(ctx, o.kind+" "+o.name, o.ensure)
		switch {
		case err != nil:
			failed++
			if b.life.Err() != nil {
				return false
			}
			b.log.Error("cannot re-create "+o.kind, o.kind, o.name, "err", err)
		case made:
			created++
			b.log.Warn("re-created "+o.kind, o.kind, o.name)
		}
	}
	log := b.log.Debug
	if created+failed > 0 {
		log = b.log.Info
	}
	log("bus re-provisioned", "objects", len(objs), "created", created, "failed", failed)
	return failed == 0
}

// ensureKV opens the bucket cfg.Bucket, creating it if it does not exist
// (create-only), and reports whether it created it.
func (b *Bus) ensureKV(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, bool, error) {
	kv, err := b.js.KeyValue(ctx, cfg.Bucket)
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return kv, false, err
	}
	kv, err = b.js.CreateKeyValue(ctx, cfg)
	if errors.Is(err, jetstream.ErrBucketExists) {
		kv, err = b.js.KeyValue(ctx, cfg.Bucket) // made meanwhile, differently
		return kv, false, err
	}
	return kv, err == nil, err
}

// ensureStream opens the stream cfg.Name, creating it if it does not exist
// (create-only), and reports whether it created it.
func (b *Bus) ensureStream(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, bool, error) {
	st, err := b.js.Stream(ctx, cfg.Name)
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return st, false, err
	}
	st, err = b.js.CreateStream(ctx, cfg)
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		st, err = b.js.Stream(ctx, cfg.Name) // made meanwhile, differently
		return st, false, err
	}
	return st, err == nil, err
}
