package nopal_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/nopal-dev/nopal"
	"github.com/nopal-dev/nopal/backend"
	"github.com/nopal-dev/nopal/backend/protos"
	"github.com/nopal-dev/nopal/client"
	"github.com/nopal-dev/nopal/codec"
	"github.com/nopal-dev/nopal/frontend"
	"github.com/nopal-dev/nopal/stream"
)

// DocsJoin and DocsMembers are JSON types of the documented handlers.
type DocsJoin struct {
	Name  string `json:"name"`
	Level int    `json:"level"`
}

type DocsMembers struct {
	Members []string `json:"members"`
	Private string   `json:"-"`
}

// docsGame is a component with protobuf handlers: a client that knows none
// of its types learns them from the docs and descriptors routes.
type docsGame struct{}

// Upper answers the value in upper case.
func (docsGame) Upper(_ context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	return wrapperspb.String(strings.ToUpper(in.GetValue())), nil
}

// Score answers the player's fields with a score added.
func (docsGame) Score(_ context.Context, in *structpb.Struct) (*structpb.Struct, error) {
	out := proto.Clone(in).(*structpb.Struct)
	if out.Fields == nil {
		out.Fields = map[string]*structpb.Value{}
	}
	out.Fields["score"] = structpb.NewNumberValue(float64(10 * len(in.GetFields()["player"].GetStringValue())))
	return out, nil
}

// docsLobby has JSON handlers.
type docsLobby struct{}

func (docsLobby) Join(context.Context, *DocsJoin) (*DocsMembers, error) { return &DocsMembers{}, nil }
func (docsLobby) Leave(context.Context)                                 {}

// docsClash would serve sys.docs, which the built-in routes hold.
type docsClash struct{}

func (docsClash) Docs(context.Context) (*DocsJoin, error) { return nil, nil }

// docsRemote has a protobuf and a JSON remote.
type docsRemote struct{}

func (docsRemote) Add(_ context.Context, in *wrapperspb.Int64Value) (*wrapperspb.Int64Value, error) {
	return wrapperspb.Int64(in.GetValue() + 1), nil
}

func (docsRemote) Note(_ context.Context, in *DocsJoin) (*DocsJoin, error) { return in, nil }

