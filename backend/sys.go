package backend

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/nopal-dev/nopal/backend/protos"
	"github.com/nopal-dev/nopal/codec"
)

// Builtin registers a component as the framework's own: its routes are
// served and documented (Docs) like any other, but Routes leaves them out,
// so they take no place in the route dictionary or in route listings.
func Builtin() Option { return func(o *regOptions) { o.builtin = true } }

// SysComponent is the name of the built-in component every Nopal server
// registers (see Sys): its routes are "<svtype>.sys.docs" and
// "<svtype>.sys.descriptors".
const SysComponent = "sys"

// MaxDescriptorNames bounds the names one descriptors request may ask for.
const MaxDescriptorNames = 4096

// ErrUnknownProto is returned by Descriptor for a name that is neither a
// registered protobuf message, enum or service nor a registered .proto file.
var ErrUnknownProto = errors.New("backend: no protobuf type or file of that name")

// Sys is the component of the built-in routes a protobuf client uses to
// learn a server's message types when it connects, as Pitaya's protobuf
// client (client.ProtoClient, the REPL's protobuf mode) does:
//
//   - Docs ("sys.docs") answers the server's route documentation with type
//     names, JSON in a protos.Doc.
//   - Descriptors ("sys.descriptors") takes the names found in it, a
//     protos.ProtoNames, and answers a protos.ProtoDescriptors.
//
// Pitaya's client is given the docs route (pitaya-cli -docs
// room.sys.docs) and finds the descriptors route in the documentation by
// its types. Register one with WithName(SysComponent) and Builtin, in the
// handlers and the remotes of a server (nopal.New does).
type Sys struct {
	docs func(getPtrNames bool) (map[string]any, error)

	mu    sync.Mutex
	files map[string][]byte // gzipped descriptors by file path
}

// NewSys returns the built-in component; docs documents the server (an
// App's Documentation).
func NewSys(docs func(getPtrNames bool) (map[string]any, error)) *Sys {
	return &Sys{docs: docs, files: map[string][]byte{}}
}

// Docs answers the server's documentation with type names
// (Documentation(true)), as JSON in a protos.Doc. It takes no argument:
// Pitaya's clients send none.
func (s *Sys) Docs(context.Context) (*protos.Doc, error) {
	d, err := s.docs(true)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("backend: encode documentation: %w", err)
	}
	return &protos.Doc{Doc: string(b)}, nil
}

// Descriptors answers, for each name in the order given, the gzipped
// FileDescriptorProto of the file that defines it (see Descriptor): one
// entry per name, as Pitaya's client pairs them by position. Several names
// of one file get that file each time.
//
// A name with no protobuf type behind it (the documentation names JSON
// struct types too, "*room.JoinReq", and Pitaya's client asks for every
// name it finds) gets an empty file of its own, named
// "nopal/unknown/<name>.proto": it keeps the pairing, and the client finds
// no message in it. Pitaya's server fails the whole request instead, which
// leaves a protobuf client unable to start against a server that has one
// JSON remote. More than MaxDescriptorNames names answer PIT-400.
func (s *Sys) Descriptors(_ context.Context, in *protos.ProtoNames) (*protos.ProtoDescriptors, error) {
	names := in.GetName()
	if len(names) > MaxDescriptorNames {
		return nil, codec.NewError(codec.CodeBadRequest, fmt.Sprintf("nopal: %d protobuf names asked for, at most %d", len(names), MaxDescriptorNames), nil)
	}
	out := &protos.ProtoDescriptors{Desc: make([][]byte, len(names))}
	for i, name := range names {
		b, err := s.packed(name)
		if err != nil {
			return nil, err
		}
		out.Desc[i] = b
	}
	return out, nil
}

// packed is the gzipped descriptor of the file that defines name (cached
// by file path), or of a placeholder when there is none.
func (s *Sys) packed(name string) ([]byte, error) {
	fd, err := fileOf(name)
	if err != nil {
		return gzipProto(&descriptorpb.FileDescriptorProto{
			Name:   proto.String("nopal/unknown/" + name + ".proto"),
			Syntax: proto.String("proto3"),
		})
	}
	s.mu.Lock()
	b, ok := s.files[fd.Path()]
	s.mu.Unlock()
	if ok {
		return b, nil
	}
	if b, err = packFile(fd); err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.files[fd.Path()] = b
	s.mu.Unlock()
	return b, nil
}

// Descriptor returns the gzipped FileDescriptorProto of the .proto file that
// defines name, as Pitaya's Descriptor does: name is the full name of a
// protobuf message, enum or service registered in the program
// ("protos.ProtoNames", "google.protobuf.StringValue": the names Docs
// gives, without the '*'), or the path of a registered file ending in
// ".proto" ("google/protobuf/wrappers.proto"). The file's imports are not
// included: ask for them by path. Unknown names fail with ErrUnknownProto.
func Descriptor(name string) ([]byte, error) {
	fd, err := fileOf(name)
	if err != nil {
		return nil, err
	}
	return packFile(fd)
}

// fileOf finds the registered file that defines name (or is named name).
func fileOf(name string) (protoreflect.FileDescriptor, error) {
	if strings.HasSuffix(name, ".proto") {
		fd, err := protoregistry.GlobalFiles.FindFileByPath(name)
		if err != nil {
			return nil, fmt.Errorf("%w: %q", ErrUnknownProto, name)
		}
		return fd, nil
	}
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name))
	if err != nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownProto, name)
	}
	return d.ParentFile(), nil
}

func packFile(fd protoreflect.FileDescriptor) ([]byte, error) {
	return gzipProto(protodesc.ToFileDescriptorProto(fd))
}

func gzipProto(m proto.Message) ([]byte, error) {
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("backend: encode descriptor: %w", err)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(raw); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
