package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nopal-dev/nopal/bindings"
	"github.com/nopal-dev/nopal/client"
	"github.com/nopal-dev/nopal/examples/chat"
	"github.com/nopal-dev/nopal/stream"
)

// A chat player's frontend is killed with SIGKILL. The messages sent to the
// room after the kill are kept in the bus; the player resumes on another
// frontend with the token and push count it had, gets each of them once, in
// order, then the live chat; the uid's binding moves to the new frontend.
// The token works once. Another player of the dead frontend never comes
// back: once the grace has passed, the surviving frontend ends her session
// (the connector's close hook takes her out of the room) and removes her
// binding.
func TestProcessResumeAfterSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the multi-process resume test")
	}
	bin := nodeBinary(t)
	n := startProc(t, bin, "N", "serve", "-type", "room", "-id", "room-1", "-tcp", "", "-ws", "",
		"-nats-listen", "127.0.0.1:0", "-nats-store", t.TempDir())
	url := n.waitLine(t, natsURLRe, startTimeout)[1]
	n.waitLine(t, readyRe, startTimeout)
	const grace = "8s"
	connector := func(id string) *proc {
		return startProc(t, bin, id, "serve", "-type", "connector", "-id", id, "-nats", url,
			"-tcp", "127.0.0.1:0", "-ws", "127.0.0.1:0", "-resume-grace", grace)
	}
	a := connector("conn-a")
	b := connector("conn-b")
	atcp, _ := connectorAddrs(t, a)
	btcp, bws := connectorAddrs(t, b)

	alice := dialChat(t, "alice", atcp)
	bob := dialChat(t, "bob", "ws://"+bws+"/")
	alice.join(t)
	alice.waitPush(t, "onMembers", `"members"`)
	carol := dialChat(t, "carol", atcp)
	carol.join(t)
	carol.waitPush(t, "onMembers", "conn-a-1")
	bob.join(t)
	alice.waitPush(t, "onNewUser", "New user: conn-b-")
	bob.say(t, "before the kill")
	alice.waitPush(t, "onMessage", "before the kill")
	token, pushes := alice.ResumeToken(), alice.PushesReceived()
	if token == "" {
		t.Fatal("no resume token")
	}

	if code, _ := a.signalAndWait(t, syscall.SIGKILL, 10*time.Second); code == 0 {
		t.Fatal("conn-a exited cleanly after SIGKILL")
	}
	<-alice.Done()
	// Once the kill is known (here: discovery has dropped conn-a; until
	// then the bus answers "no responders" at once, or a request times
	// out), the room's pushes to alice are kept for her.
	for deadline := time.Now().Add(20 * time.Second); ; {
		if _, ok := listServers(t, url)["conn-a"]; !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("conn-a is still in discovery")
		}
		time.Sleep(100 * time.Millisecond) // discovery expiry has no event a process outside can await
	}
	const missed = 5
	for i := 1; i <= missed; i++ {
		bob.say(t, fmt.Sprintf("after the kill %d", i))
		bob.waitPush(t, "onMessage", fmt.Sprintf("after the kill %d", i))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	back, err := client.Dial(ctx, btcp, client.WithResume(token, pushes))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = back.Close() })
	if !back.Handshake().Sys.Resumed {
		t.Fatal("conn-b did not resume alice's session")
	}
	readChat := func(want string) {
		t.Helper()
		select {
		case p := <-back.Pushes():
			var m chat.UserMessage
			if p.Route != "onMessage" || json.Unmarshal(p.Data, &m) != nil || m.Content != want {
				t.Fatalf("push %s %s, want onMessage %q", p.Route, p.Data, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no push %q", want)
		}
	}
	for i := 1; i <= missed; i++ {
		readChat(fmt.Sprintf("after the kill %d", i))
	}
	bob.say(t, "live again")
	readChat("live again")
	if back.PushesReceived() != pushes+missed+1 {
		t.Errorf("alice counts %d pushes, want %d", back.PushesReceived(), pushes+missed+1)
	}

	bus, err := stream.Connect(ctx, stream.Config{URL: url, ServerID: "resume-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	store, err := bindings.NewStore(ctx, bus)
	if err != nil {
		t.Fatal(err)
	}
	uid := "conn-a-1"
	if bd, err := store.Get(ctx, uid); err != nil || bd.FrontendID != "conn-b" {
		t.Errorf("%s's binding after the resume: %v, %v", uid, bd, err)
	}

	again, err := client.Dial(ctx, btcp, client.WithResume(token, pushes))
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if again.Handshake().Sys.Resumed {
		t.Error("the token worked twice")
	}

	// Carol (conn-a-2) did not come back: after the grace conn-b ends her
	// session. A newcomer sees alice in the room, not carol.
	b.waitLine(t, regexp.MustCompile(`janitor: ended the sessions of a dead frontend`), 30*time.Second)
	if bd, err := store.Get(ctx, "conn-a-2"); !errors.Is(err, bindings.ErrNotFound) {
		t.Errorf("carol's binding after the grace: %v, %v", bd, err)
	}
	dave := dialChat(t, "dave", btcp)
	dave.join(t)
	var p client.Push
	select {
	case p = <-dave.Pushes():
	case <-time.After(10 * time.Second):
		t.Fatal("no onMembers for dave")
	}
	if p.Route != "onMembers" || !strings.Contains(string(p.Data), uid) || strings.Contains(string(p.Data), "conn-a-2") {
		t.Errorf("members after the grace: %s %s", p.Route, p.Data)
	}
}
