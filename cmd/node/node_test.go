package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

type node struct {
	tcp, ws string
	done    chan error
}

// startServe runs `node serve` in-process on free ports and waits for its
// "ready" log line.
func startServe(t *testing.T, extra ...string) *node {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	n := &node{done: make(chan error, 1)}
	args := append([]string{"serve", "-tcp", "127.0.0.1:0", "-ws", "127.0.0.1:0"}, extra...)
	go func() {
		err := run(ctx, args, strings.NewReader(""), io.Discard, pw)
		pw.Close()
		n.done <- err
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-n.done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("serve did not stop")
		}
	})
	addrRe := regexp.MustCompile(`msg=listening .*addr=(\S+)`)
	lines := bufio.NewScanner(pr)
	var addrs []string
	for lines.Scan() {
		if m := addrRe.FindStringSubmatch(lines.Text()); m != nil {
			addrs = append(addrs, m[1])
		}
		if strings.Contains(lines.Text(), "msg=ready") {
			break
		}
	}
	if len(addrs) != 2 {
		t.Fatalf("serve did not get ready: addresses %v", addrs)
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	n.tcp, n.ws = addrs[0], addrs[1]
	return n
}

func TestServeAndClientREPL(t *testing.T) {
	n := startServe(t)
	for _, addr := range []string{n.tcp, "ws://" + n.ws + "/"} {
		t.Run(addr, func(t *testing.T) {
			var out strings.Builder
			script := strings.Join([]string{
				"help",
				"request room.join {}",
				`notify room.message {"name":"ana","content":"hello"}`,
				"request room.nosuchroute",
				"bogus",
				"quit",
			}, "\n")
			if err := run(context.Background(), []string{"client", "-addr", addr}, strings.NewReader(script), &out, io.Discard); err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{
				"connected to " + addr,
				`response {"code":0,"result":"success"}`,
				"PIT-404",
				`unknown command "bogus"`,
				"request <route> [json]",
			} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("client output lacks %q:\n%s", want, out.String())
				}
			}
		})
	}
}

func TestServeChatPage(t *testing.T) {
	n := startServe(t)
	resp, err := http.Get("http://" + n.ws + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "<html") {
		t.Fatalf("GET /: %d %.200s", resp.StatusCode, body)
	}
	resp2, err := http.Get("http://" + n.ws + "/nothing-here")
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /nothing-here: %d", resp2.StatusCode)
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{nil, "no command"},
		{[]string{"fly"}, `unknown command "fly"`},
		{[]string{"serve", "-log-format", "xml"}, "--log-format"},
		{[]string{"serve", "-log-level", "loud"}, "--log-level"},
	}
	for _, tc := range tests {
		err := run(context.Background(), tc.args, strings.NewReader(""), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run(%q) = %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
}
