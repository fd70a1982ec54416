package nopal_test

// App-level tests: an App with a component, hooks, pipelines, groups and both
// acceptors, driven by the Go client over real sockets.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nopal-dev/nopal"
	"github.com/nopal-dev/nopal/backend"
	"github.com/nopal-dev/nopal/client"
	"github.com/nopal-dev/nopal/codec"
	"github.com/nopal-dev/nopal/frontend"
	"github.com/nopal-dev/nopal/modules"
	"github.com/nopal-dev/nopal/session"
)

const waitTimeout = 10 * time.Second

type JoinReq struct {
	UID string `json:"uid"`
}

type JoinRes struct {
	UID     string   `json:"uid"`
	Members []string `json:"members"`
}

type SayReq struct {
	Text string `json:"text"`
}

type ctxKey struct{}

// lobby is the component under test ("lobby.*").
type lobby struct {
	app *nopal.App
}

const lobbyGroup = "lobby"

// Join binds the session and adds it to the lobby group.
func (l *lobby) Join(ctx context.Context, in *JoinReq) (*JoinRes, error) {
	s := session.FromContext(ctx)
	if err := s.Bind(ctx, in.UID); err != nil {
		return nil, codec.NewError("LOBBY-1", "cannot join", map[string]string{"uid": in.UID})
	}
	g := l.app.Groups()
	if err := g.Add(ctx, lobbyGroup, in.UID); err != nil {
		return nil, err
	}
	s.OnClose(func() { _ = g.Remove(context.WithoutCancel(ctx), lobbyGroup, in.UID) })
	members, err := g.Members(ctx, lobbyGroup)
	if err != nil {
		return nil, err
	}
	slices.Sort(members)
	return &JoinRes{UID: in.UID, Members: members}, nil
}

// Say is a notify broadcast to the lobby as push "onSay".
func (l *lobby) Say(ctx context.Context, in *SayReq) {
	from := session.FromContext(ctx).UID()
	_, _ = l.app.Groups().Broadcast(ctx, lobbyGroup, "onSay", map[string]string{"from": from, "text": in.Text})
}

// Whoami answers the session's uid and what the Before pipeline put in ctx.
func (l *lobby) Whoami(ctx context.Context) (map[string]string, error) {
	tag, _ := ctx.Value(ctxKey{}).(string)
	return map[string]string{"uid": session.FromContext(ctx).UID(), "tag": tag}, nil
}

// Raw echoes bytes, whatever the serializer.
func (l *lobby) Raw(_ context.Context, in []byte) ([]byte, error) { return in, nil }

type hooks struct {
	bound  chan string // OnAfterSessionBind
	closed chan string // OnSessionClose (uid)
}

