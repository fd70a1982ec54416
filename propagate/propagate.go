package propagate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel/baggage"
)

// Limits of the propagated values (W3C's, as OpenTelemetry applies them).
const (
	// MaxSize bounds the encoded baggage header, in bytes.
	MaxSize = 8192
	// MaxValues bounds the number of values (baggage members).
	MaxValues = 64
)

// Errors of Add; check them with errors.Is.
var (
	ErrTooLarge   = errors.New("propagate: propagated values over the W3C baggage limits")
	ErrInvalidKey = errors.New("propagate: key is not a W3C baggage token")
)

// Add returns a copy of ctx whose propagated values hold val under key
// (replacing any value of that key). val is encoded as JSON now: changing
// it afterwards changes nothing. On an error it returns ctx itself, with
// the values it had: ErrInvalidKey, ErrTooLarge (the values would pass
// MaxSize or MaxValues), or val's encoding error.
func Add(ctx context.Context, key string, val any) (context.Context, error) {
	if !validKey(key) {
		return ctx, fmt.Errorf("%w: %q", ErrInvalidKey, key)
	}
	b, err := json.Marshal(val)
	if err != nil {
		return ctx, fmt.Errorf("propagate: value of %q: %w", key, err)
	}
	m, err := baggage.NewMemberRaw(key, string(b))
	if err != nil {
		return ctx, fmt.Errorf("propagate: value of %q: %w", key, err)
	}
	bag, err := baggage.FromContext(ctx).SetMember(m)
	if err != nil {
		return ctx, fmt.Errorf("propagate: value of %q: %w", key, err)
	}
	if bag.Len() > MaxValues {
		return ctx, fmt.Errorf("%w: %d values, at most %d", ErrTooLarge, bag.Len(), MaxValues)
	}
	if n := len(bag.String()); n > MaxSize {
		return ctx, fmt.Errorf("%w: adding %q makes %d bytes, at most %d", ErrTooLarge, key, n, MaxSize)
	}
	return baggage.ContextWithBaggage(ctx, bag), nil
}

// Get returns the propagated value of key as encoding/json decodes it into
// an any, or nil when ctx has none.
func Get(ctx context.Context, key string) any {
	m := baggage.FromContext(ctx).Member(key)
	if m.Key() == "" {
		return nil
	}
	var v any
	if err := json.Unmarshal([]byte(m.Value()), &v); err != nil {
		return m.Value() // a member that is not ours: its string
	}
	return v
}

// Decode decodes the propagated value of key into out (a pointer, as for
// json.Unmarshal) and reports whether ctx had one.
func Decode(ctx context.Context, key string, out any) (bool, error) {
	m := baggage.FromContext(ctx).Member(key)
	if m.Key() == "" {
		return false, nil
	}
	if err := json.Unmarshal([]byte(m.Value()), out); err != nil {
		return true, fmt.Errorf("propagate: value of %q: %w", key, err)
	}
	return true, nil
}

// ToMap returns every propagated value of ctx, as Get returns them.
func ToMap(ctx context.Context) map[string]any {
	members := baggage.FromContext(ctx).Members()
	out := make(map[string]any, len(members))
	for _, m := range members {
		out[m.Key()] = Get(ctx, m.Key())
	}
	return out
}

// Header returns ctx's propagated values as a W3C baggage header value, ""
// when there are none. Values put there by Add always fit; baggage set by
// other means that passes MaxSize is not sent ("" and ErrTooLarge), as the
// receiver would drop it all.
func Header(ctx context.Context) (string, error) {
	bag := baggage.FromContext(ctx)
	if bag.Len() == 0 {
		return "", nil
	}
	s := bag.String()
	if len(s) > MaxSize || bag.Len() > MaxValues {
		return "", fmt.Errorf("%w: %d values in %d bytes not sent", ErrTooLarge, bag.Len(), len(s))
	}
	return s, nil
}

// FromHeader returns a copy of ctx whose propagated values are those of a
// baggage header value h (they replace any ctx had). A header that is
// partly invalid keeps its valid members, and the error says what was
// dropped; an empty h returns ctx.
func FromHeader(ctx context.Context, h string) (context.Context, error) {
	if h == "" {
		return ctx, nil
	}
	bag, err := baggage.Parse(h)
	if err != nil {
		err = fmt.Errorf("propagate: baggage header: %w", err)
	}
	if bag.Len() == 0 {
		return ctx, err
	}
	return baggage.ContextWithBaggage(ctx, bag), err
}

// validKey reports whether k is an RFC 7230 token, as W3C baggage keys are.
func validKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '!' || c == '#' || c == '$' || c == '%' || c == '&' || c == '\'' || c == '*' ||
			c == '+' || c == '-' || c == '.' || c == '^' || c == '_' || c == '`' || c == '|' || c == '~':
		default:
			return false
		}
	}
	return true
}
