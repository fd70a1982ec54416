package main

import (
	"context"
	"encoding/json"
	"fmt"
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
// The token works once.
func TestProcessResumeAfterSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the multi-process resume test")
	}
	bin := nodeBinary(t)
	n := startProc(t, bin, "N", "serve", "-type", "room", "-id", "room-1", "-tcp", "", "-ws", "",
		"-nats-listen", "127.0.0.1:0", "-nats-store", t.TempDir())
	url := n.waitLine(t, natsURLRe, startTimeout)[1]
	n.waitLine(t, readyRe, startTimeout)
	a := serveConnector(t, bin, "conn-a", url)
	b := serveConnector(t, bin, "conn-b", url)
	atcp, _ := connectorAddrs(t, a)
	btcp, bws := connectorAddrs(t, b)

	alice := dialChat(t, "alice", atcp)
	bob := dialChat(t, "bob", "ws://"+bws+"/")
	alice.join(t)
	alice.waitPush(t, "onMembers", `"members"`)
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
}
