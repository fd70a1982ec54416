package bindings

import (
	"encoding/base64"
	"strings"
)

// encodedPrefix marks a key that holds a base64 form of the uid. A uid that
// itself starts with it is encoded too, so the two forms never meet.
const encodedPrefix = "b64."

// key maps a uid to its KV key. A uid already valid as a key (bytes in
// [-/_=.a-zA-Z0-9], no leading or trailing dot, no "..") that does not start
// with "b64." is its own key, so `nats kv get` reads well; any other uid
// becomes "b64." + base64.RawURLEncoding(uid). The map is injective: keys
// starting with "b64." come only from encoding, which is injective, and every
// other key is the uid itself. The empty uid has no key.
func key(uid string) string {
	if safeKey(uid) && !strings.HasPrefix(uid, encodedPrefix) {
		return uid
	}
	return encodedPrefix + base64.RawURLEncoding.EncodeToString([]byte(uid))
}

// Key is the KV key of uid, also valid as subject tokens: other buckets and
// streams keyed by uid use it.
func Key(uid string) string { return key(uid) }

// uidOf is key's inverse (for tests and tools reading the bucket).
func uidOf(k string) (string, bool) {
	rest, ok := strings.CutPrefix(k, encodedPrefix)
	if !ok {
		return k, safeKey(k)
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(rest)
	if err != nil {
		return "", false
	}
	return string(b), true
}

// safeKey reports whether s is a valid KV key (the jetstream package's rule).
func safeKey(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-', c == '/', c == '_', c == '=', c == '.':
		default:
			return false
		}
	}
	return true
}
