package stream_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nopal-dev/nopal/stream"
	"google.golang.org/protobuf/proto"
)

func mustMarshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// exchange is a recorded exchange between frontend fe1 and room server
// room-1, with the entries Replay should decode from it.
type exchange struct {
	fe, room *stream.Bus
	// t1 separates the first records from the rest; end follows them all.
	t1, end time.Time
	want    []stream.Entry
}

// recordExchange records, on fe1: a client request to room.room.join and
// its reply, a push and a kick; then (after t1) a user RPC to room-1 and
// its error reply, a session op and a message outside the prefix; then, on
// room-1, a push to fe1.
func recordExchange(t *testing.T) *exchange {
	t.Helper()
	fe := connect(t, stream.Config{ServerID: "fe1", Embedded: stream.Embedded{Listen: "127.0.0.1:0"}})
	room := connect(t, stream.Config{ServerID: "room-1", URL: fe.ClientURL()})
	x := &exchange{fe: fe, room: room}

	recFE := newRecorder(t, fe, stream.RecorderConfig{})
	reply1 := fe.ReplyPrefix() + ".Ab12Cd.1"
	call1 := mustMarshal(t, &stream.Call{
		Kind:       stream.CallKind_CALL_KIND_SYS,
		Route:      "room.room.join",
		Payload:    []byte(`{"a":1}`),
		Session:    &stream.SessionSnapshot{Id: 7, Uid: "u1", Data: []byte(`{}`)},
		FrontendId: "fe1",
		RequestId:  1,
		SourceId:   "fe1",
	})
	recFE.Record(fe.RPCSubject("room.room.join"), reply1, nil, call1)
	// A nats.Header is a map[string][]string: a frontend passes its own.
	recFE.Record(reply1, "", nats.Header{stream.RouteHeader: {"room.room.join"}},
		mustMarshal(t, &stream.Reply{Payload: []byte(`{"ok":true}`)}))
	recFE.Record(fe.ServerPush("fe1"), "", nil,
		mustMarshal(t, &stream.Push{Uids: []string{"u1", "u2"}, Route: "onJoin", Payload: []byte(`{"who":"u1"}`)}))
	recFE.Record(fe.ServerKick("fe1"), "", nil,
		mustMarshal(t, &stream.Kick{Uids: []string{"u2"}, SessionId: 9}))

	x.t1 = time.Now()
	reply2 := fe.ReplyPrefix() + ".Ab12Cd.2"
	recFE.Record(fe.ServerRPC("room-1"), reply2, nil, mustMarshal(t, &stream.Call{
		Kind:       stream.CallKind_CALL_KIND_USER,
		Route:      "room.room.leave",
		Payload:    []byte{0xff, 0x00},
		Session:    &stream.SessionSnapshot{Id: 9, Uid: "u2"},
		FrontendId: "fe1",
		SourceId:   "fe1",
	}))
	// No Nopal-Route header: the reply gets its call's route from Replay.
	recFE.Record(reply2, "", nil, mustMarshal(t, &stream.Reply{
		Error: &stream.ErrorInfo{Code: "E_NOT_IN_ROOM", Msg: "not in room", Metadata: map[string]string{"room": "r9"}},
	}))
	recFE.Record(fe.ServerSessionOp("fe1"), "", nil,
		mustMarshal(t, &stream.SessionOp{SessionId: 7, Uid: "u1", SetData: true, Data: []byte(`{"lvl":2}`)}))
	recFE.Record("elsewhere.thing", "", nil, []byte("hi\x00"))
	closeRecorder(t, recFE)
	if recFE.Recorded() != 8 || recFE.Dropped() != 0 {
		t.Fatalf("fe1 recorded %d dropped %d", recFE.Recorded(), recFE.Dropped())
	}

	recRoom := newRecorder(t, room, stream.RecorderConfig{})
	recRoom.Record(room.ServerPush("fe1"), "", nil,
		mustMarshal(t, &stream.Push{Uids: []string{"u1"}, Route: "room.onMessage", Payload: []byte(`{"m":"hey"}`)}))
	closeRecorder(t, recRoom)
	x.end = time.Now()

	x.want = []stream.Entry{
		{Kind: "call", Subject: "nopal.rpc.room.room.join", Reply: reply1, Route: "room.room.join", CallKind: "sys",
			UID: "u1", Session: 7, Frontend: "fe1", Source: "fe1", Recorder: "fe1", Payload: json.RawMessage(`{"a":1}`)},
		{Kind: "reply", Subject: reply1, Route: "room.room.join", UID: "u1", Session: 7, Frontend: "fe1", Source: "fe1",
			Recorder: "fe1", Payload: json.RawMessage(`{"ok":true}`), Headers: map[string]string{"Nopal-Route": "room.room.join"}},
		{Kind: "push", Subject: "nopal.srv.fe1.push", Route: "onJoin", UIDs: []string{"u1", "u2"}, Frontend: "fe1",
			Recorder: "fe1", Payload: json.RawMessage(`{"who":"u1"}`)},
		{Kind: "kick", Subject: "nopal.srv.fe1.kick", UIDs: []string{"u2"}, Session: 9, Frontend: "fe1", Recorder: "fe1"},
		{Kind: "call", Subject: "nopal.srv.room-1.rpc", Reply: reply2, Route: "room.room.leave", CallKind: "user",
			UID: "u2", Session: 9, Frontend: "fe1", Source: "fe1", Recorder: "fe1", Payload: json.RawMessage(`"/wA="`)},
		{Kind: "reply", Subject: reply2, Route: "room.room.leave", UID: "u2", Session: 9, Frontend: "fe1", Source: "fe1",
			Recorder: "fe1", Error: &stream.ErrorInfoJSON{Code: "E_NOT_IN_ROOM", Msg: "not in room", Metadata: map[string]string{"room": "r9"}}},
		{Kind: "session", Subject: "nopal.srv.fe1.sess", UID: "u1", Session: 7, Frontend: "fe1", Recorder: "fe1",
			Payload: json.RawMessage(`{"lvl":2}`)},
		{Kind: "other", Subject: "elsewhere.thing", Recorder: "fe1", Payload: json.RawMessage(`"aGkA"`)},
		{Kind: "push", Subject: "nopal.srv.fe1.push", Route: "room.onMessage", UIDs: []string{"u1"}, Frontend: "fe1",
			Recorder: "room-1", Payload: json.RawMessage(`{"m":"hey"}`)},
	}
	return x
}

