package backend_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/nopal-dev/nopal/backend"
	"github.com/nopal-dev/nopal/backend/protos"
	"github.com/nopal-dev/nopal/codec"
)

// DocStruct has a field of every kind the documentation treats apart
// (Pitaya's docgenerator test, plus what it could not describe).
type DocStruct struct {
	Str             string
	privateInt      int
	Int             int       `json:"int"`
	Time            time.Time `json:"time"`
	NotOnJSONString string    `json:"-"`
	Bytes           []byte    `json:"bytes"`
	Struct          *struct {
		Int        int `json:"int"`
		NotPointer struct {
			Str string `json:"str"`
			Int int
		} `json:"notPointer"`
	} `json:"struct"`
	Slice []*struct {
		Int int `json:"int"`
		Str string
	} `json:"slice"`
	NotPointer struct {
		Str string `json:"str"`
		Int int
	} `json:"notPointer"`
	// Beyond Pitaya's test: a pointer to a non-struct, a *time.Time, a map,
	// a tag with options only and an XXX_ field.
	IntPtr   *int           `json:"intPtr"`
	When     *time.Time     `json:"when"`
	Counts   map[string]int `json:"counts"`
	Optional string         `json:",omitempty"`
	XXX_Skip int
}

// DocNode refers to itself: its documentation must end.
type DocNode struct {
	Name     string     `json:"name"`
	Children []*DocNode `json:"children"`
}

type DocComp struct{}

func (DocComp) Empty(context.Context)                       {}
func (DocComp) Raw(context.Context, []byte) ([]byte, error) { return nil, nil }
func (DocComp) Struct(_ context.Context, s *DocStruct) (*DocStruct, error) {
	s.privateInt = 0 // unexported: not documented
	return s, nil
}
func (DocComp) Tree(context.Context, *DocNode) (*DocNode, error) { return nil, nil }
func (DocComp) Upper(context.Context, *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	return nil, nil
}

