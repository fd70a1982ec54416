package codec_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/nopal-dev/nopal/codec"
)

func TestErrorIs(t *testing.T) {
	notFound := codec.NewError(codec.CodeNotFound, "no such route", nil)
	tests := []struct {
		name   string
		err    error
		target error
		want   bool
	}{
		{"same code", notFound, &codec.Error{Code: codec.CodeNotFound}, true},
		{"same code and message", notFound, &codec.Error{Code: codec.CodeNotFound, Message: "no such route"}, true},
		{"other message", notFound, &codec.Error{Code: codec.CodeNotFound, Message: "other"}, false},
		{"other code", notFound, &codec.Error{Code: codec.CodeInternal}, false},
		{"wrapped", fmt.Errorf("handler: %w", notFound), &codec.Error{Code: codec.CodeNotFound}, true},
		{"itself", notFound, notFound, true},
		{"plain target", notFound, io.EOF, false},
		{"wrap error cause", codec.WrapError(codec.CodeTimeout, io.ErrUnexpectedEOF), io.ErrUnexpectedEOF, true},
		{"wrap error code", codec.WrapError(codec.CodeTimeout, io.ErrUnexpectedEOF), &codec.Error{Code: codec.CodeTimeout}, true},
		{"plain error", io.EOF, &codec.Error{Code: codec.CodeInternal}, false},
		{"metadata ignored", codec.NewError(codec.CodeRateLimited, "x", map[string]string{"a": "b"}), &codec.Error{Code: codec.CodeRateLimited}, true},
	}
	for _, tt := range tests {
		if got := errors.Is(tt.err, tt.target); got != tt.want {
			t.Errorf("%s: errors.Is = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestAsError(t *testing.T) {
	notFound := codec.NewError(codec.CodeNotFound, "gone", nil)
	plain := errors.New("disk on fire")
	tests := []struct {
		name      string
		err       error
		same      *codec.Error // AsError returns this very value
		code, msg string
	}{
		{"an Error", notFound, notFound, codec.CodeNotFound, "gone"},
		{"wrapped Error", fmt.Errorf("ctx: %w", notFound), notFound, codec.CodeNotFound, "gone"},
		{"plain error", plain, nil, codec.CodeInternal, "disk on fire"},
		{"wrapped plain error", fmt.Errorf("ctx: %w", plain), nil, codec.CodeInternal, "ctx: disk on fire"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := codec.AsError(tt.err)
			if tt.same != nil && e != tt.same {
				t.Fatal("not the same *Error")
			}
			if e.Code != tt.code || e.Message != tt.msg {
				t.Fatalf("got %q %q, want %q %q", e.Code, e.Message, tt.code, tt.msg)
			}
			if tt.same == nil && !errors.Is(e, plain) {
				t.Fatal("a PIT-500 does not unwrap to its cause")
			}
		})
	}
}

func TestWrapError(t *testing.T) {
	e := codec.WrapError(codec.CodeBadRequest, io.ErrUnexpectedEOF)
	if e.Code != codec.CodeBadRequest || e.Message != io.ErrUnexpectedEOF.Error() {
		t.Fatalf("%#v", e)
	}
	if errors.Unwrap(e) != io.ErrUnexpectedEOF {
		t.Fatal("Unwrap")
	}
	if codec.NewError(codec.CodeUnknown, "x", nil).Unwrap() != nil {
		t.Fatal("NewError unwraps to something")
	}
	// The cause stays on the server.
	b, err := codec.EncodeError(codec.JSON{}, e)
	if err != nil || string(b) != `{"code":"PIT-400","msg":"unexpected EOF"}` {
		t.Fatalf("%s %v", b, err)
	}
}

func TestErrorString(t *testing.T) {
	tests := []struct {
		e    *codec.Error
		want string
	}{
		{codec.NewError(codec.CodeNotFound, "no route", nil), "PIT-404: no route"},
		{codec.NewError(codec.CodeRateLimited, "slow", map[string]string{}), "PIT-429: slow"},
		{codec.NewError(codec.CodeRateLimited, "slow", map[string]string{"b": "2", "a": "1"}), "PIT-429: slow map[a:1 b:2]"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("%q, want %q", got, tt.want)
		}
	}
}

func TestEncodeErrorBytes(t *testing.T) {
	tests := []struct {
		name string
		s    codec.Serializer
		e    *codec.Error
		want string
	}{
		{"json", codec.JSON{}, codec.NewError("PIT-404", "not found", nil), `{"code":"PIT-404","msg":"not found"}`},
		{"json empty metadata", codec.JSON{}, codec.NewError("PIT-404", "not found", map[string]string{}), `{"code":"PIT-404","msg":"not found"}`},
		{"json metadata", codec.JSON{}, codec.NewError("PIT-429", "slow", map[string]string{"z": "1", "a": "2"}),
			`{"code":"PIT-429","msg":"slow","metadata":{"a":"2","z":"1"}}`},
		{"nil serializer is json", nil, codec.NewError("PIT-500", "", nil), `{"code":"PIT-500","msg":""}`},
		{"protobuf", codec.Protobuf{}, codec.NewError("PIT-404", "not found", map[string]string{"a": "b"}),
			"\x0a\x07PIT-404\x12\x09not found\x1a\x06\x0a\x01a\x12\x01b"},
		{"protobuf sorted metadata", codec.Protobuf{}, codec.NewError("P", "m", map[string]string{"b": "2", "a": "1"}),
			"\x0a\x01P\x12\x01m\x1a\x06\x0a\x01a\x12\x011\x1a\x06\x0a\x01b\x12\x012"},
	}
	for _, tt := range tests {
		b, err := codec.EncodeError(tt.s, tt.e)
		if err != nil || string(b) != tt.want {
			t.Errorf("%s: %q %v, want %q", tt.name, b, err, tt.want)
		}
	}
}

func TestDecodeErrorFailures(t *testing.T) {
	entry := func(b []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, 3, protowire.BytesType), b)
	}
	tests := []struct {
		name string
		s    codec.Serializer
		data []byte
	}{
		{"json empty", codec.JSON{}, nil},
		{"json truncated", codec.JSON{}, []byte(`{"code":"PIT-404"`)},
		{"json code not a string", codec.JSON{}, []byte(`{"code":404}`)},
		{"json metadata not strings", codec.JSON{}, []byte(`{"metadata":{"a":1}}`)},
		{"proto truncated string", codec.Protobuf{}, []byte{0x0a, 0x05, 'a'}},
		{"proto bad tag", codec.Protobuf{}, []byte{0x80}},
		{"proto field 0", codec.Protobuf{}, []byte{0x02, 0x00}},
		{"proto truncated varint field", codec.Protobuf{}, []byte{0x20, 0xff}},
		{"proto end group alone", codec.Protobuf{}, []byte{0x24}},
		{"proto metadata entry varint", codec.Protobuf{}, entry([]byte{0x08, 0x01})},
		{"proto metadata entry truncated", codec.Protobuf{}, entry([]byte{0x0a, 0x03, 'a'})},
	}
	for _, tt := range tests {
		if e, err := codec.DecodeError(tt.s, tt.data); err == nil {
			t.Errorf("%s: no error, got %#v", tt.name, e)
		}
	}
}

