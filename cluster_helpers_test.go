package nopal_test

// Helpers of the cluster tests: a cluster of Apps in one process on a real
// embedded NATS server (owned by an "infra" App that listens on a TCP port),
// the room component its backends serve, a TCP proxy that can cut a node off
// the bus, and polling with a deadline.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/nopal-dev/nopal"
	"github.com/nopal-dev/nopal/backend"
	"github.com/nopal-dev/nopal/client"
	"github.com/nopal-dev/nopal/codec"
	"github.com/nopal-dev/nopal/frontend"
	"github.com/nopal-dev/nopal/session"
	"github.com/nopal-dev/nopal/stream"
)

// ---------------------------------------------------------------------------
// Logging: to the test (shown with -v or on failure), Warn and above unless
// NOPAL_TEST_LOG names another level (debug, info).

func clusterLogger(t *testing.T) *slog.Logger {
	t.Helper()
	level := slog.LevelWarn
	if v := os.Getenv("NOPAL_TEST_LOG"); v != "" {
		_ = level.UnmarshalText([]byte(v))
	}
	w := &tWriter{t: t}
	t.Cleanup(w.close) // registered before any App: runs after they stopped
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// tWriter writes to t.Log until the test's cleanups are done.
type tWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *tWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Logf("%s", strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *tWriter) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = true
}

// ---------------------------------------------------------------------------
// The cluster.

// clusterOpts are the ClusterConfig values every node of a test cluster
// shares (zero: the defaults).
type clusterOpts struct {
	requestTimeout time.Duration
	heartbeat      time.Duration
	resume         frontend.ResumeConfig
}

// testCluster is one embedded NATS server (with JetStream in t.TempDir(),
// listening on a free loopback port) owned by the App "infra", and the Apps
// the test adds. Its cleanup stops the frontends, then the other nodes, then
// infra, which owns the server.
type testCluster struct {
	t     *testing.T
	opts  clusterOpts
	log   *slog.Logger
	infra *nopal.App

	mu    sync.Mutex
	nodes []*testNode
	after []func() // run once the nodes but infra have stopped
}

// testNode is one App of a testCluster; tcp and ws are its client addresses
// when it is a frontend ("host:port" and "ws://host:port/").
type testNode struct {
	app     *nopal.App
	tcp, ws string
}

func newTestCluster(t *testing.T, opts clusterOpts) *testCluster {
	t.Helper()
	c := &testCluster{t: t, opts: opts, log: clusterLogger(t)}
	infra, err := nopal.New(nopal.Config{
		ServerType: "infra",
		ServerID:   "infra",
		Logger:     c.log,
		Cluster: c.clusterConfig(stream.Config{Embedded: stream.Embedded{
			StoreDir: t.TempDir(),
			Listen:   "127.0.0.1:0",
		}}),
	})
	if err != nil {
		t.Fatal(err)
	}
	// Start's ctx is the App's life: Shutdown ends it.
	if err := infra.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.infra = infra
	t.Cleanup(c.shutdown)
	if infra.Bus().ClientURL() == "" {
		t.Fatal("the embedded server has no client URL")
	}
	return c
}

func (c *testCluster) clusterConfig(bus stream.Config) *nopal.ClusterConfig {
	return &nopal.ClusterConfig{
		Bus:                bus,
		RequestTimeout:     c.opts.requestTimeout,
		DiscoveryHeartbeat: c.opts.heartbeat,
	}
}

// shutdown stops the frontends first (their clients are kicked while the
// backends still answer), then the other nodes, then infra.
func (c *testCluster) shutdown() {
	c.mu.Lock()
	nodes := c.nodes
	c.mu.Unlock()
	stop := func(app *nopal.App) {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := app.Shutdown(ctx); err != nil {
			c.t.Errorf("shutdown of %s: %v", app.ServerID(), err)
		}
	}
	var wg sync.WaitGroup
	for _, front := range []bool{true, false} {
		for _, n := range nodes {
			if n.app.IsFrontend() == front {
				wg.Go(func() { stop(n.app) })
			}
		}
		wg.Wait()
	}
	c.mu.Lock()
	after := c.after
	c.mu.Unlock()
	for _, f := range after {
		f()
	}
	stop(c.infra)
}

// afterNodes runs f at cleanup once the nodes but infra have stopped.
func (c *testCluster) afterNodes(f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.after = append(c.after, f)
}

