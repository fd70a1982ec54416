package backend

import (
	"reflect"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
)

// Docs documents the registry's routes in the shape of Pitaya's
// documentation, so the tools that read Pitaya's (its protobuf client, the
// REPL, pitaya-admin) read Nopal's: a map from each route, with the server
// type ("room.room.join"), to
//
//	{"input": <the argument>, "output": [<the result>, "error"]}
//
// The argument is null for a handler without one; "output" lists the
// method's return values ([] for a notify handler). A struct is a map of its
// fields by their JSON names (a field without a json tag keeps its Go name
// in outputs and has its first letter lowered in inputs, as in Pitaya;
// unexported fields, "XXX_" fields and `json:"-"` are left out), a slice a
// one-element list of its element, []byte "[]byte", time.Time "time.Time",
// and anything else its Go type ("string", "int32", "map[string]int").
//
// With getPtrNames, every struct is wrapped in a one-key map naming its type:
// {"*room.JoinReq": {...}} for a pointer, as Pitaya's clients expect. A
// pointer to a protobuf message is named after its message's full name
// ("*protos.ProtoNames", "*google.protobuf.StringValue"), the name
// Descriptor resolves, which is the Go type's when the Go package and the
// protobuf package share their name (Pitaya's convention). A type met again
// inside itself is given by its name alone.
//
// The built-in routes (Builtin) are documented too: Pitaya's protobuf client
// finds the descriptors route in this list.
func (r *Registry) Docs(getPtrNames bool) map[string]any {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make(map[string]any, len(r.handlers))
	for rt, h := range r.handlers {
		out[r.serverType+"."+rt.Short()] = h.doc(getPtrNames)
	}
	return out
}

// doc documents one handler.
func (h *handler) doc(ptrNames bool) map[string]any {
	t := h.method.Type() // a method value: In(0) is the context
	w := docWalker{ptrNames: ptrNames, path: map[reflect.Type]bool{}}
	var in any
	if t.NumIn() > 1 {
		in = w.typ(t.In(1), false)
	}
	outs := make([]any, 0, t.NumOut()) // [] in JSON, never null
	for i := range t.NumOut() {
		outs = append(outs, w.typ(t.Out(i), true))
	}
	return map[string]any{"input": in, "output": outs}
}

var docTimeType = reflect.TypeFor[time.Time]()

// docWalker describes types for Docs.
type docWalker struct {
	ptrNames bool
	// path holds the struct types being described, so a type met again
	// inside itself ends the walk instead of recursing forever.
	path map[reflect.Type]bool
}

// typ describes an argument, a result or a field's type.
func (w *docWalker) typ(t reflect.Type, output bool) any {
	switch t.Kind() {
	case reflect.Pointer:
		if e := t.Elem(); e.Kind() == reflect.Struct && e != docTimeType {
			return w.fields(t, e, output)
		}
	case reflect.Struct:
		if t != docTimeType {
			return w.fields(t, t, output)
		}
	case reflect.Slice:
		e := w.typ(t.Elem(), output)
		if e == "uint8" {
			return "[]byte"
		}
		return []any{e}
	}
	return t.String()
}

// fields describes the struct st, reached through the type named (st or a
// pointer to it).
func (w *docWalker) fields(named, st reflect.Type, output bool) any {
	if w.path[st] {
		return docTypeName(named)
	}
	w.path[st] = true
	defer delete(w.path, st)
	m := map[string]any{}
	for i := range st.NumField() {
		f := st.Field(i)
		if name, ok := docFieldName(f, output); ok {
			m[name] = w.typ(f.Type, output)
		}
	}
	if w.ptrNames {
		return map[string]any{docTypeName(named): m}
	}
	return m
}

// docFieldName is the name a field is documented under, and whether it is
// documented at all.
func docFieldName(f reflect.StructField, output bool) (string, bool) {
	if !f.IsExported() || strings.HasPrefix(f.Name, "XXX_") {
		return "", false
	}
	tag, ok := f.Tag.Lookup("json")
	if tag == "-" {
		return "", false
	}
	if name, _, _ := strings.Cut(tag, ","); ok && name != "" {
		return name, true
	}
	if output {
		return f.Name, true
	}
	return lowerFirst(f.Name), true
}

// docTypeName names a type in the documentation: a pointer to a protobuf
// message by its message's full name, anything else by its Go type.
func docTypeName(t reflect.Type) string {
	if t.Kind() == reflect.Pointer {
		if name := protoName(t); name != "" {
			return "*" + name
		}
	}
	return t.String()
}

// protoName is the full name of the protobuf message t points to, or ""
// when t is not a protobuf message (or a message that cannot say).
func protoName(t reflect.Type) (name string) {
	if !t.Implements(reflect.TypeFor[proto.Message]()) {
		return ""
	}
	defer func() {
		if recover() != nil {
			name = ""
		}
	}()
	m := reflect.New(t.Elem()).Interface().(proto.Message)
	return string(m.ProtoReflect().Descriptor().FullName())
}
