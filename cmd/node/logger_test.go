package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// The process logger prints durations as Go durations ("10s") in both
// formats, at the top level and inside groups; other values are untouched.
func TestLoggerDurations(t *testing.T) {
	tests := []struct {
		format string
		want   []string
	}{
		{"json", []string{`"timeout":"10s"`, `"req":{"took":"1.5ms","n":3}`, `"zero":"0s"`, `"count":7`}},
		{"text", []string{"timeout=10s", "req.took=1.5ms", "req.n=3", "zero=0s", "count=7"}},
	}
	for _, tc := range tests {
		t.Run(tc.format, func(t *testing.T) {
			var buf bytes.Buffer
			log, err := newLogger(&buf, tc.format, "info")
			if err != nil {
				t.Fatal(err)
			}
			log.Info("hello",
				"timeout", 10*time.Second,
				slog.Group("req", "took", 1500*time.Microsecond, "n", 3),
				slog.Duration("zero", 0),
				"count", 7)
			out := buf.String()
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("%s log lacks %s:\n%s", tc.format, w, out)
				}
			}
		})
	}
}

func TestLoggerFlagErrors(t *testing.T) {
	tests := []struct{ format, level string }{
		{"yaml", "info"},
		{"json", "loud"},
	}
	for _, tc := range tests {
		if _, err := newLogger(&bytes.Buffer{}, tc.format, tc.level); err == nil {
			t.Errorf("newLogger(%q, %q): no error", tc.format, tc.level)
		}
	}
}