func TestDocumentation(t *testing.T) {
	app, err := nopal.New(nopal.Config{ServerType: "lobby", Logger: clusterLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Register(docsLobby{}, backend.WithName("lobby")); err != nil {
		t.Fatal(err)
	}
	if err := app.Register(docsGame{}, backend.WithName("game")); err != nil {
		t.Fatal(err)
	}
	if err := app.RegisterRemote(docsRemote{}, backend.WithName("remote")); err != nil {
		t.Fatal(err)
	}
	// sys.docs and sys.descriptors are taken by the built-in routes,
	// which Routes leaves out.
	if err := app.Register(docsClash{}, backend.WithName("sys")); !errors.Is(err, backend.ErrDuplicateName) {
		t.Errorf("a second sys.docs: %v, want ErrDuplicateName", err)
	}
	if got, want := app.Routes(), []string{"game.score", "game.upper", "lobby.join", "lobby.leave"}; !slices.Equal(got, want) {
		t.Errorf("Routes() = %v, want %v", got, want)
	}

	docs, err := app.Documentation(false)
	if err != nil {
		t.Fatal(err)
	}
	str := map[string]any{"value": "string"}
	i64 := map[string]any{"value": "int64"}
	join := map[string]any{"name": "string", "level": "int"}
	want := map[string]any{
		"handlers": map[string]any{
			"lobby.lobby.join":  map[string]any{"input": join, "output": []any{map[string]any{"members": []any{"string"}}, "error"}},
			"lobby.lobby.leave": map[string]any{"input": nil, "output": []any{}},
			"lobby.game.upper":  map[string]any{"input": str, "output": []any{str, "error"}},
			"lobby.game.score": map[string]any{
				"input":  map[string]any{"fields": "map[string]*structpb.Value"},
				"output": []any{map[string]any{"fields": "map[string]*structpb.Value"}, "error"},
			},
			"lobby.sys.docs": map[string]any{"input": nil, "output": []any{map[string]any{"doc": "string"}, "error"}},
			"lobby.sys.descriptors": map[string]any{
				"input":  map[string]any{"name": []any{"string"}},
				"output": []any{map[string]any{"desc": []any{"[]byte"}}, "error"},
			},
		},
		"remotes": map[string]any{
			"lobby.remote.add":  map[string]any{"input": i64, "output": []any{i64, "error"}},
			"lobby.remote.note": map[string]any{"input": join, "output": []any{map[string]any{"name": "string", "level": "int"}, "error"}},
			"lobby.sys.docs":    map[string]any{"input": nil, "output": []any{map[string]any{"doc": "string"}, "error"}},
			"lobby.sys.descriptors": map[string]any{
				"input":  map[string]any{"name": []any{"string"}},
				"output": []any{map[string]any{"desc": []any{"[]byte"}}, "error"},
			},
		},
	}
	if got := jsonRoundTrip(t, docs); !reflect.DeepEqual(got, want) {
		b, _ := json.MarshalIndent(docs, "", "  ")
		t.Errorf("Documentation(false):\n%s", b)
	}

	// With type names, as Pitaya's clients ask: protobuf messages under
	// their full names, JSON structs under their Go types.
	docs, err = app.Documentation(true)
	if err != nil {
		t.Fatal(err)
	}
	named := func(n string, f any) map[string]any { return map[string]any{n: f} }
	h := jsonRoundTrip(t, docs).(map[string]any)["handlers"].(map[string]any)
	r := jsonRoundTrip(t, docs).(map[string]any)["remotes"].(map[string]any)
	for _, c := range []struct {
		what string
		got  any
		want map[string]any
	}{
		{"lobby.join", h["lobby.lobby.join"], map[string]any{
			"input":  named("*nopal_test.DocsJoin", join),
			"output": []any{named("*nopal_test.DocsMembers", map[string]any{"members": []any{"string"}}), "error"},
		}},
		{"game.upper", h["lobby.game.upper"], map[string]any{
			"input":  named("*google.protobuf.StringValue", str),
			"output": []any{named("*google.protobuf.StringValue", str), "error"},
		}},
		{"sys.descriptors", h["lobby.sys.descriptors"], map[string]any{
			"input":  named("*protos.ProtoNames", map[string]any{"name": []any{"string"}}),
			"output": []any{named("*protos.ProtoDescriptors", map[string]any{"desc": []any{"[]byte"}}), "error"},
		}},
		{"sys.docs", h["lobby.sys.docs"], map[string]any{
			"input":  nil,
			"output": []any{named("*protos.Doc", map[string]any{"doc": "string"}), "error"},
		}},
		{"remote.add", r["lobby.remote.add"], map[string]any{
			"input":  named("*google.protobuf.Int64Value", i64),
			"output": []any{named("*google.protobuf.Int64Value", i64), "error"},
		}},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("Documentation(true) of %s = %v, want %v", c.what, c.got, c.want)
		}
	}

	b, err := nopal.Descriptor("protos.ProtoDescriptors")
	if err != nil {
		t.Fatal(err)
	}
	if fd := gunzipFile(t, b); fd.GetPackage() != "protos" {
		t.Errorf("ProtoDescriptors's file is in package %q", fd.GetPackage())
	}
}

func jsonRoundTrip(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func gunzipFile(t *testing.T, b []byte) *descriptorpb.FileDescriptorProto {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	var fd descriptorpb.FileDescriptorProto
	if err := proto.Unmarshal(raw, &fd); err != nil {
		t.Fatal(err)
	}
	return &fd
}

// protoCommands is what a protobuf client learns at connect: each route's
// input and output message types, built from the server's descriptors.
type protoCommands struct {
	descriptorsRoute string
	names            []string // asked for, in order
	in, out          map[string]protoreflect.MessageDescriptor
}

// discover does what Pitaya's ProtoClient does when it connects: it asks
// docsRoute for the documentation, reads the input and output type names
// of every route (the keys naming a "proto" type, without their '*'),
// finds the descriptors route by its types, asks it for every type name in
// the documentation, and builds the message types from the gzipped file
// descriptors it answers (here with protodesc and dynamicpb).
func discover(ctx context.Context, t *testing.T, c *client.Client, docsRoute string) *protoCommands {
	t.Helper()
	raw, err := c.RequestRaw(ctx, docsRoute, nil)
	if err != nil {
		t.Fatalf("%s: %v", docsRoute, err)
	}
	var doc protos.Doc
	if err := proto.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("%s answered no protos.Doc: %v", docsRoute, err)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(doc.Doc), &m); err != nil {
		t.Fatalf("the documentation is not JSON: %v", err)
	}
	keys := map[string]bool{}
	ptrKeys(m, keys)
	type names struct{ in, out string }
	cmds := map[string]names{}
	pc := &protoCommands{in: map[string]protoreflect.MessageDescriptor{}, out: map[string]protoreflect.MessageDescriptor{}}
	for _, section := range []string{"handlers", "remotes"} {
		routes, ok := m[section].(map[string]any)
		if !ok {
			t.Fatalf("the documentation has no %q", section)
		}
		for route, v := range routes {
			in, out := ioNames(v.(map[string]any))
			cmds[route] = names{in, out}
			if section == "handlers" && in == "protos.ProtoNames" && out == "protos.ProtoDescriptors" {
				pc.descriptorsRoute = route
			}
		}
	}
	if pc.descriptorsRoute == "" {
		t.Fatal("no route takes protos.ProtoNames and answers protos.ProtoDescriptors")
	}
	for k := range keys {
		pc.names = append(pc.names, k)
	}
	sort.Strings(pc.names)
	req, err := proto.Marshal(&protos.ProtoNames{Name: pc.names})
	if err != nil {
		t.Fatal(err)
	}
	raw, err = c.RequestRaw(ctx, pc.descriptorsRoute, req)
	if err != nil {
		t.Fatalf("%s: %v", pc.descriptorsRoute, err)
	}
	var descs protos.ProtoDescriptors
	if err := proto.Unmarshal(raw, &descs); err != nil {
		t.Fatal(err)
	}
	if len(descs.Desc) != len(pc.names) {
		t.Fatalf("%d descriptors for %d names: Pitaya's client pairs them by position", len(descs.Desc), len(pc.names))
	}
	set := &descriptorpb.FileDescriptorSet{}
	seen := map[string]bool{}
	for _, d := range descs.Desc {
		fd := gunzipFile(t, d)
		if !seen[fd.GetName()] { // one file per message asked for: keep each once
			seen[fd.GetName()] = true
			set.File = append(set.File, fd)
		}
	}
	files, err := protodesc.NewFiles(set)
	if err != nil {
		t.Fatalf("building the files: %v", err)
	}
	find := func(name string) protoreflect.MessageDescriptor {
		if name == "" {
			return nil
		}
		d, err := files.FindDescriptorByName(protoreflect.FullName(name))
		if err != nil {
			return nil
		}
		md, _ := d.(protoreflect.MessageDescriptor)
		return md
	}
	for route, n := range cmds {
		if md := find(n.in); md != nil {
			pc.in[route] = md
		}
		if md := find(n.out); md != nil {
			pc.out[route] = md
		}
	}
	return pc
}

// ptrKeys collects the type names of the documentation: the keys with a
// '*', without it.
func ptrKeys(v any, into map[string]bool) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if strings.Contains(k, "*") {
				into[strings.Replace(k, "*", "", 1)] = true
			}
			ptrKeys(e, into)
		}
	case []any:
		for _, e := range v {
			ptrKeys(e, into)
		}
	}
}

