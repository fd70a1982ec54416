package codec

import (
	"encoding/json"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"
)

// Serializer turns payloads into bytes and back. Both built-in serializers
// pass a raw []byte through untouched on Marshal and copy the bytes into a
// *[]byte on Unmarshal.
type Serializer interface {
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
	// Name is what the handshake announces: "json" or "protos".
	Name() string
}

// ErrNotProtoMessage is returned by the protobuf serializer for values that
// are not proto.Message.
var ErrNotProtoMessage = errors.New("codec: value is not a proto.Message")

// JSON is the JSON serializer (Pitaya's default).
type JSON struct{}

// Name returns "json".
func (JSON) Name() string { return "json" }

// Marshal encodes v as JSON; a []byte is returned as it is.
func (JSON) Marshal(v any) ([]byte, error) {
	if b, ok := v.([]byte); ok {
		return b, nil
	}
	return json.Marshal(v)
}

// Unmarshal decodes JSON into v; a *[]byte receives a copy of data.
func (JSON) Unmarshal(data []byte, v any) error {
	if p, ok := v.(*[]byte); ok {
		*p = append((*p)[:0], data...)
		return nil
	}
	return json.Unmarshal(data, v)
}

// Protobuf is the protobuf serializer; values must be proto.Message.
type Protobuf struct{}

// Name returns "protos", as Pitaya announces it.
func (Protobuf) Name() string { return "protos" }

// Marshal encodes a proto.Message; a []byte is returned as it is.
func (Protobuf) Marshal(v any) ([]byte, error) {
	switch m := v.(type) {
	case []byte:
		return m, nil
	case proto.Message:
		return proto.Marshal(m)
	}
	return nil, fmt.Errorf("%w: %T", ErrNotProtoMessage, v)
}

// Unmarshal decodes into a proto.Message; a *[]byte receives a copy of data.
func (Protobuf) Unmarshal(data []byte, v any) error {
	switch m := v.(type) {
	case *[]byte:
		*m = append((*m)[:0], data...)
		return nil
	case proto.Message:
		return proto.Unmarshal(data, m)
	}
	return fmt.Errorf("%w: %T", ErrNotProtoMessage, v)
}