// nodeSpec describes a node to add.
type nodeSpec struct {
	svType, id string
	// frontend adds a TCP and a WebSocket acceptor on free loopback ports.
	frontend bool
	// inProcess connects in-process to infra's server (UseEmbedded);
	// otherwise over TCP to its client URL, or to busURL when set.
	inProcess bool
	busURL    string
	// setup registers components, remotes, hooks and routers before Start.
	setup func(app *nopal.App)
}

// add starts a node and returns it; the cluster's cleanup stops it.
func (c *testCluster) add(spec nodeSpec) *testNode {
	c.t.Helper()
	bus := stream.Config{URL: c.infra.Bus().ClientURL()}
	if spec.busURL != "" {
		bus.URL = spec.busURL
	}
	app, err := nopal.New(nopal.Config{
		ServerType: spec.svType,
		ServerID:   spec.id,
		Logger:     c.log,
		Cluster:    c.clusterConfig(bus),
		Resume:     c.opts.resume,
	})
	if err != nil {
		c.t.Fatal(err)
	}
	if spec.inProcess {
		app.UseEmbedded(c.infra.Bus().Server)
	}
	n := &testNode{app: app}
	var tcp *frontend.TCPAcceptor
	var ws *frontend.WSAcceptor
	if spec.frontend {
		tcp, ws = frontend.NewTCPAcceptor("127.0.0.1:0"), frontend.NewWSAcceptor("127.0.0.1:0")
		app.AddAcceptor(tcp)
		app.AddAcceptor(ws)
	}
	if spec.setup != nil {
		spec.setup(app)
	}
	if err := app.Start(context.Background()); err != nil {
		c.t.Fatalf("start %s: %v", spec.id, err)
	}
	if spec.frontend {
		n.tcp, n.ws = tcp.Addr().String(), "ws://"+ws.Addr().String()+"/"
	}
	if spec.inProcess != app.Bus().InProcess() {
		c.t.Fatalf("%s: in-process %v, want %v", spec.id, app.Bus().InProcess(), spec.inProcess)
	}
	c.mu.Lock()
	c.nodes = append(c.nodes, n)
	c.mu.Unlock()
	return n
}

// room adds a backend of type "room" serving the room component and its
// remotes; rec (may be nil) records what the component sees.
func (c *testCluster) room(id string, inProcess bool, rec *roomRecorder) *testNode {
	c.t.Helper()
	return c.add(nodeSpec{svType: "room", id: id, inProcess: inProcess, setup: func(app *nopal.App) {
		setupRoom(c.t, app, rec)
	}})
}

// connector adds a frontend of type "connector" without handlers; setup
// (may be nil) runs before Start.
func (c *testCluster) connector(id string, setup func(app *nopal.App)) *testNode {
	c.t.Helper()
	return c.add(nodeSpec{svType: "connector", id: id, frontend: true, setup: setup})
}

// awaitServers waits until every given app sees exactly the ids as the
// servers of svType.
func awaitServers(t *testing.T, svType string, ids []string, apps ...*nopal.App) {
	t.Helper()
	for _, app := range apps {
		eventually(t, fmt.Sprintf("%s to see %s servers %v", app.ServerID(), svType, ids), func() bool {
			got := app.Discovery().ServersByType(svType)
			if len(got) != len(ids) {
				return false
			}
			for i, s := range got { // both sorted by id
				if s.ID != ids[i] {
					return false
				}
			}
			return true
		})
	}
}

// eventually polls cond until it holds, failing the test at waitTimeout. It
// is for state that has no event to wait on.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if !poll(cond) {
		t.Fatalf("timed out waiting for %s", what)
	}
}

// poll calls cond every 10 ms until it holds (true) or waitTimeout passes
// (false).
func poll(cond func() bool) bool {
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
	return true
}

// testCtx is a context bounded by waitTimeout.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

// codeOf returns the code of a *codec.Error in err's chain, or "".
func codeOf(err error) string {
	var ce *codec.Error
	if errors.As(err, &ce) {
		return ce.Code
	}
	return ""
}

