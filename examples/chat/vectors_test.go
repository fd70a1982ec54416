package chat_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nopal-dev/nopal"
	"github.com/nopal-dev/nopal/codec"
	"github.com/nopal-dev/nopal/examples/chat"
	"github.com/nopal-dev/nopal/frontend"
	"github.com/nopal-dev/nopal/session"
)

// The exchange below was captured from a Pitaya chat server
// (shared/protocol-vectors.md). A raw socket replays the client's bytes and
// expects the server's bytes exactly: no Nopal code on the client side.
const (
	vHandshake    = "01000067 7b22737973223a7b22706c6174666f726d223a2263617074757265222c226c696256657273696f6e223a22302e31222c22636c69656e744275696c644e756d626572223a2231222c22636c69656e7456657273696f6e223a2231227d2c2275736572223a7b7d7d"
	vHandshakeOK  = "01000041 7b22636f6465223a3230302c22737973223a7b2264696374223a7b7d2c22686561727462656174223a31352c2273657269616c697a6572223a226a736f6e227d7d"
	vAck          = "02000000"
	vJoin         = "0400000e 000109726f6f6d2e6a6f696e 7b7d"
	vMembersEmpty = "04000019 06096f6e4d656d62657273 7b226d656d62657273223a5b5d7d"
	vJoinOK       = "0400001f 0401 7b22636f6465223a302c22726573756c74223a2273756363657373227d"
	vMembersA     = "0400001c 06096f6e4d656d62657273 7b226d656d62657273223a5b2231225d7d"
	vNewUser2     = "04000024 06096f6e4e657755736572 7b22636f6e74656e74223a224e657720757365723a2032227d"
	vMessage      = "0400002e 020c726f6f6d2e6d657373616765 7b226e616d65223a22626f62222c22636f6e74656e74223a2268656c6c6f227d"
	vOnMessage    = "0400002b 06096f6e4d657373616765 7b226e616d65223a22626f62222c22636f6e74656e74223a2268656c6c6f227d"
	vLongMessage  = "040000a1 020c726f6f6d2e6d657373616765 7b226e616d65223a22626f62222c22636f6e74656e74223a2268656c6c6f2068656c6c6f2068656c6c6f2068656c6c6f2068656c6c6f2068656c6c6f2068656c6c6f2068656c6c6f2068656c6c6f2068656c6c6f2068656c6c6f2068656c6c6f2068656c6c6f2068656c6c6f2068656c6c6f2068656c6c6f2068656c6c6f2068656c6c6f2068656c6c6f2068656c6c6f20227d"
	vOnLong       = "0400003a 16096f6e4d657373616765 789caa56ca4bcc4d55b2524aca4f52d2514acecf2b49cd2b51b252ca48cdc9c957a03fa9540b080000fffff5ec3488"
	vNoSuch       = "04000017 000312726f6f6d2e6e6f7375636868616e646c6572 7b7d"
	vKick         = "05000000"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// startChat runs the chat example as Pitaya's capture did: JSON, compression
// on, heartbeat 15 s.
func startChat(t *testing.T, cfg nopal.Config) (*nopal.App, string, string) {
	t.Helper()
	cfg.ServerType = chat.ServerType
	app, err := nopal.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := chat.Setup(ctx, app); err != nil {
		t.Fatal(err)
	}
	tcp := frontend.NewTCPAcceptor("127.0.0.1:0")
	ws := frontend.NewWSAcceptor("127.0.0.1:0", frontend.WithHTTPHandler(chat.Page()))
	app.AddAcceptor(tcp)
	app.AddAcceptor(ws)
	if err := app.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := app.Shutdown(sctx); err != nil {
			t.Error(err)
		}
	})
	return app, tcp.Addr().String(), ws.Addr().String()
}

type raw struct {
	t *testing.T
	c net.Conn
}

func dialRaw(t *testing.T, addr string) *raw {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &raw{t: t, c: c}
}

func (r *raw) send(hexes ...string) {
	r.t.Helper()
	for _, h := range hexes {
		if _, err := r.c.Write(unhex(r.t, h)); err != nil {
			r.t.Fatal(err)
		}
	}
}

