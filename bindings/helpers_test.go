package bindings_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nopal-dev/nopal/bindings"
	"github.com/nopal-dev/nopal/stream"
)

// newStore starts an embedded NATS server with JetStream in a temporary
// folder and returns a Store on it.
func newStore(t *testing.T) *bindings.Store {
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
	return store
}

// testCtx is a context that ends with the test or after 15 s.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// logBuffer collects log output from many goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// noErrorLogs fails the test at its end if anything was logged at level
// ERROR.
func noErrorLogs(t *testing.T, b *logBuffer) {
	t.Helper()
	t.Cleanup(func() {
		if s := b.String(); strings.Contains(s, "level=ERROR") {
			t.Errorf("errors logged:\n%s", s)
		}
	})
}