// nextPush returns the client's next push.
func nextPush(t *testing.T, c *client.Client, what string) client.Push {
	t.Helper()
	select {
	case p, ok := <-c.Pushes():
		if !ok {
			t.Fatalf("%s: the connection ended (%v)", what, c.Err())
		}
		return p
	case <-time.After(waitTimeout):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// awaitKicked waits until the client has ended because it was kicked.
func awaitKicked(t *testing.T, c *client.Client, who string) {
	t.Helper()
	await(t, c.Done(), who+" to be kicked")
	if !errors.Is(c.Err(), client.ErrKicked) {
		t.Errorf("%s ended with %v, want a kick", who, c.Err())
	}
}

// ---------------------------------------------------------------------------
// The room component (routes "room.room.<method>") and its remotes
// ("room.remote.<method>").

// Echo is the argument and result of echo handlers and remotes.
type Echo struct {
	Text   string `json:"text"`
	Server string `json:"server,omitempty"`
}

// Where says which server handled a request and what its backend session
// looked like.
type Where struct {
	Server     string            `json:"server"`
	Frontend   string            `json:"frontend"`
	Session    int64             `json:"session"`
	UID        string            `json:"uid"`
	Data       map[string]any    `json:"data"`
	DataTypes  map[string]string `json:"types"`
	IsFrontend bool              `json:"isFrontend"`
}

// BindArg asks room.bind to bind the session.
type BindArg struct {
	UID string `json:"uid"`
}

// roomRecorder is what the room handlers of one test report, and what
// releases their slow handlers.
type roomRecorder struct {
	notes       chan Echo     // room.note notifies, with the server that got them
	onCloseRuns atomic.Int32  // backend OnClose callbacks that ran
	release     chan struct{} // closed when the test ends: slow handlers return
	held        chan struct{} // room.hold entered
	unhold      chan struct{} // closed by the test: room.hold answers
}

func newRoomRecorder(t *testing.T) *roomRecorder {
	r := &roomRecorder{notes: make(chan Echo, 64), release: make(chan struct{}),
		held: make(chan struct{}, 8), unhold: make(chan struct{})}
	t.Cleanup(func() { close(r.release) }) // before the cluster stops
	return r
}

type room struct {
	app *nopal.App
	rec *roomRecorder
}

func setupRoom(t *testing.T, app *nopal.App, rec *roomRecorder) {
	t.Helper()
	if rec == nil {
		rec = newRoomRecorder(t)
	}
	if err := app.Register(&room{app: app, rec: rec}, backend.WithName("room")); err != nil {
		t.Fatal(err)
	}
	if err := app.RegisterRemote(&roomRemote{app: app, rec: rec}, backend.WithName("remote")); err != nil {
		t.Fatal(err)
	}
}

func (r *room) where(s *session.Session) *Where {
	w := &Where{Server: r.app.ServerID()}
	if s != nil {
		w.Frontend, w.Session, w.UID, w.IsFrontend = s.FrontendID(), s.ID(), s.UID(), s.IsFrontend()
		w.Data = s.Data()
		w.DataTypes = map[string]string{}
		for k, v := range w.Data {
			w.DataTypes[k] = fmt.Sprintf("%T", v)
		}
	}
	return w
}

// Where answers where the request ran.
func (r *room) Where(ctx context.Context) (*Where, error) {
	return r.where(session.FromContext(ctx)), nil
}

// Echo answers its argument and the server.
func (r *room) Echo(_ context.Context, in *Echo) (*Echo, error) {
	return &Echo{Text: in.Text, Server: r.app.ServerID()}, nil
}

// Note is a notify: it reports its argument and the server.
func (r *room) Note(_ context.Context, in *Echo) {
	r.rec.notes <- Echo{Text: in.Text, Server: r.app.ServerID()}
}

// Fail returns an application error with metadata.
func (r *room) Fail(context.Context) (*Echo, error) {
	return nil, codec.NewError("ROOM-7", "room is full", map[string]string{"room": "r1", "server": r.app.ServerID()})
}

// Slow answers when the test ends, long after its deadline.
func (r *room) Slow(context.Context) (*Echo, error) {
	<-r.rec.release
	return &Echo{Text: "late"}, nil
}

// Hold says it started, then answers once the test closes unhold.
func (r *room) Hold(context.Context) (*Echo, error) {
	r.rec.held <- struct{}{}
	select {
	case <-r.rec.unhold:
	case <-r.rec.release:
	}
	return &Echo{Text: "held", Server: r.app.ServerID()}, nil
}

// Work takes a little while, like a real handler, then answers where it ran.
func (r *room) Work(ctx context.Context) (*Where, error) {
	time.Sleep(20 * time.Millisecond) // the work
	return r.where(session.FromContext(ctx)), nil
}

// Bind binds the session on its frontend.
func (r *room) Bind(ctx context.Context, in *BindArg) (*Where, error) {
	s := session.FromContext(ctx)
	if err := s.Bind(ctx, in.UID); err != nil {
		return nil, err
	}
	return r.where(s), nil
}

// Store sets session data and sends it to the frontend.
func (r *room) Store(ctx context.Context) (*Where, error) {
	s := session.FromContext(ctx)
	s.Set("level", 3)
	s.Set("name", "knight")
	if err := s.PushToFront(ctx); err != nil {
		return nil, err
	}
	return r.where(s), nil
}

// Greet pushes "onGreet" to its session, then answers.
func (r *room) Greet(ctx context.Context, in *Echo) (*Echo, error) {
	s := session.FromContext(ctx)
	for i := range 3 {
		if err := s.Push("onGreet", &Echo{Text: fmt.Sprintf("%s %d", in.Text, i), Server: r.app.ServerID()}); err != nil {
			return nil, err
		}
	}
	return &Echo{Text: "answered", Server: r.app.ServerID()}, nil
}

// Closer registers an OnClose callback on the backend session.
func (r *room) Closer(ctx context.Context) (*Where, error) {
	s := session.FromContext(ctx)
	s.OnClose(func() { r.rec.onCloseRuns.Add(1) })
	return r.where(s), nil
}

// Kick kicks the client from the backend.
func (r *room) Kick(ctx context.Context) (*Echo, error) {
	if err := session.FromContext(ctx).Kick(ctx); err != nil {
		return nil, err
	}
	return &Echo{Text: "kicked"}, nil
}

type roomRemote struct {
	app *nopal.App
	rec *roomRecorder
}

// Echo answers its argument and the server (JSON).
func (r *roomRemote) Echo(_ context.Context, in *Echo) (*Echo, error) {
	return &Echo{Text: in.Text, Server: r.app.ServerID()}, nil
}

// Upper upper-cases a protobuf string.
func (r *roomRemote) Upper(_ context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	return wrapperspb.String(strings.ToUpper(in.GetValue()) + "@" + r.app.ServerID()), nil
}

// Fail returns an application error with metadata.
func (r *roomRemote) Fail(_ context.Context, in *Echo) (*Echo, error) {
	return nil, codec.NewError("ROOM-9", "no such player: "+in.Text, map[string]string{"player": in.Text})
}

// Sleep answers when the test ends, long after the caller's deadline.
func (r *roomRemote) Sleep(context.Context, *Echo) (*Echo, error) {
	<-r.rec.release
	return &Echo{Text: "late"}, nil
}

// ---------------------------------------------------------------------------
// A TCP proxy between a node and the NATS server, to cut its bus.

type tcpProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// startProxy forwards a free loopback port to infra's NATS server; it
// closes once the cluster's nodes have stopped.
func (c *testCluster) startProxy() *tcpProxy {
	t := c.t
	t.Helper()
	u, err := url.Parse(c.infra.Bus().ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: u.Host, conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.serve)
	c.afterNodes(p.close)
	return p
}

// URL is the proxy's NATS URL.
func (p *tcpProxy) URL() string { return "nats://" + p.ln.Addr().String() }

func (p *tcpProxy) serve() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			_ = in.Close()
			continue
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			_ = in.Close()
			continue
		}
		p.conns[in], p.conns[out] = struct{}{}, struct{}{}
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			_, _ = io.Copy(dst, src)
			_ = dst.Close()
			_ = src.Close()
			p.mu.Lock()
			delete(p.conns, dst)
			delete(p.conns, src)
			p.mu.Unlock()
		}
		p.wg.Go(func() { pipe(out, in) })
		p.wg.Go(func() { pipe(in, out) })
	}
}

// cut closes every connection through the proxy and refuses new ones.
func (p *tcpProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		_ = c.Close()
	}
}

// restore accepts connections again.
func (p *tcpProxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}

func (p *tcpProxy) close() {
	_ = p.ln.Close()
	p.cut()
	p.wg.Wait()
}
