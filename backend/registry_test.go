package backend_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/nopal-dev/nopal/backend"
	"github.com/nopal-dev/nopal/codec"
)

type JoinReq struct {
	Name string `json:"name"`
}

type JoinRes struct {
	Greeting string `json:"greeting"`
	Members  int    `json:"members"`
}

type ctxKey struct{}

// Room has one method of every handler shape, and methods of shapes that
// are not handlers.
type Room struct {
	mu      sync.Mutex
	members int
	kept    [][]byte
	said    chan string
}

// Handlers.

func (r *Room) Join(ctx context.Context, in *JoinReq) (*JoinRes, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.members++
	return &JoinRes{Greeting: "hello " + in.Name, Members: r.members}, nil
}

func (r *Room) Count(ctx context.Context) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.members, nil
}

func (r *Room) Raw(ctx context.Context, in []byte) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.kept = append(r.kept, in)
	return bytes.ToUpper(in), nil
}

func (r *Room) Say(ctx context.Context, in *JoinReq) { r.said <- "say " + in.Name }

func (r *Room) Ping(ctx context.Context) { r.said <- "ping" }

func (r *Room) Whoami(ctx context.Context) (string, error) {
	who, _ := ctx.Value(ctxKey{}).(string)
	return who, nil
}

// Not handlers.

func (r *Room) NoContext(in *JoinReq) (*JoinRes, error)                   { return nil, nil }
func (r *Room) WrongFirst(s string, in *JoinReq) (*JoinRes, error)        { return nil, nil }
func (r *Room) ThreeReturns(ctx context.Context) (int, int, error)        { return 0, 0, nil }
func (r *Room) NotError(ctx context.Context) (*JoinRes, string)           { return nil, "" }
func (r *Room) OnlyError(ctx context.Context) error                       { return nil }
func (r *Room) ByValue(ctx context.Context, in JoinReq) (*JoinRes, error) { return nil, nil }
func (r *Room) StringArg(ctx context.Context, in string) (string, error)  { return "", nil }
func (r *Room) TwoArgs(ctx context.Context, a, b *JoinReq) (int, error)   { return 0, nil }
func (r *Room) Variadic(ctx context.Context, in ...*JoinReq) (int, error) { return 0, nil }
func (r *Room) NoArgs()                                                   {}
func (r *Room) unexported(ctx context.Context) (int, error)               { return 0, nil }

var roomRoutes = []string{"room.count", "room.join", "room.ping", "room.raw", "room.say", "room.whoami"}

// Faulty fails in every way a handler can.
type Faulty struct{}

func (Faulty) Game(ctx context.Context) (*JoinRes, error) {
	return nil, codec.NewError("GAME-1", "msg", map[string]string{"k": "v"})
}

func (Faulty) Wrapped(ctx context.Context) (*JoinRes, error) {
	return nil, fmt.Errorf("load inventory: %w", codec.NewError("GAME-2", "no stock", nil))
}

func (Faulty) Plain(ctx context.Context) (*JoinRes, error) { return nil, errors.New("db down") }

func (Faulty) Panic(ctx context.Context) (*JoinRes, error) { panic("boom in faulty.panic") }

func (Faulty) PanicNotify(ctx context.Context) { panic("boom in faulty.panicNotify") }

func (Faulty) Unencodable(ctx context.Context) (chan int, error) { return make(chan int), nil }

// newRegistry returns a "chat" registry with Room and Faulty, logging to
// the returned buffer.
func newRegistry(t testing.TB, ser codec.Serializer) (*backend.Registry, *Room, *syncBuffer) {
	t.Helper()
	var buf syncBuffer
	r := backend.NewRegistry("chat", ser, slog.New(slog.NewTextHandler(&buf, nil)))
	room := &Room{said: make(chan string, 16)}
	if err := r.Register(room); err != nil {
		t.Fatal(err)
	}
	if err := r.Register(Faulty{}); err != nil {
		t.Fatal(err)
	}
	return r, room, &buf
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// codeOf checks that err is a *codec.Error and returns it.
func codeOf(t *testing.T, err error) *codec.Error {
	t.Helper()
	var ce *codec.Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T) is not a *codec.Error", err, err)
	}
	return ce
}

