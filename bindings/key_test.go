package bindings

import (
	"encoding/base64"
	"regexp"
	"strings"
	"testing"
)

// validKey is the jetstream package's rule for KV keys, restated.
func validKey(k string) bool {
	re := regexp.MustCompile(`^[-/_=\.a-zA-Z0-9]+$`)
	return re.MatchString(k) && !strings.HasPrefix(k, ".") && !strings.HasSuffix(k, ".") && !strings.Contains(k, "..")
}

func TestKey(t *testing.T) {
	enc := func(s string) string { return "b64." + base64.RawURLEncoding.EncodeToString([]byte(s)) }
	tests := []struct {
		uid, want string
	}{
		{"alice", "alice"},
		{"42", "42"},
		{"a.b", "a.b"},
		{"a/b=c-d_e", "a/b=c-d_e"},
		{"user 42", enc("user 42")},
		{"josé", enc("josé")},
		{"日本語", enc("日本語")},
		{".lead", enc(".lead")},
		{"trail.", enc("trail.")},
		{"a..b", enc("a..b")},
		{"*", enc("*")},
		{">", enc(">")},
		{"a.>", enc("a.>")},
		{"tab\there", enc("tab\there")},
		{"b64.YQ", enc("b64.YQ")}, // looks encoded ("a"): encoded again
		{"b64", "b64"},
		{"b64x", "b64x"},
	}
	for _, tc := range tests {
		t.Run(tc.uid, func(t *testing.T) {
			got := key(tc.uid)
			if got != tc.want {
				t.Fatalf("key(%q) = %q, want %q", tc.uid, got, tc.want)
			}
			if !validKey(got) {
				t.Fatalf("key(%q) = %q is not a valid KV key", tc.uid, got)
			}
			if back, ok := uidOf(got); !ok || back != tc.uid {
				t.Fatalf("uidOf(%q) = %q, %v; want %q", got, back, ok, tc.uid)
			}
		})
	}
}

// FuzzKey checks that every non-empty uid gets a valid key that decodes back
// to it: a left inverse, so no two uids share a key.
func FuzzKey(f *testing.F) {
	for _, s := range []string{"alice", "a b", "b64.YQ", "b64.", ".", "..", "a.", "\xff", "日本"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, uid string) {
		if uid == "" {
			return
		}
		k := key(uid)
		if !validKey(k) {
			t.Fatalf("key(%q) = %q is not a valid KV key", uid, k)
		}
		if back, ok := uidOf(k); !ok || back != uid {
			t.Fatalf("uidOf(key(%q)) = %q, %v", uid, back, ok)
		}
	})
}
