package bindings

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nopal-dev/nopal/stream"
)

// Bucket is the name of the KV bucket, before the bus's prefix
// ("nopal_bindings" with the default prefix).
const Bucket = "bindings"

// MaxUIDLen is the longest uid, in bytes, the Store accepts. A KV key is
// part of a NATS subject, and a subject longer than the server's control
// line (4 KB by default) makes the server close the connection; the
// base64 form of a 1,024-byte uid stays well under it.
const MaxUIDLen = 1024

// Errors returned by the Store; check them with errors.Is.
var (
	ErrNotFound   = errors.New("bindings: uid not bound")
	ErrInvalidUID = errors.New("bindings: invalid uid (empty, or longer than MaxUIDLen)")
)

// Binding says where a uid's session lives: a frontend and the session's id
// in that frontend's pool.
type Binding struct {
	FrontendID string `json:"frontend"`
	SessionID  int64  `json:"session"`
}

func (b Binding) String() string { return fmt.Sprintf("%s/%d", b.FrontendID, b.SessionID) }

// Store keeps uid → Binding in the KV bucket "bindings". It is safe for
// concurrent use, by any number of processes.
//
// An operation that fails because the bucket is missing (a NATS server
// restarted with an empty store, an operator's delete) has the bus create
// it again and is retried once (stream.RetryMissing): the bindings it held
// are lost with it, and the next binds fill it again.
type Store struct {
	kv  jetstream.KeyValue
	bus *stream.Bus
}

// NewStore provisions the "bindings" bucket (file storage, one revision per
// key, the bus's replicas) and returns a Store on it. Provisioning is
// idempotent: every node calls it at start.
func NewStore(ctx context.Context, bus *stream.Bus) (*Store, error) {
	kv, err := bus.KV(ctx, jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "nopal: uid -> frontend and session",
		Storage:     jetstream.FileStorage,
		History:     1,
	})
	if err != nil {
		return nil, fmt.Errorf("bindings: %w", err)
	}
	return &Store{kv: kv, bus: bus}, nil
}

// Bind records that uid's session is b, replacing whatever binding uid had,
// and returns the binding it replaced (nil if uid was not bound). The newest
// Bind always wins: a first bind is a Create; when the key exists, Bind reads
// it and replaces it with a compare-and-set Update on the revision read,
// retrying from the read when another writer got there first. So concurrent
// binds of one uid are ordered, and each replaced binding is returned to
// exactly one caller: the one that must kick it.
//
// A stored value that does not decode (not written by this package) is
// replaced and reported as no previous binding.
func (s *Store) Bind(ctx context.Context, uid string, b Binding) (prev *Binding, err error) {
	return stream.RetryMissing(ctx, s.bus, func(ctx context.Context) (*Binding, error) {
		return s.bind(ctx, uid, b)
	})
}

func (s *Store) bind(ctx context.Context, uid string, b Binding) (prev *Binding, err error) {
	if err := checkUID(uid); err != nil {
		return nil, err
	}
	k := key(uid)
	val, err := json.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("bindings: bind %q: %w", uid, err)
	}
	for {
		_, err := s.kv.Create(ctx, k, val)
		if err == nil {
			return nil, nil
		}
		if !conflict(err) {
			return nil, fmt.Errorf("bindings: bind %q: %w", uid, err)
		}
		// The key exists: take it over from the revision we read.
		for {
			e, err := s.kv.Get(ctx, k)
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				break // unbound meanwhile: Create again
			}
			if err != nil {
				return nil, fmt.Errorf("bindings: bind %q: %w", uid, err)
			}
			_, err = s.kv.Update(ctx, k, val, e.Revision())
			if err == nil {
				var old Binding
				if json.Unmarshal(e.Value(), &old) != nil {
					return nil, nil
				}
				return &old, nil
			}
			if !conflict(err) {
				return nil, fmt.Errorf("bindings: bind %q: %w", uid, err)
			}
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("bindings: bind %q: %w", uid, err)
			}
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("bindings: bind %q: %w", uid, err)
		}
	}
}

// Unbind removes uid's binding only if it still is exactly b: it reads the
// key, compares, and deletes on the revision read. If uid is bound to
// another session, unbound already, or rebound between the read and the
// delete, Unbind removes nothing and returns nil. This is what keeps a late
// close of an older session from removing a newer session's binding.
func (s *Store) Unbind(ctx context.Context, uid string, b Binding) error {
	_, err := stream.RetryMissing(ctx, s.bus, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, s.unbind(ctx, uid, b)
	})
	return err
}

