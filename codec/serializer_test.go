package codec_test

import (
	"bytes"
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/nopal-dev/nopal/codec"
)

var serializers = []codec.Serializer{codec.JSON{}, codec.Protobuf{}}

func TestSerializerNames(t *testing.T) {
	if n := (codec.JSON{}).Name(); n != "json" {
		t.Errorf("JSON name %q", n)
	}
	if n := (codec.Protobuf{}).Name(); n != "protos" {
		t.Errorf("Protobuf name %q", n)
	}
}

func TestSerializerRawBytes(t *testing.T) {
	for _, s := range serializers {
		t.Run(s.Name(), func(t *testing.T) {
			raw := []byte("\x00not json nor proto\xff")
			out, err := s.Marshal(raw)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, raw) || &out[0] != &raw[0] {
				t.Fatal("Marshal([]byte) is not a pass-through")
			}

			// Unmarshal into *[]byte copies, and reuses the destination.
			dst := make([]byte, 0, 64)
			if err := s.Unmarshal(raw, &dst); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(dst, raw) {
				t.Fatalf("got %q", dst)
			}
			raw[0] = 'X'
			if dst[0] == 'X' {
				t.Fatal("Unmarshal(*[]byte) aliases its input")
			}
			if cap(dst) != 64 {
				t.Errorf("destination not reused: cap %d", cap(dst))
			}
			stale := []byte("a much longer previous value")
			if err := s.Unmarshal([]byte("ab"), &stale); err != nil || string(stale) != "ab" {
				t.Fatalf("overwrite: %q %v", stale, err)
			}
		})
	}
}

func TestJSONSerializer(t *testing.T) {
	type msg struct {
		Name    string `json:"name"`
		Content string `json:"content"`
	}
	var s codec.JSON
	b, err := s.Marshal(msg{"bob", "hello"})
	if err != nil || string(b) != helloPayload {
		t.Fatalf("%s %v", b, err)
	}
	var m msg
	if err := s.Unmarshal([]byte(helloPayload), &m); err != nil || m != (msg{"bob", "hello"}) {
		t.Fatalf("%+v %v", m, err)
	}
	if err := s.Unmarshal([]byte("{"), &m); err == nil {
		t.Fatal("no error for bad JSON")
	}
	if _, err := s.Marshal(func() {}); err == nil {
		t.Fatal("no error for a func")
	}
}

func TestProtobufSerializer(t *testing.T) {
	st, err := structpb.NewStruct(map[string]any{"name": "bob", "n": 3.5, "tags": []any{"a", true}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		in   proto.Message
		out  proto.Message
	}{
		{"struct", st, &structpb.Struct{}},
		{"string", wrapperspb.String("hello"), &wrapperspb.StringValue{}},
		{"uint64", wrapperspb.UInt64(1 << 63), &wrapperspb.UInt64Value{}},
		{"empty", &wrapperspb.StringValue{}, &wrapperspb.StringValue{}},
	}
	var s codec.Protobuf
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := s.Marshal(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := proto.Marshal(tt.in)
			if tt.name != "struct" && !bytes.Equal(b, want) { // map order is not deterministic
				t.Fatalf("% x, want % x", b, want)
			}
			if err := s.Unmarshal(b, tt.out); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(tt.in, tt.out) {
				t.Fatalf("got %v, want %v", tt.out, tt.in)
			}
		})
	}
	if err := s.Unmarshal([]byte{0x0a, 0x05, 'a'}, &wrapperspb.StringValue{}); err == nil {
		t.Fatal("no error for truncated protobuf")
	}
}

func TestProtobufNotProtoMessage(t *testing.T) {
	var s codec.Protobuf
	type plain struct{ A int }
	for _, v := range []any{plain{1}, &plain{1}, "string", 42, nil, map[string]any{}} {
		if _, err := s.Marshal(v); !errors.Is(err, codec.ErrNotProtoMessage) {
			t.Errorf("Marshal(%T): err = %v", v, err)
		}
	}
	for _, v := range []any{&plain{}, new(string), nil, []byte{}} {
		if err := s.Unmarshal([]byte{}, v); !errors.Is(err, codec.ErrNotProtoMessage) {
			t.Errorf("Unmarshal(%T): err = %v", v, err)
		}
	}
}