func TestNewRegistryDefaults(t *testing.T) {
	r := backend.NewRegistry("chat", nil, nil)
	if r.ServerType() != "chat" {
		t.Errorf("ServerType = %q", r.ServerType())
	}
	if _, ok := r.Serializer().(codec.JSON); !ok {
		t.Errorf("default serializer is %T, want codec.JSON", r.Serializer())
	}
	p := backend.NewRegistry("chat", codec.Protobuf{}, nil)
	if p.Serializer().Name() != "protos" {
		t.Errorf("Serializer = %s", p.Serializer().Name())
	}
	if len(r.Routes()) != 0 {
		t.Errorf("new registry has routes %v", r.Routes())
	}
}

func TestRoutes(t *testing.T) {
	r := backend.NewRegistry("chat", nil, slog.New(slog.DiscardHandler))
	if err := r.Register(&Room{}); err != nil {
		t.Fatal(err)
	}
	if got := r.Routes(); !slices.Equal(got, roomRoutes) {
		t.Errorf("Routes = %q, want %q (only the handler shapes, sorted)", got, roomRoutes)
	}
}

type Empty struct{}

func (Empty) Helper(x int) int { return x }

type Lobby struct{}

func (Lobby) Enter(ctx context.Context) (string, error)    { return "entered", nil }
func (*Lobby) Leave(ctx context.Context) (string, error)   { return "left", nil }
func (Lobby) ListRooms(ctx context.Context) ([]int, error) { return nil, nil }

// Twins has two methods that a name function maps to one route.
type Twins struct{}

func (Twins) Join(ctx context.Context)   {}
func (Twins) JOIN(ctx context.Context)   {}
func (Twins) Leave(ctx context.Context)  {}
func (Twins) Unique(ctx context.Context) {}

