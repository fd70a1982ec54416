package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"testing"

	"github.com/nopal-dev/nopal/codec"
	"github.com/nopal-dev/nopal/examples/pitayatest/protos"
)

func TestBusPrefix(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"pitaya/", "pitaya"},
		{"1b4e28ba-2fa1-11d2-883f-0016d3cca427/", "1b4e28ba-2fa1-11d2-883f-0016d3cca427"},
		{"a.b/c*d>", "a_b_c_d_"},
		{"/", "pitaya"},
		{"", "pitaya"},
	} {
		if got := busPrefix(tc.in); got != tc.want {
			t.Errorf("busPrefix(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParseOptions(t *testing.T) {
	env := map[string]string{
		"PITAYA_METRICS_PROMETHEUS_PORT":            "9191",
		"PITAYA_CLUSTER_RPC_SERVER_LOOPBACKENABLED": "true",
		"PITAYA_CLUSTER_RPC_CLIENT_NATS_CONNECT":    "nats://10.0.0.1:4222",
	}
	// Pitaya's suite's command line, -grpc and -grpcport included.
	o, err := parseOptions([]string{"-type", "game", "-port", "0", "-frontend=false", "-sdprefix", "x/",
		"-grpcport", "4000", "-grpc=false", "-debug"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := options{port: 0, svType: "game", isFrontend: false, serializer: "json", sdPrefix: "x/", debug: true,
		natsURL: "nats://10.0.0.1:4222", pitayaErrors: true, metricsPort: 9191, loopback: true}
	if o != want {
		t.Errorf("got %+v, want %+v", o, want)
	}
	o, err = parseOptions(nil, func(string) string { return "" }, io.Discard)
	if err != nil || o.natsURL != DefaultNATS || o.port != 32222 || o.svType != "connector" || !o.isFrontend || o.sdPrefix != "pitaya/" {
		t.Errorf("defaults: %+v, %v", o, err)
	}
	for _, args := range [][]string{{"-serializer", "xml"}, {"extra"}} {
		if _, err := parseOptions(args, func(string) string { return "" }, io.Discard); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
}

func TestRefuseNilReply(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		name    string
		out     any
		err     error
		wantErr string // code, "" for none
	}{
		{"nil pointer", (*protos.TestResponse)(nil), nil, codec.CodeUnknown},
		{"nil bytes", []byte(nil), nil, codec.CodeUnknown},
		{"empty bytes", []byte{}, nil, ""},
		{"value", &protos.TestResponse{}, nil, ""},
		{"notify", nil, nil, ""},
		{"error kept", (*protos.TestResponse)(nil), boom, "boom"},
	} {
		_, err := refuseNilReply(t.Context(), tc.out, tc.err)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.wantErr == "boom" && err != boom:
			t.Errorf("%s: got %v, want boom", tc.name, err)
		case tc.wantErr == codec.CodeUnknown:
			var e *codec.Error
			if !errors.As(err, &e) || e.Code != codec.CodeUnknown || e.Message != msgNilReply {
				t.Errorf("%s: got %v", tc.name, err)
			}
		}
	}
}

func TestRewriteErrorPacket(t *testing.T) {
	var mc codec.MessageCodec
	packet := func(ser codec.Serializer, m *codec.Message, e *codec.Error) []byte {
		t.Helper()
		if e != nil {
			data, err := codec.EncodeError(ser, e)
			if err != nil {
				t.Fatal(err)
			}
			m.Data = data
		}
		b, err := mc.AppendPacket(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	nf := func() *codec.Error {
		return codec.NewError(codec.CodeNotFound, "nopal/handler: connector.a.b not found", map[string]string{"k": "v"})
	}
	for _, ser := range []codec.Serializer{codec.JSON{}, codec.Protobuf{}} {
		for _, id := range []uint64{1, 300} { // a one- and a two-byte varint
			in := packet(ser, &codec.Message{Type: codec.Response, ID: id, Err: true}, nf())
			got := rewriteErrorPacket(ser, in)
			var m codec.Message
			if err := mc.Decode(got[codec.HeaderLength:], &m); err != nil {
				t.Fatalf("%s: %v", ser.Name(), err)
			}
			e, err := codec.DecodeError(ser, m.Data)
			if err != nil || m.ID != id || !m.Err || e.Message != "pitaya/handler: connector.a.b not found" || e.Metadata["k"] != "v" {
				t.Errorf("%s id %d: got id %d err %v: %+v (%v)", ser.Name(), id, m.ID, m.Err, e, err)
			}
		}
	}
	// Left as they are: other errors, non-errors, pushes, other packets.
	other := codec.NewError("PIT-555", "somerror", nil)
	body, _ := json.Marshal(nf())
	for name, in := range map[string][]byte{
		"other error":   packet(codec.JSON{}, &codec.Message{Type: codec.Response, ID: 1, Err: true}, other),
		"response":      packet(codec.JSON{}, &codec.Message{Type: codec.Response, ID: 1, Data: body}, nil),
		"push":          packet(codec.JSON{}, &codec.Message{Type: codec.Push, Route: "r", Data: body}, nil),
		"heartbeat":     {byte(codec.Heartbeat), 0, 0, 0},
		"truncated":     {byte(codec.Data), 0, 0, 9, 0x24},
		"not an error":  packet(codec.JSON{}, &codec.Message{Type: codec.Response, ID: 1, Err: true, Data: []byte("{")}, nil),
		"empty message": {byte(codec.Data), 0, 0, 0},
	} {
		if got := rewriteErrorPacket(codec.JSON{}, in); !bytes.Equal(got, in) {
			t.Errorf("%s: rewritten to %q", name, got)
		}
	}
}
