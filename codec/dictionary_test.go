package codec_test

import (
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/nopal-dev/nopal/codec"
)

func TestNewDictionary(t *testing.T) {
	tests := []struct {
		name    string
		codes   map[string]uint16
		known   []string
		wantErr error // nil: success; errAny: any error
	}{
		{"nil", nil, nil, nil},
		{"empty", map[string]uint16{}, []string{"a.b"}, nil},
		{"codes", map[string]uint16{"a": 1, "b": 2, "": 3, strings.Repeat("r", 255): 0xffff}, nil, nil},
		{"duplicate codes", map[string]uint16{"room.join": 7, "room.leave": 7}, nil, errAny},
		{"duplicate code 0", map[string]uint16{"a": 0, "b": 0, "c": 1}, nil, errAny},
		{"route too long", map[string]uint16{strings.Repeat("r", 256): 1}, nil, codec.ErrRouteTooLong},
		{"long known route", nil, []string{strings.Repeat("r", 300)}, nil}, // interned only
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := codec.NewDictionary(tt.codes, tt.known...)
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("err = %v", err)
			case tt.wantErr == errAny && err == nil, tt.wantErr != nil && tt.wantErr != errAny && !errors.Is(err, tt.wantErr):
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				if d != nil {
					t.Fatal("a dictionary with an error")
				}
				return
			}
			if got := d.Codes(); got == nil || !maps.Equal(got, tt.codes) {
				t.Fatalf("Codes() = %v, want %v", got, tt.codes)
			}
			for r, c := range tt.codes {
				if got, ok := d.Code(r); !ok || got != c {
					t.Errorf("Code(%q) = %d, %v", r, got, ok)
				}
				if got, ok := d.Route(c); !ok || got != r {
					t.Errorf("Route(%d) = %q, %v", c, got, ok)
				}
			}
			for _, r := range tt.known {
				if _, ok := d.Code(r); ok {
					t.Errorf("known route %q has a code", r)
				}
			}
		})
	}
}

var errAny = errors.New("any error")

func TestDictionaryDuplicateMessage(t *testing.T) {
	_, err := codec.NewDictionary(map[string]uint16{"room.join": 7, "room.leave": 7})
	if err == nil || !strings.Contains(err.Error(), "share code 7") {
		t.Fatalf("err = %v", err)
	}
}

func TestDictionaryIsACopy(t *testing.T) {
	in := map[string]uint16{"a": 1}
	d, err := codec.NewDictionary(in)
	if err != nil {
		t.Fatal(err)
	}
	in["b"] = 2
	out := d.Codes()
	out["c"] = 3
	if _, ok := d.Code("b"); ok {
		t.Error("the dictionary follows its input map")
	}
	if _, ok := d.Code("c"); ok {
		t.Error("Codes() is not a copy")
	}
}

func TestNilDictionary(t *testing.T) {
	var d *codec.Dictionary
	if _, ok := d.Code("a"); ok {
		t.Error("Code")
	}
	if _, ok := d.Route(1); ok {
		t.Error("Route")
	}
	if c := d.Codes(); c == nil || len(c) != 0 {
		t.Errorf("Codes() = %#v, want an empty map (the handshake sends {})", c)
	}
}

func TestDictionaryLookupMisses(t *testing.T) {
	d := testDict(t)
	if _, ok := d.Code("room.leave"); ok { // known, not coded
		t.Error("Code of a known route")
	}
	if _, ok := d.Code("nope"); ok {
		t.Error("Code of an unknown route")
	}
	if _, ok := d.Route(2); ok {
		t.Error("Route of an unused code")
	}
}

func TestNumberRoutes(t *testing.T) {
	routes := []string{"room.message", "room.join", "chat.room.leave", "connector.entry", "room.join", "a"}
	want := map[string]uint16{"a": 1, "chat.room.leave": 2, "connector.entry": 3, "room.join": 4, "room.message": 5}
	orders := [][]string{
		routes,
		slices.Sorted(slices.Values(routes)),
		func() []string { r := slices.Clone(routes); slices.Reverse(r); return r }(),
		{"room.join", "room.join", "a", "room.message", "connector.entry", "chat.room.leave", "a"},
	}
	for i, rs := range orders {
		before := slices.Clone(rs)
		got := codec.NumberRoutes(rs)
		if !maps.Equal(got, want) {
			t.Errorf("order %d: %v, want %v", i, got, want)
		}
		if !slices.Equal(rs, before) {
			t.Errorf("order %d: NumberRoutes reordered its argument", i)
		}
		if _, err := codec.NewDictionary(got); err != nil {
			t.Errorf("order %d: %v", i, err)
		}
	}
	if got := codec.NumberRoutes(nil); got == nil || len(got) != 0 {
		t.Errorf("NumberRoutes(nil) = %#v", got)
	}
}

// TestHandshakeDictJSON: the dictionary as the handshake response sends it.
func TestHandshakeDictJSON(t *testing.T) {
	d, err := codec.NewDictionary(codec.NumberRoutes([]string{"room.join", "onMessage"}))
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(codec.HandshakeResponse{Code: codec.HandshakeOK, Sys: &codec.HandshakeResponseSys{
		Dict: d.Codes(), Heartbeat: 30, Serializer: codec.Protobuf{}.Name(),
	}})
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"code":200,"sys":{"dict":{"onMessage":1,"room.join":2},"heartbeat":30,"serializer":"protos"}}`
	if string(b) != want {
		t.Fatalf("%s\nwant %s", b, want)
	}
}
