package client_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/nopal-dev/nopal/client"
	"github.com/nopal-dev/nopal/codec"
	"github.com/nopal-dev/nopal/frontend"
)

// A client joins a chat room: it dials, sends a request, reads the push the
// server sent before answering, and closes.
func Example() {
	addr := startChatServer() // a tiny server on 127.0.0.1, below

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, addr)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	var res struct {
		Code   int    `json:"code"`
		Result string `json:"result"`
	}
	if err := c.Request(ctx, "room.join", map[string]string{"name": "ann"}, &res); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("join:", res.Code, res.Result)

	p := <-c.Pushes()
	fmt.Printf("push %s: %s\n", p.Route, p.Data)

	err = c.Request(ctx, "room.nosuchhandler", nil, nil)
	fmt.Println("error:", err)
	// Output:
	// join: 0 success
	// push onMembers: {"members":["ann"]}
	// error: PIT-404: room.nosuchhandler not found
}

// startChatServer serves one TCP connection with the protocol: handshake,
// then "room.join" pushes onMembers and succeeds; other routes get PIT-404.
func startChatServer() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go func() {
		defer ln.Close()
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		pr := codec.NewPacketReader(conn, nil, 0)
		write := func(t codec.PacketType, body []byte) {
			b, _ := codec.AppendPacket(nil, t, body)
			conn.Write(b)
		}
		mc := &codec.MessageCodec{}
		for {
			t, body, _, err := pr.Next()
			if err != nil {
				return
			}
			switch t {
			case codec.Handshake:
				hs, _ := json.Marshal(codec.HandshakeResponse{Code: 200, Sys: &codec.HandshakeResponseSys{Heartbeat: 30, Serializer: "json"}})
				write(codec.Handshake, hs)
			case codec.Data:
				var m codec.Message
				if mc.Decode(body, &m) != nil {
					return
				}
				out := &codec.Message{Type: codec.Response, ID: m.ID}
				if m.Route == "room.join" {
					var in struct{ Name string }
					json.Unmarshal(m.Data, &in)
					members, _ := json.Marshal(map[string][]string{"members": {in.Name}})
					b, _ := mc.AppendPacket(nil, &codec.Message{Type: codec.Push, Route: "onMembers", Data: members})
					conn.Write(b)
					out.Data = []byte(`{"code":0,"result":"success"}`)
				} else {
					out.Err = true
					out.Data, _ = codec.EncodeError(codec.JSON{}, codec.NewError(codec.CodeNotFound, m.Route+" not found", nil))
				}
				b, _ := mc.AppendPacket(nil, out)
				conn.Write(b)
			}
		}
	}()
	return ln.Addr().String()
}

// A client follows the state of its connection: with auto-resume it hears
// when the connection drops and when its session is back, and it hears
// the Kick a server sends every client when it drains.
func ExampleWithOnState() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fe, addr, err := startEchoFrontend(ctx, "tcp") // a Nopal frontend, below
	if err != nil {
		fmt.Println(err)
		return
	}
	defer fe.Shutdown(ctx)

	events := make(chan client.StateEvent, 8)
	c, err := client.Dial(ctx, addr, client.WithAutoResume(5*time.Second),
		client.WithOnState(func(e client.StateEvent) { events <- e }))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	c.Drop() // as a network failure would
	for range 2 {
		e := <-events
		fmt.Println(e.Kind, "on the same address:", e.Addr == addr)
	}
	var out string
	if err := c.Request(ctx, "echo", "still there", &out); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(out)

	if err := fe.Shutdown(ctx); err != nil { // drains: kicks every client
		fmt.Println(err)
		return
	}
	e := <-events
	fmt.Println(e.Kind, e.Err)
	// Output:
	// resuming on the same address: true
	// resumed on the same address: true
	// still there
	// kicked client: kicked by the server
}

// startEchoFrontend starts a Nopal frontend with session resume on, whose
// handler answers each request with its payload, on a free port: kind
// "tcp" or "ws". It returns the address to dial.
func startEchoFrontend(ctx context.Context, kind string) (*frontend.Frontend, string, error) {
	fe, err := frontend.New(frontend.Config{
		Handler: frontend.HandlerFunc(func(_ context.Context, m *codec.Message) ([]byte, error) {
			return append([]byte(nil), m.Data...), nil
		}),
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return nil, "", err
	}
	var addr func() string
	switch kind {
	case "tcp":
		a := frontend.NewTCPAcceptor("127.0.0.1:0")
		fe.AddAcceptor(a)
		addr = func() string { return a.Addr().String() }
	case "ws":
		a := frontend.NewWSAcceptor("127.0.0.1:0")
		fe.AddAcceptor(a)
		addr = func() string { return "ws://" + a.Addr().String() + "/" }
	default:
		return nil, "", fmt.Errorf("unknown kind %q", kind)
	}
	if err := fe.Start(ctx); err != nil {
		return nil, "", err
	}
	return fe, addr(), nil
}