// entryName names an entry of the exchange.
func entryName(e stream.Entry) string {
	return e.Kind + " " + e.Subject + " by " + e.Recorder
}

func entryNames(es []stream.Entry) []string {
	names := make([]string, len(es))
	for i, e := range es {
		names[i] = entryName(e)
	}
	return names
}

func TestReplayDecodesExchange(t *testing.T) {
	x := recordExchange(t)
	got := replayAll(t, x.fe, stream.Filter{})
	if len(got) != len(x.want) {
		t.Fatalf("replayed %d entries, want %d:\n%s", len(got), len(x.want), strings.Join(entryNames(got), "\n"))
	}
	prev := time.Time{}
	for i, e := range got {
		if e.Time.Before(prev) || e.Time.After(x.end) {
			t.Errorf("entry %d time %v out of order or after the end", i, e.Time)
		}
		prev = e.Time
		e.Time = time.Time{}
		if !reflect.DeepEqual(e, x.want[i]) {
			t.Errorf("entry %d:\n got %+v\nwant %+v", i, e, x.want[i])
		}
	}
	// The JSON form keeps JSON payloads as they are.
	j, err := json.Marshal(got[0])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(j), `"payload":{"a":1}`) || !strings.Contains(string(j), `"call_kind":"sys"`) {
		t.Fatalf("json %s", j)
	}
}