// startApp starts an app with the lobby on TCP and WebSocket and returns the
// client addresses of both.
func startApp(t *testing.T, cfg nopal.Config) (*nopal.App, *hooks, []string) {
	t.Helper()
	cfg.ServerType = "game"
	cfg.Logger = slog.New(slog.DiscardHandler)
	app, err := nopal.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Register(&lobby{app: app}, backend.WithName("lobby")); err != nil {
		t.Fatal(err)
	}
	h := &hooks{bound: make(chan string, 16), closed: make(chan string, 16)}
	app.OnSessionBind(func(_ context.Context, _ *session.Session, uid string) error {
		if strings.HasPrefix(uid, "banned") {
			return errors.New("banned")
		}
		return nil
	})
	app.OnAfterSessionBind(func(_ context.Context, s *session.Session) { h.bound <- s.UID() })
	app.OnSessionClose(func(s *session.Session) { h.closed <- s.UID() })
	app.Before(func(ctx context.Context, in any) (context.Context, any, error) {
		return context.WithValue(ctx, ctxKey{}, "before"), in, nil
	})
	app.After(func(_ context.Context, out any, err error) (any, error) {
		if m, ok := out.(map[string]string); ok {
			m["after"] = "yes"
		}
		return out, err
	})
	ctx := context.Background()
	if err := app.Groups().Create(ctx, lobbyGroup); err != nil {
		t.Fatal(err)
	}
	tcp := frontend.NewTCPAcceptor("127.0.0.1:0")
	ws := frontend.NewWSAcceptor("127.0.0.1:0")
	app.AddAcceptor(tcp)
	app.AddAcceptor(ws)
	if err := app.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(ctx, waitTimeout)
		defer cancel()
		if err := app.Shutdown(sctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return app, h, []string{tcp.Addr().String(), "ws://" + ws.Addr().String() + "/"}
}

func dial(t *testing.T, addr string) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c, err := client.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func await[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitTimeout):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

func forEachAddr(t *testing.T, addrs []string, f func(t *testing.T, addr string)) {
	t.Helper()
	for i, addr := range addrs {
		t.Run([]string{"tcp", "ws"}[i], func(t *testing.T) { f(t, addr) })
	}
}

func TestAppConfig(t *testing.T) {
	if _, err := nopal.New(nopal.Config{}); err == nil {
		t.Error("New without ServerType succeeded")
	}
	app, err := nopal.New(nopal.Config{ServerType: "game", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if app.Frontend() != nil {
		t.Error("Frontend before Start")
	}
	if err := app.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown before Start: %v", err)
	}
	if _, err := app.PushToUsers(ctx, "r", "x", []string{"u"}); err == nil {
		t.Error("PushToUsers before Start succeeded")
	}
	if err := app.Register(&lobby{app: app}); err != nil {
		t.Fatal(err)
	}
	if err := app.Register(&lobby{app: app}); !errors.Is(err, backend.ErrDuplicateName) {
		t.Errorf("second Register: %v", err)
	}
	if got := app.Routes(); !slices.Equal(got, []string{"lobby.join", "lobby.raw", "lobby.say", "lobby.whoami"}) {
		t.Errorf("Routes %v", got)
	}
	app.AddAcceptor(frontend.NewTCPAcceptor("127.0.0.1:0"))
	if err := app.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := app.Start(ctx); err == nil {
		t.Error("second Start succeeded")
	}
	if err := app.Shutdown(ctx); err != nil {
		t.Error(err)
	}
	if err := app.Shutdown(ctx); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
}

// A listen error makes Start fail and leaves the App unstarted.
func TestAppStartListenError(t *testing.T) {
	taken := frontend.NewTCPAcceptor("127.0.0.1:0")
	if err := taken.Listen(); err != nil {
		t.Fatal(err)
	}
	defer taken.Stop()
	app, err := nopal.New(nopal.Config{ServerType: "game", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	free := frontend.NewTCPAcceptor("127.0.0.1:0")
	app.AddAcceptor(free)
	app.AddAcceptor(frontend.NewTCPAcceptor(taken.Addr().String()))
	if err := app.Start(context.Background()); err == nil {
		t.Fatal("Start on a taken port succeeded")
	}
	if app.Frontend() != nil {
		t.Error("Frontend set after a failed Start")
	}
	// The acceptor that did listen was closed again.
	if _, err := client.Dial(context.Background(), free.Addr().String(), client.WithHandshakeTimeout(time.Second)); err == nil {
		t.Error("the first acceptor still accepts after the failed Start")
	}
}

func TestAppLobby(t *testing.T) {
	t.Parallel()
	// A session whose client leaves is kept for the resume grace, then
	// closed: a short grace here.
	app, h, addrs := startApp(t, nopal.Config{Resume: frontend.ResumeConfig{Grace: 50 * time.Millisecond}})
	ctx := context.Background()
	forEachAddr(t, addrs, func(t *testing.T, addr string) {
		ann, bob := dial(t, addr), dial(t, addr)
		hs := ann.Handshake()
		if hs.Code != 200 || hs.Sys.Heartbeat != 30 || hs.Sys.Serializer != "json" {
			t.Errorf("handshake %+v %+v", hs, hs.Sys)
		}
		uidA, uidB := "ann-"+addr, "bob-"+addr

		var res JoinRes
		if err := ann.Request(ctx, "lobby.join", JoinReq{UID: uidA}, &res); err != nil {
			t.Fatal(err)
		}
		if got := await(t, h.bound, "OnAfterSessionBind"); got != uidA {
			t.Errorf("bound %q", got)
		}
		if err := bob.Request(ctx, "game.lobby.join", JoinReq{UID: uidB}, &res); err != nil {
			t.Fatal(err)
		}
		await(t, h.bound, "OnAfterSessionBind")
		if !slices.Contains(res.Members, uidA) || !slices.Contains(res.Members, uidB) {
			t.Errorf("members %v", res.Members)
		}

		// A vetoed bind: the handler's error reaches the client.
		eve := dial(t, addr)
		err := eve.Request(ctx, "lobby.join", JoinReq{UID: "banned-" + addr}, nil)
		var ce *codec.Error
		if !errors.As(err, &ce) || ce.Code != "LOBBY-1" || ce.Metadata["uid"] != "banned-"+addr {
			t.Errorf("vetoed join: %v", err)
		}
		if app.Sessions().ByUID("banned-"+addr) != nil {
			t.Error("vetoed uid is bound")
		}

		// Pipelines run around every handler.
		var who map[string]string
		if err := ann.Request(ctx, "lobby.whoami", nil, &who); err != nil {
			t.Fatal(err)
		}
		if who["uid"] != uidA || who["tag"] != "before" || who["after"] != "yes" {
			t.Errorf("whoami %v", who)
		}

		// A notify broadcast to the group reaches both, the sender too.
		if err := bob.Notify(ctx, "lobby.say", SayReq{Text: "hi"}); err != nil {
			t.Fatal(err)
		}
		for _, c := range []*client.Client{ann, bob} {
			p := await(t, c.Pushes(), "onSay")
			if p.Route != "onSay" || string(p.Data) != fmt.Sprintf(`{"from":%q,"text":"hi"}`, uidB) {
				t.Errorf("push %s %s", p.Route, p.Data)
			}
		}

		// PushToUsers reaches bound users and reports the others.
		failed, err := app.PushToUsers(ctx, "onNews", map[string]int{"n": 1}, []string{uidA, "nobody"})
		if err != nil || !slices.Equal(failed, []string{"nobody"}) {
			t.Errorf("PushToUsers: %v, %v", failed, err)
		}
		if p := await(t, ann.Pushes(), "onNews"); p.Route != "onNews" || string(p.Data) != `{"n":1}` {
			t.Errorf("push %s %s", p.Route, p.Data)
		}

		// A server-side kick ends the client with ErrKicked; its close
		// hooks leave the group.
		if err := app.Sessions().ByUID(uidA).Kick(ctx); err != nil {
			t.Fatal(err)
		}
		await(t, ann.Done(), "the kicked client to end")
		if !errors.Is(ann.Err(), client.ErrKicked) {
			t.Errorf("kicked client ended with %v", ann.Err())
		}
		if uid := await(t, h.closed, "OnSessionClose"); uid != uidA {
			t.Errorf("closed %q", uid)
		}
		if ok, _ := app.Groups().Contains(ctx, lobbyGroup, uidA); ok {
			t.Error("the kicked user is still in the group")
		}
		if err := ann.Request(ctx, "lobby.whoami", nil, nil); !errors.Is(err, client.ErrClosed) {
			t.Errorf("request after the kick: %v", err)
		}
		if err := bob.Request(ctx, "lobby.whoami", nil, nil); err != nil {
			t.Errorf("bob after ann's kick: %v", err)
		}
		_ = eve.Close()
		_ = bob.Close()
		for range 2 {
			await(t, h.closed, "OnSessionClose")
		}
	})
}

// Route compression: the handshake's dictionary numbers every handler route
// and the configured push routes; the client uses the codes both ways.
// Compression: a large push goes zlib-compressed and arrives intact.
func TestAppRouteCompressionAndZlib(t *testing.T) {
	t.Parallel()
	app, _, addrs := startApp(t, nopal.Config{
		RouteCompression: true,
		Dictionary:       map[string]uint16{"onSay": 100},
		Compress:         true,
	})
	ctx := context.Background()
	forEachAddr(t, addrs, func(t *testing.T, addr string) {
		c := dial(t, addr)
		dict := c.Handshake().Sys.Dict
		for _, r := range app.Routes() {
			if _, ok := dict[r]; !ok {
				t.Errorf("route %s not in the dictionary %v", r, dict)
			}
		}
		if dict["onSay"] != 100 {
			t.Errorf("dictionary %v", dict)
		}
		uid := "zed-" + addr
		if err := c.Request(ctx, "lobby.join", JoinReq{UID: uid}, nil); err != nil {
			t.Fatal(err)
		}
		long := strings.Repeat("hello ", 100)
		if err := c.Notify(ctx, "lobby.say", SayReq{Text: long}); err != nil {
			t.Fatal(err)
		}
		p := await(t, c.Pushes(), "onSay")
		if p.Route != "onSay" || !strings.Contains(string(p.Data), long) {
			t.Errorf("push %s of %d bytes", p.Route, len(p.Data))
		}
		out, err := c.RequestRaw(ctx, "lobby.raw", []byte(`"`+long+`"`))
		if err != nil || string(out) != `"`+long+`"` {
			t.Errorf("raw: %v, %d bytes", err, len(out))
		}
	})
}

// With the protobuf serializer the handshake says "protos" and error
// responses are protobuf-encoded.
func TestAppProtobuf(t *testing.T) {
	t.Parallel()
	_, _, addrs := startApp(t, nopal.Config{Serializer: codec.Protobuf{}})
	ctx := context.Background()
	forEachAddr(t, addrs, func(t *testing.T, addr string) {
		c := dial(t, addr)
		if s := c.Handshake().Sys.Serializer; s != "protos" {
			t.Errorf("serializer %q", s)
		}
		out, err := c.RequestRaw(ctx, "lobby.raw", []byte{1, 2, 3})
		if err != nil || string(out) != "\x01\x02\x03" {
			t.Errorf("raw: %x, %v", out, err)
		}
		_, err = c.RequestRaw(ctx, "lobby.nosuch", nil)
		var ce *codec.Error
		if !errors.As(err, &ce) || ce.Code != codec.CodeNotFound {
			t.Errorf("unknown route: %v", err)
		}
	})
}

// Shutdown kicks every client, runs the close hooks and refuses newcomers.
func TestAppShutdown(t *testing.T) {
	t.Parallel()
	app, h, addrs := startApp(t, nopal.Config{})
	ctx := context.Background()
	var clients []*client.Client
	for i, addr := range addrs {
		c := dial(t, addr)
		if err := c.Request(ctx, "lobby.join", JoinReq{UID: fmt.Sprint("u", i)}, nil); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	if err := app.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range clients {
		await(t, c.Done(), "the client to end")
		if !errors.Is(c.Err(), client.ErrKicked) {
			t.Errorf("client ended with %v", c.Err())
		}
	}
	got := []string{await(t, h.closed, "OnSessionClose"), await(t, h.closed, "OnSessionClose")}
	slices.Sort(got)
	if !slices.Equal(got, []string{"u0", "u1"}) {
		t.Errorf("closed %v", got)
	}
	if app.Sessions().Count() != 0 {
		t.Errorf("%d sessions after Shutdown", app.Sessions().Count())
	}
	for _, addr := range addrs {
		if _, err := client.Dial(ctx, addr, client.WithHandshakeTimeout(time.Second)); err == nil {
			t.Errorf("%s accepted a client after Shutdown", addr)
		}
	}
}

// A second Shutdown waits for the first to finish instead of returning at
// once: a caller that returns from Shutdown knows the app has stopped.
func TestSecondShutdownWaitsForTheFirst(t *testing.T) {
	app, err := nopal.New(nopal.Config{ServerType: "wait", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	if err := app.RegisterModule(&blockingModule{release: release}, "slow"); err != nil {
		t.Fatal(err)
	}
	if err := app.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	first := make(chan error, 1)
	go func() { first <- app.Shutdown(context.Background()) }()
	<-release // the first Shutdown is inside the module's Shutdown
	second := make(chan error, 1)
	go func() { second <- app.Shutdown(context.Background()) }()
	select {
	case err := <-second:
		t.Fatalf("the second Shutdown returned (%v) while the first was still running", err)
	case <-time.After(100 * time.Millisecond):
	}
	release <- struct{}{} // let the first finish
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err := <-second; err != nil {
		t.Fatal(err)
	}
}

// blockingModule's Shutdown signals on release, then waits for it.
type blockingModule struct {
	modules.Base
	release chan struct{}
}

func (m *blockingModule) Shutdown(context.Context) error {
	m.release <- struct{}{}
	<-m.release
	return nil
}
