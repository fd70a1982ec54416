package stream_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nopal-dev/nopal/stream"
)

// logSink is a slog.Handler that keeps every record as "message k=v ...",
// so a test can await a log line instead of sleeping.
type logSink struct {
	mu      sync.Mutex
	lines   []string
	changed chan struct{} // closed and replaced on every record
	attrs   []slog.Attr
	parent  *logSink
}

func newLogSink() *logSink { return &logSink{changed: make(chan struct{})} }

func (s *logSink) root() *logSink {
	if s.parent != nil {
		return s.parent
	}
	return s
}

func (*logSink) Enabled(context.Context, slog.Level) bool { return true }

func (s *logSink) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	add := func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	}
	for _, a := range s.attrs {
		add(a)
	}
	r.Attrs(add)
	root := s.root()
	root.mu.Lock()
	defer root.mu.Unlock()
	root.lines = append(root.lines, b.String())
	close(root.changed)
	root.changed = make(chan struct{})
	return nil
}

func (s *logSink) WithAttrs(as []slog.Attr) slog.Handler {
	return &logSink{attrs: append(append([]slog.Attr(nil), s.attrs...), as...), parent: s.root()}
}

func (s *logSink) WithGroup(string) slog.Handler { return s }

// await waits until every one of want is a line logged (or part of one).
func (s *logSink) await(t *testing.T, timeout time.Duration, want ...string) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		s.mu.Lock()
		missing := []string{}
		for _, w := range want {
			found := false
			for _, l := range s.lines {
				found = found || strings.Contains(l, w)
			}
			if !found {
				missing = append(missing, w)
			}
		}
		changed := s.changed
		s.mu.Unlock()
		if len(missing) == 0 {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("not logged in %v: %q", timeout, missing)
		}
	}
}

// count is how many lines contain sub.
func (s *logSink) count(sub string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, l := range s.lines {
		if strings.Contains(l, sub) {
			n++
		}
	}
	return n
}

// natsServer starts a NATS server with JetStream on port (-1: a random one)
// keeping its data in dir.
func natsServer(t *testing.T, port int, dir string) *server.Server {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		t.Fatal("nats server not ready")
	}
	return ns
}

