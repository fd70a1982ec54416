package codec_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/nopal-dev/nopal/codec"
)

// vector is one row of /work/shared/protocol-vectors.md: bytes captured from a
// Pitaya server (JSON serializer, compression on) and its clients.
type vector struct {
	row        int
	fromServer bool   // S→C; C→S rows come from a client, which never compresses
	hex        string // as in the table, spaces allowed
	typ        codec.PacketType
	msg        *codec.Message // decoded message of a Data packet
	zlib       bool           // the message payload travels zlib-compressed
}

const (
	handshakeRequestHex  = `01000067 7b22737973223a7b22706c6174666f726d223a2263617074757265222c226c696256657273696f6e223a22302e31222c22636c69656e744275696c644e756d626572223a2231222c22636c69656e7456657273696f6e223a2231227d2c2275736572223a7b7d7d`
	handshakeResponseHex = `01000041 7b22636f6465223a3230302c22737973223a7b2264696374223a7b7d2c22686561727462656174223a31352c2273657269616c697a6572223a226a736f6e227d7d`
	joinRequestHex       = `0400000e 000109726f6f6d2e6a6f696e 7b7d`
	joinResponseHex      = `0400001f 0401 7b22636f6465223a302c22726573756c74223a2273756363657373227d`
	onMessageHex         = `0400002b 06096f6e4d657373616765 7b226e616d65223a22626f62222c22636f6e74656e74223a2268656c6c6f227d`
	onMessageLongHex     = `0400003a 16096f6e4d657373616765 789caa56ca4bcc4d55b2524aca4f52d2514acecf2b49cd2b51b252ca48cdc9c957a03fa9540b080000fffff5ec3488`
	errorResponseHex     = `0400004e 2403 7b22636f6465223a225049542d343034222c226d7367223a227069746179612f68616e646c65723a20636861742e726f6f6d2e6e6f7375636868616e646c6572206e6f7420666f756e64227d`
)

const (
	handshakeRequestJSON  = `{"sys":{"platform":"capture","libVersion":"0.1","clientBuildNumber":"1","clientVersion":"1"},"user":{}}`
	handshakeResponseJSON = `{"code":200,"sys":{"dict":{},"heartbeat":15,"serializer":"json"}}`
	helloPayload          = `{"name":"bob","content":"hello"}`
	notFoundPayload       = `{"code":"PIT-404","msg":"pitaya/handler: chat.room.nosuchhandler not found"}`
)

// longPayload is the 147-byte payload of rows 17–19.
var longPayload = `{"name":"bob","content":"` + strings.Repeat("hello ", 20) + `"}`

