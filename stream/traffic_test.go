package stream_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nopal-dev/nopal/stream"
)

// connectTB is connect for tests and benchmarks.
func connectTB(t testing.TB, cfg stream.Config) *stream.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if cfg.Embedded.StoreDir == "" && cfg.URL == "" {
		cfg.Embedded.StoreDir = t.TempDir()
	}
	b, err := stream.Connect(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

func newRecorder(t testing.TB, b *stream.Bus, cfg stream.RecorderConfig) *stream.Recorder {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := stream.NewRecorder(ctx, b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close(context.Background()) })
	return r
}

func closeRecorder(t testing.TB, r *stream.Recorder) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Close(ctx); err != nil {
		t.Fatalf("close recorder: %v", err)
	}
}

// trafficMsgs is the number of messages (batches) in the TRAFFIC stream.
func trafficMsgs(t testing.TB, b *stream.Bus) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := b.JetStream().Stream(ctx, b.Name(stream.TrafficStream))
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().State.Msgs
}

// replayAll replays with f (without Follow) and returns the entries.
func replayAll(t testing.TB, b *stream.Bus, f stream.Filter) []stream.Entry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []stream.Entry
	if err := stream.Replay(ctx, b, f, func(e stream.Entry) error {
		got = append(got, e)
		return nil
	}); err != nil {
		t.Fatalf("replay: %v", err)
	}
	return got
}

