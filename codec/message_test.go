package codec_test

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/nopal-dev/nopal/codec"
)

// testDict has coded routes (one with each code byte in use) and a known one.
func testDict(tb testing.TB) *codec.Dictionary {
	tb.Helper()
	d, err := codec.NewDictionary(map[string]uint16{
		"room.join":    1,
		"onMessage":    0x1234,
		"room.message": 0xffff,
		"connector.x":  0,
	}, "room.leave", "onMembers")
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

// zlibBytes compresses data with zlib at the given level.
func zlibBytes(tb testing.TB, data []byte, level int) []byte {
	tb.Helper()
	var b bytes.Buffer
	w, err := zlib.NewWriterLevel(&b, level)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		tb.Fatal(err)
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestMessageTypeString(t *testing.T) {
	tests := []struct {
		t    codec.MessageType
		want string
	}{
		{codec.Request, "Request"}, {codec.Notify, "Notify"}, {codec.Response, "Response"},
		{codec.Push, "Push"}, {4, "MessageType(4)"},
	}
	for _, tt := range tests {
		if got := tt.t.String(); got != tt.want {
			t.Errorf("%d: %q, want %q", byte(tt.t), got, tt.want)
		}
	}
}

func TestVarint(t *testing.T) {
	tests := []struct {
		name string
		hex  string
		v    uint64
		n    int
	}{
		{"0", "00", 0, 1},
		{"127", "7f", 127, 1},
		{"128", "8001", 128, 2},
		{"300", "ac02", 300, 2},
		{"16383", "ff7f", 16383, 2},
		{"16384", "808001", 16384, 3},
		{"1<<63", "80808080808080808001", 1 << 63, 10},
		{"max uint64", "ffffffffffffffffff01", math.MaxUint64, 10},
		{"trailing bytes", "ac02ffff", 300, 2},
		{"non-minimal", "8000", 0, 2},
		{"empty", "", 0, 0},
		{"truncated", "80", 0, 0},
		{"truncated long", "ffffffffffffffffff", 0, 0},
		{"overflow at byte 10", "ffffffffffffffffff02", 0, -1},
		{"continuation at byte 10", "ffffffffffffffffff81", 0, -1},
		{"11 bytes", "8080808080808080808001", 0, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, n := codec.Varint(unhex(t, tt.hex))
			if v != tt.v || n != tt.n {
				t.Fatalf("Varint = %d, %d; want %d, %d", v, n, tt.v, tt.n)
			}
			if n > 0 && tt.name != "non-minimal" {
				if enc := codec.AppendVarint(nil, v); !bytes.Equal(enc, unhex(t, tt.hex)[:n]) {
					t.Fatalf("AppendVarint(%d) = % x", v, enc)
				}
			}
		})
	}
}

// TestMessageRoundTrip encodes every type with and without a dictionary and
// checks the bytes against the layout of DESIGN.md §2, then decodes them.
func TestMessageRoundTrip(t *testing.T) {
	dict := testDict(t)
	ids := []uint64{0, 1, 127, 128, 300, 1 << 63, math.MaxUint64}
	routes := []string{"room.join", "onMessage", "room.message", "connector.x", "room.leave", "not.in.dict", "", strings.Repeat("r", 255)}
	payloads := [][]byte{nil, {0x01}, []byte(`{"a":1}`)}
	types := []codec.MessageType{codec.Request, codec.Notify, codec.Response, codec.Push}
	for _, d := range []*codec.Dictionary{nil, dict} {
		c := &codec.MessageCodec{Dict: d}
		for _, typ := range types {
			for _, id := range ids {
				for _, route := range routes {
					for _, data := range payloads {
						for _, isErr := range []bool{false, true} {
							m := &codec.Message{Type: typ, ID: id, Route: route, Data: data, Err: isErr}
							name := fmt.Sprintf("dict=%v/%v/id=%d/route=%.12q/data=%q/err=%v", d != nil, typ, id, route, data, isErr)
							roundTrip(t, name, c, m)
						}
					}
				}
			}
		}
	}
}

func roundTrip(t *testing.T, name string, c *codec.MessageCodec, m *codec.Message) {
	t.Helper()
	hasID := m.Type == codec.Request || m.Type == codec.Response
	hasRoute := m.Type != codec.Response
	code, coded := c.Dict.Code(m.Route)
	coded = coded && hasRoute

	// The expected bytes, built independently.
	flag := byte(m.Type) << 1
	if coded {
		flag |= 0x01
	}
	if m.Err {
		flag |= 0x20
	}
	want := []byte{flag}
	if hasID {
		want = binary.AppendUvarint(want, m.ID)
	}
	if coded {
		want = binary.BigEndian.AppendUint16(want, code)
	} else if hasRoute {
		want = append(want, byte(len(m.Route)))
		want = append(want, m.Route...)
	}
	want = append(want, m.Data...)

	got, err := c.Append(nil, m)
	if err != nil {
		t.Fatalf("%s: Append: %v", name, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: Append = % x, want % x", name, got, want)
	}
	var back codec.Message
	back.Compressed = true // Decode must clear what an earlier decode left
	if err := c.Decode(got, &back); err != nil {
		t.Fatalf("%s: Decode: %v", name, err)
	}
	exp := codec.Message{Type: m.Type, Err: m.Err, Data: m.Data}
	if hasID {
		exp.ID = m.ID
	}
	if hasRoute {
		exp.Route = m.Route
	}
	checkMessage(t, &back, &exp)
	if back.RouteCompressed != coded || back.Compressed {
		t.Fatalf("%s: RouteCompressed=%v Compressed=%v", name, back.RouteCompressed, back.Compressed)
	}
	if len(back.Data) > 0 && &back.Data[0] != &got[len(got)-len(back.Data)] {
		t.Fatalf("%s: Data does not alias the input", name)
	}
}

func TestMessageDictionaryBytes(t *testing.T) {
	c := &codec.MessageCodec{Dict: testDict(t)}
	tests := []struct {
		m    codec.Message
		want string
	}{
		{codec.Message{Type: codec.Request, ID: 1, Route: "room.join", Data: []byte("{}")}, "01 01 0001 7b7d"},
		{codec.Message{Type: codec.Notify, Route: "room.message", Data: []byte("{}")}, "03 ffff 7b7d"},
		{codec.Message{Type: codec.Push, Route: "onMessage"}, "07 1234"},
		{codec.Message{Type: codec.Push, Route: "connector.x"}, "07 0000"},
		{codec.Message{Type: codec.Push, Route: "onMembers"}, "06 09 6f6e4d656d62657273"}, // known, not coded
		{codec.Message{Type: codec.Response, ID: 2, Route: "room.join"}, "04 02"},
		{codec.Message{Type: codec.Response, ID: 2, Route: strings.Repeat("x", 300)}, "04 02"}, // no route in a response
	}
	for _, tt := range tests {
		got, err := c.Append(nil, &tt.m)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, unhex(t, tt.want)) {
			t.Errorf("%v %q: % x, want %s", tt.m.Type, tt.m.Route, got, tt.want)
		}
	}
}

func TestMessageDecodeErrors(t *testing.T) {
	long := []byte(longPayload)
	z := zlibBytes(t, long, zlib.DefaultCompression)
	badSum := bytes.Clone(z)
	badSum[len(badSum)-1] ^= 0xff
	pushZ := func(payload []byte) string { return "16 09 6f6e4d657373616765 " + fmt.Sprintf("%x", payload) }

	tests := []struct {
		name    string
		hex     string
		wantErr error
	}{
		{"empty", "", codec.ErrBadMessage},
		{"flag bit 6", "40", codec.ErrBadMessage},
		{"flag bit 7", "80 01 00", codec.ErrBadMessage},
		{"flag 0xff", "ff", codec.ErrBadMessage},
		{"type 4", "08 00", codec.ErrBadMessage},
		{"type 7", "0e 00", codec.ErrBadMessage},
		{"request without id", "00", codec.ErrBadMessage},
		{"truncated id", "00 80", codec.ErrBadMessage},
		{"truncated 9-byte id", "00 ffffffffffffffffff", codec.ErrBadMessage},
		{"11-byte id", "00 8080808080808080808001 00", codec.ErrBadMessage},
		{"id overflow at byte 10", "00 ffffffffffffffffff02 00", codec.ErrBadMessage},
		{"response truncated id", "04 ff", codec.ErrBadMessage},
		{"request without route", "00 01", codec.ErrBadMessage},
		{"notify without route", "02", codec.ErrBadMessage},
		{"route length past end", "00 01 05 6162", codec.ErrBadMessage},
		{"route length 255 past end", "06 ff 61", codec.ErrBadMessage},
		{"short route code", "01 01 00", codec.ErrBadMessage},
		{"no route code", "03", codec.ErrBadMessage},
		{"unknown route code", "03 0063", codec.ErrUnknownRoute},
		{"unknown route code 0xfffe", "07 fffe", codec.ErrUnknownRoute},
		{"response with route bit", "05 01 7b7d", codec.ErrBadMessage},
		{"error response with route bit", "25 01", codec.ErrBadMessage},
		{"zlib garbage", pushZ([]byte("garbage, not zlib")), codec.ErrBadCompression},
		{"zlib empty", "14 01", codec.ErrBadCompression},
		{"zlib header only", pushZ(z[:2]), codec.ErrBadCompression},
		{"zlib truncated", pushZ(z[:len(z)-6]), codec.ErrBadCompression},
		{"zlib bad checksum", pushZ(badSum), codec.ErrBadCompression},
		{"zlib preset dictionary", pushZ([]byte{0x78, 0xbb, 0, 0, 0, 1, 3, 0}), codec.ErrBadCompression},
	}
	for _, tt := range tests {
		for _, warm := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/warm=%v", tt.name, warm), func(t *testing.T) {
				c := &codec.MessageCodec{Dict: testDict(t)}
				good := unhex(t, onMessageLongHex)[4:]
				var m codec.Message
				if warm { // a pooled zlib reader is reused, not a fresh one
					if err := c.Decode(good, &m); err != nil {
						t.Fatal(err)
					}
				}
				err := c.Decode(unhex(t, tt.hex), &m)
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				// The codec is still sound after the error.
				if err := c.Decode(good, &m); err != nil || string(m.Data) != longPayload {
					t.Fatalf("decode after error: %v %q", err, m.Data)
				}
			})
		}
	}
}