func TestDecodeErrorProtobufTolerant(t *testing.T) {
	var b []byte
	b = protowire.AppendTag(b, 4, protowire.VarintType) // unknown fields are skipped
	b = protowire.AppendVarint(b, 99)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendString(b, "first")
	b = protowire.AppendTag(b, 5, protowire.Fixed32Type)
	b = protowire.AppendFixed32(b, 1)
	b = protowire.AppendTag(b, 9, protowire.BytesType)
	b = protowire.AppendString(b, "ignored")
	b = protowire.AppendTag(b, 2, protowire.BytesType) // last one wins, as in protobuf
	b = protowire.AppendString(b, "second")
	b = protowire.AppendTag(b, 3, protowire.BytesType) // a value with no key
	b = protowire.AppendBytes(b, []byte{0x12, 0x01, 'v'})
	b = protowire.AppendTag(b, 3, protowire.BytesType) // an entry with an unknown field
	b = protowire.AppendBytes(b, []byte{0x0a, 0x01, 'k', 0x1a, 0x01, 'x', 0x12, 0x01, 'w'})
	e, err := codec.DecodeError(codec.Protobuf{}, b)
	if err != nil {
		t.Fatal(err)
	}
	checkError(t, e, &codec.Error{Message: "second", Metadata: map[string]string{"": "v", "k": "w"}})
}

