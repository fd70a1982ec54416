package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// startConsole runs `node console` in-process on a free port and returns
// the URL it prints.
func startConsole(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := consoleCmd(ctx, append([]string{"-addr", "127.0.0.1:0"}, args...), pw, io.Discard)
		pw.Close()
		done <- err
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("console: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("console did not stop")
		}
	})
	sc := bufio.NewScanner(pr)
	if !sc.Scan() || !strings.HasPrefix(sc.Text(), "console: http://127.0.0.1:") {
		t.Fatalf("console printed %q", sc.Text())
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	return strings.TrimPrefix(sc.Text(), "console: ")
}

type overview struct {
	Servers []struct {
		ID, Type string
		Frontend bool
	} `json:"servers"`
	Traffic []struct {
		Route   string          `json:"route"`
		Payload json.RawMessage `json:"payload"`
	} `json:"traffic"`
}

func getOverview(t *testing.T, base string) overview {
	t.Helper()
	res, err := http.Get(base + "api/overview")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var o overview
	if err := json.NewDecoder(res.Body).Decode(&o); err != nil || res.StatusCode != 200 {
		t.Fatalf("overview: %d %v", res.StatusCode, err)
	}
	return o
}

// `node console` on the cluster of `node serve` (what `make run` starts):
// the connector and the room within a second, and a chat message in the
// traffic.
func TestConsoleCommand(t *testing.T) {
	n := startServe(t, "-nats-listen", "127.0.0.1:0")
	start := time.Now()
	url := startConsole(t, "-nats", n.nats)
	if !strings.Contains(url, "/#token=") {
		t.Errorf("the URL lacks the token of the actions: %s", url)
	}
	base := url[:strings.Index(url, "#")]
	for {
		o := getOverview(t, base)
		types := map[string]bool{}
		for _, s := range o.Servers {
			types[s.Type] = true
		}
		if types["connector"] && types["room"] {
			break
		}
		if time.Since(start) > time.Second {
			t.Fatalf("after 1 s the console shows %+v", o.Servers)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("connector and room shown %v after the console started", time.Since(start).Round(time.Millisecond))

	runClient(t, n.tcp, "request room.room.join {}", `notify room.room.message {"name":"ana","content":"hello console"}`, "quit")
	deadline := time.Now().Add(5 * time.Second)
	for {
		o := getOverview(t, base)
		found := false
		for _, e := range o.Traffic {
			found = found || (e.Route == "room.room.message" && strings.Contains(string(e.Payload), "hello console"))
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no chat message in the console's traffic: %+v", o.Traffic)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// With the operator's token the printed URL does not carry it; reads from
// loopback still need none. serveConsole (serve -console-addr) serves the
// same console on a server's bus.
func TestConsoleToken(t *testing.T) {
	n := startServe(t, "-nats-listen", "127.0.0.1:0")
	url := startConsole(t, "-nats", n.nats, "-console-token", "s3cret")
	if strings.Contains(url, "s3cret") || strings.Contains(url, "#") {
		t.Errorf("the URL shows the operator's token: %s", url)
	}
	getOverview(t, url)

	bus, err := connectBus(context.Background(), busFlags{url: n.nats, prefix: "nopal"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs strings.Builder
	log := slog.New(slog.NewTextHandler(&syncWriter{w: &logs}, nil))
	if err := serveConsole(ctx, bus, "0.0.0.0:0", "", log); err == nil || !strings.Contains(err.Error(), "token") {
		t.Errorf("serve -console-addr 0.0.0.0 without a token: %v", err)
	}
	if err := serveConsole(ctx, bus, "127.0.0.1:0", "", log); err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`url="?(http://[^/"]+)/#token=`).FindStringSubmatch(logs.String())
	if m == nil {
		t.Fatalf("no console URL in %s", logs.String())
	}
	if o := getOverview(t, m[1]+"/"); len(o.Servers) < 2 {
		t.Errorf("serve's console shows %+v", o.Servers)
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func TestConsoleCommandErrors(t *testing.T) {
	t.Setenv("NATS_URL", "")
	t.Setenv("NOPAL_CONSOLE_TOKEN", "")
	ctx := context.Background()
	if err := consoleCmd(ctx, nil, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "-nats is required") {
		t.Errorf("no -nats: %v", err)
	}
	if err := consoleCmd(ctx, []string{"-bogus"}, io.Discard, io.Discard); err == nil {
		t.Error("a bad flag was accepted")
	}
	if err := consoleCmd(ctx, []string{"-nats", "nats://127.0.0.1:1", "extra"}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "unexpected") {
		t.Errorf("extra arguments: %v", err)
	}
	n := startServe(t, "-nats-listen", "127.0.0.1:0")
	if err := consoleCmd(ctx, []string{"-nats", n.nats, "-addr", "0.0.0.0:0"}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "token") {
		t.Errorf("0.0.0.0 without a token: %v", err)
	}
}
