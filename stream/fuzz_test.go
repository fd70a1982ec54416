package stream

// Fuzz targets of what the bus decodes: the protobuf envelopes servers
// exchange (a Call carries a client's route and payload), the traffic
// records the recorder encodes by hand, and replay's decoding of them.
//
// The seeds are added with f.Add and also committed, one file each, under
// testdata/fuzz/<FuzzName>/ in Go's corpus format. After changing them:
//
//	go test -run=TestStreamFuzzCorpus ./stream/ -args -stream.writecorpus

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
)

var writeStreamCorpus = flag.Bool("stream.writecorpus", false, "rewrite the committed fuzz seed corpus")

// fuzzSeed is one named fuzz input; args match the fuzz function's
// parameters.
type fuzzSeed struct {
	name string
	args []any
}

// envelopeKinds are the messages FuzzEnvelope decodes, by kind % len.
var envelopeKinds = []func() proto.Message{
	func() proto.Message { return &Call{} },
	func() proto.Message { return &Reply{} },
	func() proto.Message { return &Push{} },
	func() proto.Message { return &Kick{} },
	func() proto.Message { return &Delivery{} },
	func() proto.Message { return &SessionOp{} },
	func() proto.Message { return &TrafficBatch{} },
}

func mustMarshal(tb testing.TB, m proto.Message) []byte {
	tb.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func envelopeSeeds(tb testing.TB) []fuzzSeed {
	tb.Helper()
	call := mustMarshal(tb, &Call{Kind: CallKind_CALL_KIND_SYS, Route: "room.room.join", Payload: []byte(`{"name":"ana"}`),
		Session: &SessionSnapshot{Id: 7, Uid: "ana", Data: []byte(`{"level":3}`)}, FrontendId: "connector-1",
		RequestId: 300, DeadlineUnixNano: 1 << 60, SourceId: "connector-1", SentUnixNano: 1 << 59})
	reply := mustMarshal(tb, &Reply{Error: &ErrorInfo{Code: "PIT-404", Msg: "not found", Metadata: map[string]string{"a": "1", "b": ""}}})
	batch := mustMarshal(tb, &TrafficBatch{Records: []*TrafficRecord{
		{UnixNano: 1, Subject: "nopal.rpc.room.room.join", Reply: "nopal.reply.c.1", Headers: map[string]string{"Nopal-Route": "room.room.join"}, Data: call, ServerId: "c"},
		{UnixNano: 2, Subject: "nopal.reply.c.1", Data: reply},
	}})
	return []fuzzSeed{
		{"call", []any{call, byte(0)}},
		{"call-truncated", []any{call[:len(call)/2], byte(0)}},
		{"call-route-not-utf8", []any{[]byte("\x12\x03a\xffb"), byte(0)}},
		{"call-route-wrong-wire-type", []any{[]byte("\x10\x05"), byte(0)}},
		{"call-unknown-kind", []any{[]byte("\x08\x09"), byte(0)}},
		{"call-negative-session-id", []any{[]byte("\x22\x0b\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"), byte(0)}},
		{"reply-error-metadata", []any{reply, byte(1)}},
		{"reply-map-entry-garbage", []any{[]byte("\x12\x04\x1a\x02\x0a\xff"), byte(1)}},
		{"push", []any{mustMarshal(tb, &Push{Uids: []string{"ana", "bob"}, Route: "onMessage", Payload: []byte("{}")}), byte(2)}},
		{"kick", []any{mustMarshal(tb, &Kick{Uids: []string{"ana"}, SessionId: 9}), byte(3)}},
		{"delivery", []any{mustMarshal(tb, &Delivery{Failed: []string{"x"}}), byte(4)}},
		{"session-op", []any{mustMarshal(tb, &SessionOp{SessionId: 1, Uid: "ana", SetData: true, Data: []byte("{}")}), byte(5)}},
		{"traffic-batch", []any{batch, byte(6)}},
		{"group", []any{[]byte("\x0b\x08\x01\x0c"), byte(6)}},
		{"empty", []any{[]byte{}, byte(0)}},
		{"varint-11-bytes", []any{[]byte("\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"), byte(3)}},
	}
}

// FuzzEnvelope: decoding any bytes as any envelope never panics, and what
// decodes encodes (deterministically) to bytes that decode to an equal
// message and re-encode to the same bytes.
func FuzzEnvelope(f *testing.F) {
	addFuzzSeeds(f, "FuzzEnvelope")
	f.Fuzz(func(t *testing.T, data []byte, kind byte) {
		newMsg := envelopeKinds[int(kind)%len(envelopeKinds)]
		m := newMsg()
		if err := proto.Unmarshal(data, m); err != nil {
			return
		}
		enc, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		if err != nil {
			t.Fatalf("re-encode %T %v: %v", m, m, err)
		}
		back := newMsg()
		if err := proto.Unmarshal(enc, back); err != nil {
			t.Fatalf("decode re-encoded %T %x: %v", m, enc, err)
		}
		if !proto.Equal(m, back) {
			t.Fatalf("%T changed: %v then %v", m, m, back)
		}
		if enc2 := mustMarshal(t, back); !bytes.Equal(enc, enc2) {
			t.Fatalf("%T: not a fixed point: %x then %x", m, enc, enc2)
		}
	})
}

func recordSeeds(tb testing.TB) []fuzzSeed {
	tb.Helper()
	return []fuzzSeed{
		{"call", []any{int64(1767225600000000000), "nopal.rpc.room.room.join", "nopal.reply.c.1", "traceparent", "00-abc-def-01", "", []byte(`{"a":1}`), "connector-1"}},
		{"reply-with-route", []any{int64(1), "nopal.reply.c.1", "", RouteHeader, "room.room.join", "", []byte{0x0a, 0x00}, "c"}},
		{"two-header-values", []any{int64(-1), "s", "", "k", "v1", "v2", []byte(nil), ""}},
		{"empty", []any{int64(0), "", "", "", "", "", []byte(nil), ""}},
		{"long-data", []any{int64(1 << 62), "x", "y", "", "", "v", bytes.Repeat([]byte{0xff}, 300), "z"}},
	}
}

// FuzzRecord: what the recorder encodes by hand (appendRecord) is a
// TrafficRecord that protobuf decodes to the same fields, of the size
// recordSize predicts, for any valid UTF-8 strings (proto3 strings must be
// UTF-8: a record holding anything else would make its whole batch
// undecodable, which is why the recorder is only given subjects, headers
// and ids that NATS and protobuf have already accepted).
func FuzzRecord(f *testing.F) {
	addFuzzSeeds(f, "FuzzRecord")
	f.Fuzz(func(t *testing.T, unixNano int64, subject, reply, hk, hv1, hv2 string, data []byte, server string) {
		headers := map[string][]string{hk: {hv1}}
		if hv2 != "" {
			headers[hk] = append(headers[hk], hv2)
		}
		b := appendRecord(nil, unixNano, subject, reply, headers, data, server)
		if n := recordSize(unixNano, subject, reply, headers, data, server); n != len(b) {
			t.Fatalf("recordSize %d, appendRecord wrote %d bytes", n, len(b))
		}
		for _, s := range []string{subject, reply, hk, hv1, hv2, server} {
			if !utf8.ValidString(s) {
				return
			}
		}
		var rec TrafficRecord
		if err := proto.Unmarshal(b, &rec); err != nil {
			t.Fatalf("decode %x: %v", b, err)
		}
		wantV := hv1
		if hv2 != "" {
			wantV += ", " + hv2
		}
		if rec.GetUnixNano() != unixNano || rec.GetSubject() != subject || rec.GetReply() != reply ||
			!bytes.Equal(rec.GetData(), data) || rec.GetServerId() != server ||
			len(rec.GetHeaders()) != 1 || rec.GetHeaders()[hk] != wantV {
			t.Fatalf("decoded %v", &rec)
		}
		// The same bytes as protobuf's own encoding, except that
		// appendRecord always writes the time, even 0, and leaves out a
		// map entry's empty key or value, which protobuf writes: both
		// decode the same.
		canonical := unixNano != 0 && hk != "" && wantV != ""
		if want := mustMarshal(t, &rec); canonical && !bytes.Equal(b, want) {
			t.Fatalf("appendRecord %x, protobuf %x", b, want)
		}
	})
}

func replaySeeds(tb testing.TB) []fuzzSeed {
	tb.Helper()
	env := map[string][]byte{}
	for _, s := range envelopeSeeds(tb) {
		env[s.name] = s.args[0].([]byte)
	}
	return []fuzzSeed{
		{"rpc-call", []any{"nopal.rpc.room.room.join", "nopal.reply.c.1", env["call"]}},
		{"srv-rpc", []any{"nopal.srv.room-1.rpc", "nopal.reply.c.2", env["call"]}},
		{"reply", []any{"nopal.reply.c.1", "", env["reply-error-metadata"]}},
		{"push", []any{"nopal.srv.c.push", "", env["push"]}},
		{"kick", []any{"nopal.srv.c.kick", "", env["kick"]}},
		{"sess", []any{"nopal.srv.c.sess", "", env["session-op"]}},
		{"push-garbage", []any{"nopal.srv.c.push", "", []byte("\xff\xff")}},
		{"other-prefix", []any{"other.rpc.x", "", []byte("not json")}},
		{"srv-no-kind", []any{"nopal.srv", "", []byte(nil)}},
		{"prefix-only", []any{"nopal.", "", []byte(`"json"`)}},
	}
}

// FuzzReplayDecode: replay decodes any record without panicking, every
// payload it reports is valid JSON, and the entry encodes as JSON (what
// `node replay -json` prints).
func FuzzReplayDecode(f *testing.F) {
	addFuzzSeeds(f, "FuzzReplayDecode")
	d := decoder{prefix: "nopal.", calls: make(map[string]callRef)}
	f.Fuzz(func(t *testing.T, subject, reply string, data []byte) {
		e, _ := d.decode(&TrafficRecord{Subject: subject, Reply: reply, Data: data, Headers: map[string]string{RouteHeader: "r"}})
		if e.Payload != nil && !json.Valid(e.Payload) {
			t.Fatalf("payload %q is not JSON", e.Payload)
		}
		if _, err := json.Marshal(e); err != nil {
			t.Fatalf("entry %+v: %v", e, err)
		}
		if len(d.calls) > maxPendingCalls {
			t.Fatalf("%d pending calls", len(d.calls))
		}
	})
}

var streamFuzzSeeds = map[string]func(testing.TB) []fuzzSeed{
	"FuzzEnvelope":     envelopeSeeds,
	"FuzzRecord":       recordSeeds,
	"FuzzReplayDecode": replaySeeds,
}

func addFuzzSeeds(f *testing.F, name string) {
	f.Helper()
	for _, s := range streamFuzzSeeds[name](f) {
		f.Add(s.args...)
	}
}

// corpusEntry encodes a seed in the format of testdata/fuzz files.
func corpusEntry(tb testing.TB, args []any) []byte {
	tb.Helper()
	b := []byte("go test fuzz v1\n")
	for _, a := range args {
		switch v := a.(type) {
		case []byte:
			b = fmt.Appendf(b, "[]byte(%q)\n", v)
		case string:
			b = fmt.Appendf(b, "string(%q)\n", v)
		case byte:
			b = fmt.Appendf(b, "byte(%q)\n", v)
		case int64:
			b = fmt.Appendf(b, "int64(%d)\n", v)
		default:
			tb.Fatalf("seed of type %T", a)
		}
	}
	return b
}

// TestStreamFuzzCorpus checks that the committed seed corpus holds every
// seed (the fuzzer may have added more files: crashers kept as
// regressions).
func TestStreamFuzzCorpus(t *testing.T) {
	for name, seeds := range streamFuzzSeeds {
		dir := filepath.Join("testdata", "fuzz", name)
		if *writeStreamCorpus {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for _, s := range seeds(t) {
			path := filepath.Join(dir, "seed-"+s.name)
			want := corpusEntry(t, s.args)
			if *writeStreamCorpus {
				if err := os.WriteFile(path, want, 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			got, err := os.ReadFile(path)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s is missing or stale (%v): rerun with -args -stream.writecorpus", path, err)
			}
		}
	}
}
