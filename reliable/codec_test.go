package reliable

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// The bucket's records are written by appendRecord, not json.Marshal: the
// bytes must be the same, whatever the record holds.
func TestAppendRecordIsJSONMarshal(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 13, 14, 15, 123456789, time.UTC)
	local := time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("X", 3600))
	tests := []struct {
		name string
		r    record
	}{
		{"queued", record{Job: Job{JID: "01J", Route: "mail.mailer.send", State: Queued, MaxAttempts: 5, Created: t0, Updated: t0}}},
		{"everything", record{Job: Job{
			JID: "order-42", Route: "mail.mailer.send", Arg: []byte(`{"to":"ann"}`), State: Dead,
			Attempts: []Attempt{
				{N: 1, Server: "a", Started: t0, Ended: t0.Add(time.Second), Error: &ErrorInfo{Code: "MAIL-503", Message: "down", Metadata: map[string]string{"to": "ann", "b": "c"}}},
				{N: 2, Server: "b", Started: local, Skipped: true, Error: &ErrorInfo{Code: CodeUnavailable, Message: "draining"}},
				{N: 3, Server: "c", Started: t0},
			},
			MaxAttempts: 3, Backoff: []time.Duration{time.Second, 5 * time.Second},
			NotBefore: t0, Deadline: local, Target: "srv-1", Result: []byte{0, 1, 2, 255},
			LastError: &ErrorInfo{Code: "X", Message: "y"}, Created: t0, Updated: local,
		}, Seq: 77, Gen: 2, Baggage: "player=%7B%22id%22%3A%22p1%22%7D"}},
		{"escapes", record{Job: Job{JID: "e", Route: "a.b.c", State: Running, Created: t0, Updated: t0,
			Attempts: []Attempt{{N: 1, Server: "q\"uo\\te<>&\n\t\x01é\u2028\xff", Started: t0}}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want, err := json.Marshal(&tc.r)
			if err != nil {
				t.Fatal(err)
			}
			if got := encode(&tc.r); string(got) != string(want) {
				t.Fatalf("appendRecord:\n%s\njson.Marshal:\n%s", got, want)
			}
		})
	}
}

// A job message's body carries the job as enqueued, and nothing else.
func TestJobMessageRoundTrip(t *testing.T) {
	t0 := time.Unix(0, time.Date(2026, 12, 3, 13, 14, 15, 123456789, time.UTC).UnixNano())
	tests := []struct {
		name string
		r    record
	}{
		{"plain", record{Job: Job{JID: "01J", Route: "mail.mailer.send", MaxAttempts: 5, Backoff: defaultBackoff(), Created: t0}}},
		{"options", record{Job: Job{JID: "k", Route: "a.b.c", Arg: []byte("xyz"), MaxAttempts: 1,
			Backoff: []time.Duration{time.Millisecond}, NotBefore: t0.Add(time.Hour), Deadline: t0.Add(2 * time.Hour),
			Target: "srv", Created: t0}, Gen: 3, Baggage: "a=b"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.r
			in.State, in.Updated = Running, t0.Add(time.Minute) // not carried
			in.Attempts = []Attempt{{N: 1}}
			got, err := decodeMsg(encodeMsg(&in))
			if err != nil {
				t.Fatal(err)
			}
			want := tc.r
			want.State, want.Updated = Queued, want.Created
			if !reflect.DeepEqual(*got, want) {
				t.Fatalf("got  %+v\nwant %+v", *got, want)
			}
		})
	}
	for _, bad := range [][]byte{nil, []byte(`{"jid":"x"}`), {'J', msgVersion}, encodeMsg(&record{Job: Job{JID: "x"}})[:5]} {
		if _, err := decodeMsg(bad); err == nil {
			t.Errorf("decodeMsg(%q) accepted", bad)
		}
	}
}
