package nopal

import (
	"fmt"

	"github.com/nopal-dev/nopal/backend"
)

// The built-in routes every server serves, to clients (prefixed with the
// server's type, "room.sys.docs", or not) and to RPC: a protobuf client
// learns the server's message types from them when it connects, as Pitaya's
// protobuf client does (pitaya-cli -docs room.sys.docs). See backend.Sys.
const (
	// DocsRoute answers Documentation(true) as JSON in a protos.Doc.
	DocsRoute = backend.SysComponent + ".docs"
	// DescriptorsRoute takes a protos.ProtoNames and answers a
	// protos.ProtoDescriptors: the gzipped FileDescriptorProto of each
	// named message's file. Pitaya's client finds it in the documentation.
	DescriptorsRoute = backend.SysComponent + ".descriptors"
)

// Documentation returns the documentation of the server's handlers and
// remotes, as Pitaya's Documentation does:
//
//	{"handlers": {"room.room.join": {"input": {...}, "output": [{...}, "error"]}, ...},
//	 "remotes":  {...}}
//
// getPtrNames names the struct types ({"*room.JoinReq": {...}}), protobuf
// messages by their full names; see backend.Registry.Docs for the layout.
// The built-in routes (DocsRoute, DescriptorsRoute) are listed in both.
func (a *App) Documentation(getPtrNames bool) (map[string]any, error) {
	return map[string]any{
		"handlers": a.registry.Docs(getPtrNames),
		"remotes":  a.remotes.Docs(getPtrNames),
	}, nil
}

// Descriptor returns the gzipped FileDescriptorProto of the .proto file that
// defines the protobuf type protoName (a full name, as Documentation gives
// it without the '*', or a file's path), as Pitaya's Descriptor does.
func Descriptor(protoName string) ([]byte, error) { return backend.Descriptor(protoName) }

// registerSys registers the built-in routes in the handlers and the remotes
// (no component of the app may serve sys.docs or sys.descriptors).
func (a *App) registerSys() error {
	sys := backend.NewSys(a.Documentation)
	for _, r := range []*backend.Registry{a.registry, a.remotes} {
		if err := r.Register(sys, backend.WithName(backend.SysComponent), backend.Builtin()); err != nil {
			return fmt.Errorf("nopal: built-in routes: %w", err)
		}
	}
	return nil
}