func TestMessageDecodeNilDict(t *testing.T) {
	var m codec.Message
	err := (&codec.MessageCodec{}).Decode([]byte{0x03, 0x00, 0x01}, &m)
	if !errors.Is(err, codec.ErrUnknownRoute) {
		t.Fatalf("err = %v, want ErrUnknownRoute", err)
	}
}

func TestMessageInflateLimit(t *testing.T) {
	const limit = 64 << 10
	tests := []struct {
		name    string
		max     int
		size    int
		wantErr bool
	}{
		{"at limit", limit, limit, false},
		{"one over limit", limit, limit + 1, true},
		{"bomb", limit, 4 << 20, true},
		{"default limit", 0, codec.MaxPacketBody + 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			payload := zlibBytes(t, make([]byte, tt.size), zlib.BestSpeed)
			body := append([]byte{0x14, 0x07}, payload...) // Response|zlib, id 7
			c := &codec.MessageCodec{MaxInflated: tt.max}
			var m codec.Message
			err := c.Decode(body, &m)
			if tt.wantErr {
				if !errors.Is(err, codec.ErrBadCompression) {
					t.Fatalf("%d compressed bytes inflating to %d: err = %v", len(payload), tt.size, err)
				}
				return
			}
			if err != nil || len(m.Data) != tt.size || !m.Compressed || m.ID != 7 {
				t.Fatalf("err %v, %d bytes, compressed %v", err, len(m.Data), m.Compressed)
			}
		})
	}
}

