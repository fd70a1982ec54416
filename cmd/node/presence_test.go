package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nopal-dev/nopal/client"
)

// syncBuffer is a bytes.Buffer for one writer and a polling reader.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// `node presence` lists the users online in the cluster; -follow prints
// them, then who comes online and goes offline.
func TestPresenceCommand(t *testing.T) {
	n := startServe(t, "-nats-listen", "127.0.0.1:0", "-resume-grace", "0")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	presence := func(args ...string) string {
		t.Helper()
		var out strings.Builder
		if err := presenceCmd(ctx, append([]string{"-nats", n.nats}, args...), &out, io.Discard); err != nil {
			t.Fatal(err)
		}
		return out.String()
	}
	if out := presence(); !strings.Contains(out, "0 online") {
		t.Errorf("presence of an empty cluster:\n%s", out)
	}

	// A user who joined the room is bound: online.
	ana, err := client.Dial(ctx, n.tcp)
	if err != nil {
		t.Fatal(err)
	}
	defer ana.Close()
	if err := ana.Request(ctx, "room.room.join", map[string]any{}, nil); err != nil {
		t.Fatal(err)
	}
	var out string
	deadline := time.Now().Add(10 * time.Second)
	for out = presence(); !strings.Contains(out, "1 online") && time.Now().Before(deadline); out = presence() {
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(out, "UID") || !strings.Contains(out, "connector-") || !strings.Contains(out, "1 online") {
		t.Fatalf("presence with one user:\n%s", out)
	}
	if got := strings.TrimSpace(presence("-count")); got != "1" {
		t.Errorf("presence -count: %q", got)
	}

	// -follow -json: ana first, then bob's arrival and departure.
	fctx, fcancel := context.WithCancel(ctx)
	var follow syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- presenceCmd(fctx, []string{"-nats", n.nats, "-follow", "-json"}, &follow, io.Discard)
	}()
	waitOut := func(what string, cond func(string) bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond(follow.String()) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s:\n%s", what, follow.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitOut("ana's initial line", func(s string) bool { return strings.Contains(s, `"initial":true`) })
	runClient(t, n.tcp, "request room.room.join {}", "quit")
	waitOut("bob online and offline", func(s string) bool {
		return strings.Count(s, `"kind":"online"`) == 2 && strings.Contains(s, `"kind":"offline"`)
	})
	fcancel()
	if err := <-done; err != nil {
		t.Errorf("presence -follow: %v", err)
	}
	var kinds []string
	for _, line := range strings.Split(strings.TrimSpace(follow.String()), "\n") {
		var ev struct {
			Kind, UID, Frontend string
			Initial             bool
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		if ev.UID == "" || !strings.HasPrefix(ev.Frontend, "connector-") {
			t.Errorf("event %q", line)
		}
		kinds = append(kinds, ev.Kind)
	}
	if strings.Join(kinds, " ") != "online online offline" {
		t.Errorf("events %v, want online (ana), online and offline (bob)", kinds)
	}
}

func TestPresenceCommandUsage(t *testing.T) {
	t.Setenv("NATS_URL", "")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "-nats is required"},
		{[]string{"-nats", "nats://127.0.0.1:1", "-count", "-follow"}, "-count goes without -follow"},
		{[]string{"-nats", "nats://127.0.0.1:1", "extra"}, "unexpected arguments"},
	} {
		err := presenceCmd(context.Background(), tc.args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run(%q) = %v, want %q", tc.args, err, tc.want)
		}
	}
}