// ioNames reads a route's input and output message names as Pitaya's client
// does: the key of the input map, and of the first output's, that names a
// "proto" type.
func ioNames(d map[string]any) (in, out string) {
	pick := func(v any) string {
		m, _ := v.(map[string]any)
		for k := range m {
			if strings.Contains(k, "proto") {
				return strings.Replace(k, "*", "", 1)
			}
		}
		return ""
	}
	in = pick(d["input"])
	if outs, _ := d["output"].([]any); len(outs) > 0 {
		out = pick(outs[0])
	}
	return in, out
}

// call sends a request built from JSON with the learned input type and
// answers the response as JSON, as the REPL's protobuf mode does.
func (pc *protoCommands) call(ctx context.Context, t *testing.T, c *client.Client, route, in string) map[string]any {
	t.Helper()
	inMD, outMD := pc.in[route], pc.out[route]
	if inMD == nil || outMD == nil {
		t.Fatalf("%s: no message types learned (in %v, out %v)", route, inMD, outMD)
	}
	msg := dynamicpb.NewMessage(inMD)
	if err := protojson.Unmarshal([]byte(in), msg); err != nil {
		t.Fatalf("%s: %s as %s: %v", route, in, inMD.FullName(), err)
	}
	data, err := proto.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := c.RequestRaw(ctx, route, data)
	if err != nil {
		t.Fatalf("%s: %v", route, err)
	}
	res := dynamicpb.NewMessage(outMD)
	if err := proto.Unmarshal(raw, res); err != nil {
		t.Fatalf("%s: the answer is no %s: %v", route, outMD.FullName(), err)
	}
	js, err := protojson.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(js, &out); err != nil {
		// A wrapper type's JSON is its bare value.
		var v any
		if json.Unmarshal(js, &v) != nil {
			t.Fatalf("%s: %s", route, js)
		}
		return map[string]any{"": v}
	}
	return out
}

