package metrics

import (
	"errors"
	"maps"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// statsdLine is one parsed DogStatsD line: name:value|type[|@rate][|#tags].
type statsdLine struct {
	name, typ string
	value     float64
	rate      float64
	tags      map[string]string
}

func parseStatsd(t *testing.T, line string) statsdLine {
	t.Helper()
	fields := strings.Split(line, "|")
	name, val, ok := strings.Cut(fields[0], ":")
	if !ok || len(fields) < 2 {
		t.Fatalf("bad statsd line %q", line)
	}
	v, err := strconv.ParseFloat(val, 64)
	if err != nil {
		t.Fatalf("bad value in %q: %v", line, err)
	}
	l := statsdLine{name: name, typ: fields[1], value: v, rate: 1, tags: map[string]string{}}
	for _, f := range fields[2:] {
		switch {
		case strings.HasPrefix(f, "@"):
			if l.rate, err = strconv.ParseFloat(f[1:], 64); err != nil {
				t.Fatalf("bad rate in %q", line)
			}
		case strings.HasPrefix(f, "#"):
			for _, tag := range strings.Split(f[1:], ",") {
				k, v, _ := strings.Cut(tag, ":")
				l.tags[k] = v
			}
		}
	}
	return l
}

// listenUDP returns a real UDP socket on loopback and a function reading
// lines until want(lines) holds, each read bounded by a deadline.
func listenUDP(t *testing.T) (string, func(want func([]statsdLine) bool) []statsdLine) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().String(), func(want func([]statsdLine) bool) []statsdLine {
		t.Helper()
		var lines []statsdLine
		buf := make([]byte, 65536)
		for !want(lines) {
			if err := pc.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
				t.Fatal(err)
			}
			n, _, err := pc.ReadFrom(buf)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("statsd lines missing; got %+v", lines)
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range strings.Split(strings.TrimSpace(string(buf[:n])), "\n") {
				if l != "" {
					lines = append(lines, parseStatsd(t, l))
				}
			}
		}
		return lines
	}
}

