package stream_test

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/nopal-dev/nopal/stream"
)

// callSeeds are Calls and Replies as the cluster sends them.
func callSeeds(t testing.TB) [][]byte {
	t.Helper()
	var out [][]byte
	for _, m := range []proto.Message{
		&stream.Call{Route: "room.room.join", Payload: []byte(`{"name":"ana"}`), FrontendId: "connector-1", RequestId: 7,
			Session: &stream.SessionSnapshot{Id: 42, Uid: "u1", Data: []byte(`{"k":1}`)}, DeadlineUnixNano: 1e18, SourceId: "connector-1", SentUnixNano: 1e18 - 5},
		&stream.Call{Kind: stream.CallKind_CALL_KIND_USER, Route: "room.remote.grant", Payload: []byte{0, 1, 2}},
		&stream.Call{Notify: true, Session: &stream.SessionSnapshot{}},
		&stream.Reply{Payload: []byte("ok")},
		&stream.Reply{Error: &stream.ErrorInfo{Code: "PIT-404", Msg: "nope", Metadata: map[string]string{"a": "b"}}},
	} {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return append(out, nil, []byte{0x12, 0xff}, []byte{0x22, 0x02, 0x12, 0x01, 0xff})
}

// clearUnknown drops the unknown fields the generated decoder keeps and
// the hand-written one skips.
func clearUnknown(m proto.Message) {
	m.ProtoReflect().SetUnknown(nil)
	switch v := m.(type) {
	case *stream.Call:
		if v.Session != nil {
			v.Session.ProtoReflect().SetUnknown(nil)
		}
	case *stream.Reply:
		if v.Error != nil {
			v.Error.ProtoReflect().SetUnknown(nil)
		}
	}
}

// FuzzCallCodec: the hand-written Call and Reply codec reads what the
// generated code reads, rejects what it rejects, and writes the same
// bytes (a Reply's error, encoded by the generated code, is compared
// decoded: its map has no fixed order).
func FuzzCallCodec(f *testing.F) {
	for _, s := range callSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var want, got stream.Call
		errWant, errGot := proto.Unmarshal(data, &want), stream.UnmarshalCall(data, &got)
		if (errWant == nil) != (errGot == nil) {
			t.Fatalf("Call % x: generated %v, hand-written %v", data, errWant, errGot)
		}
		if errWant == nil {
			clearUnknown(&want)
			if !proto.Equal(&want, &got) {
				t.Fatalf("Call % x: generated %v, hand-written %v", data, &want, &got)
			}
			enc, err := proto.MarshalOptions{Deterministic: true}.Marshal(&got)
			if err != nil {
				t.Fatal(err)
			}
			if mine := stream.AppendCall(nil, &got); !bytes.Equal(mine, enc) {
				t.Fatalf("Call %v: generated % x, hand-written % x", &got, enc, mine)
			}
		}
		var wantR, gotR stream.Reply
		errWant, errGot = proto.Unmarshal(data, &wantR), stream.UnmarshalReply(data, &gotR)
		if (errWant == nil) != (errGot == nil) {
			t.Fatalf("Reply % x: generated %v, hand-written %v", data, errWant, errGot)
		}
		if errWant == nil {
			clearUnknown(&wantR)
			clearUnknown(&gotR) // the error is read by the generated code, unknown fields kept
			if !proto.Equal(&wantR, &gotR) {
				t.Fatalf("Reply % x: generated %v, hand-written %v", data, &wantR, &gotR)
			}
			mine, err := stream.AppendReply(nil, gotR.Payload, gotR.Error)
			if err != nil {
				t.Fatal(err)
			}
			var back stream.Reply
			if err := proto.Unmarshal(mine, &back); err != nil || !proto.Equal(&back, &gotR) {
				t.Fatalf("Reply %v: hand-written % x reads back as %v, %v", &gotR, mine, &back, err)
			}
		}
	})
}
