package client

// A fuzz target for the one decoder the client has of its own: the
// server's handshake response, which may come zlib-compressed without a
// flag (messages are decoded by package codec, fuzzed there).
//
// The seeds are added with f.Add and also committed under
// testdata/fuzz/FuzzParseHandshakeResponse/ in Go's corpus format. After
// changing them:
//
//	go test -run=TestClientFuzzCorpus ./client/ -args -client.writecorpus

import (
	"bytes"
	"compress/zlib"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/nopal-dev/nopal/codec"
)

var writeClientCorpus = flag.Bool("client.writecorpus", false, "rewrite the committed fuzz seed corpus")

func zlibOf(tb testing.TB, data []byte) []byte {
	tb.Helper()
	var b bytes.Buffer
	w := zlib.NewWriter(&b)
	if _, err := w.Write(data); err != nil {
		tb.Fatal(err)
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}

func handshakeResponseSeeds(tb testing.TB) map[string][]byte {
	tb.Helper()
	ok := []byte(`{"code":200,"sys":{"dict":{"room.join":1},"heartbeat":30,"serializer":"json"}}`)
	z := zlibOf(tb, ok)
	return map[string][]byte{
		"ok":                ok,
		"zlib":              z,
		"zlib-truncated":    z[:len(z)-4],
		"zlib-garbage":      []byte("\x78\x9cgarbage"),
		"zlib-not-json":     zlibOf(tb, []byte("not json")),
		"zlib-bomb":         zlibOf(tb, make([]byte, maxHandshakeBody+1)),
		"refused":           []byte(`{"code":400}`),
		"empty":             {},
		"wrong-types":       []byte(`{"code":"200","sys":[]}`),
		"dict-code-too-big": []byte(`{"code":200,"sys":{"dict":{"r":65536}}}`),
	}
}

// FuzzParseHandshakeResponse: parsing never panics; a body that does not
// start with zlib's 0x78 parses exactly as JSON does; a zlib one parses as
// its inflated bytes do, and only when they fit maxHandshakeBody.
func FuzzParseHandshakeResponse(f *testing.F) {
	for _, b := range handshakeResponseSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		hs, err := parseHandshakeResponse(body)
		plain := body
		if len(body) > 0 && body[0] == 0x78 {
			zr, zerr := zlib.NewReader(bytes.NewReader(body))
			if zerr != nil {
				if err == nil {
					t.Fatalf("accepted a bad zlib header: %+v", hs)
				}
				return
			}
			inflated, rerr := io.ReadAll(io.LimitReader(zr, maxHandshakeBody+1))
			if rerr != nil || len(inflated) > maxHandshakeBody {
				if err == nil {
					t.Fatalf("accepted a bad or oversized zlib stream (%d bytes, %v): %+v", len(inflated), rerr, hs)
				}
				return
			}
			plain = inflated
		}
		var want codec.HandshakeResponse
		werr := json.Unmarshal(plain, &want)
		if (err == nil) != (werr == nil) {
			t.Fatalf("parse error %v, JSON error %v", err, werr)
		}
		if err == nil && !reflect.DeepEqual(hs, want) {
			t.Fatalf("parsed %+v, JSON gives %+v", hs, want)
		}
	})
}

// TestClientFuzzCorpus checks that the committed seed corpus holds every
// seed.
func TestClientFuzzCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzParseHandshakeResponse")
	if *writeClientCorpus {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, b := range handshakeResponseSeeds(t) {
		path := filepath.Join(dir, "seed-"+name)
		want := fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", b)
		if *writeClientCorpus {
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s is missing or stale (%v): rerun with -args -client.writecorpus", path, err)
		}
	}
}