func TestMessageEncodeErrors(t *testing.T) {
	long := strings.Repeat("r", 256)
	tests := []struct {
		name    string
		c       *codec.MessageCodec
		m       codec.Message
		wantErr error
	}{
		{"type 4", &codec.MessageCodec{}, codec.Message{Type: 4}, codec.ErrBadMessage},
		{"type 0xff", &codec.MessageCodec{}, codec.Message{Type: 0xff, Route: "a"}, codec.ErrBadMessage},
		{"request route 256", &codec.MessageCodec{}, codec.Message{Type: codec.Request, ID: 300, Route: long}, codec.ErrRouteTooLong},
		{"notify route 256", &codec.MessageCodec{Dict: testDict(t)}, codec.Message{Type: codec.Notify, Route: long}, codec.ErrRouteTooLong},
		{"push route 256 compressed payload", &codec.MessageCodec{Compress: true}, codec.Message{Type: codec.Push, Route: long, Data: make([]byte, 1000)}, codec.ErrRouteTooLong},
		{"body too large", &codec.MessageCodec{}, codec.Message{Type: codec.Response, Data: make([]byte, codec.MaxPacketBody)}, codec.ErrPacketTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := []byte("keep")
			if !errors.Is(tt.wantErr, codec.ErrPacketTooLarge) {
				got, err := tt.c.Append(dst, &tt.m)
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Append: err = %v, want %v", err, tt.wantErr)
				}
				if string(got) != "keep" {
					t.Fatalf("Append changed dst on error: %q", trunc(got))
				}
			}
			got, err := tt.c.AppendPacket(dst, &tt.m)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("AppendPacket: err = %v, want %v", err, tt.wantErr)
			}
			if string(got) != "keep" {
				t.Fatalf("AppendPacket changed dst on error: %q", trunc(got))
			}
		})
	}
}

