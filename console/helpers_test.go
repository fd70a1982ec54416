package console_test

// Helpers: a cluster of Apps in this process on a real embedded NATS
// server (the chat example's connector and room, and a "flaky" worker of
// reliable jobs), and a console on a bus of its own, served over HTTP.

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nopal-dev/nopal"
	"github.com/nopal-dev/nopal/backend"
	"github.com/nopal-dev/nopal/client"
	"github.com/nopal-dev/nopal/console"
	cluster "github.com/nopal-dev/nopal/examples/cluster"
	"github.com/nopal-dev/nopal/frontend"
	"github.com/nopal-dev/nopal/reliable"
	"github.com/nopal-dev/nopal/stream"
)

// FlakyArg is the argument of flaky.flaky.do.
type FlakyArg struct {
	N int `json:"n"`
}

// FlakyRes is its result.
type FlakyRes struct {
	Done int `json:"done"`
}

// Flaky is a remote that fails its jobs for good while failing is set.
type Flaky struct{ failing *atomic.Bool }

// Do answers flaky.flaky.do.
func (f *Flaky) Do(_ context.Context, in *FlakyArg) (*FlakyRes, error) {
	if f.failing.Load() {
		return nil, reliable.Permanent(errors.New("flaky: failing on purpose"))
	}
	return &FlakyRes{Done: in.N}, nil
}

type testCluster struct {
	front, room, worker *nopal.App
	addr                string       // the connector's TCP address
	failing             *atomic.Bool // Flaky fails while set
	console             *console.Console
	srv                 *httptest.Server
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// startCluster starts the connector (with the embedded NATS server), a
// room, a flaky worker and the console.
func startCluster(t *testing.T, cfg console.Config) *testCluster {
	t.Helper()
	ctx := context.Background()
	tc := &testCluster{failing: &atomic.Bool{}}
	tc.failing.Store(true)
	front, err := nopal.New(nopal.Config{ServerType: cluster.ConnectorType, ServerID: "connector-1", Logger: quiet(),
		Cluster: &nopal.ClusterConfig{Bus: stream.Config{Embedded: stream.Embedded{StoreDir: t.TempDir()}}, Traffic: true,
			Metadata: map[string]string{"region": "test"}}})
	if err != nil {
		t.Fatal(err)
	}
	cluster.SetupConnector(front)
	tcp := frontend.NewTCPAcceptor("127.0.0.1:0")
	front.AddAcceptor(tcp)
	if err := front.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shutdown(front) })
	tc.front, tc.addr = front, tcp.Addr().String()

	tc.room = startApp(t, front, cluster.RoomType, "room-1", func(app *nopal.App) error { return cluster.SetupRoom(app) })
	tc.worker = startApp(t, front, "flaky", "flaky-1", func(app *nopal.App) error {
		return app.RegisterRemote(&Flaky{failing: tc.failing}, backend.WithName("flaky"))
	})

	bus, err := stream.Connect(ctx, stream.Config{ServerID: "console-test", InProcess: front.Bus().Server, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bus.Close)
	if cfg.Logger == nil {
		cfg.Logger = quiet()
	}
	c, err := console.New(bus, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	tc.console = c
	tc.srv = httptest.NewServer(c.Handler())
	t.Cleanup(func() {
		c.Close()
		tc.srv.Close()
	})
	return tc
}

func startApp(t *testing.T, front *nopal.App, svType, id string, setup func(*nopal.App) error) *nopal.App {
	t.Helper()
	app, err := nopal.New(nopal.Config{ServerType: svType, ServerID: id, Logger: quiet(),
		Cluster: &nopal.ClusterConfig{Bus: stream.Config{}, Traffic: true}})
	if err != nil {
		t.Fatal(err)
	}
	if err := setup(app); err != nil {
		t.Fatal(err)
	}
	app.UseEmbedded(front.Bus().Server)
	if err := app.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shutdown(app) })
	return app
}

func shutdown(app *nopal.App) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = app.Shutdown(ctx)
}

// chatter joins the room with a client and returns it and its uid.
func (tc *testCluster) chatter(t *testing.T) (*client.Client, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, tc.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	var res map[string]any
	if err := c.Request(ctx, "room.room.join", map[string]any{}, &res); err != nil {
		t.Fatal(err)
	}
	// The room binds uid "<frontend>-<session id>": find it in the bindings.
	var uid string
	eventually(t, 5*time.Second, func() bool {
		var users struct {
			Recent []struct {
				UID string `json:"uid"`
			} `json:"recent"`
		}
		tc.getJSON(t, "/api/users", &users)
		for _, u := range users.Recent {
			if strings.HasPrefix(u.UID, "connector-1-") {
				uid = u.UID
			}
		}
		return uid != ""
	}, "the joined user in /api/users")
	return c, uid
}

// failedJob enqueues a flaky job that fails and waits for its end.
func (tc *testCluster) failedJob(t *testing.T, jid string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := tc.front.ReliableRPC(ctx, "flaky.flaky.do", &FlakyArg{N: 7}, reliable.WithJID(jid), reliable.WithMaxAttempts(1)); err != nil {
		t.Fatal(err)
	}
	j, err := tc.front.Jobs().Wait(ctx, jid)
	if err != nil {
		t.Fatal(err)
	}
	if j.State != reliable.Failed {
		t.Fatalf("job %s ended %s, want failed", jid, j.State)
	}
}

// do sends a request to the console and returns the status and body.
func (tc *testCluster) do(t *testing.T, method, path, token, body string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, tc.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

func (tc *testCluster) getJSON(t *testing.T, path string, v any) {
	t.Helper()
	code, b := tc.do(t, "GET", path, "", "")
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, code, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %v in %s", path, err, b)
	}
}

func eventually(t *testing.T, d time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
