package codec

import (
	"encoding/json"

	"google.golang.org/protobuf/proto"
)

// Auto picks the encoding by the value's type: protobuf for proto.Message,
// raw for []byte, JSON for everything else. Server-to-server RPCs use it,
// so a remote may take and return protobuf or JSON types and both sides
// agree by their Go types.
type Auto struct{}

// Name returns "auto".
func (Auto) Name() string { return "auto" }

// Marshal encodes v by its type.
func (Auto) Marshal(v any) ([]byte, error) {
	switch m := v.(type) {
	case []byte:
		return m, nil
	case proto.Message:
		return proto.Marshal(m)
	}
	return json.Marshal(v)
}

// Unmarshal decodes into v by its type.
func (Auto) Unmarshal(data []byte, v any) error {
	switch m := v.(type) {
	case *[]byte:
		*m = append((*m)[:0], data...)
		return nil
	case proto.Message:
		return proto.Unmarshal(data, m)
	}
	return json.Unmarshal(data, v)
}
