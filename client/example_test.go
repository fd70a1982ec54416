package client_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"time"

	"github.com/nopal-dev/nopal/client"
	"github.com/nopal-dev/nopal/codec"
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