func TestStatsdReceivesTheMetricSet(t *testing.T) {
	addr, read := listenUDP(t)
	cfg := Config{Game: "g1", ServerType: "room", Custom: customConfig()}
	base := map[string]string{"game": "g1", "serverType": "room"}
	sd, err := NewStatsd(addr, "nopal.", base, 1)
	if err != nil {
		t.Fatal(err)
	}
	s := newSet(t, cfg, sd)

	s.ObserveResponse("room.room.join", TypeHandler, 5*time.Millisecond, "")
	s.ObserveResponse("room.room.join", TypeHandler, 5*time.Millisecond, "PIT-500")
	s.ObserveHandlerDelay("room.room.join", DelayLocal, time.Millisecond)
	s.SetConnectedClients(4)
	s.IncRateLimited()
	s.IncRateLimited()
	s.AddMalformedPackets(2)
	s.AddHandshakeFailures(1)
	s.AddHeartbeatTimeouts(3)
	s.AddSlowClients(1)
	s.SetServerCount("connector", 2)
	s.IncDroppedMessages()
	s.SetChannelCapacity("subchan", 10)
	s.SetWorkerJobs("ok", 5)
	s.SetWorkerJobsRetry(1)
	s.SetWorkerQueueSize("default", 3)
	s.StartSysMetrics(t.Context(), time.Hour)
	if err := s.Observe("room_wait_seconds", map[string]string{"mode": "duel"}, 2.5); err != nil {
		t.Fatal(err)
	}
	if err := s.Count("room_joins_total", map[string]string{"mode": "duel"}, 1); err != nil {
		t.Fatal(err)
	}
	if err := sd.Close(); err != nil { // flushes
		t.Fatal(err)
	}

	type want struct {
		typ   string
		value float64 // < 0: any positive value
		tags  map[string]string
	}
	wants := map[string][]want{
		"nopal." + ResponseTime: {
			{"ms", 5e6, with(base, "route", "room.room.join", "status", "ok", "type", "handler", "code", "")},
			{"ms", 5e6, with(base, "route", "room.room.join", "status", "failed", "type", "handler", "code", "PIT-500")},
		},
		"nopal." + ProcessDelay:         {{"ms", 1e6, with(base, "route", "room.room.join", "type", "local")}},
		"nopal." + ConnectedClients:     {{"g", 4, base}},
		"nopal." + ExceededRateLimiting: {{"c", 2, base}}, // aggregated client-side
		"nopal." + MalformedPackets:     {{"c", 2, base}},
		"nopal." + HandshakeFailures:    {{"c", 1, base}},
		"nopal." + HeartbeatTimeouts:    {{"c", 3, base}},
		"nopal." + SlowClients:          {{"c", 1, base}},
		"nopal." + CountServers:         {{"g", 2, with(base, "type", "connector")}},
		"nopal." + DroppedMessages:      {{"g", 1, base}},
		"nopal." + ChannelCapacity:      {{"g", 10, with(base, "channel", "subchan")}},
		"nopal." + WorkerJobsTotal:      {{"g", 5, with(base, "status", "ok")}},
		"nopal." + WorkerJobsRetry:      {{"g", 1, base}},
		"nopal." + WorkerQueueSize:      {{"g", 3, with(base, "queue", "default")}},
		"nopal." + Goroutines:           {{"g", -1, base}},
		"nopal." + HeapSize:             {{"g", -1, base}},
		"nopal." + HeapObjects:          {{"g", -1, base}},
		"nopal.room_wait_seconds":       {{"h", 2.5, with(base, "mode", "duel")}},
		"nopal.room_joins_total":        {{"c", 1, with(base, "mode", "duel")}},
	}
	matches := func(l statsdLine, w want) bool {
		return l.typ == w.typ && maps.Equal(l.tags, w.tags) &&
			(l.value == w.value || (w.value < 0 && l.value > 0))
	}
	all := func(lines []statsdLine) bool {
		for name, ws := range wants {
			for _, w := range ws {
				found := false
				for _, l := range lines {
					if l.name == name && matches(l, w) {
						found = true
						break
					}
				}
				if !found {
					return false
				}
			}
		}
		return true
	}
	lines := read(all)
	for _, l := range lines {
		if _, ok := wants[l.name]; !ok {
			t.Errorf("unexpected statsd metric %+v", l)
		}
		if l.rate != 1 {
			t.Errorf("rate %v on %s", l.rate, l.name)
		}
	}
}

func TestStatsdReporter(t *testing.T) {
	addr, read := listenUDP(t)
	sd, err := NewStatsd(addr, "pitaya.", map[string]string{"serverType": "connector"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		do   func() error
		name string
		typ  string
		v    float64
	}{
		{func() error { return sd.ReportCount("c1", map[string]string{"k": "v"}, 3) }, "pitaya.c1", "c", 3},
		{func() error { return sd.ReportGauge("g1", map[string]string{"k": "v"}, 1.5) }, "pitaya.g1", "g", 1.5},
		{func() error { return sd.ReportSummary("s1", map[string]string{"k": "v"}, 7) }, "pitaya.s1", "ms", 7},
		{func() error { return sd.ReportHistogram("h1", map[string]string{"k": "v"}, 9) }, "pitaya.h1", "h", 9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.do(); err != nil {
				t.Fatal(err)
			}
			if err := sd.Flush(); err != nil {
				t.Fatal(err)
			}
			lines := read(func(l []statsdLine) bool { return len(l) > 0 })
			want := statsdLine{name: tc.name, typ: tc.typ, value: tc.v, rate: 1,
				tags: map[string]string{"serverType": "connector", "k": "v"}}
			if len(lines) != 1 || lines[0].name != want.name || lines[0].typ != want.typ ||
				lines[0].value != want.value || !maps.Equal(lines[0].tags, want.tags) {
				t.Errorf("got %+v, want %+v", lines, want)
			}
		})
	}
	if err := sd.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := NewStatsd("", "x.", nil, 1); err == nil {
		t.Error("NewStatsd accepted an empty address")
	}
}