var vectors = []vector{
	{row: 1, hex: handshakeRequestHex, typ: codec.Handshake},
	{row: 2, fromServer: true, hex: handshakeResponseHex, typ: codec.Handshake},
	{row: 3, hex: `02000000`, typ: codec.HandshakeAck},
	{row: 4, hex: joinRequestHex, typ: codec.Data,
		msg: &codec.Message{Type: codec.Request, ID: 1, Route: "room.join", Data: []byte(`{}`)}},
	{row: 5, fromServer: true, hex: `04000019 06096f6e4d656d62657273 7b226d656d62657273223a5b5d7d`, typ: codec.Data,
		msg: &codec.Message{Type: codec.Push, Route: "onMembers", Data: []byte(`{"members":[]}`)}},
	{row: 6, fromServer: true, hex: joinResponseHex, typ: codec.Data,
		msg: &codec.Message{Type: codec.Response, ID: 1, Data: []byte(`{"code":0,"result":"success"}`)}},
	{row: 7, hex: handshakeRequestHex, typ: codec.Handshake},
	{row: 8, fromServer: true, hex: handshakeResponseHex, typ: codec.Handshake},
	{row: 9, hex: `02000000`, typ: codec.HandshakeAck},
	{row: 10, hex: joinRequestHex, typ: codec.Data,
		msg: &codec.Message{Type: codec.Request, ID: 1, Route: "room.join", Data: []byte(`{}`)}},
	{row: 11, fromServer: true, hex: `0400001c 06096f6e4d656d62657273 7b226d656d62657273223a5b2231225d7d`, typ: codec.Data,
		msg: &codec.Message{Type: codec.Push, Route: "onMembers", Data: []byte(`{"members":["1"]}`)}},
	{row: 12, fromServer: true, hex: joinResponseHex, typ: codec.Data,
		msg: &codec.Message{Type: codec.Response, ID: 1, Data: []byte(`{"code":0,"result":"success"}`)}},
	{row: 13, fromServer: true, hex: `04000024 06096f6e4e657755736572 7b22636f6e74656e74223a224e657720757365723a2032227d`, typ: codec.Data,
		msg: &codec.Message{Type: codec.Push, Route: "onNewUser", Data: []byte(`{"content":"New user: 2"}`)}},
	{row: 14, hex: `0400002e 020c726f6f6d2e6d657373616765 7b226e616d65223a22626f62222c22636f6e74656e74223a2268656c6c6f227d`, typ: codec.Data,
		msg: &codec.Message{Type: codec.Notify, Route: "room.message", Data: []byte(helloPayload)}},
	{row: 15, fromServer: true, hex: onMessageHex, typ: codec.Data,
		msg: &codec.Message{Type: codec.Push, Route: "onMessage", Data: []byte(helloPayload)}},
	{row: 16, fromServer: true, hex: onMessageHex, typ: codec.Data,
		msg: &codec.Message{Type: codec.Push, Route: "onMessage", Data: []byte(helloPayload)}},
	{row: 17, hex: `040000a1 020c726f6f6d2e6d657373616765 7b226e616d65223a22626f62222c22636f6e74656e74223a2268656c6c6f2068656c6c6f2068656c6c6f2068656c6c6f2068656c6c6f2068656c6c6f2068656c6c6f2068656c6c6f2068656c6c6f2068656c6c6f2068656c6c6f2068656c6c6f2068656c6c6f2068656c6c6f2068656c6c6f2068656c6c6f2068656c6c6f2068656c6c6f2068656c6c6f2068656c6c6f20227d`, typ: codec.Data,
		msg: &codec.Message{Type: codec.Notify, Route: "room.message", Data: []byte(longPayload)}},
	{row: 18, fromServer: true, hex: onMessageLongHex, typ: codec.Data, zlib: true,
		msg: &codec.Message{Type: codec.Push, Route: "onMessage", Data: []byte(longPayload)}},
	{row: 19, fromServer: true, hex: onMessageLongHex, typ: codec.Data, zlib: true,
		msg: &codec.Message{Type: codec.Push, Route: "onMessage", Data: []byte(longPayload)}},
	{row: 20, hex: `04000017 000312726f6f6d2e6e6f7375636868616e646c6572 7b7d`, typ: codec.Data,
		msg: &codec.Message{Type: codec.Request, ID: 3, Route: "room.nosuchhandler", Data: []byte(`{}`)}},
	{row: 21, fromServer: true, hex: errorResponseHex, typ: codec.Data,
		msg: &codec.Message{Type: codec.Response, ID: 3, Err: true, Data: []byte(notFoundPayload)}},
	{row: 22, fromServer: true, hex: `03000000`, typ: codec.Heartbeat},
	{row: 23, hex: `03000000`, typ: codec.Heartbeat},
	{row: 24, fromServer: true, hex: `05000000`, typ: codec.Kick},
}

// unhex decodes a hex string that may contain spaces.
func unhex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		tb.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// checkMessage compares the fields a message carries on the wire.
func checkMessage(tb testing.TB, got, want *codec.Message) {
	tb.Helper()
	if got.Type != want.Type || got.ID != want.ID || got.Route != want.Route || got.Err != want.Err {
		tb.Errorf("message = {%v id=%d route=%q err=%v}, want {%v id=%d route=%q err=%v}",
			got.Type, got.ID, got.Route, got.Err, want.Type, want.ID, want.Route, want.Err)
	}
	if !bytes.Equal(got.Data, want.Data) {
		tb.Errorf("data = %q, want %q", got.Data, want.Data)
	}
}

func TestGoldenPackets(t *testing.T) {
	for _, v := range vectors {
		t.Run(rowName(v.row), func(t *testing.T) {
			raw := unhex(t, v.hex)
			typ, body, err := codec.ParsePacket(raw, 0)
			if err != nil {
				t.Fatalf("ParsePacket: %v", err)
			}
			if typ != v.typ {
				t.Fatalf("type = %v, want %v", typ, v.typ)
			}
			again, err := codec.AppendPacket(nil, typ, body)
			if err != nil {
				t.Fatalf("AppendPacket: %v", err)
			}
			if !bytes.Equal(again, raw) {
				t.Fatalf("AppendPacket = % x, want % x", again, raw)
			}
			switch typ {
			case codec.HandshakeAck, codec.Heartbeat, codec.Kick:
				if len(body) != 0 {
					t.Fatalf("body = % x, want empty", body)
				}
			}
		})
	}
}

