package metrics

import (
	"context"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// serve starts s on a real socket and returns a function scraping /metrics.
func serve(t *testing.T, s *Set) func() string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	addr, err := s.Serve(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + addr.String() + "/metrics"
	return func() string {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("scrape: %s: %s", resp.Status, b)
		}
		return string(b)
	}
}

type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// parseExposition reads the samples of a text-format scrape. Label values
// in these tests hold no escaped characters.
func parseExposition(t *testing.T, body string) []sample {
	t.Helper()
	var out []sample
	for line := range strings.Lines(body) {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			t.Fatalf("bad sample line %q: %v", line, err)
		}
		head := line[:sp]
		s := sample{name: head, labels: map[string]string{}, value: v}
		if i := strings.IndexByte(head, '{'); i >= 0 {
			s.name = head[:i]
			for _, pair := range strings.Split(strings.TrimSuffix(head[i+1:], "}"), "\",") {
				k, val, ok := strings.Cut(pair, "=\"")
				if !ok {
					t.Fatalf("bad labels in %q", line)
				}
				s.labels[k] = strings.TrimSuffix(val, "\"")
			}
		}
		out = append(out, s)
	}
	return out
}

// find returns the value of the one sample named name whose labels include
// want.
func find(t *testing.T, samples []sample, name string, want map[string]string) (float64, bool) {
	t.Helper()
	var got []sample
	for _, s := range samples {
		if s.name != name {
			continue
		}
		match := true
		for k, v := range want {
			if lv, ok := s.labels[k]; !ok || lv != v {
				match = false
				break
			}
		}
		if match {
			got = append(got, s)
		}
	}
	switch len(got) {
	case 0:
		return 0, false
	case 1:
		return got[0].value, true
	}
	t.Fatalf("%s%v matches %d samples", name, want, len(got))
	return 0, false
}

func mustFind(t *testing.T, samples []sample, name string, want map[string]string) float64 {
	t.Helper()
	v, ok := find(t, samples, name, want)
	if !ok {
		var names []string
		for _, s := range samples {
			if strings.HasPrefix(s.name, name[:min(len(name), 12)]) {
				names = append(names, s.name+label(s.labels))
			}
		}
		t.Fatalf("no sample %s%v; similar: %v", name, want, names)
	}
	return v
}

func label(m map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(m)) {
		b.WriteString(" " + k + "=" + m[k])
	}
	return "{" + b.String() + " }"
}

// call is one Reporter call seen by recorder.
type call struct {
	method string
	name   string
	tags   map[string]string
	v      float64
}

// recorder is a real Reporter keeping every call (tags copied, as the
// Reporter contract asks).
type recorder struct {
	mu    sync.Mutex
	calls []call
}

func (r *recorder) add(method, name string, tags map[string]string, v float64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, call{method, name, maps.Clone(tags), v})
	return nil
}

func (r *recorder) ReportCount(n string, t map[string]string, v float64) error {
	return r.add("count", n, t, v)
}

func (r *recorder) ReportGauge(n string, t map[string]string, v float64) error {
	return r.add("gauge", n, t, v)
}

func (r *recorder) ReportSummary(n string, t map[string]string, v float64) error {
	return r.add("summary", n, t, v)
}

func (r *recorder) ReportHistogram(n string, t map[string]string, v float64) error {
	return r.add("histogram", n, t, v)
}

func (r *recorder) take() []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.calls
	r.calls = nil
	return c
}

// nopReporter does nothing: it measures the Set's own fan-out cost.
type nopReporter struct{}

func (nopReporter) ReportCount(string, map[string]string, float64) error     { return nil }
func (nopReporter) ReportGauge(string, map[string]string, float64) error     { return nil }
func (nopReporter) ReportSummary(string, map[string]string, float64) error   { return nil }
func (nopReporter) ReportHistogram(string, map[string]string, float64) error { return nil }