func TestMessageCodecAppendPacket(t *testing.T) {
	c := &codec.MessageCodec{Dict: testDict(t)}
	got, err := c.AppendPacket([]byte{0xaa}, &codec.Message{Type: codec.Request, ID: 300, Route: "room.join", Data: []byte("{}")})
	if err != nil {
		t.Fatal(err)
	}
	if want := unhex(t, "aa 04000007 01ac020001 7b7d"); !bytes.Equal(got, want) {
		t.Fatalf("% x, want % x", got, want)
	}
	typ, body, err := codec.ParsePacket(got[1:], 0)
	if err != nil || typ != codec.Data {
		t.Fatal(typ, err)
	}
	var m codec.Message
	if err := c.Decode(body, &m); err != nil || m.ID != 300 || m.Route != "room.join" || !m.RouteCompressed {
		t.Fatalf("%+v %v", m, err)
	}
}

func TestMessageCompression(t *testing.T) {
	compressible := func(n int) []byte { return bytes.Repeat([]byte("a"), n) }
	tests := []struct {
		name     string
		compress bool
		thresh   int
		data     []byte
		wantZlib bool
	}{
		{"off", false, 0, compressible(1000), false},
		{"below default threshold", true, 0, compressible(codec.DefaultCompressThreshold - 1), false},
		{"at default threshold", true, 0, compressible(codec.DefaultCompressThreshold), true},
		{"incompressible", true, 0, randomBytes(1000, 1), false},
		{"incompressible at threshold", true, 0, randomBytes(codec.DefaultCompressThreshold, 2), false},
		{"compressible", true, 0, []byte(longPayload), true},
		{"compressible large", true, 0, bytes.Repeat([]byte(longPayload), 500), true},
		{"custom threshold", true, 16, compressible(20), true},
		{"below custom threshold", true, 16, compressible(15), false},
		{"negative threshold is default", true, -1, compressible(100), false},
		{"tiny not shorter", true, 1, []byte("ab"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &codec.MessageCodec{Compress: tt.compress, CompressThreshold: tt.thresh}
			if want := max(tt.thresh, 0); want == 0 && c.Threshold() != codec.DefaultCompressThreshold || want > 0 && c.Threshold() != want {
				t.Fatalf("Threshold() = %d for CompressThreshold %d", c.Threshold(), tt.thresh)
			}
			for _, typ := range []codec.MessageType{codec.Request, codec.Notify, codec.Response, codec.Push} {
				m := &codec.Message{Type: typ, ID: 5, Route: "r", Data: tt.data}
				b, err := c.Append(nil, m)
				if err != nil {
					t.Fatal(err)
				}
				if got := b[0]&0x10 != 0; got != tt.wantZlib {
					t.Fatalf("%v: zlib flag = %v, want %v", typ, got, tt.wantZlib)
				}
				if !tt.wantZlib && !bytes.HasSuffix(b, tt.data) {
					t.Fatalf("%v: plain payload changed", typ)
				}
				if tt.wantZlib && len(b) >= len(tt.data) {
					t.Fatalf("%v: compressed message of %d bytes for %d", typ, len(b), len(tt.data))
				}
				var back codec.Message
				if err := c.Decode(b, &back); err != nil {
					t.Fatal(err)
				}
				if back.Compressed != tt.wantZlib || !bytes.Equal(back.Data, tt.data) {
					t.Fatalf("%v: decoded compressed=%v, %d bytes", typ, back.Compressed, len(back.Data))
				}
			}
		})
	}
}

