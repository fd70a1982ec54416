package bindings_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/nopal-dev/nopal/bindings"
	"github.com/nopal-dev/nopal/stream"
)

// newStoreBus is newStore, with the bus.
func newStoreBus(t *testing.T) (*bindings.Store, *stream.Bus) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	bus, err := stream.Connect(ctx, stream.Config{
		ServerID: "test",
		Logger:   slog.New(slog.DiscardHandler),
		Embedded: stream.Embedded{StoreDir: t.TempDir()},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bus.Close)
	store, err := bindings.NewStore(ctx, bus)
	if err != nil {
		t.Fatal(err)
	}
	return store, bus
}

// TestStoreRecreatesItsBucket deletes the bucket under a Store (as a NATS
// server restarted with an empty store loses it): every operation has the
// bus create it again and works, on an empty bucket.
func TestStoreRecreatesItsBucket(t *testing.T) {
	fe1 := bindings.Binding{FrontendID: "fe-1", SessionID: 1}
	fe2 := bindings.Binding{FrontendID: "fe-2", SessionID: 2}
	tests := []struct {
		name string
		op   func(ctx context.Context, s *bindings.Store) error
	}{
		{"bind", func(ctx context.Context, s *bindings.Store) error {
			prev, err := s.Bind(ctx, "alice", fe2)
			if err == nil && prev != nil {
				return errors.New("a binding survived the bucket")
			}
			return err
		}},
		{"unbind", func(ctx context.Context, s *bindings.Store) error { return s.Unbind(ctx, "alice", fe1) }},
		{"move", func(ctx context.Context, s *bindings.Store) error { return s.Move(ctx, "alice", fe1, fe2) }},
		{"get", func(ctx context.Context, s *bindings.Store) error {
			if _, err := s.Get(ctx, "alice"); !errors.Is(err, bindings.ErrNotFound) {
				return err
			}
			return nil
		}},
		{"of frontend", func(ctx context.Context, s *bindings.Store) error {
			m, err := s.OfFrontend(ctx, "fe-1")
			if err == nil && len(m) > 0 {
				return errors.New("a binding survived the bucket")
			}
			return err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			store, bus := newStoreBus(t)
			ctx := testCtx(t)
			if _, err := store.Bind(ctx, "alice", fe1); err != nil {
				t.Fatal(err)
			}
			if err := bus.JetStream().DeleteKeyValue(ctx, bus.Name(bindings.Bucket)); err != nil {
				t.Fatal(err)
			}
			if err := tc.op(ctx, store); err != nil {
				t.Fatalf("on a deleted bucket: %v", err)
			}
			if _, err := bus.JetStream().KeyValue(ctx, bus.Name(bindings.Bucket)); err != nil {
				t.Fatalf("bucket not re-created: %v", err)
			}
			if _, err := store.Bind(ctx, "bob", fe1); err != nil {
				t.Fatal(err)
			}
		})
	}
}