// A protobuf client that knows none of the server's types learns them at
// connect from the docs and descriptors routes, then calls protobuf
// handlers with messages built from them: standalone, then in a cluster
// where both routes are forwarded over NATS to a backend.
func TestProtobufDiscovery(t *testing.T) {
	t.Run("standalone", func(t *testing.T) {
		ctx := testCtx(t)
		app, err := nopal.New(nopal.Config{ServerType: "game", Serializer: codec.Protobuf{}, Logger: clusterLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		if err := app.Register(docsGame{}, backend.WithName("game")); err != nil {
			t.Fatal(err)
		}
		if err := app.RegisterRemote(docsRemote{}, backend.WithName("remote")); err != nil {
			t.Fatal(err)
		}
		tcp := frontend.NewTCPAcceptor("127.0.0.1:0")
		app.AddAcceptor(tcp)
		if err := app.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = app.Shutdown(context.Background()) })
		c, err := client.Dial(ctx, tcp.Addr().String(), client.WithSerializer(codec.Protobuf{}))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if got := c.Handshake().Sys.Serializer; got != "protos" {
			t.Fatalf("the handshake announces %q", got)
		}
		pc := discover(ctx, t, c, "game."+nopal.DocsRoute)
		if pc.descriptorsRoute != "game."+nopal.DescriptorsRoute {
			t.Errorf("descriptors route %q", pc.descriptorsRoute)
		}
		// Every type name of the documentation was asked for, JSON
		// remotes' included (they get empty files).
		for _, n := range []string{"protos.ProtoNames", "protos.ProtoDescriptors", "protos.Doc",
			"google.protobuf.StringValue", "google.protobuf.Struct", "google.protobuf.Int64Value", "nopal_test.DocsJoin"} {
			if !slices.Contains(pc.names, n) {
				t.Errorf("%s not among the names asked for: %v", n, pc.names)
			}
		}
		if got := pc.call(ctx, t, c, "game.game.upper", `"hello"`); got[""] != "HELLO" {
			t.Errorf("game.upper = %v", got)
		}
		got := pc.call(ctx, t, c, "game.game.score", `{"player":"ana","level":3}`)
		if want := map[string]any{"player": "ana", "level": 3.0, "score": 30.0}; !reflect.DeepEqual(got, want) {
			t.Errorf("game.score = %v, want %v", got, want)
		}
		// The remote's types are learned too (RPC tools use them).
		if md := pc.in["game.remote.add"]; md == nil || md.FullName() != "google.protobuf.Int64Value" {
			t.Errorf("remote.add's input: %v", md)
		}
		if pc.in["game.remote.note"] != nil {
			t.Error("a JSON remote got a message type")
		}
		// The docs route without the server type.
		if _, err := c.RequestRaw(ctx, nopal.DocsRoute, nil); err != nil {
			t.Errorf("%s: %v", nopal.DocsRoute, err)
		}
	})

	t.Run("cluster", func(t *testing.T) {
		ctx := testCtx(t)
		tc := newTestCluster(t, clusterOpts{})
		start := func(svType, id string, setup func(*nopal.App)) *nopal.App {
			app, err := nopal.New(nopal.Config{
				ServerType: svType, ServerID: id, Serializer: codec.Protobuf{}, Logger: tc.log,
				Cluster: tc.clusterConfig(stream.Config{URL: tc.infra.Bus().ClientURL()}),
			})
			if err != nil {
				t.Fatal(err)
			}
			setup(app)
			if err := app.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			tc.mu.Lock()
			tc.nodes = append(tc.nodes, &testNode{app: app})
			tc.mu.Unlock()
			return app
		}
		start("room", "room-docs", func(app *nopal.App) {
			if err := app.Register(docsGame{}, backend.WithName("game")); err != nil {
				t.Fatal(err)
			}
		})
		tcp := frontend.NewTCPAcceptor("127.0.0.1:0")
		conn := start("connector", "connector-docs", func(app *nopal.App) { app.AddAcceptor(tcp) })
		awaitServers(t, "room", []string{"room-docs"}, conn)

		c, err := client.Dial(ctx, tcp.Addr().String(), client.WithSerializer(codec.Protobuf{}))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// The connector has no handlers of its own: the room's docs and
		// descriptors are forwarded to the room server.
		pc := discover(ctx, t, c, "room."+nopal.DocsRoute)
		if pc.descriptorsRoute != "room."+nopal.DescriptorsRoute {
			t.Errorf("descriptors route %q", pc.descriptorsRoute)
		}
		if got := pc.call(ctx, t, c, "room.game.upper", `"over the bus"`); got[""] != "OVER THE BUS" {
			t.Errorf("room.game.upper = %v", got)
		}
		got := pc.call(ctx, t, c, "room.game.score", `{"player":"bob"}`)
		if want := map[string]any{"player": "bob", "score": 30.0}; !reflect.DeepEqual(got, want) {
			t.Errorf("room.game.score = %v, want %v", got, want)
		}
		// And the connector's own docs list only the built-in routes.
		own := discover(ctx, t, c, "connector."+nopal.DocsRoute)
		if _, ok := own.in["room.game.upper"]; ok {
			t.Error("the connector documents the room's routes")
		}
		// Servers ask each other over RPC: the docs are a remote too.
		var doc protos.Doc
		if err := conn.RPC(ctx, "room."+nopal.DocsRoute, nil, &doc); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(doc.Doc, `"room.game.upper"`) {
			t.Errorf("the room's docs over RPC: %s", doc.Doc)
		}
	})
}
