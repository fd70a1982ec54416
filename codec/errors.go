package codec

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	"google.golang.org/protobuf/encoding/protowire"
)

// Error codes sent to clients (Pitaya's, plus PIT-429).
const (
	CodeUnknown        = "PIT-000"
	CodeBadRequest     = "PIT-400"
	CodeNotFound       = "PIT-404"
	CodeTimeout        = "PIT-408"
	CodeRateLimited    = "PIT-429"
	CodeInternal       = "PIT-500"
	CodeServiceMissing = "PIT-503"
)

// Error is an error a client receives: a code such as "PIT-404", a message
// and optional metadata. Handlers return one (see NewError) to choose what
// the client sees; any other error reaches the client as PIT-500.
type Error struct {
	Code     string            `json:"code"`
	Message  string            `json:"msg"`
	Metadata map[string]string `json:"metadata,omitempty"`
	cause    error
}

// NewError returns an *Error with the given code and message.
func NewError(code, msg string, metadata map[string]string) *Error {
	return &Error{Code: code, Message: msg, Metadata: metadata}
}

// WrapError returns an *Error with the given code whose message is err's and
// which unwraps to err.
func WrapError(code string, err error) *Error {
	return &Error{Code: code, Message: err.Error(), cause: err}
}

func (e *Error) Error() string {
	if len(e.Metadata) == 0 {
		return fmt.Sprintf("%s: %s", e.Code, e.Message)
	}
	return fmt.Sprintf("%s: %s %v", e.Code, e.Message, e.Metadata)
}

// Unwrap returns the wrapped cause, if any.
func (e *Error) Unwrap() error { return e.cause }

// Is matches another *Error with the same code, so
// errors.Is(err, &codec.Error{Code: codec.CodeNotFound}) works.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && (t.Message == "" || t.Message == e.Message)
}

// AsError returns err as an *Error: itself if it is one (or wraps one),
// otherwise a PIT-500 carrying err's message.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return WrapError(CodeInternal, err)
}

// EncodeError encodes e for a client using serializer s: JSON for the JSON
// serializer, Pitaya's protos.Error message (code=1, msg=2, metadata=3) for
// protobuf.
func EncodeError(s Serializer, e *Error) ([]byte, error) {
	if s != nil && s.Name() == (Protobuf{}).Name() {
		return appendProtoError(nil, e), nil
	}
	return json.Marshal(e)
}

// DecodeError decodes an error payload encoded by EncodeError.
func DecodeError(s Serializer, data []byte) (*Error, error) {
	if s != nil && s.Name() == (Protobuf{}).Name() {
		return parseProtoError(data)
	}
	e := &Error{}
	if err := json.Unmarshal(data, e); err != nil {
		return nil, fmt.Errorf("codec: decode error payload: %w", err)
	}
	return e, nil
}

func appendProtoError(b []byte, e *Error) []byte {
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, e.Code)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendString(b, e.Message)
	for _, k := range slices.Sorted(maps.Keys(e.Metadata)) {
		var entry []byte
		entry = protowire.AppendTag(entry, 1, protowire.BytesType)
		entry = protowire.AppendString(entry, k)
		entry = protowire.AppendTag(entry, 2, protowire.BytesType)
		entry = protowire.AppendString(entry, e.Metadata[k])
		b = protowire.AppendTag(b, 3, protowire.BytesType)
		b = protowire.AppendBytes(b, entry)
	}
	return b
}

func parseProtoError(b []byte) (*Error, error) {
	e := &Error{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, fmt.Errorf("codec: decode error payload: %w", protowire.ParseError(n))
		}
		b = b[n:]
		if typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return nil, fmt.Errorf("codec: decode error payload: %w", protowire.ParseError(n))
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return nil, fmt.Errorf("codec: decode error payload: %w", protowire.ParseError(n))
		}
		b = b[n:]
		switch num {
		case 1:
			e.Code = string(v)
		case 2:
			e.Message = string(v)
		case 3:
			k, val, err := parseMapEntry(v)
			if err != nil {
				return nil, err
			}
			if e.Metadata == nil {
				e.Metadata = map[string]string{}
			}
			e.Metadata[k] = val
		}
	}
	return e, nil
}

func parseMapEntry(b []byte) (string, string, error) {
	var k, v string
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || typ != protowire.BytesType {
			return "", "", fmt.Errorf("codec: decode error metadata: bad entry")
		}
		b = b[n:]
		s, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return "", "", fmt.Errorf("codec: decode error metadata: %w", protowire.ParseError(n))
		}
		b = b[n:]
		if num == 1 {
			k = string(s)
		} else if num == 2 {
			v = string(s)
		}
	}
	return k, v, nil
}