// roundTrip gives v the types JSON decoding gives, as Pitaya's
// documentation has them.
func roundTrip(t *testing.T, v any) any {
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

func TestDocsLayout(t *testing.T) {
	r := backend.NewRegistry("metagame", nil, nil)
	if err := r.Register(DocComp{}, backend.WithName("comp")); err != nil {
		t.Fatal(err)
	}
	structIn := map[string]any{
		"str":   "string",
		"int":   "int",
		"time":  "time.Time",
		"bytes": "[]byte",
		"struct": map[string]any{
			"int":        "int",
			"notPointer": map[string]any{"str": "string", "int": "int"},
		},
		"slice":      []any{map[string]any{"int": "int", "str": "string"}},
		"notPointer": map[string]any{"str": "string", "int": "int"},
		"intPtr":     "*int",
		"when":       "*time.Time",
		"counts":     "map[string]int",
		"optional":   "string",
	}
	structOut := map[string]any{
		"Str":   "string",
		"int":   "int",
		"time":  "time.Time",
		"bytes": "[]byte",
		"struct": map[string]any{
			"int":        "int",
			"notPointer": map[string]any{"str": "string", "Int": "int"},
		},
		"slice":      []any{map[string]any{"int": "int", "Str": "string"}},
		"notPointer": map[string]any{"str": "string", "Int": "int"},
		"intPtr":     "*int",
		"when":       "*time.Time",
		"counts":     "map[string]int",
		"Optional":   "string",
	}
	want := map[string]any{
		"metagame.comp.empty": map[string]any{"input": nil, "output": []any{}},
		"metagame.comp.raw":   map[string]any{"input": "[]byte", "output": []any{"[]byte", "error"}},
		"metagame.comp.struct": map[string]any{
			"input":  structIn,
			"output": []any{structOut, "error"},
		},
		"metagame.comp.tree": map[string]any{
			"input":  map[string]any{"name": "string", "children": []any{"*backend_test.DocNode"}},
			"output": []any{map[string]any{"name": "string", "children": []any{"*backend_test.DocNode"}}, "error"},
		},
		"metagame.comp.upper": map[string]any{
			"input":  map[string]any{"value": "string"},
			"output": []any{map[string]any{"value": "string"}, "error"},
		},
	}
	got := r.Docs(false)
	if !reflect.DeepEqual(roundTrip(t, got), want) {
		g, _ := json.MarshalIndent(got, "", " ")
		t.Errorf("Docs(false):\n%s", g)
	}

	// With type names: every struct is wrapped in its name, protobuf
	// messages under their full names.
	named := func(name string, fields any) map[string]any { return map[string]any{name: fields} }
	got = r.Docs(true)
	rt := roundTrip(t, got).(map[string]any)
	if d := rt["metagame.comp.upper"]; !reflect.DeepEqual(d, map[string]any{
		"input":  named("*google.protobuf.StringValue", map[string]any{"value": "string"}),
		"output": []any{named("*google.protobuf.StringValue", map[string]any{"value": "string"}), "error"},
	}) {
		t.Errorf("upper with names: %v", d)
	}
	if d := rt["metagame.comp.tree"]; !reflect.DeepEqual(d, map[string]any{
		"input": named("*backend_test.DocNode", map[string]any{
			"name": "string", "children": []any{"*backend_test.DocNode"},
		}),
		"output": []any{named("*backend_test.DocNode", map[string]any{
			"name": "string", "children": []any{"*backend_test.DocNode"},
		}), "error"},
	}) {
		t.Errorf("tree with names: %v", d)
	}
	in := rt["metagame.comp.struct"].(map[string]any)["input"].(map[string]any)
	fields, ok := in["*backend_test.DocStruct"].(map[string]any)
	if !ok || len(in) != 1 {
		t.Fatalf("struct input with names: %v", in)
	}
	// A struct value is named by its type, without '*'.
	np, _ := fields["notPointer"].(map[string]any)
	if len(np) != 1 || np[`struct { Str string "json:\"str\""; Int int }`] == nil {
		t.Errorf("notPointer with names: %v", fields["notPointer"])
	}
	if fields["time"] != "time.Time" || fields["bytes"] != "[]byte" {
		t.Errorf("time and bytes with names: %v %v", fields["time"], fields["bytes"])
	}
	if d := rt["metagame.comp.empty"]; !reflect.DeepEqual(d, map[string]any{"input": nil, "output": []any{}}) {
		t.Errorf("empty with names: %v", d)
	}
}

type docSys struct{}

func (docSys) Ping(context.Context) (*wrapperspb.StringValue, error) {
	return wrapperspb.String("pong"), nil
}

func TestBuiltinRoutesServedNotListed(t *testing.T) {
	r := backend.NewRegistry("room", codec.Protobuf{}, nil)
	if err := r.Register(docSys{}, backend.WithName("sys"), backend.Builtin()); err != nil {
		t.Fatal(err)
	}
	if err := r.Register(DocComp{}, backend.WithName("comp")); err != nil {
		t.Fatal(err)
	}
	if got := r.Routes(); slices.Contains(got, "sys.ping") || !slices.Contains(got, "comp.upper") {
		t.Errorf("Routes() = %v: want comp's routes and not the built-in sys.ping", got)
	}
	if !r.Has("room.sys.ping") {
		t.Error("the built-in route is not served")
	}
	if _, ok := r.Docs(false)["room.sys.ping"]; !ok {
		t.Error("the built-in route is not documented")
	}
	out, _, err := r.Handle(context.Background(), "sys.ping", nil)
	if err != nil {
		t.Fatal(err)
	}
	var pong wrapperspb.StringValue
	if err := proto.Unmarshal(out, &pong); err != nil || pong.Value != "pong" {
		t.Errorf("sys.ping = %v, %v", pong.Value, err)
	}
	if err := r.Register(docSys{}, backend.WithName("sys")); !errors.Is(err, backend.ErrDuplicateName) {
		t.Errorf("a second sys component: %v, want ErrDuplicateName", err)
	}
}

// unpack reads a gzipped FileDescriptorProto.
func unpack(t *testing.T, b []byte) *descriptorpb.FileDescriptorProto {
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

func TestSysDescriptors(t *testing.T) {
	sys := backend.NewSys(func(bool) (map[string]any, error) { return nil, nil })
	names := []string{
		"protos.ProtoNames",
		"google.protobuf.StringValue",
		"nowhere.Missing",
		"google/protobuf/wrappers.proto",
		"protos.Doc",
	}
	res, err := sys.Descriptors(context.Background(), &protos.ProtoNames{Name: names})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Desc) != len(names) {
		t.Fatalf("%d descriptors for %d names", len(res.Desc), len(names))
	}
	wantFiles := []string{
		"backend/protos/docs.proto",
		"google/protobuf/wrappers.proto",
		"nopal/unknown/nowhere.Missing.proto",
		"google/protobuf/wrappers.proto",
		"backend/protos/docs.proto",
	}
	for i, b := range res.Desc {
		fd := unpack(t, b)
		if fd.GetName() != wantFiles[i] {
			t.Errorf("descriptor %d (%s) is of %q, want %q", i, names[i], fd.GetName(), wantFiles[i])
		}
	}
	// Pitaya's wire shape: package protos, its message names.
	fd := unpack(t, res.Desc[0])
	var msgs []string
	for _, m := range fd.MessageType {
		msgs = append(msgs, m.GetName())
	}
	if fd.GetPackage() != "protos" || !slices.Contains(msgs, "ProtoNames") || !slices.Contains(msgs, "ProtoDescriptors") || !slices.Contains(msgs, "Doc") {
		t.Errorf("docs.proto: package %q, messages %v", fd.GetPackage(), msgs)
	}
	if len(unpack(t, res.Desc[2]).MessageType) != 0 {
		t.Error("the placeholder of an unknown name has messages")
	}

	// The same answer through Handle, as a client gets it.
	r := backend.NewRegistry("room", codec.Protobuf{}, nil)
	if err := r.Register(sys, backend.WithName(backend.SysComponent), backend.Builtin()); err != nil {
		t.Fatal(err)
	}
	in, _ := proto.Marshal(&protos.ProtoNames{Name: names[:2]})
	out, _, err := r.Handle(context.Background(), "room.sys.descriptors", in)
	if err != nil {
		t.Fatal(err)
	}
	var pd protos.ProtoDescriptors
	if err := proto.Unmarshal(out, &pd); err != nil || len(pd.Desc) != 2 {
		t.Fatalf("descriptors over Handle: %d, %v", len(pd.Desc), err)
	}

	tooMany := make([]string, backend.MaxDescriptorNames+1)
	if _, err := sys.Descriptors(context.Background(), &protos.ProtoNames{Name: tooMany}); codeOfErr(err) != codec.CodeBadRequest {
		t.Errorf("too many names: %v, want %s", err, codec.CodeBadRequest)
	}
}

func codeOfErr(err error) string {
	var ce *codec.Error
	if errors.As(err, &ce) {
		return ce.Code
	}
	return ""
}

func TestDescriptor(t *testing.T) {
	b, err := backend.Descriptor("google.protobuf.StringValue")
	if err != nil {
		t.Fatal(err)
	}
	if fd := unpack(t, b); fd.GetName() != "google/protobuf/wrappers.proto" {
		t.Errorf("StringValue's file is %q", fd.GetName())
	}
	if _, err := backend.Descriptor("nowhere.Missing"); !errors.Is(err, backend.ErrUnknownProto) {
		t.Errorf("unknown name: %v, want ErrUnknownProto", err)
	}
	if _, err := backend.Descriptor("nowhere.proto"); !errors.Is(err, backend.ErrUnknownProto) {
		t.Errorf("unknown file: %v, want ErrUnknownProto", err)
	}
}

func TestSysDocs(t *testing.T) {
	var asked []bool
	sys := backend.NewSys(func(names bool) (map[string]any, error) {
		asked = append(asked, names)
		return map[string]any{"handlers": map[string]any{}, "remotes": map[string]any{}}, nil
	})
	doc, err := sys.Docs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if doc.Doc != `{"handlers":{},"remotes":{}}` || !slices.Equal(asked, []bool{true}) {
		t.Errorf("Docs = %q (asked %v)", doc.Doc, asked)
	}
	fail := backend.NewSys(func(bool) (map[string]any, error) { return nil, errors.New("boom") })
	if _, err := fail.Docs(context.Background()); err == nil {
		t.Error("no error from a failing documentation")
	}
}
