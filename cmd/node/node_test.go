package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

type node struct {
	tcp, ws, nats, metrics string
	done                   chan error
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
	natsRe := regexp.MustCompile(`msg="embedded NATS listening" url=(\S+)`)
	metricsRe := regexp.MustCompile(`msg="serving metrics" .*addr=(\S+)`)
	lines := bufio.NewScanner(pr)
	var addrs []string
	for lines.Scan() {
		if m := addrRe.FindStringSubmatch(lines.Text()); m != nil {
			addrs = append(addrs, m[1])
		}
		if m := natsRe.FindStringSubmatch(lines.Text()); m != nil {
			n.nats = m[1]
		}
		if m := metricsRe.FindStringSubmatch(lines.Text()); m != nil {
			n.metrics = m[1]
		}
		if strings.Contains(lines.Text(), "msg=ready") {
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	if slices.Contains(args, "") { // -tcp "" -ws "": a backend
		return n
	}
	if len(addrs) != 2 {
		t.Fatalf("serve did not get ready: addresses %v", addrs)
	}
	n.tcp, n.ws = addrs[0], addrs[1]
	return n
}

func TestServeAndClientREPL(t *testing.T) {
	modes := []struct {
		name  string
		args  []string
		route string // the room's route prefix
	}{
		{"standalone", []string{"-type", "chat"}, "room"},
		{"cluster", nil, "room.room"},
	}
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			n := startServe(t, mode.args...)
			for _, addr := range []string{n.tcp, "ws://" + n.ws + "/"} {
				t.Run(addr, func(t *testing.T) {
					out := runClient(t, addr,
						"help",
						"request "+mode.route+".join {}",
						`notify `+mode.route+`.message {"name":"ana","content":"hello"}`,
						"request "+mode.route+".nosuchroute",
						"bogus",
						"quit",
					)
					for _, want := range []string{
						"connected to " + addr,
						`response {"code":0,"result":"success"}`,
						"PIT-404",
						`unknown command "bogus"`,
						"request <route> [json]",
					} {
						if !strings.Contains(out, want) {
							t.Errorf("client output lacks %q:\n%s", want, out)
						}
					}
				})
			}
		})
	}
}