func TestReplayFilters(t *testing.T) {
	x := recordExchange(t)
	all := entryNames(x.want)
	pick := func(idx ...int) []string {
		out := []string{}
		for _, i := range idx {
			out = append(out, all[i])
		}
		return out
	}
	tests := []struct {
		name string
		f    stream.Filter
		want []string
	}{
		{"everything", stream.Filter{}, pick(0, 1, 2, 3, 4, 5, 6, 7, 8)},
		{"route prefix", stream.Filter{Route: "room"}, pick(0, 1, 4, 5, 8)},
		{"route prefix with dot", stream.Filter{Route: "room.room."}, pick(0, 1, 4, 5)},
		{"route exact", stream.Filter{Route: "room.room.join"}, pick(0, 1)},
		{"route partial token", stream.Filter{Route: "room.room.jo"}, pick()},
		{"push route", stream.Filter{Route: "onJoin"}, pick(2)},
		{"uid u1", stream.Filter{UID: "u1"}, pick(0, 1, 2, 6, 8)},
		{"uid u2", stream.Filter{UID: "u2"}, pick(2, 3, 4, 5)},
		{"uid unknown", stream.Filter{UID: "u3"}, pick()},
		{"server in subject or recorder", stream.Filter{Server: "room-1"}, pick(4, 8)},
		{"server fe1", stream.Filter{Server: "fe1"}, pick(0, 1, 2, 3, 4, 5, 6, 7, 8)},
		{"server unknown", stream.Filter{Server: "fe2"}, pick()},
		{"since", stream.Filter{Since: x.t1}, pick(4, 5, 6, 7, 8)},
		{"until", stream.Filter{Until: x.t1}, pick(0, 1, 2, 3)},
		{"since and until", stream.Filter{Since: x.t1, Until: x.end}, pick(4, 5, 6, 7, 8)},
		{"after the end", stream.Filter{Since: x.end}, pick()},
		{"before the start", stream.Filter{Until: x.t1.Add(-time.Hour)}, pick()},
		{"since, route and uid", stream.Filter{Since: x.t1, Route: "room", UID: "u2"}, pick(4, 5)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := entryNames(replayAll(t, x.fe, tc.f))
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Fatalf("got:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}

func TestReplayEmptyAndMissing(t *testing.T) {
	b := connect(t, stream.Config{ServerID: "fe1"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	never := func(stream.Entry) error { return errors.New("unexpected entry") }
	if err := stream.Replay(ctx, b, stream.Filter{}, never); err == nil {
		t.Fatal("replay without a traffic stream: no error")
	}
	newRecorder(t, b, stream.RecorderConfig{}) // provisions the stream
	if err := stream.Replay(ctx, b, stream.Filter{}, never); err != nil {
		t.Fatalf("replay of an empty log: %v", err)
	}
}

func TestReplayStopsOnCallbackError(t *testing.T) {
	b := connect(t, stream.Config{ServerID: "fe1"})
	r := newRecorder(t, b, stream.RecorderConfig{})
	for i := range 10 {
		r.Record("other", "", nil, fmt.Appendf(nil, "%d", i))
	}
	closeRecorder(t, r)
	stop := errors.New("enough")
	n := 0
	err := stream.Replay(context.Background(), b, stream.Filter{}, func(stream.Entry) error {
		n++
		if n == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 3 {
		t.Fatalf("err %v after %d entries", err, n)
	}
}

func TestReplayFollow(t *testing.T) {
	b := connect(t, stream.Config{ServerID: "fe1"})
	r := newRecorder(t, b, stream.RecorderConfig{})
	r.Record(b.ServerKick("fe1"), "", nil, mustMarshal(t, &stream.Kick{Uids: []string{"before"}}))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	entries := make(chan stream.Entry)
	done := make(chan error, 1)
	go func() {
		done <- stream.Replay(ctx, b, stream.Filter{Follow: true, Route: "", UID: ""}, func(e stream.Entry) error {
			select {
			case entries <- e:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	await := func(uid string) {
		t.Helper()
		select {
		case e := <-entries:
			if len(e.UIDs) != 1 || e.UIDs[0] != uid {
				t.Fatalf("entry %+v, want a kick of %s", e, uid)
			}
		case err := <-done:
			t.Fatalf("replay ended: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatalf("no entry for %s", uid)
		}
	}
	await("before")
	// Replay is running: this record is made after it started.
	r.Record(b.ServerKick("fe1"), "", nil, mustMarshal(t, &stream.Kick{Uids: []string{"after"}}))
	await("after")
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("follow ended with %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("follow did not end with its context")
	}
}

// interleave records, on two servers' recorders, a call on fe1 (a1), its
// reply on room-1 (b1), a session op on fe1 (a2) and a push on room-1
// (b2), in that time order. fe1's recorder holds its batch until it
// closes, after room-1's: the stream holds b1 b2 a1 a2, as when batches
// of several recorders interleave. It returns the names of the entries in
// time order.
func interleave(t *testing.T, fe, room *stream.Bus) []string {
	t.Helper()
	recA := newRecorder(t, fe, stream.RecorderConfig{MaxDelay: time.Hour})
	recB := newRecorder(t, room, stream.RecorderConfig{})
	reply := fe.ReplyPrefix() + ".Zz.1"
	recA.Record(fe.RPCSubject("room.room.join"), reply, nil, mustMarshal(t, &stream.Call{
		Kind: stream.CallKind_CALL_KIND_SYS, Route: "room.room.join",
		Session: &stream.SessionSnapshot{Id: 7, Uid: "u1"}, FrontendId: "fe1"}))
	recB.Record(reply, "", nil, mustMarshal(t, &stream.Reply{Payload: []byte(`{"ok":true}`)}))
	recA.Record(fe.ServerSessionOp("fe1"), "", nil, mustMarshal(t, &stream.SessionOp{SessionId: 7, Uid: "u1"}))
	recB.Record(room.ServerPush("fe1"), "", nil,
		mustMarshal(t, &stream.Push{Uids: []string{"u1"}, Route: "onJoin"}))
	closeRecorder(t, recB)
	closeRecorder(t, recA)
	return []string{
		"call nopal.rpc.room.room.join by fe1",
		"reply " + reply + " by room-1",
		"session nopal.srv.fe1.sess by fe1",
		"push nopal.srv.fe1.push by room-1",
	}
}

func twoServers(t *testing.T) (fe, room *stream.Bus) {
	t.Helper()
	fe = connect(t, stream.Config{ServerID: "fe1", Embedded: stream.Embedded{Listen: "127.0.0.1:0"}})
	room = connect(t, stream.Config{ServerID: "room-1", URL: fe.ClientURL()})
	return fe, room
}

// checkOrder fails unless got, by name, is want, and its times do not go
// back.
func checkOrder(t *testing.T, got []stream.Entry, want []string) {
	t.Helper()
	if names := entryNames(got); strings.Join(names, "\n") != strings.Join(want, "\n") {
		t.Fatalf("replayed:\n  %s\nwant:\n  %s", strings.Join(names, "\n  "), strings.Join(want, "\n  "))
	}
	for i := 1; i < len(got); i++ {
		if got[i].Time.Before(got[i-1].Time) {
			t.Errorf("entry %d at %v is before entry %d at %v", i, got[i].Time, i-1, got[i-1].Time)
		}
	}
}

// Records whose batches reach the stream out of time order are replayed
// in time order: a reply before its call no more (the reply then gets its
// call's route and uid), nor a session op before the call it follows.
// Reorder < 0 reports stream order, which shows the batches interleaved.
func TestReplayTimeOrderAcrossRecorders(t *testing.T) {
	fe, room := twoServers(t)
	inTime := interleave(t, fe, room)
	tests := []struct {
		name string
		f    stream.Filter
		want []string
	}{
		{"default window", stream.Filter{}, inTime},
		{"wide window", stream.Filter{Reorder: time.Minute}, inTime},
		{"filtered", stream.Filter{UID: "u1"}, inTime},
		{"since", stream.Filter{Since: time.Now().Add(-time.Hour)}, inTime},
		{"stream order", stream.Filter{Reorder: -1}, []string{inTime[1], inTime[3], inTime[0], inTime[2]}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := replayAll(t, fe, tc.f)
			if tc.f.Reorder < 0 {
				if names := entryNames(got); strings.Join(names, "\n") != strings.Join(tc.want, "\n") {
					t.Fatalf("the batches did not interleave: %v", names)
				}
				return
			}
			checkOrder(t, got, tc.want)
			if reply := got[1]; reply.Route != "room.room.join" || reply.UID != "u1" || reply.Session != 7 {
				t.Errorf("the reply lacks its call's route, uid or session: %+v", reply)
			}
		})
	}
}

// Following live, records are released in time order too, and without
// waiting for more traffic: a record is held for Reorder at most.
func TestReplayFollowTimeOrder(t *testing.T) {
	fe, room := twoServers(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	entries := make(chan stream.Entry, 16)
	done := make(chan error, 1)
	started := make(chan struct{})
	rec := newRecorder(t, fe, stream.RecorderConfig{}) // the stream exists
	rec.Record("start", "", nil, nil)
	closeRecorder(t, rec)
	go func() {
		first := true
		done <- stream.Replay(ctx, fe, stream.Filter{Follow: true, Reorder: time.Second}, func(e stream.Entry) error {
			if first {
				first = false
				close(started) // the stored record: Replay is live
				return nil
			}
			entries <- e
			return nil
		})
	}()
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("replay ended: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the stored record was not replayed")
	}
	want := interleave(t, fe, room)
	var got []stream.Entry
	for len(got) < len(want) {
		select {
		case e := <-entries:
			got = append(got, e)
		case err := <-done:
			t.Fatalf("replay ended: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatalf("got %v, then nothing", entryNames(got))
		}
	}
	checkOrder(t, got, want)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("follow ended with %v", err)
	}
}