func TestNilRecorderIsANoOp(t *testing.T) {
	var r *stream.Recorder
	r.Record("nopal.rpc.a.b.c", "", map[string][]string{"A": {"1"}}, []byte("x"))
	if r.Recorded() != 0 || r.Dropped() != 0 {
		t.Fatalf("recorded %d dropped %d", r.Recorded(), r.Dropped())
	}
	if err := r.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestRecorderConfigErrors(t *testing.T) {
	b := connect(t, stream.Config{ServerID: "fe1"})
	tests := []struct {
		name string
		cfg  stream.RecorderConfig
	}{
		{"negative batch", stream.RecorderConfig{MaxBatch: -1}},
		{"negative delay", stream.RecorderConfig{MaxDelay: -time.Millisecond}},
		{"negative buffer", stream.RecorderConfig{Buffer: -1}},
		{"negative bytes", stream.RecorderConfig{MaxBytes: -1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := stream.NewRecorder(context.Background(), b, tc.cfg)
			if !errors.Is(err, stream.ErrConfig) {
				t.Fatalf("err = %v, want ErrConfig", err)
			}
		})
	}
}

func TestRecorderBatches(t *testing.T) {
	b := connect(t, stream.Config{ServerID: "fe1"})
	r := newRecorder(t, b, stream.RecorderConfig{})
	const n = 2000
	for i := range n {
		r.Record(b.RPCSubject("room.room.join"), "", nil, fmt.Appendf(nil, `{"i":%d}`, i))
	}
	closeRecorder(t, r)
	if r.Recorded() != n || r.Dropped() != 0 {
		t.Fatalf("recorded %d dropped %d, want %d and 0", r.Recorded(), r.Dropped(), n)
	}
	msgs := trafficMsgs(t, b)
	if msgs < (n+127)/128 || msgs > n/20 {
		t.Fatalf("%d records made %d stream messages, want batches of up to 128", n, msgs)
	}
	t.Logf("%d records in %d stream messages", n, msgs)

	got := replayAll(t, b, stream.Filter{})
	if len(got) != n {
		t.Fatalf("replayed %d records, want %d", len(got), n)
	}
	for i, e := range got {
		if want := fmt.Sprintf(`{"i":%d}`, i); string(e.Payload) != want {
			t.Fatalf("entry %d payload %s, want %s (order)", i, e.Payload, want)
		}
	}
}

func TestRecorderSplitsBatchesByBytes(t *testing.T) {
	b := connect(t, stream.Config{ServerID: "fe1"})
	r := newRecorder(t, b, stream.RecorderConfig{})
	maxPayload := int(b.MaxPayload())
	big := make([]byte, maxPayload/4)
	for range 8 {
		r.Record("other.big", "", nil, big)
	}
	r.Record("other.huge", "", nil, make([]byte, maxPayload+1)) // can never fit
	closeRecorder(t, r)
	if r.Recorded() != 8 || r.Dropped() != 1 {
		t.Fatalf("recorded %d dropped %d, want 8 and 1", r.Recorded(), r.Dropped())
	}
	if msgs := trafficMsgs(t, b); msgs < 3 {
		t.Fatalf("8 records of a quarter max payload in %d messages", msgs)
	}
}

func TestRecorderCountsDrops(t *testing.T) {
	b := connect(t, stream.Config{ServerID: "fe1"})
	r := newRecorder(t, b, stream.RecorderConfig{Buffer: 1})
	const n = 1000
	for i := range n {
		r.Record(b.RPCSubject("room.room.join"), "", nil, fmt.Appendf(nil, `{"i":%d}`, i))
	}
	closeRecorder(t, r)
	r.Record(b.RPCSubject("room.room.join"), "", nil, nil) // after Close: dropped
	rec, drop := r.Recorded(), r.Dropped()
	if rec+drop != n+1 || drop == 0 || rec == 0 {
		t.Fatalf("recorded %d + dropped %d, want %d with some of each", rec, drop, n+1)
	}
	if got := len(replayAll(t, b, stream.Filter{})); uint64(got) != rec {
		t.Fatalf("replayed %d, recorded %d", got, rec)
	}
}

func TestRecorderCountsPublishFailures(t *testing.T) {
	b := connect(t, stream.Config{ServerID: "fe1"})
	r := newRecorder(t, b, stream.RecorderConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Without the stream, batches have no responder and fail.
	if err := b.JetStream().DeleteStream(ctx, b.Name(stream.TrafficStream)); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		r.Record(b.RPCSubject("a.b.c"), "", nil, []byte("x"))
	}
	closeRecorder(t, r)
	if r.Recorded() != 0 || r.Dropped() != 10 {
		t.Fatalf("recorded %d dropped %d, want 0 and 10", r.Recorded(), r.Dropped())
	}
}

func TestRecordHeadersWire(t *testing.T) {
	b := connect(t, stream.Config{ServerID: "fe1"})
	r := newRecorder(t, b, stream.RecorderConfig{})
	r.Record("elsewhere", "", map[string][]string{"Multi": {"1", "2"}, "Empty": nil, "One": {"x"}}, nil)
	closeRecorder(t, r)
	got := replayAll(t, b, stream.Filter{})
	if len(got) != 1 {
		t.Fatalf("%d entries", len(got))
	}
	want := map[string]string{"Multi": "1, 2", "Empty": "", "One": "x"}
	if fmt.Sprint(got[0].Headers) != fmt.Sprint(want) {
		t.Fatalf("headers %v, want %v", got[0].Headers, want)
	}
}

// BenchmarkRecord measures Record on the request path. "enqueue" records
// bursts the stream keeps up with (a new recorder per burst, closed with the
// timer stopped), so every Record takes the queueing path; "saturated" records
// from all Ps as fast as possible, far beyond what the stream stores, so most
// Records take the drop path (see dropped/op).
func BenchmarkRecord(b *testing.B) {
	bus := connectTB(b, stream.Config{ServerID: "fe1"})
	subject := bus.RPCSubject("room.room.join")
	reply := bus.ReplyPrefix() + ".Xq3vZ1.42"
	payload := []byte(`{"room":"r1","name":"` + strings.Repeat("x", 100) + `"}`)
	traceparent := map[string][]string{"Traceparent": {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}
	cases := []struct {
		name    string
		headers map[string][]string
	}{
		{"plain", nil},
		{"header", traceparent},
	}
	const burst = 8192
	for _, tc := range cases {
		b.Run("enqueue-"+tc.name, func(b *testing.B) {
			var dropped, n uint64
			r := newRecorder(b, bus, stream.RecorderConfig{})
			b.ReportAllocs()
			for b.Loop() {
				r.Record(subject, reply, tc.headers, payload)
				if n++; n%burst == 0 {
					b.StopTimer()
					closeRecorder(b, r)
					dropped += r.Dropped()
					r = newRecorder(b, bus, stream.RecorderConfig{})
					b.StartTimer()
				}
			}
			b.StopTimer()
			closeRecorder(b, r)
			dropped += r.Dropped()
			b.ReportMetric(float64(dropped)/float64(n), "dropped/op")
		})
		b.Run("saturated-"+tc.name, func(b *testing.B) {
			r := newRecorder(b, bus, stream.RecorderConfig{})
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					r.Record(subject, reply, tc.headers, payload)
				}
			})
			b.StopTimer()
			closeRecorder(b, r)
			b.ReportMetric(float64(r.Dropped())/float64(b.N), "dropped/op")
		})
	}
}