func TestRegister(t *testing.T) {
	tests := []struct {
		name       string
		before     []any // registered first
		component  any
		opts       []backend.Option
		wantErr    error
		wantRoutes []string // all routes after the call
	}{
		{name: "nil", component: nil, wantErr: backend.ErrBadComponent},
		{name: "nil pointer", component: (*Room)(nil), wantErr: backend.ErrBadComponent},
		{name: "no handlers", component: Empty{}, wantErr: backend.ErrNoHandlers},
		{name: "no methods at all", component: &struct{ X int }{}, wantErr: backend.ErrBadComponent}, // anonymous: no name
		{name: "anonymous, named", component: &struct{ X int }{}, opts: []backend.Option{backend.WithName("x")}, wantErr: backend.ErrNoHandlers},
		{name: "not a struct", component: 42, wantErr: backend.ErrNoHandlers},
		{name: "value receivers only", component: Lobby{}, wantRoutes: []string{"lobby.enter", "lobby.listRooms"}},
		{name: "pointer gets all", component: &Lobby{}, wantRoutes: []string{"lobby.enter", "lobby.leave", "lobby.listRooms"}},
		{
			name: "with name", component: &Lobby{},
			opts:       []backend.Option{backend.WithName("hall")},
			wantRoutes: []string{"hall.enter", "hall.leave", "hall.listRooms"},
		},
		{
			name: "with name func", component: &Lobby{},
			opts:       []backend.Option{backend.WithNameFunc(strings.ToUpper)},
			wantRoutes: []string{"lobby.ENTER", "lobby.LEAVE", "lobby.LISTROOMS"},
		},
		{
			name: "with name and name func", component: &Lobby{},
			opts:       []backend.Option{backend.WithName("Hall"), backend.WithNameFunc(func(s string) string { return "do" + s })},
			wantRoutes: []string{"Hall.doEnter", "Hall.doLeave", "Hall.doListRooms"},
		},
		{name: "dotted name", component: &Lobby{}, opts: []backend.Option{backend.WithName("a.b")}, wantErr: backend.ErrBadComponent},
		{name: "name with a space", component: &Lobby{}, opts: []backend.Option{backend.WithName("my lobby")}, wantErr: codec.ErrInvalidRoute},
		{name: "name with a wildcard", component: &Lobby{}, opts: []backend.Option{backend.WithName("lobby*")}, wantErr: backend.ErrBadComponent},
		{
			name: "name func with a dot", component: &Lobby{},
			opts:    []backend.Option{backend.WithNameFunc(func(s string) string { return "v1." + s })},
			wantErr: codec.ErrInvalidRoute,
		},
		{
			name: "name func with a slash", component: &Lobby{},
			opts:    []backend.Option{backend.WithNameFunc(func(s string) string { return "v1/" + s })},
			wantErr: backend.ErrBadComponent,
		},
		{
			name: "empty method name", component: &Lobby{},
			opts:    []backend.Option{backend.WithNameFunc(func(string) string { return "" })},
			wantErr: backend.ErrBadComponent,
		},
		{
			name: "unicode names", component: &Lobby{},
			opts:       []backend.Option{backend.WithName("salle"), backend.WithNameFunc(func(s string) string { return "é" + s })},
			wantRoutes: []string{"salle.éEnter", "salle.éLeave", "salle.éListRooms"},
		},
		{
			name: "duplicate", before: []any{&Lobby{}}, component: &Lobby{},
			wantErr: backend.ErrDuplicateName, wantRoutes: []string{"lobby.enter", "lobby.leave", "lobby.listRooms"},
		},
		{
			name: "value then pointer: one clash rejects all", before: []any{Lobby{}}, component: &Lobby{},
			wantErr: backend.ErrDuplicateName, wantRoutes: []string{"lobby.enter", "lobby.listRooms"},
		},
		{
			name: "same type, other name", before: []any{&Lobby{}}, component: &Lobby{},
			opts:       []backend.Option{backend.WithName("hall")},
			wantRoutes: []string{"hall.enter", "hall.leave", "hall.listRooms", "lobby.enter", "lobby.leave", "lobby.listRooms"},
		},
		{
			name: "two methods, one route", component: Twins{},
			opts:    []backend.Option{backend.WithNameFunc(strings.ToLower)},
			wantErr: backend.ErrDuplicateName,
		},
		{name: "distinct names by default", component: Twins{}, wantRoutes: []string{"twins.jOIN", "twins.join", "twins.leave", "twins.unique"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := backend.NewRegistry("chat", nil, slog.New(slog.DiscardHandler))
			for _, c := range tt.before {
				if err := r.Register(c); err != nil {
					t.Fatal(err)
				}
			}
			err := r.Register(tt.component, tt.opts...)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Register = %v, want %v", err, tt.wantErr)
			}
			if got := r.Routes(); !slices.Equal(got, tt.wantRoutes) {
				t.Errorf("Routes = %q, want %q", got, tt.wantRoutes)
			}
		})
	}
}

func TestLocalHas(t *testing.T) {
	r, _, _ := newRegistry(t, nil)
	tests := []struct {
		route     string
		wantLocal string
		wantOK    bool
		wantHas   bool
	}{
		{"room.join", "room.join", true, true},
		{"chat.room.join", "room.join", true, true},
		{"lobby.room.join", "", false, false}, // another server type
		{"room.missing", "room.missing", true, false},
		{"chat.room.missing", "room.missing", true, false},
		{"chat.nothing", "chat.nothing", true, false}, // two parts: component "chat"
		{"room", "", false, false},
		{"", "", false, false},
		// Routes codec.ParseRoute rejects name no server (a four-part
		// route was "local" with component.method "room.join.extra"
		// before issue 11; it had no handler either way).
		{"chat.room.join.extra", "", false, false},
		{".room.join", "", false, false},
		{"room.", "", false, false},
		{"chat..join", "", false, false},
		{"room.join ", "", false, false},
		{"room.*", "", false, false},
		{"chat.room.>", "", false, false},
		{"room.jo\\in", "", false, false},
		{"room.join\xff", "", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.route, func(t *testing.T) {
			local, ok := r.Local(tt.route)
			if local != tt.wantLocal || ok != tt.wantOK {
				t.Errorf("Local(%q) = %q, %v; want %q, %v", tt.route, local, ok, tt.wantLocal, tt.wantOK)
			}
			if has := r.Has(tt.route); has != tt.wantHas {
				t.Errorf("Has(%q) = %v, want %v", tt.route, has, tt.wantHas)
			}
		})
	}
}