func runClient(t *testing.T, addr string, lines ...string) string {
	t.Helper()
	var out strings.Builder
	if err := run(context.Background(), []string{"client", "-addr", addr}, strings.NewReader(strings.Join(lines, "\n")), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func TestServersAndReplay(t *testing.T) {
	n := startServe(t, "-nats-listen", "127.0.0.1:0")
	if n.nats == "" {
		t.Fatal("serve did not say where its embedded NATS listens")
	}
	runClient(t, n.tcp, "request room.room.join {}", "quit")

	var out strings.Builder
	if err := run(context.Background(), []string{"servers", "-nats", n.nats}, strings.NewReader(""), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"connector", "room", "true", "false"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("servers output lacks %q:\n%s", want, out.String())
		}
	}

	// The recorder flushes every 2 ms: poll until the exchange is there.
	deadline := time.Now().Add(10 * time.Second)
	for {
		out.Reset()
		if err := run(context.Background(), []string{"replay", "-nats", n.nats, "-route", "room.room.join"}, strings.NewReader(""), &out, io.Discard); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out.String(), "reply") || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, want := range []string{"call    room.room.join (sys)", `reply   room.room.join`, `{"code":0,"result":"success"}`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("replay output lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if err := run(context.Background(), []string{"replay", "-nats", n.nats, "-json", "-route", "room.room.join"}, strings.NewReader(""), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `"kind":"call"`) || !strings.Contains(out.String(), `"route":"room.room.join"`) {
		t.Errorf("replay -json output:\n%s", out.String())
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
	t.Setenv("NATS_URL", "") // -nats's default
	tests := []struct {
		args []string
		want string
	}{
		{nil, "no command"},
		{[]string{"fly"}, `unknown command "fly"`},
		{[]string{"serve", "-log-format", "xml"}, "--log-format"},
		{[]string{"serve", "-log-level", "loud"}, "--log-level"},
		{[]string{"serve", "-type", "lobby"}, `unknown server type "lobby"`},
		{[]string{"serve", "-type", "chat,room"}, "-type chat runs alone"},
		{[]string{"servers"}, "-nats is required"},
		{[]string{"replay", "-since", "yesterday"}, "-since"},
	}
	for _, tc := range tests {
		err := run(context.Background(), tc.args, strings.NewReader(""), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run(%q) = %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
}

func TestServeMetrics(t *testing.T) {
	n := startServe(t, "-metrics-addr", "127.0.0.1:0", "-metrics-namespace", "pitaya", "-game", "chat")
	if n.metrics == "" {
		t.Fatal("serve did not say where it serves metrics")
	}
	runClient(t, n.tcp, "request room.room.join {}", "quit")
	wants := []string{
		`pitaya_handler_response_time_ns_count{code="",game="chat",route="room.room.join",serverType="connector",status="ok",type="handler"} 1`,
		`pitaya_service_discovery_count_servers{game="chat",serverType="connector",type="room"} 1`,
		"pitaya_sys_goroutines",
		// The room, the second -type of the process, reports there too.
		`pitaya_handler_handler_delay_ns_count{game="chat",route="room.room.join",serverType="room",type="remote"} 1`,
		`pitaya_handler_response_time_ns_count{code="",game="chat",route="room.room.join",serverType="room",status="ok",type="handler"} 1`,
		`pitaya_service_discovery_count_servers{game="chat",serverType="room",type="connector"} 1`,
	}
	// The response reaches the client before the handler's timing is
	// recorded, so the scrape is retried until it shows or the deadline.
	var body string
	deadline := time.Now().Add(5 * time.Second)
	for {
		body = scrape(t, n.metrics)
		missing := 0
		for _, want := range wants {
			if !strings.Contains(body, want) {
				missing++
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, want := range wants {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

// The README's tour: a job enqueued while no worker of its type runs waits,
// queued, and runs once a worker starts.
func TestJobsCommands(t *testing.T) {
	n := startServe(t, "-nats-listen", "127.0.0.1:0")
	jobs := func(args ...string) (string, error) {
		t.Helper()
		var out strings.Builder
		err := run(context.Background(), append([]string{"jobs", args[0], "-nats", n.nats}, args[1:]...), strings.NewReader(""), &out, io.Discard)
		return out.String(), err
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := jobs(args...)
		if err != nil {
			t.Fatalf("jobs %v: %v", args, err)
		}
		return out
	}
	jid := strings.TrimSpace(must("enqueue", "-jid", "grant-ana-gold", "rewards.rewards.grant", `{"uid":"ana","reward":"gold"}`))
	if jid != "grant-ana-gold" {
		t.Fatalf("enqueue printed %q", jid)
	}
	if again := strings.TrimSpace(must("enqueue", "-jid", "grant-ana-gold", "rewards.rewards.grant", `{"uid":"ana","reward":"gold"}`)); again != jid {
		t.Fatalf("the same jid enqueued twice gave %q", again)
	}
	if out := must("get", jid); !strings.Contains(out, "state     queued") {
		t.Fatalf("get before any worker:\n%s", out)
	}
	startServe(t, "-type", "rewards", "-tcp", "", "-ws", "", "-nats", n.nats)
	out := must("wait", "-timeout", "30s", jid)
	if !strings.Contains(out, "state     succeeded") || !strings.Contains(out, `"reward":"gold"`) {
		t.Fatalf("wait:\n%s", out)
	}
	if out := must("get", "-json", jid); !strings.Contains(out, `"state":"succeeded"`) {
		t.Fatalf("get -json:\n%s", out)
	}
	if out := must("list", "-state", "succeeded"); !strings.Contains(out, jid) {
		t.Fatalf("list:\n%s", out)
	}
	delayed := strings.TrimSpace(must("enqueue", "-delay", "1h", "rewards.rewards.grant", `{"uid":"bo","reward":"gem"}`))
	if out := must("cancel", delayed); !strings.Contains(out, "cancelled") {
		t.Fatalf("cancel:\n%s", out)
	}
	if _, err := jobs("retry", jid); err == nil {
		t.Fatal("retry of a succeeded job was accepted")
	}
	if _, err := jobs("enqueue", "rewards.rewards.grant", "not json"); err == nil {
		t.Fatal("enqueue accepted an argument that is not JSON")
	}
}

// node serve -tracing exports spans over OTLP to the endpoint named by the
// standard variable, as the README says for Jaeger.
func TestServeTracing(t *testing.T) {
	posts := make(chan string, 100)
	otlp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case posts <- r.URL.Path:
		default:
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(otlp.Close) // after the check below, which runs after serve stops
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.URL)
	t.Setenv("OTEL_SERVICE_NAME", "chat")
	// Registered before startServe: runs after serve has stopped (and
	// flushed its spans).
	t.Cleanup(func() {
		select {
		case path := <-posts:
			if path != "/v1/traces" {
				t.Errorf("OTLP export to %s", path)
			}
		case <-time.After(10 * time.Second):
			t.Error("no span reached the OTLP endpoint")
		}
	})
	n := startServe(t, "-tracing")
	runClient(t, n.tcp, "request room.room.join {}", "quit")
}

// The REPL's drop command cuts the connection; the client resumes its
// session, which still gets the room's messages.
func TestClientDropResumes(t *testing.T) {
	n := startServe(t)
	out := runClient(t, n.tcp,
		"request room.room.join {}",
		"drop",
		`notify room.room.message {"name":"me","content":"after the drop"}`,
		"request room.room.nosuch {}", // its answer follows the push
		"quit")
	for _, want := range []string{"dropped and resumed", `push onMessage {"name":"me","content":"after the drop"}`} {
		if !strings.Contains(out, want) {
			t.Errorf("client output lacks %q:\n%s", want, out)
		}
	}
}