// packet reads one whole packet.
func (r *raw) packet() []byte {
	r.t.Helper()
	_ = r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, 4)
	if _, err := io.ReadFull(r.c, hdr); err != nil {
		r.t.Fatalf("read header: %v", err)
	}
	n := int(hdr[1])<<16 | int(hdr[2])<<8 | int(hdr[3])
	body := make([]byte, n)
	if _, err := io.ReadFull(r.c, body); err != nil {
		r.t.Fatalf("read body: %v", err)
	}
	return append(hdr, body...)
}

func (r *raw) expect(what, h string) {
	r.t.Helper()
	got, want := r.packet(), unhex(r.t, h)
	if !bytes.Equal(got, want) {
		r.t.Fatalf("%s:\n got %x\nwant %x", what, got, want)
	}
}

func TestPitayaCapturedExchange(t *testing.T) {
	// Resume off: the exchange is Pitaya's, byte for byte (with resume on,
	// the handshake response has one more key, "resume").
	app, addr, _ := startChat(t, nopal.Config{Heartbeat: 15 * time.Second, Compress: true, Resume: frontend.ResumeConfig{Off: true}})

	a := dialRaw(t, addr)
	a.send(vHandshake)
	a.expect("handshake response to A", vHandshakeOK)
	a.send(vAck, vJoin)
	a.expect("onMembers to A", vMembersEmpty)
	a.expect("join response to A", vJoinOK)

	b := dialRaw(t, addr)
	b.send(vHandshake)
	b.expect("handshake response to B", vHandshakeOK)
	b.send(vAck, vJoin)
	b.expect("onMembers to B", vMembersA)
	b.expect("join response to B", vJoinOK)
	a.expect("onNewUser to A", vNewUser2)

	b.send(vMessage)
	a.expect("onMessage to A", vOnMessage)
	b.expect("onMessage to B", vOnMessage)

	b.send(vLongMessage)
	a.expect("compressed onMessage to A", vOnLong)
	b.expect("compressed onMessage to B", vOnLong)

	// The error text differs from Pitaya's; the framing and code must not.
	a.send(vNoSuch)
	pkt := a.packet()
	if !bytes.HasPrefix(pkt[4:], []byte{0x24, 0x03}) {
		t.Fatalf("error response header: %x", pkt)
	}
	e, err := codec.DecodeError(codec.JSON{}, pkt[6:])
	if err != nil || e.Code != codec.CodeNotFound || !strings.Contains(e.Message, "room.nosuchhandler") {
		t.Fatalf("error response: %+v, %v", e, err)
	}

	// A server-side kick of every member of the room.
	members, err := app.Groups().Members(context.Background(), chat.GroupName)
	if err != nil || len(members) != 2 {
		t.Fatalf("members %v, %v", members, err)
	}
	for _, uid := range members {
		if s := app.Sessions().ByUID(uid); s != nil {
			if err := s.Kick(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, c := range []*raw{a, b} {
		c.expect("kick", vKick)
		if _, err := c.c.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("after kick: read %v, want EOF", err)
		}
	}
	// Members leave the room in their sessions' close callbacks.
	waitFor(t, func() bool {
		n, _ := app.Groups().Count(context.Background(), chat.GroupName)
		return n == 0 && app.Sessions().Count() == 0
	})
}

func TestThreePartRoutes(t *testing.T) {
	_, addr, _ := startChat(t, nopal.Config{})
	a := dialRaw(t, addr)
	a.send(vHandshake)
	a.packet()
	join := unhex(t, "04000000 0001 0e 636861742e726f6f6d2e6a6f696e 7b7d") // chat.room.join
	join[3] = byte(len(join) - 4)
	a.send(vAck, hex.EncodeToString(join))
	a.expect("onMembers", vMembersEmpty)
	a.expect("join response", vJoinOK)
	_ = session.FromContext // the session package is part of the example's API
}

// waitFor polls cond: used only for state that has no event to await.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