// TestRouteMethods checks that the methods taking a parsed codec.Route
// agree with the string ones they wrap.
func TestRouteMethods(t *testing.T) {
	r, _, _ := newRegistry(t, nil)
	ctx := context.Background()
	for _, route := range []string{"room.count", "chat.room.count", "lobby.room.count", "room.missing", "chat.nothing", "chat.faulty.game"} {
		t.Run(route, func(t *testing.T) {
			rt, err := codec.ParseRoute(route)
			if err != nil {
				t.Fatal(err)
			}
			_, local := r.Local(route)
			if got := r.LocalRoute(rt); got != local {
				t.Errorf("LocalRoute = %v, Local = %v", got, local)
			}
			if got, want := r.HasRoute(rt), r.Has(route); got != want {
				t.Errorf("HasRoute = %v, Has = %v", got, want)
			}
			out1, n1, err1 := r.HandleRoute(ctx, rt, nil)
			out2, n2, err2 := r.Handle(ctx, route, nil)
			if !bytes.Equal(out1, out2) || n1 != n2 || fmt.Sprint(err1) != fmt.Sprint(err2) {
				t.Errorf("HandleRoute = %q, %v, %v; Handle = %q, %v, %v", out1, n1, err1, out2, n2, err2)
			}
		})
	}
}

func TestHandleRouteNotFoundNamesTheRoute(t *testing.T) {
	r, _, _ := newRegistry(t, nil)
	_, _, err := r.HandleRoute(context.Background(), codec.Route{ServerType: "lobby", Component: "room", Method: "join"}, nil)
	if ce := codeOf(t, err); ce.Code != codec.CodeNotFound || !strings.Contains(ce.Message, "lobby.room.join") {
		t.Errorf("error = %v", err)
	}
}

// TestLookupDoesNotAllocate: finding the handler of a route, parsed or
// not, builds no string.
func TestLookupDoesNotAllocate(t *testing.T) {
	r, _, _ := newRegistry(t, nil)
	route := strings.Clone("chat.room.join")
	rt, err := codec.ParseRoute(route)
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { _ = r.HasRoute(rt) }); n != 0 {
		t.Errorf("HasRoute allocates %v times", n)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = r.Local(route) }); n != 0 {
		t.Errorf("Local allocates %v times", n)
	}
	if n := testing.AllocsPerRun(100, func() { _ = r.Has(route) }); n != 0 {
		t.Errorf("Has allocates %v times", n)
	}
}

func TestHandle(t *testing.T) {
	tests := []struct {
		name       string
		route      string
		data       []byte
		wantOut    string // JSON; "" for none
		wantNotify bool
		wantCode   string // "" for success
		wantMsg    string // substring of the error message
		wantMeta   map[string]string
	}{
		{name: "struct round trip", route: "room.join", data: []byte(`{"name":"ana"}`), wantOut: `{"greeting":"hello ana","members":1}`},
		{name: "three-part route", route: "chat.room.join", data: []byte(`{"name":"bo"}`), wantOut: `{"greeting":"hello bo","members":1}`},
		{name: "no argument", route: "room.count", wantOut: `0`},
		{name: "no argument ignores data", route: "room.count", data: []byte(`garbage`), wantOut: `0`},
		{name: "raw bytes", route: "room.raw", data: []byte("abc"), wantOut: "ABC"},
		{name: "raw empty", route: "room.raw", wantOut: ""},
		{name: "unknown route", route: "room.missing", wantCode: codec.CodeNotFound, wantMsg: "room.missing"},
		{name: "unknown component", route: "nothing.here", wantCode: codec.CodeNotFound},
		{name: "other server type", route: "lobby.room.join", data: []byte(`{}`), wantCode: codec.CodeNotFound},
		{name: "no dot", route: "room", wantCode: codec.CodeNotFound},
		{name: "bad json", route: "room.join", data: []byte(`{"name":`), wantCode: codec.CodeBadRequest, wantMsg: "room.join"},
		{name: "wrong json type", route: "room.join", data: []byte(`{"name":7}`), wantCode: codec.CodeBadRequest},
		{name: "empty json", route: "room.join", wantCode: codec.CodeBadRequest},
		{name: "application error", route: "faulty.game", wantCode: "GAME-1", wantMsg: "msg", wantMeta: map[string]string{"k": "v"}},
		{name: "wrapped application error", route: "faulty.wrapped", wantCode: "GAME-2", wantMsg: "no stock"},
		{name: "plain error", route: "faulty.plain", wantCode: codec.CodeInternal, wantMsg: "db down"},
		{name: "panic", route: "faulty.panic", wantCode: codec.CodeInternal},
		{name: "panic in notify", route: "faulty.panicNotify", wantCode: codec.CodeInternal, wantNotify: true},
		{name: "result not encodable", route: "faulty.unencodable", wantCode: codec.CodeInternal, wantMsg: "faulty.unencodable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _, _ := newRegistry(t, nil)
			out, notify, err := r.Handle(context.Background(), tt.route, tt.data)
			if notify != tt.wantNotify {
				t.Errorf("notify = %v, want %v", notify, tt.wantNotify)
			}
			if tt.wantCode == "" {
				if err != nil {
					t.Fatalf("Handle: %v", err)
				}
				if string(out) != tt.wantOut {
					t.Errorf("out = %q, want %q", out, tt.wantOut)
				}
				return
			}
			if out != nil {
				t.Errorf("error with output %q", out)
			}
			ce := codeOf(t, err)
			if ce.Code != tt.wantCode || !strings.Contains(ce.Message, tt.wantMsg) {
				t.Errorf("error = %q %q, want code %q, message with %q", ce.Code, ce.Message, tt.wantCode, tt.wantMsg)
			}
			if tt.wantMeta != nil && !maps(ce.Metadata, tt.wantMeta) {
				t.Errorf("metadata = %v, want %v", ce.Metadata, tt.wantMeta)
			}
			if !errors.Is(err, &codec.Error{Code: tt.wantCode}) {
				t.Errorf("errors.Is(err, code %s) is false", tt.wantCode)
			}
		})
	}
}

