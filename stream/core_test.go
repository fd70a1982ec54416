package stream_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nopal-dev/nopal/stream"
)

func TestRequest(t *testing.T) {
	a := connect(t, stream.Config{ServerID: "a", Embedded: stream.Embedded{Listen: "127.0.0.1:0"}})
	b := connect(t, stream.Config{ServerID: "b", URL: a.ClientURL()})
	sub, err := a.Subscribe(a.ServerRPC("a"), "", func(m *nats.Msg) {
		if m.Header.Get("X-Silent") != "" {
			return // let the caller time out
		}
		reply := nats.NewMsg(m.Reply)
		reply.Data = append([]byte("echo "), m.Data...)
		reply.Header.Set(stream.RouteHeader, m.Header.Get(stream.RouteHeader))
		_ = m.RespondMsg(reply)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := a.Flush(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	msg, err := b.Request(ctx, b.ServerRPC("a"), []byte("hi"), nats.Header{stream.RouteHeader: {"room.room.join"}})
	if err != nil {
		t.Fatal(err)
	}
	if string(msg.Data) != "echo hi" || msg.Header.Get(stream.RouteHeader) != "room.room.join" {
		t.Fatalf("reply %q, headers %v", msg.Data, msg.Header)
	}
	if !strings.HasPrefix(msg.Subject, b.ReplyPrefix()+".") {
		t.Fatalf("reply subject %q, want prefix %q", msg.Subject, b.ReplyPrefix())
	}
	// Without a header.
	if msg, err = b.Request(ctx, b.ServerRPC("a"), []byte("again"), nil); err != nil || string(msg.Data) != "echo again" {
		t.Fatalf("reply %v, %v", msg, err)
	}
	// Nobody listens.
	if _, err := b.Request(ctx, b.ServerRPC("nobody"), nil, nil); !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("request to nobody: %v", err)
	}
	// Nobody answers: the context ends the wait.
	short, cancelShort := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancelShort()
	if _, err := b.Request(short, b.ServerRPC("a"), nil, nats.Header{"X-Silent": {"1"}}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("unanswered request: %v", err)
	}
}

func TestSubscribeQueueAndPublish(t *testing.T) {
	b := connect(t, stream.Config{ServerID: "a"})
	var queued, plain atomic.Int64
	subject := b.RPCSubject("room.room.join")
	var subs []*nats.Subscription
	for range 2 {
		sub, err := b.Subscribe(b.RPCTypeWildcard("room"), "room", func(*nats.Msg) { queued.Add(1) })
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, sub)
	}
	sub, err := b.Subscribe(b.RPCTypeWildcard("room"), "", func(*nats.Msg) { plain.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	subs = append(subs, sub)
	defer func() {
		for _, s := range subs {
			_ = s.Unsubscribe()
		}
	}()
	// No pending limits: a busy server does not drop calls.
	for _, s := range subs {
		if msgs, bytes, err := s.PendingLimits(); err != nil || msgs != -1 || bytes != -1 {
			t.Fatalf("pending limits %d, %d, %v", msgs, bytes, err)
		}
	}
	if err := b.Flush(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	const n = 100
	for range n {
		if err := b.Publish(subject, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Flush(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for (queued.Load() != n || plain.Load() != n) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	// Each message reaches one member of the queue group, and every plain
	// subscriber.
	if queued.Load() != n || plain.Load() != n {
		t.Fatalf("queue group got %d, plain subscription %d, want %d each", queued.Load(), plain.Load(), n)
	}
}

func TestChanSubscribe(t *testing.T) {
	b := connect(t, stream.Config{ServerID: "a"})
	ch := make(chan *nats.Msg, 4)
	sub, err := b.ChanSubscribe(b.MailboxSubject("u1"), ch)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := b.Flush(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(b.MailboxSubject("u2"), []byte("not mine")); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(b.MailboxSubject("u1"), []byte("mine")); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-ch:
		if string(m.Data) != "mine" {
			t.Fatalf("got %q", m.Data)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no message")
	}
}

func TestConnectedURLIsRedacted(t *testing.T) {
	a := connect(t, stream.Config{ServerID: "a", Embedded: stream.Embedded{Listen: "127.0.0.1:0", User: "nopal", Password: "s3cret"}})
	u, err := url.Parse(a.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword("nopal", "s3cret")
	b := connect(t, stream.Config{ServerID: "b", URL: u.String()})
	got := b.ConnectedURL()
	if got == "" || strings.Contains(got, "s3cret") || !strings.Contains(got, u.Host) {
		t.Fatalf("ConnectedURL %q (server %s)", got, u.Host)
	}
}

func TestClosingAndAbort(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, end := range []string{"Close", "Abort"} {
		t.Run(end, func(t *testing.T) {
			b, err := stream.Connect(ctx, stream.Config{ServerID: "a", Embedded: stream.Embedded{StoreDir: t.TempDir()}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(b.Close) // a second Close is harmless
			if b.Closing() || !b.Connected() {
				t.Fatalf("new bus: closing %v, connected %v", b.Closing(), b.Connected())
			}
			if end == "Close" {
				b.Close()
			} else {
				b.Abort()
			}
			if !b.Closing() || b.Connected() {
				t.Fatalf("after %s: closing %v, connected %v", end, b.Closing(), b.Connected())
			}
		})
	}
}

func TestJetStreamAndStreamPublish(t *testing.T) {
	b := connect(t, stream.Config{ServerID: "a"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := b.JetStream().AccountInfo(ctx); err != nil {
		t.Fatal(err)
	}
	if b.MaxPayload() <= 0 {
		t.Fatalf("MaxPayload %d", b.MaxPayload())
	}
	st, err := b.Stream(ctx, jetstream.StreamConfig{Name: "MAILBOX", Subjects: []string{b.MailboxWildcard()}})
	if err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg(b.MailboxSubject("u1"))
	m.Data = []byte("push")
	m.Header.Set(stream.PushIDHeader, "42")
	ack, err := b.StreamPublish(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	if ack.Stream != b.Name("MAILBOX") {
		t.Fatalf("stored in %q", ack.Stream)
	}
	m = nats.NewMsg(b.MailboxSubject("u2"))
	m.Data = []byte("async")
	m.Header.Set(stream.SeqHeader, "7")
	f, err := b.StreamPublishAsync(m)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-f.Ok():
	case err := <-f.Err():
		t.Fatal(err)
	case <-ctx.Done():
		t.Fatal("no ack")
	}
	for subject, want := range map[string][2]string{
		b.MailboxSubject("u1"): {stream.PushIDHeader, "42"},
		b.MailboxSubject("u2"): {stream.SeqHeader, "7"},
	} {
		raw, err := st.GetLastMsgForSubject(ctx, subject)
		if err != nil {
			t.Fatal(err)
		}
		if got := raw.Header.Get(want[0]); got != want[1] {
			t.Fatalf("%s: %s = %q, want %q", subject, want[0], got, want[1])
		}
	}
	// Nothing holds the subject: the publish fails.
	if _, err := b.StreamPublish(ctx, nats.NewMsg(b.DLQSubject("mail", "j1"))); err == nil {
		t.Fatal("publish without a stream succeeded")
	}
}

// TestCallTimeoutThenLateReply: a Call whose time is up returns
// nats.ErrTimeout, and the reply that comes after does not reach the next
// Call (waiters are pooled).
func TestCallTimeoutThenLateReply(t *testing.T) {
	b := connect(t, stream.Config{ServerID: "calls"})
	release := make(chan struct{})
	replied := make(chan struct{})
	sub, err := b.Subscribe(b.ServerRPC("calls"), "", func(m *nats.Msg) {
		if string(m.Data) == "late" {
			<-release
			defer close(replied)
		}
		_ = m.Respond(append([]byte("echo "), m.Data...))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := b.Flush(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := b.Call(ctx, b.ServerRPC("calls"), []byte("late"), nil, 50*time.Millisecond); !errors.Is(err, nats.ErrTimeout) {
		t.Fatalf("call past its timeout: %v, want nats.ErrTimeout", err)
	}
	close(release)
	<-replied
	if err := b.Flush(10 * time.Second); err != nil { // the late reply has come back
		t.Fatal(err)
	}
	for i := range 3 {
		want := fmt.Sprintf("echo n%d", i)
		m, err := b.Call(ctx, b.ServerRPC("calls"), []byte(want[len("echo "):]), nil, 10*time.Second)
		if err != nil || string(m.Data) != want {
			t.Fatalf("call %d after a late reply: %q, %v; want %q", i, m.Data, err, want)
		}
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := b.Call(cancelled, b.ServerRPC("calls"), []byte("x"), nil, 10*time.Second); !errors.Is(err, context.Canceled) {
		t.Fatalf("call on a cancelled context: %v", err)
	}
}

// TestCallsInFlightGetTheirOwnReplies: the requests waiting read the one
// reply channel together and hand each other's replies on; each must get
// its own, whatever order the replies come in.
func TestCallsInFlightGetTheirOwnReplies(t *testing.T) {
	b := connect(t, stream.Config{ServerID: "many"})
	sub, err := b.Subscribe(b.RPCTypeWildcard("echo"), "echo", func(m *nats.Msg) {
		go func() { _ = m.Respond(m.Data) }() // replies out of order
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := b.Flush(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	const callers, calls = 32, 200
	errs := make(chan error, callers)
	for i := range callers {
		go func() {
			for j := range calls {
				want := fmt.Sprintf("%d.%d", i, j)
				m, err := b.Call(context.Background(), b.RPCSubject("echo.e.e"), []byte(want), nil, 10*time.Second)
				if err != nil {
					errs <- fmt.Errorf("call %s: %w", want, err)
					return
				}
				if string(m.Data) != want {
					errs <- fmt.Errorf("call %s got the reply %q", want, m.Data)
					return
				}
			}
			errs <- nil
		}()
	}
	for range callers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
