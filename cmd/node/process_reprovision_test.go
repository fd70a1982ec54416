package main

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

var (
	// The connector's bus logs these as it creates its objects again.
	recreatedMailboxRe  = regexp.MustCompile(`msg="re-created stream" .*stream=nopal_MAILBOX`)
	recreatedSessionsRe = regexp.MustCompile(`msg="re-created bucket" .*bucket=nopal_sessions`)
	reprovisionedRe     = regexp.MustCompile(`msg="bus re-provisioned"`)
	// What a bind logged, for ever, while MAILBOX and sessions were gone.
	missingObjectRe = regexp.MustCompile(`stream not found|no response from stream`)
)

// lineIndex is the index of the first stderr line from index from that
// matches re, or -1.
func (p *proc) lineIndex(re *regexp.Regexp, from int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := from; i < len(p.lines); i++ {
		if re.MatchString(p.lines[i]) {
			return i
		}
	}
	return -1
}

// linesFrom returns the stderr lines from index from that match re.
func (p *proc) linesFrom(re *regexp.Regexp, from int) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for i := max(from, 0); i < len(p.lines); i++ {
		if re.MatchString(p.lines[i]) {
			out = append(out, p.lines[i])
		}
	}
	return out
}

// awaitLine is waitLine without failing: it reports whether a line from
// index from matched re within timeout.
func (p *proc) awaitLine(re *regexp.Regexp, from int, timeout time.Duration) bool {
	deadline := time.After(timeout)
	for {
		p.mu.Lock()
		changed := p.changed
		p.mu.Unlock()
		if p.lineIndex(re, from) >= 0 {
			return true
		}
		select {
		case <-changed:
		case <-p.done:
			return p.lineIndex(re, from) >= 0
		case <-deadline:
			return false
		}
	}
}

// natsJS connects a plain nats.go client to url.
func natsJS(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// awaitSessionRecords watches the sessions bucket until it holds n keys
// (the records the connector writes as sessions bind).
func awaitSessionRecords(t *testing.T, js jetstream.JetStream, n int, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	kv, err := js.KeyValue(ctx, "nopal_sessions")
	if err != nil {
		t.Fatalf("sessions bucket: %v", err)
	}
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop() }()
	keys := map[string]bool{}
	for len(keys) < n {
		select {
		case e := <-w.Updates():
			if e != nil {
				keys[e.Key()] = true
			}
		case <-ctx.Done():
			t.Fatalf("sessions bucket holds %d records (%v), want %d", len(keys), keys, n)
		}
	}
}

// TestProcessReprovisionAfterEmbeddedNATSRestart is issue 10's scenario:
// room-1 owns the embedded NATS (a temporary store) and a connector uses
// it; room-1 is killed with SIGKILL and started again with the same flags,
// so the NATS server comes back on the same address with an empty store.
// The connector's bus reconnects and creates again the streams and buckets
// it provisioned, MAILBOX and sessions among them (nobody else creates
// those two), the chat works, and the binds after that do not fail on a
// missing stream (they logged "stream not found" and "no response from
// stream" for ever before the fix).
func TestProcessReprovisionAfterEmbeddedNATSRestart(t *testing.T) {
	skipShortFault(t)
	bin := nodeBinary(t)
	step := stepLogger(t)
	listen := fmt.Sprintf("127.0.0.1:%d", freePorts(t, 1)[0]) // the restart comes back on the same address
	roomArgs := []string{"serve", "-type", "room", "-id", "room-1", "-tcp", "", "-ws", "", "-nats-listen", listen}
	room := startProc(t, bin, "room-1", roomArgs...)
	url := room.waitLine(t, natsURLRe, startTimeout)[1]
	room.waitLine(t, readyRe, startTimeout)
	conn := serveConnector(t, bin, "conn-1", url)
	tcp, ws := connectorAddrs(t, conn)
	step("room-1 (NATS at %s) and conn-1 ready", url)

	alice := dialChat(t, "alice", tcp)
	bob := dialChat(t, "bob", "ws://"+ws+"/")
	alice.join(t)
	bob.join(t)
	chatUntil(t, bob, alice, "before", 10*time.Second)
	step("chat works")

	if code, _ := room.signalAndWait(t, syscall.SIGKILL, 10*time.Second); code == 0 {
		t.Fatal("room-1 exited cleanly after SIGKILL")
	}
	room = startProc(t, bin, "room-1 (restarted)", roomArgs...)
	if got := room.waitLine(t, natsURLRe, startTimeout)[1]; got != url {
		t.Fatalf("the restarted NATS listens at %s, not %s", got, url)
	}
	room.waitLine(t, readyRe, startTimeout)
	conn.waitLines(t, busReconnectedRe, 1, 20*time.Second)
	reconnected := conn.lineIndex(busReconnectedRe, 0)
	step("room-1 restarted with an empty store; conn-1 reconnected")

	// The connector re-creates MAILBOX and sessions: wait for its run to
	// end (not failing here, so that a missing run shows its symptoms).
	cutoff := reconnected
	if conn.awaitLine(recreatedMailboxRe, reconnected, 20*time.Second) &&
		conn.awaitLine(recreatedSessionsRe, reconnected, 20*time.Second) &&
		conn.awaitLine(reprovisionedRe, reconnected, 20*time.Second) {
		cutoff = conn.lineIndex(reprovisionedRe, reconnected)
		step("conn-1 re-provisioned its streams and buckets")
	} else {
		t.Errorf("conn-1 did not log the re-creation of MAILBOX and sessions")
	}
	js := natsJS(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.Stream(ctx, "nopal_MAILBOX"); err != nil {
		t.Errorf("stream nopal_MAILBOX after the restart: %v", err)
	}
	if _, err := js.KeyValue(ctx, "nopal_sessions"); err != nil {
		t.Errorf("bucket nopal_sessions after the restart: %v", err)
	}

	// New players bind on the connector (a mailbox purge and a session
	// record each) and chat through the restarted room.
	carol := dialChat(t, "carol", tcp)
	dave := dialChat(t, "dave", "ws://"+ws+"/")
	carol.join(t)
	dave.join(t)
	took := chatUntil(t, dave, carol, "after the restart", 15*time.Second)
	step("carol and dave chat through the restarted room (%v)", took.Round(time.Millisecond))
	if !t.Failed() {
		awaitSessionRecords(t, js, 2, 10*time.Second)
		step("their sessions are recorded")
	}
	if bad := conn.linesFrom(missingObjectRe, cutoff); len(bad) > 0 {
		t.Errorf("conn-1 still fails on missing streams after the restart:\n%s", strings.Join(bad, "\n"))
	}
}