func maps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestHandleApplicationErrorIsReturnedAsIs(t *testing.T) {
	r, _, _ := newRegistry(t, nil)
	_, _, err := r.Handle(context.Background(), "faulty.game", nil)
	var ce *codec.Error
	if !errors.As(err, &ce) {
		t.Fatalf("%v is not a *codec.Error", err)
	}
	if ce.Code != "GAME-1" || ce.Message != "msg" || len(ce.Metadata) != 1 || ce.Metadata["k"] != "v" {
		t.Errorf("got %#v", ce)
	}
	enc, err := codec.EncodeError(r.Serializer(), ce)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"code":"GAME-1","msg":"msg","metadata":{"k":"v"}}`; string(enc) != want {
		t.Errorf("client sees %s, want %s", enc, want)
	}
}

func TestHandleNotify(t *testing.T) {
	tests := []struct {
		route string
		data  []byte
		want  string
	}{
		{"room.say", []byte(`{"name":"ana"}`), "say ana"},
		{"chat.room.say", []byte(`{"name":"bo"}`), "say bo"},
		{"room.ping", nil, "ping"},
	}
	for _, tt := range tests {
		t.Run(tt.route, func(t *testing.T) {
			r, room, _ := newRegistry(t, nil)
			out, notify, err := r.Handle(context.Background(), tt.route, tt.data)
			if err != nil || !notify || out != nil {
				t.Fatalf("Handle = %q, %v, %v; want no output, notify, no error", out, notify, err)
			}
			if got := <-room.said; got != tt.want {
				t.Errorf("handler saw %q, want %q", got, tt.want)
			}
		})
	}
	t.Run("bad argument", func(t *testing.T) {
		r, _, _ := newRegistry(t, nil)
		_, notify, err := r.Handle(context.Background(), "room.say", []byte(`nope`))
		if !notify || codeOf(t, err).Code != codec.CodeBadRequest {
			t.Errorf("notify %v, err %v", notify, err)
		}
	})
}

func TestHandleRawReceivesACopy(t *testing.T) {
	r, room, _ := newRegistry(t, nil)
	in := []byte("hello")
	out, _, err := r.Handle(context.Background(), "room.raw", in)
	if err != nil {
		t.Fatal(err)
	}
	copy(in, "XXXXX") // the caller reuses its read buffer
	room.mu.Lock()
	kept := string(room.kept[0])
	room.mu.Unlock()
	if kept != "hello" {
		t.Errorf("handler's argument changed to %q when the input buffer was reused", kept)
	}
	if string(out) != "HELLO" {
		t.Errorf("out = %q", out)
	}
}

func TestHandlePanicIsLoggedAndRecovered(t *testing.T) {
	r, _, logs := newRegistry(t, nil)
	for _, route := range []string{"faulty.panic", "chat.faulty.panicNotify"} {
		_, _, err := r.Handle(context.Background(), route, nil)
		if ce := codeOf(t, err); ce.Code != codec.CodeInternal {
			t.Errorf("%s: code %s", route, ce.Code)
		}
		if strings.Contains(err.Error(), "boom") {
			t.Errorf("%s: the panic value reaches the client: %v", route, err)
		}
	}
	log := logs.String()
	for _, want := range []string{"handler panicked", "route=faulty.panic", "route=chat.faulty.panicNotify", "boom in faulty.panic", "stack="} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}

	// The registry still works.
	out, _, err := r.Handle(context.Background(), "room.join", []byte(`{"name":"ana"}`))
	if err != nil || !strings.Contains(string(out), "hello ana") {
		t.Fatalf("after a panic: %q, %v", out, err)
	}
}

func TestBeforePipeline(t *testing.T) {
	errStop := codec.NewError("GAME-401", "not logged in", nil)
	tests := []struct {
		name     string
		before   []backend.BeforeHandler
		route    string
		data     string
		wantOut  string
		wantCode string
		wantMsg  string
	}{
		{
			name: "changes the argument",
			before: []backend.BeforeHandler{func(ctx context.Context, in any) (context.Context, any, error) {
				if j, ok := in.(*JoinReq); ok {
					j.Name = strings.ToUpper(j.Name)
				}
				return ctx, in, nil
			}},
			route: "room.join", data: `{"name":"ana"}`, wantOut: `{"greeting":"hello ANA","members":1}`,
		},
		{
			name: "replaces the argument",
			before: []backend.BeforeHandler{func(ctx context.Context, in any) (context.Context, any, error) {
				return ctx, &JoinReq{Name: "someone else"}, nil
			}},
			route: "room.join", data: `{"name":"ana"}`, wantOut: `{"greeting":"hello someone else","members":1}`,
		},
		{
			name: "steps run in order",
			before: []backend.BeforeHandler{
				func(ctx context.Context, in any) (context.Context, any, error) {
					in.(*JoinReq).Name += "1"
					return ctx, in, nil
				},
				func(ctx context.Context, in any) (context.Context, any, error) {
					in.(*JoinReq).Name += "2"
					return ctx, in, nil
				},
			},
			route: "room.join", data: `{"name":"ana"}`, wantOut: `{"greeting":"hello ana12","members":1}`,
		},
		{
			name: "replaces the context",
			before: []backend.BeforeHandler{func(ctx context.Context, in any) (context.Context, any, error) {
				return context.WithValue(ctx, ctxKey{}, "ana"), in, nil
			}},
			route: "room.whoami", wantOut: `"ana"`,
		},
		{
			name: "aborts with an application error",
			before: []backend.BeforeHandler{
				func(ctx context.Context, in any) (context.Context, any, error) { return ctx, in, errStop },
				func(ctx context.Context, in any) (context.Context, any, error) { panic("must not run") },
			},
			route: "room.join", data: `{"name":"ana"}`, wantCode: "GAME-401", wantMsg: "not logged in",
		},
		{
			name: "aborts with a plain error",
			before: []backend.BeforeHandler{func(ctx context.Context, in any) (context.Context, any, error) {
				return ctx, in, errors.New("quota exceeded")
			}},
			route: "room.count", wantCode: codec.CodeInternal, wantMsg: "quota exceeded",
		},
		{
			name: "returns a wrong type",
			before: []backend.BeforeHandler{func(ctx context.Context, in any) (context.Context, any, error) {
				return ctx, "not a *JoinReq", nil
			}},
			route: "room.join", data: `{"name":"ana"}`, wantCode: codec.CodeInternal, wantMsg: "pipeline returned string",
		},
		{
			name: "returns nil",
			before: []backend.BeforeHandler{func(ctx context.Context, in any) (context.Context, any, error) {
				return ctx, nil, nil
			}},
			route: "room.join", data: `{"name":"ana"}`, wantCode: codec.CodeInternal,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, room, _ := newRegistry(t, nil)
			for _, b := range tt.before {
				r.Before(b)
			}
			out, _, err := r.Handle(context.Background(), tt.route, []byte(tt.data))
			if tt.wantCode == "" {
				if err != nil || string(out) != tt.wantOut {
					t.Fatalf("Handle = %s, %v; want %s", out, err, tt.wantOut)
				}
				return
			}
			ce := codeOf(t, err)
			if ce.Code != tt.wantCode || !strings.Contains(ce.Message, tt.wantMsg) {
				t.Errorf("error %q %q, want %q with %q", ce.Code, ce.Message, tt.wantCode, tt.wantMsg)
			}
			if room.members != 0 {
				t.Error("the handler ran although the pipeline stopped the request")
			}
		})
	}
}

func TestAfterPipeline(t *testing.T) {
	errHidden := errors.New("hidden")
	tests := []struct {
		name     string
		after    []backend.AfterHandler
		route    string
		data     string
		wantOut  string
		wantCode string
		wantMsg  string
	}{
		{
			name: "sees the result",
			after: []backend.AfterHandler{func(ctx context.Context, out any, err error) (any, error) {
				res := out.(*JoinRes)
				res.Greeting += "!"
				return res, err
			}},
			route: "room.join", data: `{"name":"ana"}`, wantOut: `{"greeting":"hello ana!","members":1}`,
		},
		{
			name: "replaces the result",
			after: []backend.AfterHandler{func(ctx context.Context, out any, err error) (any, error) {
				return map[string]bool{"replaced": true}, err
			}},
			route: "room.join", data: `{"name":"ana"}`, wantOut: `{"replaced":true}`,
		},
		{
			name: "replaces success with an error",
			after: []backend.AfterHandler{func(ctx context.Context, out any, err error) (any, error) {
				return nil, codec.NewError("GAME-9", "maintenance", nil)
			}},
			route: "room.count", wantCode: "GAME-9", wantMsg: "maintenance",
		},
		{
			name: "replaces an error with a result",
			after: []backend.AfterHandler{func(ctx context.Context, out any, err error) (any, error) {
				if err != nil {
					return &JoinRes{Greeting: "recovered: " + err.Error()}, nil
				}
				return out, nil
			}},
			route: "faulty.plain", wantOut: `{"greeting":"recovered: db down","members":0}`,
		},
		{
			name: "replaces the error",
			after: []backend.AfterHandler{func(ctx context.Context, out any, err error) (any, error) {
				return out, fmt.Errorf("%w (was %v)", errHidden, err)
			}},
			route: "faulty.game", wantCode: codec.CodeInternal, wantMsg: "hidden (was GAME-1: msg",
		},
		{
			name: "steps run in order",
			after: []backend.AfterHandler{
				func(ctx context.Context, out any, err error) (any, error) { return out.(int) + 1, err },
				func(ctx context.Context, out any, err error) (any, error) { return out.(int) * 10, err },
			},
			route: "room.count", wantOut: `10`,
		},
		{
			name: "sees the context of the before pipeline",
			after: []backend.AfterHandler{func(ctx context.Context, out any, err error) (any, error) {
				return ctx.Value(ctxKey{}), err
			}},
			route: "room.count", wantOut: `"from before"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _, _ := newRegistry(t, nil)
			r.Before(func(ctx context.Context, in any) (context.Context, any, error) {
				return context.WithValue(ctx, ctxKey{}, "from before"), in, nil
			})
			for _, a := range tt.after {
				r.After(a)
			}
			out, _, err := r.Handle(context.Background(), tt.route, []byte(tt.data))
			if tt.wantCode == "" {
				if err != nil || string(out) != tt.wantOut {
					t.Fatalf("Handle = %s, %v; want %s", out, err, tt.wantOut)
				}
				return
			}
			ce := codeOf(t, err)
			if ce.Code != tt.wantCode || !strings.Contains(ce.Message, tt.wantMsg) {
				t.Errorf("error %q %q, want %q with %q", ce.Code, ce.Message, tt.wantCode, tt.wantMsg)
			}
		})
	}
}