func (s *Store) unbind(ctx context.Context, uid string, b Binding) error {
	if err := checkUID(uid); err != nil {
		return err
	}
	k := key(uid)
	e, err := s.kv.Get(ctx, k)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("bindings: unbind %q: %w", uid, err)
	}
	var cur Binding
	if json.Unmarshal(e.Value(), &cur) != nil || cur != b {
		return nil
	}
	err = s.kv.Delete(ctx, k, jetstream.LastRevision(e.Revision()))
	if err != nil && !conflict(err) {
		return fmt.Errorf("bindings: unbind %q: %w", uid, err)
	}
	return nil
}

// ErrMovedAway is returned by Move when uid is bound to a session other
// than the one it was to move from.
var ErrMovedAway = errors.New("bindings: uid is bound to another session")

// Move moves uid's binding from one session to another (a resumed session
// changing frontends) with a compare-and-set: only if uid is still bound to
// from, or not bound at all. Otherwise it returns ErrMovedAway.
func (s *Store) Move(ctx context.Context, uid string, from, to Binding) error {
	_, err := stream.RetryMissing(ctx, s.bus, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, s.move(ctx, uid, from, to)
	})
	return err
}

func (s *Store) move(ctx context.Context, uid string, from, to Binding) error {
	if err := checkUID(uid); err != nil {
		return err
	}
	k := key(uid)
	val, err := json.Marshal(to)
	if err != nil {
		return fmt.Errorf("bindings: move %q: %w", uid, err)
	}
	for {
		e, err := s.kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			if _, err = s.kv.Create(ctx, k, val); err == nil {
				return nil
			}
		} else if err == nil {
			var cur Binding
			if json.Unmarshal(e.Value(), &cur) != nil || (cur != from && cur != to) {
				return fmt.Errorf("%w: %q is %v, not %v", ErrMovedAway, uid, cur, from)
			}
			if _, err = s.kv.Update(ctx, k, val, e.Revision()); err == nil {
				return nil
			}
		}
		if !conflict(err) {
			return fmt.Errorf("bindings: move %q: %w", uid, err)
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("bindings: move %q: %w", uid, err)
		}
	}
}

// OfFrontend returns the bindings (uid → binding) that point at frontendID:
// the users of a frontend that died, to clean up after it. It reads the
// whole bucket once.
func (s *Store) OfFrontend(ctx context.Context, frontendID string) (map[string]Binding, error) {
	return stream.RetryMissing(ctx, s.bus, func(ctx context.Context) (map[string]Binding, error) {
		return s.ofFrontend(ctx, frontendID)
	})
}

func (s *Store) ofFrontend(ctx context.Context, frontendID string) (map[string]Binding, error) {
	w, err := s.kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("bindings: list: %w", err)
	}
	defer func() { _ = w.Stop() }()
	out := map[string]Binding{}
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok || e == nil { // nil: the initial values are all in
				return out, nil
			}
			var b Binding
			uid, okUID := uidOf(e.Key())
			if okUID && json.Unmarshal(e.Value(), &b) == nil && b.FrontendID == frontendID {
				out[uid] = b
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("bindings: list: %w", ctx.Err())
		}
	}
}

// Get returns uid's binding, or ErrNotFound.
func (s *Store) Get(ctx context.Context, uid string) (Binding, error) {
	return stream.RetryMissing(ctx, s.bus, func(ctx context.Context) (Binding, error) {
		return s.get(ctx, uid)
	})
}

func (s *Store) get(ctx context.Context, uid string) (Binding, error) {
	if err := checkUID(uid); err != nil {
		return Binding{}, err
	}
	e, err := s.kv.Get(ctx, key(uid))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Binding{}, fmt.Errorf("%w: %q", ErrNotFound, uid)
	}
	if err != nil {
		return Binding{}, fmt.Errorf("bindings: get %q: %w", uid, err)
	}
	var b Binding
	if err := json.Unmarshal(e.Value(), &b); err != nil {
		return Binding{}, fmt.Errorf("bindings: get %q: bad value: %w", uid, err)
	}
	return b, nil
}

// FrontendOf returns the id of the frontend uid is bound on, or ErrNotFound:
// what a server needs to push to or kick a uid anywhere in the cluster.
func (s *Store) FrontendOf(ctx context.Context, uid string) (string, error) {
	b, err := s.Get(ctx, uid)
	if err != nil {
		return "", err
	}
	return b.FrontendID, nil
}

func checkUID(uid string) error {
	if uid == "" || len(uid) > MaxUIDLen {
		return fmt.Errorf("%w: %d bytes", ErrInvalidUID, len(uid))
	}
	return nil
}

// conflict reports whether err is a compare-and-set failure: the key exists
// (Create) or its last revision is not the one given (Update, Delete).
// Replicated streams report it with another code, which jetstream maps for
// Update and Delete but not always for Create, so the codes are checked too.
func conflict(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}
