package nopal_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/nopal-dev/nopal/bindings"
	"github.com/nopal-dev/nopal/client"
	"github.com/nopal-dev/nopal/discovery"
	"github.com/nopal-dev/nopal/stream"
)

// Session resume across frontends of a cluster, in one process; the resume
// after a frontend is killed runs with real processes in cmd/node.

type seqPush struct {
	N int `json:"n"`
}

// pushSeq sends pushes n = from..to to uid from app, one every pause, and
// reports the first failure on the returned channel (nil when all went).
func pushSeq(app interface {
	SendPushToUsers(context.Context, string, any, []string, string) ([]string, error)
}, uid string, from, to int, pause time.Duration) <-chan error {
	done := make(chan error, 1)
	go func() {
		for n := from; n <= to; n++ {
			failed, err := app.SendPushToUsers(context.Background(), "onSeq", seqPush{N: n}, []string{uid}, "")
			if err != nil || len(failed) > 0 {
				done <- fmt.Errorf("push %d: failed %v, %v", n, failed, err)
				return
			}
			time.Sleep(pause)
		}
		done <- nil
	}()
	return done
}

// readSeq reads pushes from c until it has n = from..to, in order.
func readSeq(t *testing.T, c *client.Client, from, to int) {
	t.Helper()
	for want := from; want <= to; want++ {
		p := await(t, c.Pushes(), fmt.Sprintf("push %d", want))
		var m seqPush
		if p.Route != "onSeq" || json.Unmarshal(p.Data, &m) != nil || m.N != want {
			t.Fatalf("push %s %s, want n=%d", p.Route, p.Data, want)
		}
	}
}