// Echo is a protobuf component.
type Echo struct{}

func (Echo) Say(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	return wrapperspb.String("echo: " + in.GetValue()), nil
}

func (Echo) Raw(ctx context.Context, in []byte) ([]byte, error) { return in, nil }

func (Echo) Plain(ctx context.Context) (string, error) { return "not a proto message", nil }

func (Echo) Fail(ctx context.Context) (*wrapperspb.StringValue, error) {
	return nil, codec.NewError("GAME-3", "nope", map[string]string{"why": "test"})
}

func TestHandleProtobuf(t *testing.T) {
	r := backend.NewRegistry("chat", codec.Protobuf{}, slog.New(slog.DiscardHandler))
	if err := r.Register(Echo{}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	in, err := proto.Marshal(wrapperspb.String("hi"))
	if err != nil {
		t.Fatal(err)
	}
	out, notify, err := r.Handle(ctx, "chat.echo.say", in)
	if err != nil || notify {
		t.Fatalf("Handle = %v, notify %v", err, notify)
	}
	var res wrapperspb.StringValue
	if err := proto.Unmarshal(out, &res); err != nil {
		t.Fatal(err)
	}
	if res.GetValue() != "echo: hi" {
		t.Errorf("result %q", res.GetValue())
	}

	tests := []struct {
		name     string
		route    string
		data     []byte
		wantOut  []byte
		wantCode string
	}{
		{name: "empty message", route: "echo.say", wantOut: mustProto(t, wrapperspb.String("echo: "))},
		{name: "raw", route: "echo.raw", data: []byte{0xff, 0x00}, wantOut: []byte{0xff, 0x00}},
		{name: "bad bytes", route: "echo.say", data: []byte{0xff, 0xff, 0xff}, wantCode: codec.CodeBadRequest},
		{name: "result not a message", route: "echo.plain", wantCode: codec.CodeInternal},
		{name: "application error", route: "echo.fail", wantCode: "GAME-3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, err := r.Handle(ctx, tt.route, tt.data)
			if tt.wantCode != "" {
				if ce := codeOf(t, err); ce.Code != tt.wantCode {
					t.Errorf("code %s, want %s", ce.Code, tt.wantCode)
				}
				return
			}
			if err != nil || !bytes.Equal(out, tt.wantOut) {
				t.Errorf("Handle = %x, %v; want %x", out, err, tt.wantOut)
			}
		})
	}
}

