package groups

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/nopal-dev/nopal/stream"
)

// TestClusterRecreatesItsBucket deletes the bucket under a Cluster (as a
// NATS server restarted with an empty store loses it): each operation has
// the bus create it again and answers as on an empty bucket, and the
// Cluster works on the new bucket afterwards.
func TestClusterRecreatesItsBucket(t *testing.T) {
	tests := []struct {
		name string
		op   func(ctx context.Context, c *Cluster) error
		want error
	}{
		{"create", func(ctx context.Context, c *Cluster) error { return c.Create(ctx, "g") }, nil},
		{"add", func(ctx context.Context, c *Cluster) error { return c.Add(ctx, "g", "u2") }, ErrGroupNotFound},
		{"remove", func(ctx context.Context, c *Cluster) error { return c.Remove(ctx, "g", "u1") }, ErrGroupNotFound},
		{"members", func(ctx context.Context, c *Cluster) error { _, err := c.Members(ctx, "g"); return err }, ErrGroupNotFound},
		{"contains", func(ctx context.Context, c *Cluster) error { _, err := c.Contains(ctx, "g", "u1"); return err }, ErrGroupNotFound},
		{"delete", func(ctx context.Context, c *Cluster) error { return c.Delete(ctx, "g") }, ErrGroupNotFound},
		{"sweep", func(ctx context.Context, c *Cluster) error {
			_, err := c.Sweep(ctx, c.clock())
			return err
		}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bus := connect(t, stream.Config{URL: sharedURL(t), Prefix: newPrefix()})
			ctx := t.Context()
			c, err := NewCluster(ctx, bus, &recordingPusher{})
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Create(ctx, "g"); err != nil {
				t.Fatal(err)
			}
			if err := c.Add(ctx, "g", "u1"); err != nil {
				t.Fatal(err)
			}
			if err := bus.JetStream().DeleteKeyValue(ctx, bus.Name(ClusterBucket)); err != nil {
				t.Fatal(err)
			}
			if err := tc.op(ctx, c); !errors.Is(err, tc.want) {
				t.Fatalf("on a deleted bucket: %v, want %v", err, tc.want)
			}
			// The Cluster works on the new bucket.
			if err := c.Create(ctx, "h"); err != nil {
				t.Fatal(err)
			}
			if err := c.Add(ctx, "h", "u3"); err != nil {
				t.Fatal(err)
			}
			if got, err := c.Members(ctx, "h"); err != nil || !slices.Equal(got, []string{"u3"}) {
				t.Fatalf("members %v, %v", got, err)
			}
		})
	}
}