// A client whose connection to frontend A drops resumes on frontend B
// while pushes keep coming: it gets each once, in order; the binding, the
// data and the group membership move with the session, and A forgets it
// without closing it.
func TestClusterResumeOnAnotherFrontend(t *testing.T) {
	t.Parallel()
	room, a, b, store := twoFrontends(t)
	ctx := testCtx(t)

	ca := dialOpts(t, a.tcp, client.WithPushBuffer(1024))
	var w Where
	if err := ca.Request(ctx, "room.room.bind", &BindArg{UID: "mover"}, &w); err != nil {
		t.Fatal(err)
	}
	if err := ca.Request(ctx, "room.room.store", nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := room.app.Groups().Create(ctx, "hall"); err != nil {
		t.Fatal(err)
	}
	if err := room.app.Groups().Add(ctx, "hall", "mover"); err != nil {
		t.Fatal(err)
	}

	const total = 300
	sent := pushSeq(room.app, "mover", 1, total, 500*time.Microsecond)
	readSeq(t, ca, 1, 20)
	token, got := ca.ResumeToken(), ca.PushesReceived()
	ca.Drop()
	cb := dialOpts(t, b.ws, client.WithResume(token, got), client.WithPushBuffer(1024))
	if !cb.Handshake().Sys.Resumed {
		t.Fatal("B did not resume the session")
	}
	readSeq(t, cb, int(got)+1, total)
	if err := <-sent; err != nil {
		t.Fatal(err)
	}

	var wb Where
	if err := cb.Request(ctx, "room.room.where", nil, &wb); err != nil {
		t.Fatal(err)
	}
	if wb.UID != "mover" || wb.Frontend != "conn-b" || wb.Data["name"] != "knight" {
		t.Errorf("the session on B: %+v", wb)
	}
	if bd, err := store.Get(ctx, "mover"); err != nil || bd != (bindings.Binding{FrontendID: "conn-b", SessionID: wb.Session}) {
		t.Errorf("binding after the move: %v, %v", bd, err)
	}
	if a.app.Sessions().ByUID("mover") != nil || a.app.Sessions().Count() != 0 {
		t.Errorf("A still holds %d sessions", a.app.Sessions().Count())
	}
	if ok, err := room.app.Groups().Contains(ctx, "hall", "mover"); err != nil || !ok {
		t.Errorf("group membership after the move: %v, %v", ok, err)
	}
	// A group broadcast reaches the moved session, once.
	if _, err := room.app.Groups().Broadcast(ctx, "hall", "onSeq", seqPush{N: total + 1}); err != nil {
		t.Fatal(err)
	}
	readSeq(t, cb, total+1, total+1)
	if n := a.app.Frontend().Stats().Moved.Load(); n != 1 {
		t.Errorf("A moved %d sessions", n)
	}
	// The token A issued is spent.
	again := dialOpts(t, a.tcp, client.WithResume(token, got))
	if again.Handshake().Sys.Resumed {
		t.Error("A's token worked twice")
	}
}

// A reconnect storm at small scale: clients on two frontends drop at once,
// while pushes flow to all of them, and resume on the other frontend. Every
// session comes back whole (no push lost or repeated) and every binding
// points at the session's new home: none is left behind.
func TestClusterResumeStorm(t *testing.T) {
	t.Parallel()
	room, a, b, store := twoFrontends(t)
	ctx := testCtx(t)
	const clients, total = 40, 60
	addrs := [][2]string{{a.tcp, b.ws}, {b.tcp, a.ws}}
	cls := make([]*client.Client, clients)
	uids := make([]string, clients)
	for i := range cls {
		uids[i] = fmt.Sprintf("storm-%d", i)
		pair := addrs[i%2]
		cls[i] = dialOpts(t, pair[0], client.WithAutoResume(waitTimeout, pair[1]), client.WithPushBuffer(total+8))
		if err := cls[i].Request(ctx, "room.room.bind", &BindArg{UID: uids[i]}, nil); err != nil {
			t.Fatal(err)
		}
	}
	// Pushes to every uid at once; the connections drop half way.
	done := make(chan error, 1)
	go func() {
		for n := 1; n <= total; n++ {
			failed, err := room.app.SendPushToUsers(context.Background(), "onSeq", seqPush{N: n}, uids, "")
			if err != nil || len(failed) > 0 {
				done <- fmt.Errorf("push %d: failed %v, %v", n, failed, err)
				return
			}
			time.Sleep(time.Millisecond)
		}
		done <- nil
	}()
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i, cl := range cls {
		wg.Go(func() {
			for want := 1; want <= total; want++ {
				if want == total/3 {
					// Both frontends take their clients' drops at once;
					// the first address is down for this client.
					cl.Drop()
				}
				select {
				case p, ok := <-cl.Pushes():
					var m seqPush
					if !ok || json.Unmarshal(p.Data, &m) != nil || m.N != want {
						errs <- fmt.Errorf("client %d: push %s (open %v), want n=%d (client err %v)", i, p.Data, ok, want, cl.Err())
						return
					}
				case <-time.After(waitTimeout):
					errs <- fmt.Errorf("client %d: no push %d", i, want)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Each session lives on exactly one frontend, and its binding says
	// which.
	for _, uid := range uids {
		sa, sb := a.app.Sessions().ByUID(uid), b.app.Sessions().ByUID(uid)
		if (sa == nil) == (sb == nil) {
			t.Errorf("%s: on A %v, on B %v", uid, sa, sb)
			continue
		}
		want := bindings.Binding{FrontendID: "conn-a"}
		if sa != nil {
			want.SessionID = sa.ID()
		} else {
			want = bindings.Binding{FrontendID: "conn-b", SessionID: sb.ID()}
		}
		if got, err := store.Get(ctx, uid); err != nil || got != want {
			t.Errorf("%s: binding %v, %v; want %v", uid, got, err, want)
		}
	}
	if n := a.app.Sessions().Count() + b.app.Sessions().Count(); n != clients {
		t.Errorf("%d sessions in all, want %d", n, clients)
	}
}

// twoFrontends starts a cluster with a room server and the frontends
// conn-a and conn-b, and returns them with the cluster's bindings store.
func twoFrontends(t *testing.T) (room, a, b *testNode, store *bindings.Store) {
	t.Helper()
	c := newTestCluster(t, clusterOpts{})
	room = c.room("room-1", false, nil)
	a = c.connector("conn-a", nil)
	b = c.connector("conn-b", nil)
	awaitServers(t, "connector", []string{"conn-a", "conn-b"}, room.app, a.app, b.app)
	store, err := bindings.NewStore(testCtx(t), c.infra.Bus())
	if err != nil {
		t.Fatal(err)
	}
	return room, a, b, store
}

func dialOpts(t *testing.T, addr string, opts ...client.Option) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	cl, err := client.Dial(ctx, addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

// A request still running when its session moves to another frontend is
// answered there: the old frontend forwards the response.
func TestClusterResumeForwardsLateResponse(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, clusterOpts{})
	rec := newRoomRecorder(t)
	c.room("room-1", false, rec)
	a := c.connector("conn-a", nil)
	b := c.connector("conn-b", nil)
	awaitServers(t, "connector", []string{"conn-a", "conn-b"}, a.app, b.app)
	ctx := testCtx(t)
	cl := dialOpts(t, a.tcp, client.WithAutoResume(waitTimeout, b.tcp))
	if err := cl.Request(ctx, "room.room.bind", &BindArg{UID: "late"}, nil); err != nil {
		t.Fatal(err)
	}
	answered := make(chan error, 1)
	var out Echo
	go func() { answered <- cl.Request(ctx, "room.room.hold", nil, &out) }()
	await(t, rec.held, "room.hold to start")
	// A stops accepting: the client's resume lands on B while A, alive,
	// still waits for the room's answer.
	for _, acc := range a.app.Frontend().Acceptors() {
		if err := acc.Stop(); err != nil {
			t.Fatal(err)
		}
	}
	cl.Drop()
	eventually(t, "the session to move to B", func() bool { return b.app.Sessions().ByUID("late") != nil })
	close(rec.unhold)
	if err := await(t, answered, "the held response"); err != nil || out.Text != "held" {
		t.Fatalf("response after the move: %+v, %v", out, err)
	}
}

// A session whose frontend died resumes from the bus: its record and its
// mailbox. Here the dead frontend is a discovery entry whose connection
// goes away, with a record and a binding written by hand, so that a push
// can be kept for it deterministically both before the resume (read from
// the mailbox) and after it (a sender that stored it late: caught by the
// resumed session's watch).
func TestClusterResumeFromTheBus(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, clusterOpts{})
	room := c.room("room-1", false, nil)
	b := c.connector("conn-b", nil)
	awaitServers(t, "connector", []string{"conn-b"}, room.app, b.app)
	ctx := testCtx(t)
	bus := c.infra.Bus()
	kv, err := bus.JetStream().KeyValue(ctx, bus.Name("sessions"))
	if err != nil {
		t.Fatal(err)
	}
	const secret = "AbCdEfGhIjKlMnOpQrStUv" // 22 characters, as issued
	sum := sha256.Sum256([]byte(secret))
	rec, err := proto.Marshal(&stream.SessionRecord{Uid: "ghost", Secret: hex.EncodeToString(sum[:]), Data: []byte(`{"gold":3}`)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "dead-fe.7", rec); err != nil {
		t.Fatal(err)
	}
	store, err := bindings.NewStore(ctx, bus)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Bind(ctx, "ghost", bindings.Binding{FrontendID: "dead-fe", SessionID: 7}); err != nil {
		t.Fatal(err)
	}
	// The frontend appears, then dies: its bus connection goes, so its
	// discovery entry expires and every node sees it die.
	ghostBus, err := stream.Connect(ctx, stream.Config{URL: bus.ClientURL(), ServerID: "dead-fe"})
	if err != nil {
		t.Fatal(err)
	}
	ghost, err := discovery.New(ghostBus, discovery.Server{ID: "dead-fe", Type: "connector", Frontend: true}, discovery.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := ghost.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ghost.Stop(context.Background()); ghostBus.Close() })
	awaitServers(t, "connector", []string{"conn-b", "dead-fe"}, room.app)
	ghostBus.Abort() // as a SIGKILL would: no goodbye
	awaitServers(t, "connector", []string{"conn-b"}, room.app)
	// Sent while no frontend holds the user: kept, and still reported.
	if failed, err := room.app.SendPushToUsers(ctx, "onSeq", seqPush{N: 1}, []string{"ghost"}, ""); err != nil || len(failed) != 1 {
		t.Fatalf("push to the dead frontend's user: failed %v, %v", failed, err)
	}

	cl := dialOpts(t, b.tcp, client.WithResume("dead-fe.7."+secret, 0))
	if !cl.Handshake().Sys.Resumed {
		t.Fatal("B did not resume the session from the bus")
	}
	readSeq(t, cl, 1, 1)
	var w Where
	if err := cl.Request(ctx, "room.room.where", nil, &w); err != nil || w.UID != "ghost" || w.Data["gold"] != float64(3) {
		t.Fatalf("the resumed session: %+v, %v", w, err)
	}
	if bd, err := store.Get(ctx, "ghost"); err != nil || bd.FrontendID != "conn-b" {
		t.Errorf("binding after the resume: %v, %v", bd, err)
	}
	// A sender that decided to keep push 2 before the resume stores it now.
	m := nats.NewMsg(bus.MailboxSubject(bindings.Key("ghost")))
	m.Data = []byte(`{"n":2}`)
	m.Header.Set(stream.RouteHeader, "onSeq")
	m.Header.Set(stream.PushIDHeader, "4242")
	if _, err := bus.JetStream().PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	readSeq(t, cl, 2, 2)
	// Then live pushes.
	if failed, err := room.app.SendPushToUsers(ctx, "onSeq", seqPush{N: 3}, []string{"ghost"}, ""); err != nil || len(failed) > 0 {
		t.Fatalf("live push: failed %v, %v", failed, err)
	}
	readSeq(t, cl, 3, 3)
	// The record is spent.
	again := dialOpts(t, b.tcp, client.WithResume("dead-fe.7."+secret, 0))
	if again.Handshake().Sys.Resumed {
		t.Error("the token worked twice")
	}
}