func TestDeflate(t *testing.T) {
	c := &codec.MessageCodec{}
	in := []byte(longPayload)
	out, ok := c.Deflate(in)
	if !ok || !bytes.Equal(out, unhex(t, onMessageLongHex)[4+11:]) {
		t.Fatalf("Deflate = % x, %v", out, ok)
	}
	// The result is not a pooled buffer: later calls leave it alone.
	keep := bytes.Clone(out)
	if other, ok := c.Deflate(bytes.Repeat([]byte("zz"), 200)); !ok || bytes.Equal(other, keep) {
		t.Fatal("second Deflate")
	}
	if !bytes.Equal(out, keep) {
		t.Fatal("Deflate's result was overwritten by a later call")
	}
	rnd := randomBytes(300, 3)
	if out, ok := c.Deflate(rnd); ok || &out[0] != &rnd[0] {
		t.Fatal("incompressible data should come back as it is")
	}
}

func TestMessageReset(t *testing.T) {
	m := codec.Message{Type: codec.Push, ID: 1, Route: "r", Data: []byte("x"), Err: true, RouteCompressed: true, Compressed: true}
	m.Reset()
	if m.Type != 0 || m.ID != 0 || m.Route != "" || m.Data != nil || m.Err || m.RouteCompressed || m.Compressed {
		t.Fatalf("%+v", m)
	}
}

// TestDecodeAllocs: decoding into a reused Message does not allocate when the
// route is known to the dictionary and the payload is plain.
func TestDecodeAllocs(t *testing.T) {
	c := &codec.MessageCodec{Dict: testDict(t)}
	tests := []struct {
		name string
		body string
		max  float64
	}{
		{"coded route", "01 01 0001 7b7d", 0},
		{"known route", "02 0a 726f6f6d2e6c65617665 7b7d", 0},
		{"coded route spelled out", "00 ac02 09 726f6f6d2e6a6f696e 7b7d", 0},
		{"response", "04 01 7b7d", 0},
		{"unknown route", "02 03 616263 7b7d", 1}, // the route string
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := unhex(t, tt.body)
			var m codec.Message
			allocs := testing.AllocsPerRun(100, func() {
				if err := c.Decode(body, &m); err != nil {
					t.Fatal(err)
				}
			})
			if allocs > tt.max {
				t.Fatalf("%v allocs per decode, want at most %v", allocs, tt.max)
			}
		})
	}
}

func TestEncodeAllocs(t *testing.T) {
	c := &codec.MessageCodec{Dict: testDict(t), Compress: true}
	m := &codec.Message{Type: codec.Response, ID: 1, Data: []byte(`{"code":0,"result":"success"}`)}
	buf := make([]byte, 0, 256)
	allocs := testing.AllocsPerRun(100, func() {
		var err error
		if buf, err = c.AppendPacket(buf[:0], m); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocs per small compressed-codec encode, want 0", allocs)
	}
}

// TestMessageCodecConcurrent shares one codec (pooled zlib writers and
// readers) between goroutines; run it with -race.
func TestMessageCodecConcurrent(t *testing.T) {
	c := &codec.MessageCodec{Dict: testDict(t), Compress: true}
	const goroutines, rounds = 8, 50
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			var m codec.Message
			var buf []byte
			for i := range rounds {
				data := []byte(strings.Repeat(fmt.Sprintf("goroutine %d round %d; ", g, i), 10))
				in := &codec.Message{Type: codec.Push, Route: "onMessage", Data: data}
				var err error
				if buf, err = c.Append(buf[:0], in); err != nil {
					t.Error(err)
					return
				}
				if buf[0]&0x10 == 0 {
					t.Error("not compressed")
					return
				}
				if err := c.Decode(buf, &m); err != nil {
					t.Error(err)
					return
				}
				if !m.Compressed || m.Route != "onMessage" || !bytes.Equal(m.Data, data) {
					t.Errorf("goroutine %d round %d: got %q", g, i, trunc(m.Data))
					return
				}
				if d, ok := c.Deflate(data); !ok || !bytes.Equal(d, buf[3:]) {
					t.Errorf("goroutine %d round %d: Deflate", g, i)
					return
				}
			}
		})
	}
	wg.Wait()
}
