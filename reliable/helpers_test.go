package reliable_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nopal-dev/nopal/backend"
	"github.com/nopal-dev/nopal/codec"
	"github.com/nopal-dev/nopal/reliable"
	"github.com/nopal-dev/nopal/stream"
)

var discard = slog.New(slog.DiscardHandler)

// newBus starts an embedded NATS server with JetStream in a temporary
// folder and connects to it.
func newBus(t testing.TB, id string) *stream.Bus {
	t.Helper()
	return connect(t, stream.Config{ServerID: id, Logger: discard, Embedded: stream.Embedded{StoreDir: t.TempDir()}})
}

// joinBus connects another node, in-process, to an embedded server.
func joinBus(t testing.TB, srv *server.Server, id string) *stream.Bus {
	t.Helper()
	return connect(t, stream.Config{ServerID: id, Logger: discard, InProcess: srv})
}

func connect(t testing.TB, cfg stream.Config) *stream.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b, err := stream.Connect(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

func newClient(t testing.TB, bus *stream.Bus) *reliable.Client {
	t.Helper()
	c, err := reliable.NewClient(testCtx(t), bus, reliable.WithLogger(discard))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// startWorker starts a worker, stopped at the end of the test.
func startWorker(t testing.TB, bus *stream.Bus, inv reliable.Invoker, cfg reliable.WorkerConfig) *reliable.Worker {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = discard
	}
	w, err := reliable.NewWorker(testCtx(t), bus, inv, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := w.Stop(ctx); err != nil {
			t.Errorf("stop worker: %v", err)
		}
	})
	return w
}

// testCtx is a context that ends with the test or after 30 s.
func testCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Mail and Receipt are the remote's argument and result.
type Mail struct {
	To   string `json:"to"`
	Body string `json:"body"`
}

type Receipt struct {
	ID string `json:"id"`
	By string `json:"by"`
}

// Mailer is a remote component of server type "mail": route
// "mail.mailer.send". It counts calls per recipient; failures(to, n) decides
// whether call n (1-based) for a recipient fails; gate, when set, is called
// at the start of every call (to block it).
type Mailer struct {
	server   string
	mu       sync.Mutex
	calls    map[string]int
	failures func(to string, n int) error
	gate     func(ctx context.Context, to string) error
}

func (m *Mailer) Send(ctx context.Context, in *Mail) (*Receipt, error) {
	if m.gate != nil {
		if err := m.gate(ctx, in.To); err != nil {
			return nil, err
		}
	}
	m.mu.Lock()
	m.calls[in.To]++
	n := m.calls[in.To]
	m.mu.Unlock()
	if m.failures != nil {
		if err := m.failures(in.To, n); err != nil {
			return nil, err
		}
	}
	return &Receipt{ID: fmt.Sprintf("%s#%d", in.To, n), By: m.server}, nil
}

func (m *Mailer) Calls(to string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.calls[to]
}

func (m *Mailer) Total() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, c := range m.calls {
		n += c
	}
	return n
}

// newMailer returns a Mailer and an Invoker on a real backend.Registry
// holding it.
func newMailer(t testing.TB, server string) (*Mailer, reliable.Invoker) {
	t.Helper()
	m := &Mailer{server: server, calls: map[string]int{}}
	reg := backend.NewRegistry("mail", codec.Auto{}, discard)
	if err := reg.Register(m, backend.WithName("mailer")); err != nil {
		t.Fatal(err)
	}
	return m, registryInvoker{reg}
}

// registryInvoker runs jobs with a remotes registry, as an app does.
type registryInvoker struct{ reg *backend.Registry }

func (r registryInvoker) Invoke(ctx context.Context, route string, arg []byte) ([]byte, error) {
	out, _, err := r.reg.Handle(ctx, route, arg)
	return out, err
}

const route = "mail.mailer.send"

// waitAll watches the jobs bucket (no polling) until every jid is in a
// terminal state, and returns their records.
func waitAll(t testing.TB, bus *stream.Bus, jids []string, timeout time.Duration) map[string]reliable.Job {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	kv, err := bus.JetStream().KeyValue(ctx, bus.Name(reliable.Bucket))
	if err != nil {
		t.Fatal(err)
	}
	want := make(map[string]bool, len(jids))
	for _, j := range jids {
		want[j] = true
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop() }()
	done := map[string]reliable.Job{}
	for len(done) < len(want) {
		select {
		case <-ctx.Done():
			t.Fatalf("%d of %d jobs finished in %v", len(done), len(want), timeout)
		case e := <-w.Updates():
			if e == nil || e.Operation() != jetstream.KeyValuePut || !want[e.Key()] {
				continue
			}
			var j reliable.Job
			if err := json.Unmarshal(e.Value(), &j); err != nil {
				t.Fatal(err)
			}
			if j.State.Terminal() {
				done[j.JID] = j
			}
		}
	}
	return done
}

// streamMsgs is the number of messages in a stream.
func streamMsgs(t testing.TB, bus *stream.Bus, name string) uint64 {
	t.Helper()
	s, err := bus.JetStream().Stream(testCtx(t), bus.Name(name))
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().State.Msgs
}
