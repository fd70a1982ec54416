package metrics

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/nopal-dev/nopal/codec"
)

func scrapeAddr(t *testing.T, addr string) []sample {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return parseExposition(t, string(b))
}

// An Observer samples at every scrape, adds the counters' gains, keeps a
// vanished server type at 0 and labels the routes it records.
func TestObserver(t *testing.T) {
	var mu sync.Mutex
	st := Sample{HasFrontend: true, Connected: 3, Malformed: 5, Refused: 1,
		HasCluster: true, Dropped: 7, CallCapacity: 9,
		HasWorker: true, WorkerJobs: StateCounts(map[string]uint64{"succeeded": 4}), Retries: 2, QueueSize: 6}
	o, err := NewObserver(ObserverConfig{Options: Options{Addr: "127.0.0.1:0", Interval: time.Hour},
		ServerType: "room", Logger: slog.New(slog.DiscardHandler), Sample: func() Sample { mu.Lock(); defer mu.Unlock(); return st }})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := o.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if o.Set().ConstLabels()["serverType"] != "room" {
		t.Errorf("const labels %v: serverType not defaulted", o.Set().ConstLabels())
	}
	o.SetServerCounts(map[string]int{"room": 2, "chat": 1})
	o.SetServerCounts(map[string]int{"room": 3})
	o.Handled("a.b", time.Millisecond, nil)
	o.Handled("no.such", time.Millisecond, codec.NewError(codec.CodeNotFound, "x", nil))
	o.Served("c.d", true, time.Now().Add(-time.Second).UnixNano(), time.Now(), nil)

	mu.Lock()
	st.Malformed, st.Connected = 8, 2
	mu.Unlock()
	s := scrapeAddr(t, o.Addr())
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"nopal_" + ConnectedClients, nil, 2},
		{"nopal_" + MalformedPackets, nil, 8},
		{"nopal_" + RefusedConnections, nil, 1},
		{"nopal_" + DroppedMessages, nil, 7},
		{"nopal_" + WorkerJobsRetry, nil, 2},
		{"nopal_" + WorkerQueueSize, map[string]string{"queue": "room"}, 6},
		{"nopal_" + CountServers, map[string]string{"type": "room"}, 3},
		{"nopal_" + CountServers, map[string]string{"type": "chat"}, 0},
		{"nopal_" + ResponseTime + "_count", map[string]string{"route": "a.b", "type": TypeHandler}, 1},
		{"nopal_" + ResponseTime + "_count", map[string]string{"route": "unknown", "code": codec.CodeNotFound}, 1},
		{"nopal_" + ResponseTime + "_count", map[string]string{"route": "c.d", "type": TypeRPC}, 1},
		{"nopal_" + ProcessDelay + "_count", map[string]string{"route": "c.d", "type": DelayRemote}, 1},
	} {
		if got := mustFind(t, s, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

// A nil Observer (metrics off) does nothing.
func TestObserverNil(t *testing.T) {
	var o *Observer
	if err := o.Start(context.Background()); err != nil || o.Set() != nil || o.Addr() != "" {
		t.Fatal("nil Observer did something")
	}
	o.Handled("a", 0, nil)
	o.Served("a", false, 0, time.Now(), nil)
	o.SetServerCounts(map[string]int{"a": 1})
	o.Close()
}