// provisionBoth provisions a file stream and a memory bucket through b.
func provisionBoth(t *testing.T, ctx context.Context, b *stream.Bus) (jetstream.Stream, jetstream.KeyValue) {
	t.Helper()
	st, err := b.Stream(ctx, jetstream.StreamConfig{Name: "MAILBOX", Subjects: []string{b.MailboxWildcard()}, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	kv, err := b.KV(ctx, jetstream.KeyValueConfig{Bucket: "sessions", Storage: jetstream.MemoryStorage})
	if err != nil {
		t.Fatal(err)
	}
	return st, kv
}

// checkExist checks, with its own connection to url, that the stream and
// the bucket exist.
func checkExist(t *testing.T, ctx context.Context, url, streamName, bucket string) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Stream(ctx, streamName); err != nil {
		t.Errorf("stream %s: %v", streamName, err)
	}
	if _, err := js.KeyValue(ctx, bucket); err != nil {
		t.Errorf("bucket %s: %v", bucket, err)
	}
}

// TestReprovisionOnReconnect restarts the NATS server under a Bus with an
// empty store (what a restarted embedded server does): the Bus reconnects
// and creates its stream and bucket again, and they work.
func TestReprovisionOnReconnect(t *testing.T) {
	var mu sync.Mutex
	ns := natsServer(t, -1, t.TempDir())
	t.Cleanup(func() { // registered before the bus: runs after it closes
		mu.Lock()
		defer mu.Unlock()
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	port := ns.Addr().(*net.TCPAddr).Port
	url := ns.ClientURL()
	logs := newLogSink()
	b := connect(t, stream.Config{ServerID: "a", URL: url, Logger: slog.New(logs)})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, kv := provisionBoth(t, ctx, b)
	if _, err := kv.Put(ctx, "k", []byte("before")); err != nil {
		t.Fatal(err)
	}

	ns.Shutdown()
	ns.WaitForShutdown()
	mu.Lock()
	ns = natsServer(t, port, t.TempDir()) // same port, empty store
	mu.Unlock()

	logs.await(t, 20*time.Second, "bus reconnected", "re-created stream stream=nopal_MAILBOX", "re-created bucket bucket=nopal_sessions")
	checkExist(t, ctx, url, "nopal_MAILBOX", "nopal_sessions")
	// The handles from before work on the new objects.
	if _, err := kv.Put(ctx, "k", []byte("after")); err != nil {
		t.Fatalf("put after the restart: %v", err)
	}
	if _, err := b.JetStream().Publish(ctx, b.MailboxSubject("u1"), []byte("hi")); err != nil {
		t.Fatalf("publish after the restart: %v", err)
	}
	info, err := st.Info(ctx)
	if err != nil || info.State.Msgs != 1 {
		t.Fatalf("stream after the restart: %+v, %v", info, err)
	}
}

// missingErrors deletes the stream and the bucket and returns the errors
// that operations on them give, as nats.go returns them.
func missingErrors(t *testing.T, ctx context.Context, b *stream.Bus) map[string]error {
	t.Helper()
	st, kv := provisionBoth(t, ctx, b)
	if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := b.JetStream().DeleteStream(ctx, "nopal_MAILBOX"); err != nil {
		t.Fatal(err)
	}
	if err := b.JetStream().DeleteKeyValue(ctx, "nopal_sessions"); err != nil {
		t.Fatal(err)
	}
	errs := map[string]error{}
	_, errs["kv put"] = kv.Put(ctx, "k", []byte("v"))
	_, errs["kv create"] = kv.Create(ctx, "k2", []byte("v"))
	_, errs["kv get"] = kv.Get(ctx, "k")
	errs["kv delete"] = kv.Delete(ctx, "k")
	_, errs["kv watch"] = kv.WatchAll(ctx)
	_, errs["open bucket"] = b.JetStream().KeyValue(ctx, "nopal_sessions")
	_, errs["publish"] = b.JetStream().Publish(ctx, b.MailboxSubject("u1"), []byte("hi"))
	errs["purge"] = st.Purge(ctx, jetstream.WithPurgeSubject(b.MailboxSubject("u1")))
	_, errs["stream info"] = st.Info(ctx)
	_, errs["open stream"] = b.JetStream().Stream(ctx, "nopal_MAILBOX")
	_, errs["ordered consumer"] = st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	_, errs["last msg"] = st.GetLastMsgForSubject(ctx, b.MailboxSubject("u1"))
	return errs
}

func TestIsMissing(t *testing.T) {
	b := connect(t, stream.Config{ServerID: "a"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errs := missingErrors(t, ctx, b)
	for name, err := range errs {
		if err == nil {
			t.Errorf("%s on a missing object: no error", name)
			continue
		}
		t.Logf("%s: %v", name, err)
		if !stream.IsMissing(fmt.Errorf("wrapped: %w", err)) {
			t.Errorf("%s: IsMissing(%v) = false", name, err)
		}
	}
	tests := []struct {
		name string
		err  error
	}{
		{"nil", nil},
		{"key not found", jetstream.ErrKeyNotFound},
		{"key exists", fmt.Errorf("x: %w", jetstream.ErrKeyExists)},
		{"timeout", context.DeadlineExceeded},
		{"consumer not found", jetstream.ErrConsumerNotFound},
		{"other", errors.New("boom")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if stream.IsMissing(tc.err) {
				t.Fatalf("IsMissing(%v) = true", tc.err)
			}
			if b.RecoverMissing(tc.err) {
				t.Fatalf("RecoverMissing(%v) = true", tc.err)
			}
		})
	}
}

// TestRecoverMissing deletes a stream and a bucket from outside the Bus:
// the operations that fail on them, passed to RecoverMissing(Wait) or run
// through RetryMissing, bring them back.
func TestRecoverMissing(t *testing.T) {
	tests := []struct {
		name    string
		recover func(t *testing.T, ctx context.Context, b *stream.Bus, kv jetstream.KeyValue) bool
	}{
		{"wait", func(t *testing.T, ctx context.Context, b *stream.Bus, kv jetstream.KeyValue) bool {
			_, err := kv.Put(ctx, "k", []byte("v"))
			return b.RecoverMissingWait(ctx, err)
		}},
		{"retry", func(t *testing.T, ctx context.Context, b *stream.Bus, kv jetstream.KeyValue) bool {
			_, err := stream.RetryMissing(ctx, b, func(ctx context.Context) (uint64, error) {
				return kv.Put(ctx, "k", []byte("v"))
			})
			return err == nil
		}},
		{"background", func(t *testing.T, ctx context.Context, b *stream.Bus, kv jetstream.KeyValue) bool {
			_, err := kv.Put(ctx, "k", []byte("v"))
			if !b.RecoverMissing(err) {
				return false
			}
			// Not waiting on the Bus: the objects come back on their own.
			return b.Reprovision(ctx)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			logs := newLogSink()
			b := connect(t, stream.Config{ServerID: "a", Logger: slog.New(logs), Embedded: stream.Embedded{Listen: "127.0.0.1:0"}})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, kv := provisionBoth(t, ctx, b)
			if err := b.JetStream().DeleteStream(ctx, "nopal_MAILBOX"); err != nil {
				t.Fatal(err)
			}
			if err := b.JetStream().DeleteKeyValue(ctx, "nopal_sessions"); err != nil {
				t.Fatal(err)
			}
			if !tc.recover(t, ctx, b, kv) {
				t.Fatal("not recovered")
			}
			logs.await(t, 10*time.Second, "re-created stream stream=nopal_MAILBOX", "re-created bucket bucket=nopal_sessions")
			checkExist(t, ctx, b.ClientURL(), "nopal_MAILBOX", "nopal_sessions")
			if _, err := kv.Put(ctx, "k", []byte("again")); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestRecoverMissingIsDebounced: many failures at once cost one run, which
// re-creates each object once.
func TestRecoverMissingIsDebounced(t *testing.T) {
	logs := newLogSink()
	b := connect(t, stream.Config{ServerID: "a", Logger: slog.New(logs)})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, kv := provisionBoth(t, ctx, b)
	if err := b.JetStream().DeleteKeyValue(ctx, "nopal_sessions"); err != nil {
		t.Fatal(err)
	}
	_, missing := kv.Put(ctx, "k", []byte("v"))
	var wg sync.WaitGroup
	oks := make(chan bool, 50)
	for range 50 {
		wg.Go(func() { oks <- b.RecoverMissingWait(ctx, missing) })
	}
	wg.Wait()
	close(oks)
	for ok := range oks {
		if !ok {
			t.Fatal("RecoverMissingWait = false")
		}
	}
	if n := logs.count("re-created bucket"); n != 1 {
		t.Fatalf("bucket re-created %d times, want 1", n)
	}
	if n := logs.count("re-created stream"); n != 0 {
		t.Fatalf("stream re-created %d times, want 0 (it was not missing)", n)
	}
}

// TestCloseStopsReprovisioning: Close returns promptly with a run pending,
// and a closed Bus does not re-provision.
func TestCloseStopsReprovisioning(t *testing.T) {
	b, err := stream.Connect(context.Background(), stream.Config{ServerID: "a", Embedded: stream.Embedded{StoreDir: t.TempDir()}, Logger: slog.New(newLogSink())})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	provisionBoth(t, ctx, b)
	b.RecoverMissing(jetstream.ErrStreamNotFound)
	b.RecoverMissing(jetstream.ErrStreamNotFound) // waits for its turn
	done := make(chan struct{})
	go func() {
		b.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close hangs")
	}
	if b.RecoverMissingWait(ctx, jetstream.ErrStreamNotFound) {
		t.Fatal("a closed Bus re-provisioned")
	}
}

// TestKVStreamWaitsForTheStream: KVStream answers the stream under a
// bucket, and takes "stream not found" for "not yet" until its context
// ends (in a NATS cluster, a bucket another node has just created can be
// unknown for a moment to the server answering the lookup).
func TestKVStreamWaitsForTheStream(t *testing.T) {
	b := connect(t, stream.Config{ServerID: "kvstream"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := b.KV(ctx, jetstream.KeyValueConfig{Bucket: "kvs"})
	if err != nil {
		t.Fatal(err)
	}
	st, err := b.KVStream(ctx, kv)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := st.CachedInfo().Config.Name, "KV_"+kv.Bucket(); got != want {
		t.Fatalf("stream %q, want %q", got, want)
	}
	if err := b.JetStream().DeleteStream(ctx, "KV_"+kv.Bucket()); err != nil {
		t.Fatal(err)
	}
	const wait = 400 * time.Millisecond
	short, cancelShort := context.WithTimeout(ctx, wait)
	defer cancelShort()
	start := time.Now()
	_, err = b.KVStream(short, kv)
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("KVStream of a deleted stream: %v, want ErrStreamNotFound", err)
	}
	if el := time.Since(start); el < wait/2 {
		t.Fatalf("KVStream gave up after %v: it must retry until its context ends (%v)", el, wait)
	}
	if _, err := b.JetStream().CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: kv.Bucket()}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.KVStream(ctx, kv); err != nil {
		t.Fatalf("KVStream once the bucket is back: %v", err)
	}
}