func mustProto(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestHandleConcurrent runs many requests at once; run it with -race.
func TestHandleConcurrent(t *testing.T) {
	r, room, _ := newRegistry(t, nil)
	const workers, each = 8, 100
	start := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			<-start
			for i := range each {
				data := mustJSON(t, JoinReq{Name: fmt.Sprint(w, "-", i)})
				out, _, err := r.Handle(context.Background(), "room.join", data)
				if err != nil || !strings.Contains(string(out), fmt.Sprintf(`"hello %d-%d"`, w, i)) {
					t.Errorf("join: %s, %v", out, err)
					return
				}
				if i%25 == 0 {
					if _, _, err := r.Handle(context.Background(), "faulty.panic", nil); err == nil {
						t.Error("panic not reported")
					}
				}
				_ = r.Has("chat.room.join")
			}
		})
	}
	close(start)
	wg.Wait()
	if room.members != workers*each {
		t.Errorf("members = %d, want %d", room.members, workers*each)
	}
}

func BenchmarkHandleRoute(b *testing.B) {
	r := backend.NewRegistry("chat", codec.JSON{}, slog.New(slog.DiscardHandler))
	if err := r.Register(&Room{}); err != nil {
		b.Fatal(err)
	}
	data := mustJSON(b, JoinReq{Name: "ana"})
	rt, err := codec.ParseRoute("chat.room.join")
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := r.HandleRoute(ctx, rt, data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkHandle(b *testing.B) {
	r := backend.NewRegistry("chat", codec.JSON{}, slog.New(slog.DiscardHandler))
	if err := r.Register(&Room{}); err != nil {
		b.Fatal(err)
	}
	data := mustJSON(b, JoinReq{Name: "ana"})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := r.Handle(ctx, "chat.room.join", data); err != nil {
			b.Fatal(err)
		}
	}
}
