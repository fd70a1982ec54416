package codec_test

import (
	"errors"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/nopal-dev/nopal/codec"
)

func TestParseRoute(t *testing.T) {
	tests := []struct {
		in   string
		want codec.Route // zero: an error is expected
		full bool        // ParseFullRoute accepts it too
	}{
		{in: "room.join", want: codec.Route{Component: "room", Method: "join"}},
		{in: "chat.room.join", want: codec.Route{ServerType: "chat", Component: "room", Method: "join"}, full: true},
		{in: "Chat-1.room_2.Join=3", want: codec.Route{ServerType: "Chat-1", Component: "room_2", Method: "Join=3"}, full: true},
		{in: "$sys.a.b", want: codec.Route{ServerType: "$sys", Component: "a", Method: "b"}, full: true},
		{in: "jeu.salle.entrée", want: codec.Route{ServerType: "jeu", Component: "salle", Method: "entrée"}, full: true},
		{in: "部屋.入る", want: codec.Route{Component: "部屋", Method: "入る"}},
		{in: "a.b😀", want: codec.Route{Component: "a", Method: "b😀"}},
		{in: "a.b:c@d#e", want: codec.Route{Component: "a", Method: "b:c@d#e"}},
		{in: "a.b\u200bc", want: codec.Route{Component: "a", Method: "b\u200bc"}}, // zero-width space: a format character, not a space

		// Shape.
		{in: ""},
		{in: "room"},
		{in: "."},
		{in: ".."},
		{in: "..."},
		{in: ".join"},
		{in: "room."},
		{in: "a..b"},
		{in: ".a.b"},
		{in: "a.b."},
		{in: "chat.room.join.extra"},
		{in: "a.b.c.d.e"},

		// NATS-special and unsafe characters, in each part.
		{in: "a*.b"},
		{in: "a.*"},
		{in: "*.a.b"},
		{in: "a.>"},
		{in: "a.b>c"},
		{in: "a/b.c"},
		{in: "a.b\\c"},
		{in: "a b.c"},
		{in: "a.b c"},
		{in: " a.b"},
		{in: "a.b\t"},
		{in: "a.b\n"},
		{in: "a.b\r\n"},
		{in: "a.b\f"},
		{in: "a.b\v"},
		{in: "a.b\x00"},
		{in: "a.\x01b"},
		{in: "a.b\x1f"},
		{in: "a.b\x7f"},
		{in: "a.b\u0085"}, // NEL
		{in: "a.b\u0090"}, // a C1 control
		{in: "a.b\u00a0"}, // no-break space
		{in: "a.b\u2028"}, // line separator
		{in: "a.b\u3000"}, // ideographic space
		{in: "a.b\ufffd"}, // the replacement character itself
		{in: "a.b\xff"},
		{in: "a.\xc3"},         // truncated
		{in: "a.\xc0\xae"},     // overlong '.'
		{in: "a.\xed\xa0\x80"}, // surrogate
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := codec.ParseRoute(tt.in)
			if tt.want == (codec.Route{}) {
				if err == nil || !errors.Is(err, codec.ErrInvalidRoute) {
					t.Fatalf("ParseRoute(%q) = %+v, %v; want an ErrInvalidRoute", tt.in, got, err)
				}
				if got != (codec.Route{}) {
					t.Errorf("ParseRoute(%q) returned %+v with its error", tt.in, got)
				}
				if _, err := codec.ParseFullRoute(tt.in); !errors.Is(err, codec.ErrInvalidRoute) {
					t.Errorf("ParseFullRoute(%q) = %v; want an ErrInvalidRoute", tt.in, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseRoute(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
			if s := got.String(); s != tt.in {
				t.Errorf("String() = %q, want %q", s, tt.in)
			}
			full, err := codec.ParseFullRoute(tt.in)
			if tt.full != (err == nil) || (err == nil && full != tt.want) {
				t.Errorf("ParseFullRoute(%q) = %+v, %v; full %v", tt.in, full, err, tt.full)
			}
			if err != nil && !errors.Is(err, codec.ErrInvalidRoute) {
				t.Errorf("ParseFullRoute(%q) = %v; want an ErrInvalidRoute", tt.in, err)
			}
		})
	}
}

func TestParseRouteErrorNamesTheRoute(t *testing.T) {
	_, err := codec.ParseRoute("a.b c")
	if err == nil || !strings.Contains(err.Error(), `"a.b c"`) || !strings.Contains(err.Error(), `' '`) {
		t.Errorf("error %v does not name the route and the character", err)
	}
}

func TestRouteMethods(t *testing.T) {
	tests := []struct {
		r                   codec.Route
		str, short          string
		localChat, localAny bool // Local("chat"), Local("lobby")
	}{
		{codec.Route{Component: "room", Method: "join"}, "room.join", "room.join", true, true},
		{codec.Route{ServerType: "chat", Component: "room", Method: "join"}, "chat.room.join", "room.join", true, false},
		{codec.Route{ServerType: "lobby", Component: "room", Method: "join"}, "lobby.room.join", "room.join", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.str, func(t *testing.T) {
			if got := tt.r.String(); got != tt.str {
				t.Errorf("String() = %q, want %q", got, tt.str)
			}
			if got := tt.r.Short(); got != tt.short {
				t.Errorf("Short() = %q, want %q", got, tt.short)
			}
			if got := tt.r.Local("chat"); got != tt.localChat {
				t.Errorf("Local(chat) = %v, want %v", got, tt.localChat)
			}
			if got := tt.r.Local("lobby"); got != tt.localAny {
				t.Errorf("Local(lobby) = %v, want %v", got, tt.localAny)
			}
		})
	}
}

func TestParseRouteDoesNotAllocate(t *testing.T) {
	route := strings.Clone("chat.room.join")
	var sink codec.Route
	if n := testing.AllocsPerRun(100, func() { sink, _ = codec.ParseRoute(route) }); n != 0 {
		t.Errorf("ParseRoute allocates %v times", n)
	}
	_ = sink
}

// refParseRoute is ParseRoute's rule written the slow, obvious way, for the
// fuzzer to compare against.
func refParseRoute(s string) (codec.Route, bool) {
	if !utf8.ValidString(s) {
		return codec.Route{}, false
	}
	parts := strings.Split(s, ".")
	if len(parts) < 2 || len(parts) > 3 {
		return codec.Route{}, false
	}
	for _, p := range parts {
		if p == "" || strings.ContainsAny(p, "*>/\\\ufffd") ||
			strings.ContainsFunc(p, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
			return codec.Route{}, false
		}
	}
	if len(parts) == 2 {
		return codec.Route{Component: parts[0], Method: parts[1]}, true
	}
	return codec.Route{ServerType: parts[0], Component: parts[1], Method: parts[2]}, true
}

func routeSeeds(testing.TB) []seed {
	return []seed{
		{"two-parts", []any{"room.join"}},
		{"three-parts", []any{"chat.room.join"}},
		{"unicode", []any{"jeu.salle.entrée"}},
		{"empty", []any{""}},
		{"one-part", []any{"room"}},
		{"dots", []any{"..."}},
		{"empty-middle", []any{"a..b"}},
		{"four-parts", []any{"chat.room.join.extra"}},
		{"wildcard-star", []any{"chat.*.join"}},
		{"wildcard-gt", []any{"chat.room.>"}},
		{"slash", []any{"a/b.c"}},
		{"backslash", []any{"a.b\\c"}},
		{"space", []any{"a.b c"}},
		{"tab", []any{"a.b\t"}},
		{"nul", []any{"a.b\x00"}},
		{"del", []any{"a.b\x7f"}},
		{"nel", []any{"a.b\u0085"}},
		{"nbsp", []any{"a.b\u00a0"}},
		{"replacement-char", []any{"a.b\ufffd"}},
		{"invalid-utf8", []any{"a.b\xff"}},
		{"overlong-dot", []any{"a.\xc0\xae.b"}},
	}
}

// FuzzParseRoute: ParseRoute never panics, fails only with ErrInvalidRoute,
// agrees with the obvious implementation of its rule, and a parsed route's
// String parses back to the same Route (and is the input).
func FuzzParseRoute(f *testing.F) {
	addSeeds(f, "FuzzParseRoute")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := codec.ParseRoute(s)
		want, ok := refParseRoute(s)
		if err != nil {
			if !errors.Is(err, codec.ErrInvalidRoute) {
				t.Fatalf("undocumented error %v", err)
			}
			if ok {
				t.Fatalf("ParseRoute(%q) = %v; the rule accepts it as %+v", s, err, want)
			}
			if r != (codec.Route{}) {
				t.Fatalf("ParseRoute(%q) returned %+v with its error", s, r)
			}
			return
		}
		if !ok || r != want {
			t.Fatalf("ParseRoute(%q) = %+v; the rule says %+v, %v", s, r, want, ok)
		}
		str := r.String()
		if str != s {
			t.Fatalf("String() = %q, parsed %q", str, s)
		}
		back, err := codec.ParseRoute(str)
		if err != nil || back != r {
			t.Fatalf("ParseRoute(String()) = %+v, %v; want %+v", back, err, r)
		}
		if r.Short() != r.Component+"."+r.Method || !r.Local(r.ServerType) {
			t.Fatalf("Short/Local of %+v", r)
		}
		full, err := codec.ParseFullRoute(s)
		if (r.ServerType != "") != (err == nil) || (err == nil && full != r) {
			t.Fatalf("ParseFullRoute(%q) = %+v, %v", s, full, err)
		}
	})
}

func BenchmarkParseRoute(b *testing.B) {
	for _, route := range []string{"room.join", "chat.room.join", "jeu.salle.entrée"} {
		b.Run(route, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := codec.ParseRoute(route); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