// pitayaErrorType is Pitaya's protos.Error, built from its descriptor:
//
//	message Error { string code = 1; string msg = 2; map<string, string> metadata = 3; }
func pitayaErrorType(tb testing.TB) protoreflect.MessageDescriptor {
	tb.Helper()
	str := descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum()
	opt := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()
	fd := &descriptorpb.FileDescriptorProto{
		Name:    proto.String("pitaya_error_test.proto"),
		Package: proto.String("protos"),
		Syntax:  proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{{
			Name: proto.String("Error"),
			Field: []*descriptorpb.FieldDescriptorProto{
				{Name: proto.String("code"), Number: proto.Int32(1), Label: opt, Type: str, JsonName: proto.String("code")},
				{Name: proto.String("msg"), Number: proto.Int32(2), Label: opt, Type: str, JsonName: proto.String("msg")},
				{Name: proto.String("metadata"), Number: proto.Int32(3),
					Label:    descriptorpb.FieldDescriptorProto_LABEL_REPEATED.Enum(),
					Type:     descriptorpb.FieldDescriptorProto_TYPE_MESSAGE.Enum(),
					TypeName: proto.String(".protos.Error.MetadataEntry"), JsonName: proto.String("metadata")},
			},
			NestedType: []*descriptorpb.DescriptorProto{{
				Name: proto.String("MetadataEntry"),
				Field: []*descriptorpb.FieldDescriptorProto{
					{Name: proto.String("key"), Number: proto.Int32(1), Label: opt, Type: str, JsonName: proto.String("key")},
					{Name: proto.String("value"), Number: proto.Int32(2), Label: opt, Type: str, JsonName: proto.String("value")},
				},
				Options: &descriptorpb.MessageOptions{MapEntry: proto.Bool(true)},
			}},
		}},
	}
	f, err := protodesc.NewFile(fd, new(protoregistry.Files))
	if err != nil {
		tb.Fatal(err)
	}
	return f.Messages().ByName("Error")
}

// TestProtobufErrorWire checks EncodeError/DecodeError against Pitaya's
// protos.Error as the protobuf runtime encodes it.
func TestProtobufErrorWire(t *testing.T) {
	md := pitayaErrorType(t)
	fields := md.Fields()
	code, msg, meta := fields.ByName("code"), fields.ByName("msg"), fields.ByName("metadata")
	errs := []*codec.Error{
		codec.NewError(codec.CodeNotFound, "pitaya/handler: chat.room.nosuchhandler not found", nil),
		codec.NewError(codec.CodeRateLimited, "slow down", map[string]string{"retryAfter": "2s", "limit": "10/s", "é": "ü"}),
		codec.NewError("GAME-7", "m", map[string]string{"": "empty key", "empty value": ""}),
		codec.NewError("", "", nil),
	}
	for i, e := range errs {
		// What Pitaya would send.
		pm := dynamicpb.NewMessage(md)
		pm.Set(code, protoreflect.ValueOfString(e.Code))
		pm.Set(msg, protoreflect.ValueOfString(e.Message))
		mm := pm.Mutable(meta).Map()
		for k, v := range e.Metadata {
			mm.Set(protoreflect.ValueOfString(k).MapKey(), protoreflect.ValueOfString(v))
		}
		pitaya, err := proto.MarshalOptions{Deterministic: true}.Marshal(pm)
		if err != nil {
			t.Fatal(err)
		}
		got, err := codec.DecodeError(codec.Protobuf{}, pitaya)
		if err != nil {
			t.Fatalf("#%d: DecodeError(Pitaya's bytes): %v", i, err)
		}
		checkError(t, got, e)

		// What Nopal sends, as Pitaya's client reads it.
		ours, err := codec.EncodeError(codec.Protobuf{}, e)
		if err != nil {
			t.Fatal(err)
		}
		if e.Code != "" && e.Message != "" && !bytes.Equal(ours, pitaya) { // proto3 omits empty fields
			t.Errorf("#%d: EncodeError = % x\nPitaya sends % x", i, ours, pitaya)
		}
		back := dynamicpb.NewMessage(md)
		if err := proto.Unmarshal(ours, back); err != nil {
			t.Fatalf("#%d: protobuf runtime rejects EncodeError's bytes: %v", i, err)
		}
		if !proto.Equal(back, pm) {
			t.Errorf("#%d: runtime decodes %v, want %v", i, back, pm)
		}
	}
}
