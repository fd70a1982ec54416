package stream_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nopal-dev/nopal/stream"
)

func connect(t *testing.T, cfg stream.Config) *stream.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if cfg.Embedded.StoreDir == "" && cfg.URL == "" {
		cfg.Embedded.StoreDir = t.TempDir()
	}
	b, err := stream.Connect(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  stream.Config
	}{
		{"no server id", stream.Config{}},
		{"dotted server id", stream.Config{ServerID: "a.b"}},
		{"wildcard prefix", stream.Config{ServerID: "a", Prefix: "x.*"}},
		{"replicas", stream.Config{ServerID: "a", Replicas: 7}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := stream.Connect(context.Background(), tc.cfg)
			if !errors.Is(err, stream.ErrConfig) {
				t.Fatalf("err = %v, want ErrConfig", err)
			}
		})
	}
}

func TestEmbeddedInProcessAndJoin(t *testing.T) {
	a := connect(t, stream.Config{ServerID: "a", Embedded: stream.Embedded{Listen: "127.0.0.1:0"}})
	if a.Server == nil || a.ClientURL() == "" {
		t.Fatal("embedded server has no client URL")
	}
	// A second node joins the first one's embedded server over TCP.
	b := connect(t, stream.Config{ServerID: "b", URL: a.ClientURL()})

	sub, err := a.Subscribe(a.ServerRPC("a"), "", func(m *nats.Msg) {
		_ = m.Respond(append([]byte("echo "), m.Data...))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := a.Flush(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msg, err := b.Request(ctx, b.ServerRPC("a"), []byte("hi"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(msg.Data) != "echo hi" {
		t.Fatalf("reply %q", msg.Data)
	}
	// Replies come back on the node's own reply prefix, not _INBOX.
	if got := msg.Subject; len(got) < len(b.ReplyPrefix()) || got[:len(b.ReplyPrefix())] != b.ReplyPrefix() {
		t.Fatalf("reply subject %q, want prefix %q", got, b.ReplyPrefix())
	}
}

func TestProvisioningIsIdempotent(t *testing.T) {
	b := connect(t, stream.Config{ServerID: "a", Prefix: "game.one"})
	ctx := context.Background()
	for range 2 {
		kv, err := b.KV(ctx, jetstream.KeyValueConfig{Bucket: "servers", TTL: 3 * time.Second, LimitMarkerTTL: time.Second, Storage: jetstream.MemoryStorage})
		if err != nil {
			t.Fatal(err)
		}
		if kv.Bucket() != "game_one_servers" {
			t.Fatalf("bucket %q", kv.Bucket())
		}
		s, err := b.Stream(ctx, jetstream.StreamConfig{Name: "TRAFFIC", Subjects: []string{b.TrafficWildcard()}})
		if err != nil {
			t.Fatal(err)
		}
		if s.CachedInfo().Config.Name != "game_one_TRAFFIC" {
			t.Fatalf("stream %q", s.CachedInfo().Config.Name)
		}
	}
	if got := b.RPCSubject("room.room.join"); got != "game.one.rpc.room.room.join" {
		t.Fatalf("rpc subject %q", got)
	}
}
