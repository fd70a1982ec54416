package codec_test

import (
	"bytes"
	"compress/zlib"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/nopal-dev/nopal/codec"
)

// The seeds below are added with f.Add and also committed, one file each,
// under testdata/fuzz/<FuzzName>/ in Go's corpus format. After changing them:
//
//	go test -run=TestFuzzCorpus ./codec/ -args -codec.writecorpus
var writeCorpus = flag.Bool("codec.writecorpus", false, "rewrite the committed fuzz seed corpus")

// seed is one named fuzz input; args match the fuzz function's parameters.
type seed struct {
	name string
	args []any
}

// Fuzz limits, small enough that the fuzzer reaches them. Seeds stay short
// too: the fuzzer's minimizer re-runs an interesting input O(n²) times.
const (
	fuzzMaxBody     = 256
	fuzzPoolSize    = 16
	fuzzMaxInflated = 1 << 16
)

func fuzzDict(tb testing.TB) *codec.Dictionary {
	tb.Helper()
	d, err := codec.NewDictionary(map[string]uint16{"room.join": 1, "onMessage": 2, "room.message": 0x0102},
		"onMembers", "room.nosuchhandler")
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

func parsePacketSeeds(tb testing.TB) []seed {
	tb.Helper()
	ping := unhex(tb, "03000000")
	req := unhex(tb, joinRequestHex)
	seeds := []seed{
		{"empty", []any{[]byte{}}},
		{"short-header", []any{[]byte{4, 0}}},
		{"header-only", []any{req[:4]}},
		{"half-packet", []any{req[:len(req)/2]}},
		{"two-packets", []any{cat(req, ping)}},
		{"trailing-byte", []any{cat(ping, []byte{0})}},
		{"type-0", []any{[]byte{0, 0, 0, 0}}},
		{"type-6", []any{[]byte{6, 0, 0, 0}}},
		{"type-ff", []any{[]byte{0xff, 0, 0, 1, 0}}},
		{"length-max", []any{[]byte{4, 0xff, 0xff, 0xff}}},
	}
	for _, v := range vectors {
		seeds = append(seeds, seed{fmt.Sprintf("vector-%s", rowName(v.row)), []any{unhex(tb, v.hex)}})
	}
	return seeds
}

func packetReaderSeeds(tb testing.TB) []seed {
	tb.Helper()
	ping := unhex(tb, "03000000")
	req := unhex(tb, joinRequestHex)
	// Rows 3, 4, 22, 6 and 24 of the capture: ack, request, heartbeat,
	// response, kick.
	stream := cat(unhex(tb, "02000000"), req, ping, unhex(tb, joinResponseHex), unhex(tb, "05000000"))
	big := packet(tb, codec.Data, strings.Repeat("0123456789", 10)) // over the pool's buffers
	tooBig := packet(tb, codec.Data, strings.Repeat("x", fuzzMaxBody+1))
	return []seed{
		{"session-whole", []any{stream, byte(0)}},
		{"session-onebyte", []any{stream, byte(1)}},
		{"session-3", []any{stream, byte(3)}},
		{"session-17-dataerr", []any{stream, byte(0x80 | 17)}},
		{"empty", []any{[]byte{}, byte(0)}},
		{"heartbeats", []any{cat(ping, ping, req, ping), byte(2)}},
		{"bigger-than-pool", []any{cat(req, big, ping), byte(0)}},
		{"bigger-than-pool-split", []any{cat(req, big, ping), byte(5)}},
		{"too-large", []any{cat(ping, tooBig), byte(0)}},
		{"eof-in-header", []any{cat(req, req[:2]), byte(0)}},
		{"eof-in-body", []any{cat(req, req[:9]), byte(4)}},
		{"unknown-type", []any{cat(req, []byte{6, 0, 0, 0}, req), byte(0)}},
	}
}

func messageDecodeSeeds(tb testing.TB) []seed {
	tb.Helper()
	z := zlibBytes(tb, []byte(longPayload), zlib.DefaultCompression)
	bomb := zlibBytes(tb, make([]byte, 2*fuzzMaxInflated), zlib.BestCompression) // past the limit
	seeds := []seed{
		{"design-golden", []any{unhex(tb, "240001")}},
		{"empty", []any{[]byte{}}},
		{"coded-request", []any{unhex(tb, "01 01 0001 7b7d")}},
		{"coded-notify", []any{unhex(tb, "03 0102 7b7d")}},
		{"coded-push-zlib", []any{cat(unhex(tb, "17 0002"), z)}},
		{"id-max-uint64", []any{unhex(tb, "04 ffffffffffffffffff01 7b7d")}},
		{"id-non-minimal", []any{unhex(tb, "04 8000 7b7d")}},
		{"id-truncated", []any{unhex(tb, "00 80")}},
		{"id-11-bytes", []any{unhex(tb, "00 8080808080808080808001 00")}},
		{"id-overflow-byte-10", []any{unhex(tb, "00 ffffffffffffffffff02 00")}},
		{"route-past-end", []any{unhex(tb, "00 01 05 6162")}},
		{"route-code-short", []any{unhex(tb, "03 01")}},
		{"route-code-unknown", []any{unhex(tb, "03 0063")}},
		{"response-route-bit", []any{unhex(tb, "05 01 7b7d")}},
		{"unknown-flag-bits", []any{unhex(tb, "40 00")}},
		{"type-7", []any{unhex(tb, "0e 00")}},
		{"zlib-garbage", []any{unhex(tb, "14 01 676172626167650a")}},
		{"zlib-truncated", []any{cat(unhex(tb, "14 01"), z[:len(z)-5])}},
		{"zlib-bomb", []any{cat(unhex(tb, "14 01"), bomb)}},
	}
	for _, v := range vectors {
		if v.msg != nil {
			seeds = append(seeds, seed{fmt.Sprintf("vector-%s", rowName(v.row)), []any{unhex(tb, v.hex)[codec.HeaderLength:]}})
		}
	}
	return seeds
}

func decodeErrorSeeds(tb testing.TB) []seed {
	tb.Helper()
	withMeta := codec.NewError(codec.CodeRateLimited, "slow down", map[string]string{"retryAfter": "2s", "": ""})
	pb := func(e *codec.Error) []byte {
		b, err := codec.EncodeError(codec.Protobuf{}, e)
		if err != nil {
			tb.Fatal(err)
		}
		return b
	}
	js := func(e *codec.Error) []byte {
		b, err := codec.EncodeError(codec.JSON{}, e)
		if err != nil {
			tb.Fatal(err)
		}
		return b
	}
	return []seed{
		{"json-vector-row21", []any{[]byte(notFoundPayload), false}},
		{"json-metadata", []any{js(withMeta), false}},
		{"json-null", []any{[]byte("null"), false}},
		{"json-bad-utf8", []any{[]byte("{\"code\":\"\xff\",\"metadata\":{\"\xfe\":\"x\"}}"), false}},
		{"json-truncated", []any{[]byte(`{"code":"PIT-404"`), false}},
		{"proto-not-found", []any{pb(codec.NewError(codec.CodeNotFound, "not found", nil)), true}},
		{"proto-metadata", []any{pb(withMeta), true}},
		{"proto-unknown-fields", []any{unhex(tb, "2063 2d01000000 0a0141 4a0178"), true}},
		{"proto-group", []any{unhex(tb, "2b 0801 2c 1201 6d"), true}},
		{"proto-bad-entry", []any{unhex(tb, "1a02 0801"), true}},
		{"proto-truncated", []any{unhex(tb, "0a05 61"), true}},
	}
}

func handshakeSeeds(tb testing.TB) []seed {
	tb.Helper()
	// Row 2 of the capture: the libpitaya-style handshake.
	hello := `{"sys":{"platform":"capture","libVersion":"0.1","clientBuildNumber":"1","clientVersion":"1"},"user":{}}`
	return []seed{
		{"vector-row02", []any{[]byte(hello), false}},
		{"user-data", []any{[]byte(`{"sys":{"platform":"unity"},"user":{"token":"abc","n":1.5,"list":[1,"x",null,{"a":true}]}}`), false}},
		{"not-json", []any{[]byte(`{not json`), false}},
		{"null", []any{[]byte(`null`), false}},
		{"sys-wrong-type", []any{[]byte(`{"sys":"web","user":[]}`), false}},
		{"number-too-large", []any{[]byte(`{"user":{"n":1e400}}`), false}},
		{"bad-utf8", []any{[]byte("{\"sys\":{\"platform\":\"\xff\"},\"user\":{\"\xfe\":1}}"), false}},
		{"duplicate-keys", []any{[]byte(`{"sys":{"platform":"a"},"sys":{"platform":"b"},"SYS":{}}`), false}},
		{"deep", []any{[]byte(`{"user":{"a":` + strings.Repeat("[", 64) + strings.Repeat("]", 64) + `}}`), false}},
		{"response-ok", []any{[]byte(`{"code":200,"sys":{"dict":{"room.join":1},"heartbeat":30,"serializer":"json"}}`), true}},
		{"response-refused", []any{[]byte(`{"code":400}`), true}},
		{"response-heartbeat-negative", []any{[]byte(`{"code":200,"sys":{"heartbeat":-1,"dict":{"r":70000}}}`), true}},
	}
}

var fuzzSeeds = map[string]func(testing.TB) []seed{
	"FuzzParsePacket":   parsePacketSeeds,
	"FuzzPacketReader":  packetReaderSeeds,
	"FuzzMessageDecode": messageDecodeSeeds,
	"FuzzDecodeError":   decodeErrorSeeds,
	"FuzzHandshake":     handshakeSeeds,
	"FuzzParseRoute":    routeSeeds,
}

// corpusFile is a seed in the format of testdata/fuzz files.
func corpusFile(args []any) []byte {
	b := []byte("go test fuzz v1\n")
	for _, a := range args {
		switch v := a.(type) {
		case []byte:
			b = fmt.Appendf(b, "[]byte(%q)\n", v)
		case byte:
			b = fmt.Appendf(b, "byte(%q)\n", v)
		case bool:
			b = fmt.Appendf(b, "bool(%v)\n", v)
		case string:
			b = fmt.Appendf(b, "string(%q)\n", v)
		default:
			panic(fmt.Sprintf("seed of type %T", a))
		}
	}
	return b
}

// TestFuzzCorpus checks that the committed seed corpus holds every seed
// (the fuzzer may have added more files: crashers kept as regressions).
func TestFuzzCorpus(t *testing.T) {
	for name, seeds := range fuzzSeeds {
		dir := filepath.Join("testdata", "fuzz", name)
		if *writeCorpus {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for _, s := range seeds(t) {
			path := filepath.Join(dir, "seed-"+s.name)
			want := corpusFile(s.args)
			if *writeCorpus {
				if err := os.WriteFile(path, want, 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			got, err := os.ReadFile(path)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s is missing or stale (%v): rerun with -args -codec.writecorpus", path, err)
			}
		}
	}
}

func addSeeds(f *testing.F, name string) {
	f.Helper()
	for _, s := range fuzzSeeds[name](f) {
		f.Add(s.args...)
	}
}

// limitReader returns at most n bytes per Read.
type limitReader struct {
	r io.Reader
	n int
}

func (l *limitReader) Read(p []byte) (int, error) { return l.r.Read(p[:min(len(p), l.n)]) }

// FuzzPacketReader feeds an arbitrary stream, in reads of an arbitrary size,
// through a PacketReader with small pooled buffers, and checks every packet
// and the final error against a direct parse of the stream.
func FuzzPacketReader(f *testing.F) {
	addSeeds(f, "FuzzPacketReader")
	pool := &codec.BufferPool{Size: fuzzPoolSize} // shared, as by a server's connections
	f.Fuzz(func(t *testing.T, stream []byte, chunk byte) {
		var r io.Reader = bytes.NewReader(stream)
		if n := int(chunk & 0x7f); n > 0 {
			r = &limitReader{r: r, n: n}
		}
		if chunk&0x80 != 0 {
			r = iotest.DataErrReader(r)
		}
		pr := codec.NewPacketReader(r, pool, fuzzMaxBody)
		off := 0
		for {
			typ, body, pkt, err := pr.Next()
			rest := stream[off:]
			if err != nil {
				wantErr := io.EOF
				switch {
				case len(rest) == 0:
				case len(rest) < codec.HeaderLength:
					wantErr = io.ErrUnexpectedEOF
				default:
					_, n, herr := codec.ParseHeader(rest, fuzzMaxBody)
					switch {
					case errors.Is(herr, codec.ErrUnknownPacketType):
						wantErr = codec.ErrUnknownPacketType
					case errors.Is(herr, codec.ErrPacketTooLarge):
						wantErr = codec.ErrPacketTooLarge
					case herr != nil:
						t.Fatalf("ParseHeader: %v", herr)
					case len(rest) < codec.HeaderLength+n:
						wantErr = io.ErrUnexpectedEOF
					default:
						t.Fatalf("at %d: error %v for a whole packet", off, err)
					}
				}
				if !errors.Is(err, wantErr) {
					t.Fatalf("at %d: err = %v, want %v", off, err, wantErr)
				}
				return
			}
			wantT, n, herr := codec.ParseHeader(rest, fuzzMaxBody)
			if herr != nil || len(rest) < codec.HeaderLength+n {
				t.Fatalf("at %d: got a packet where the stream holds none (%v)", off, herr)
			}
			if typ != wantT || !bytes.Equal(pkt, rest[:codec.HeaderLength+n]) {
				t.Fatalf("at %d: packet %v % x, want % x", off, typ, trunc(pkt), trunc(rest[:codec.HeaderLength+n]))
			}
			if len(body) != n || (n > 0 && &body[0] != &pkt[codec.HeaderLength]) {
				t.Fatalf("at %d: body is not pkt[4:]", off)
			}
			again, err := codec.AppendPacket(nil, typ, body)
			if err != nil || !bytes.Equal(again, pkt) {
				t.Fatalf("at %d: re-encoded % x, %v", off, trunc(again), err)
			}
			off += len(pkt)
			if b := pr.Buffered(); b > len(stream)-off {
				t.Fatalf("at %d: Buffered() = %d, past the stream", off, b)
			}
		}
	})
}

// FuzzParsePacket: ParsePacket never panics, fails only with the documented
// errors, and what it accepts re-encodes to the same frame.
func FuzzParsePacket(f *testing.F) {
	addSeeds(f, "FuzzParsePacket")
	f.Fuzz(func(t *testing.T, frame []byte) {
		typ, body, err := codec.ParsePacket(frame, 0)
		if err != nil {
			if !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, codec.ErrUnknownPacketType) &&
				!errors.Is(err, codec.ErrPacketTooLarge) && !errors.Is(err, codec.ErrPacketLength) {
				t.Fatalf("undocumented error %v", err)
			}
			return
		}
		again, err := codec.AppendPacket(nil, typ, body)
		if err != nil || !bytes.Equal(again, frame) {
			t.Fatalf("re-encoded % x, %v", trunc(again), err)
		}
		const limit = 64
		_, _, err = codec.ParsePacket(frame, limit)
		if (len(body) > limit) != errors.Is(err, codec.ErrPacketTooLarge) {
			t.Fatalf("%d-byte body with a limit of %d: %v", len(body), limit, err)
		}
	})
}

// FuzzMessageDecode: Decode never panics and fails only with the documented
// errors; a decoded message re-encodes (compression off) to a message that
// decodes to the same fields, and that encoding is a fixed point.
func FuzzMessageDecode(f *testing.F) {
	addSeeds(f, "FuzzMessageDecode")
	dict := fuzzDict(f)
	// Codecs live as long as the fuzz run, as they would in a server (a codec
	// per input would defeat its pools). Compressing is left to the unit
	// tests: resetting a zlib writer clears ~640 KB, which would make every
	// exec, and the minimizer's many, slow.
	dec := &codec.MessageCodec{Dict: dict, MaxInflated: fuzzMaxInflated}
	plain := &codec.MessageCodec{Dict: dict}
	f.Fuzz(func(t *testing.T, body []byte) {
		var m codec.Message
		if err := dec.Decode(body, &m); err != nil {
			if !errors.Is(err, codec.ErrBadMessage) && !errors.Is(err, codec.ErrUnknownRoute) &&
				!errors.Is(err, codec.ErrBadCompression) {
				t.Fatalf("undocumented error %v", err)
			}
			return
		}
		if !m.Compressed && len(m.Data) > 0 && &m.Data[len(m.Data)-1] != &body[len(body)-1] {
			t.Fatal("plain Data does not alias the body")
		}
		if len(m.Data) > fuzzMaxInflated {
			t.Fatalf("%d bytes inflated past the limit", len(m.Data))
		}
		enc, err := plain.Append(nil, &m)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", m, err)
		}
		if !m.Compressed && len(enc) > len(body) {
			t.Fatalf("re-encoding grew: % x -> % x", trunc(body), trunc(enc))
		}
		var back codec.Message
		if err := plain.Decode(enc, &back); err != nil {
			t.Fatalf("decode re-encoded % x: %v", trunc(enc), err)
		}
		checkMessage(t, &back, &m)
		if back.Compressed {
			t.Fatal("re-encoded with compression off, decoded as compressed")
		}
		if enc2, err := plain.Append(nil, &back); err != nil || !bytes.Equal(enc2, enc) {
			t.Fatalf("not a fixed point: % x then % x (%v)", trunc(enc), trunc(enc2), err)
		}
	})
}

// FuzzDecodeError: DecodeError never panics, and what it decodes encodes
// and decodes again to the same error, with canonical bytes.
func FuzzDecodeError(f *testing.F) {
	addSeeds(f, "FuzzDecodeError")
	f.Fuzz(func(t *testing.T, data []byte, useProto bool) {
		var s codec.Serializer = codec.JSON{}
		if useProto {
			s = codec.Protobuf{}
		}
		e, err := codec.DecodeError(s, data)
		if err != nil {
			return
		}
		b, err := codec.EncodeError(s, e)
		if err != nil {
			t.Fatalf("EncodeError(%#v): %v", e, err)
		}
		e2, err := codec.DecodeError(s, b)
		if err != nil {
			t.Fatalf("DecodeError(EncodeError(%#v)) = %v", e, err)
		}
		checkError(t, e2, e)
		if b2, err := codec.EncodeError(s, e2); err != nil || !bytes.Equal(b2, b) {
			t.Fatalf("encodings differ: %q then %q (%v)", b, b2, err)
		}
	})
}

// FuzzHandshake decodes a handshake body as the frontend does (a
// HandshakeRequest) or as a client does (a HandshakeResponse, response
// true): decoding never panics, what decodes encodes to JSON, and that
// JSON is a fixed point (it decodes to a value that encodes to the same
// bytes; an empty user object may become an absent one on the way, as
// omitempty says).
func FuzzHandshake(f *testing.F) {
	addSeeds(f, "FuzzHandshake")
	f.Fuzz(func(t *testing.T, body []byte, response bool) {
		fresh := func() any { return &codec.HandshakeRequest{} }
		if response {
			fresh = func() any { return &codec.HandshakeResponse{} }
		}
		v := fresh()
		if err := json.Unmarshal(body, v); err != nil {
			return
		}
		enc, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("encode %#v: %v", v, err)
		}
		back := fresh()
		if err := json.Unmarshal(enc, back); err != nil {
			t.Fatalf("decode re-encoded %q: %v", enc, err)
		}
		enc2, err := json.Marshal(back)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("not a fixed point: %q then %q (%v)", enc, enc2, err)
		}
		again := fresh()
		if err := json.Unmarshal(enc2, again); err != nil || !reflect.DeepEqual(back, again) {
			t.Fatalf("changed: %#v then %#v (%v)", back, again, err)
		}
	})
}