func TestGoldenHandshake(t *testing.T) {
	for _, v := range vectors {
		if v.typ != codec.Handshake {
			continue
		}
		t.Run(rowName(v.row), func(t *testing.T) {
			_, body, err := codec.ParsePacket(unhex(t, v.hex), 0)
			if err != nil {
				t.Fatal(err)
			}
			if !v.fromServer {
				if string(body) != handshakeRequestJSON {
					t.Fatalf("body = %s", body)
				}
				var req codec.HandshakeRequest
				if err := json.Unmarshal(body, &req); err != nil {
					t.Fatal(err)
				}
				want := codec.HandshakeSys{Platform: "capture", LibVersion: "0.1", BuildNumber: "1", Version: "1"}
				if req.Sys != want {
					t.Errorf("sys = %+v, want %+v", req.Sys, want)
				}
				if req.User == nil || len(req.User) != 0 {
					t.Errorf("user = %#v, want an empty map", req.User)
				}
				return
			}
			if string(body) != handshakeResponseJSON {
				t.Fatalf("body = %s", body)
			}
			var res codec.HandshakeResponse
			if err := json.Unmarshal(body, &res); err != nil {
				t.Fatal(err)
			}
			if res.Code != codec.HandshakeOK || res.Sys == nil || len(res.Sys.Dict) != 0 ||
				res.Sys.Heartbeat != 15 || res.Sys.Serializer != "json" {
				t.Fatalf("response = %+v sys %+v", res, res.Sys)
			}
			again, err := json.Marshal(res)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again, body) {
				t.Errorf("re-encoded %s, want %s", again, body)
			}

			// What a Nopal server builds from scratch must match too.
			var dict *codec.Dictionary
			built, err := json.Marshal(codec.HandshakeResponse{Code: codec.HandshakeOK, Sys: &codec.HandshakeResponseSys{
				Dict: dict.Codes(), Heartbeat: 15, Serializer: codec.JSON{}.Name(),
			}})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(built, body) {
				t.Errorf("built %s, want %s", built, body)
			}
			// Pitaya sends it plain because zlib does not make it shorter.
			c := &codec.MessageCodec{Compress: true}
			if out, ok := c.Deflate(body); ok || !bytes.Equal(out, body) {
				t.Errorf("Deflate(handshake response) = %d bytes, %v; want plain", len(out), ok)
			}
		})
	}
}

func TestGoldenHandshakeFailed(t *testing.T) {
	b, err := json.Marshal(codec.HandshakeResponse{Code: codec.HandshakeFailed})
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"code":400}` {
		t.Fatalf("got %s", b)
	}
}

func TestGoldenMessages(t *testing.T) {
	for _, v := range vectors {
		if v.msg == nil {
			continue
		}
		t.Run(rowName(v.row), func(t *testing.T) {
			raw := unhex(t, v.hex)
			_, body, err := codec.ParsePacket(raw, 0)
			if err != nil {
				t.Fatal(err)
			}
			// Pitaya's own server ran with compression on; its clients never compress.
			c := &codec.MessageCodec{Compress: v.fromServer}
			var m codec.Message
			if err := c.Decode(body, &m); err != nil {
				t.Fatalf("Decode: %v", err)
			}
			checkMessage(t, &m, v.msg)
			if m.Compressed != v.zlib {
				t.Errorf("Compressed = %v, want %v", m.Compressed, v.zlib)
			}
			if m.RouteCompressed {
				t.Error("RouteCompressed with an empty dictionary")
			}

			got, err := c.AppendPacket(nil, v.msg)
			if err != nil {
				t.Fatalf("AppendPacket: %v", err)
			}
			if !bytes.Equal(got, raw) {
				t.Fatalf("encoded\n % x\nwant\n % x", got, raw)
			}
			// Append alone gives the body.
			gotBody, err := c.Append([]byte("prefix"), v.msg)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(gotBody, append([]byte("prefix"), body...)) {
				t.Fatalf("Append = % x, want prefix + % x", gotBody, body)
			}
		})
	}
}

// TestGoldenCompressionOnShortPayloads: with compression on, every short
// payload of the capture goes out plain, as Pitaya sent it.
func TestGoldenCompressionOnShortPayloads(t *testing.T) {
	c := &codec.MessageCodec{Compress: true}
	for _, v := range vectors {
		if v.msg == nil || v.row == 17 {
			continue // row 17 came from a client, which sent 147 bytes plain
		}
		got, err := c.AppendPacket(nil, v.msg)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, unhex(t, v.hex)) {
			t.Errorf("row %d: % x", v.row, got)
		}
	}
	// A server pushing row 17's payload compresses it like rows 18/19.
	got, err := c.Append(nil, &codec.Message{Type: codec.Notify, Route: "room.message", Data: []byte(longPayload)})
	if err != nil {
		t.Fatal(err)
	}
	if got[0] != 0x12 || !bytes.HasSuffix(got, unhex(t, onMessageLongHex)[4+11:]) {
		t.Errorf("compressed notify = % x", got)
	}
}

// TestGoldenStream feeds the whole capture, as one TCP byte stream, through a
// PacketReader: first in one piece, then one byte at a time.
func TestGoldenStream(t *testing.T) {
	var stream []byte
	for _, v := range vectors {
		stream = append(stream, unhex(t, v.hex)...)
	}
	readers := map[string]func([]byte) io.Reader{
		"whole":   func(b []byte) io.Reader { return bytes.NewReader(b) },
		"onebyte": func(b []byte) io.Reader { return oneByte(b) },
	}
	for name, mk := range readers {
		t.Run(name, func(t *testing.T) {
			pr := codec.NewPacketReader(mk(stream), &codec.BufferPool{Size: 64}, 1024)
			for _, v := range vectors {
				typ, _, pkt, err := pr.Next()
				if err != nil {
					t.Fatalf("row %d: %v", v.row, err)
				}
				if typ != v.typ || !bytes.Equal(pkt, unhex(t, v.hex)) {
					t.Fatalf("row %d: %v % x", v.row, typ, pkt)
				}
			}
			if _, _, _, err := pr.Next(); err != io.EOF {
				t.Fatalf("after the last packet: %v, want io.EOF", err)
			}
		})
	}
}

// TestDesignGolden is DESIGN.md §2's golden: an error Response with id 0 and
// data 0x01 encodes as 24 00 01.
func TestDesignGolden(t *testing.T) {
	for _, compress := range []bool{false, true} {
		c := &codec.MessageCodec{Compress: compress, CompressThreshold: 1}
		m := &codec.Message{Type: codec.Response, ID: 0, Err: true, Data: []byte{0x01}}
		got, err := c.Append(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		if want := []byte{0x24, 0x00, 0x01}; !bytes.Equal(got, want) {
			t.Fatalf("compress=%v: % x, want % x", compress, got, want)
		}
		var back codec.Message
		if err := c.Decode(got, &back); err != nil {
			t.Fatal(err)
		}
		checkMessage(t, &back, m)
	}
}

func TestGoldenErrorPayload(t *testing.T) {
	_, body, err := codec.ParsePacket(unhex(t, errorResponseHex), 0)
	if err != nil {
		t.Fatal(err)
	}
	var m codec.Message
	if err := (&codec.MessageCodec{}).Decode(body, &m); err != nil {
		t.Fatal(err)
	}
	e, err := codec.DecodeError(codec.JSON{}, m.Data)
	if err != nil {
		t.Fatal(err)
	}
	if e.Code != codec.CodeNotFound || e.Message != "pitaya/handler: chat.room.nosuchhandler not found" || e.Metadata != nil {
		t.Fatalf("decoded %#v", e)
	}
	if !errors.Is(e, &codec.Error{Code: codec.CodeNotFound}) {
		t.Error("errors.Is PIT-404 failed")
	}
	again, err := codec.EncodeError(codec.JSON{}, e)
	if err != nil {
		t.Fatal(err)
	}
	if string(again) != notFoundPayload {
		t.Fatalf("EncodeError = %s, want %s", again, notFoundPayload)
	}
	// The whole error response, rebuilt.
	c := &codec.MessageCodec{Compress: true}
	pkt, err := c.AppendPacket(nil, &codec.Message{Type: codec.Response, ID: 3, Err: true, Data: again})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pkt, unhex(t, errorResponseHex)) {
		t.Fatalf("error response % x", pkt)
	}
}

func TestErrorRoundTrip(t *testing.T) {
	errs := []*codec.Error{
		codec.NewError(codec.CodeNotFound, "pitaya/handler: chat.room.nosuchhandler not found", nil),
		codec.NewError(codec.CodeRateLimited, "slow down", map[string]string{"retryAfter": "2s", "limit": "10/s"}),
		codec.NewError("GAME-1", "", map[string]string{"": "", "k": "vé\x00"}),
		{},
	}
	for _, s := range []codec.Serializer{codec.JSON{}, codec.Protobuf{}, nil} {
		for i, e := range errs {
			b, err := codec.EncodeError(s, e)
			if err != nil {
				t.Fatal(err)
			}
			got, err := codec.DecodeError(s, b)
			if err != nil {
				t.Fatalf("%v #%d: DecodeError(% x): %v", s, i, b, err)
			}
			checkError(t, got, e)
		}
	}
}

// checkError compares code, message and metadata (nil and empty alike).
func checkError(tb testing.TB, got, want *codec.Error) {
	tb.Helper()
	if got.Code != want.Code || got.Message != want.Message || len(got.Metadata) != len(want.Metadata) {
		tb.Fatalf("error = %#v, want %#v", got, want)
	}
	for k, v := range want.Metadata {
		if gv, ok := got.Metadata[k]; !ok || gv != v {
			tb.Fatalf("metadata[%q] = %q, want %q", k, gv, v)
		}
	}
}

func rowName(row int) string { return fmt.Sprintf("row%02d", row) }
