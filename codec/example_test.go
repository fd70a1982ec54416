package codec_test

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/nopal-dev/nopal/codec"
)

func ExampleAppendPacket() {
	// An error response with id 0 and data 0x01, in a Data packet.
	pkt, err := codec.AppendPacket(nil, codec.Data, []byte{0x24, 0x00, 0x01})
	if err != nil {
		panic(err)
	}
	fmt.Printf("% x\n", pkt)

	// A WebSocket frame holds exactly one packet.
	typ, body, err := codec.ParsePacket(pkt, 0)
	fmt.Println(typ, body, err)

	_, _, err = codec.ParsePacket(append(pkt, 0x03, 0, 0, 0), 0)
	fmt.Println(errors.Is(err, codec.ErrPacketLength))
	// Output:
	// 04 00 00 03 24 00 01
	// Data [36 0 1] <nil>
	// true
}

func ExamplePacketReader() {
	// A TCP stream: a handshake ack, a heartbeat and a request, in one read.
	stream := "\x02\x00\x00\x00" + "\x03\x00\x00\x00" + "\x04\x00\x00\x0e\x00\x01\x09room.join{}"
	pr := codec.NewPacketReader(strings.NewReader(stream), &codec.BufferPool{}, 64<<10)
	for {
		typ, body, _, err := pr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			panic(err)
		}
		fmt.Printf("%v %q\n", typ, body)
	}
	// Output:
	// HandshakeAck ""
	// Heartbeat ""
	// Data "\x00\x01\troom.join{}"
}

func ExampleMessageCodec() {
	// Every server of a cluster numbers the same routes the same way.
	dict, err := codec.NewDictionary(codec.NumberRoutes([]string{"room.join", "room.message"}), "onMessage")
	if err != nil {
		panic(err)
	}
	c := &codec.MessageCodec{Dict: dict, Compress: true}

	// A client's request, its route sent as a 2-byte code.
	pkt, err := c.AppendPacket(nil, &codec.Message{Type: codec.Request, ID: 1, Route: "room.join", Data: []byte(`{}`)})
	if err != nil {
		panic(err)
	}
	fmt.Printf("% x\n", pkt)

	_, body, err := codec.ParsePacket(pkt, 0)
	if err != nil {
		panic(err)
	}
	var m codec.Message
	if err := c.Decode(body, &m); err != nil {
		panic(err)
	}
	fmt.Println(m.Type, m.ID, m.Route, m.RouteCompressed, string(m.Data))

	// A long push is zlib-compressed; a short one is not.
	for _, data := range []string{`{"content":"hi"}`, `{"content":"` + strings.Repeat("hello ", 30) + `"}`} {
		b, err := c.Append(nil, &codec.Message{Type: codec.Push, Route: "onMessage", Data: []byte(data)})
		if err != nil {
			panic(err)
		}
		if err := c.Decode(b, &m); err != nil {
			panic(err)
		}
		fmt.Printf("flag %#02x: %d bytes for %d, compressed %v\n", b[0], len(b), len(m.Data), m.Compressed)
	}
	// Output:
	// 04 00 00 06 01 01 00 01 7b 7d
	// Request 1 room.join true {}
	// flag 0x06: 27 bytes for 16, compressed false
	// flag 0x16: 45 bytes for 194, compressed true
}

func ExampleEncodeError() {
	e := codec.NewError(codec.CodeNotFound, "pitaya/handler: chat.room.nosuchhandler not found", nil)
	b, err := codec.EncodeError(codec.JSON{}, e)
	if err != nil {
		panic(err)
	}
	fmt.Println(string(b))

	// Sent as an error response to request 3.
	c := &codec.MessageCodec{}
	pkt, err := c.AppendPacket(nil, &codec.Message{Type: codec.Response, ID: 3, Err: true, Data: b})
	if err != nil {
		panic(err)
	}
	fmt.Printf("% x ...\n", pkt[:6])

	// With the protobuf serializer: Pitaya's protos.Error.
	limited := codec.NewError(codec.CodeRateLimited, "slow down", map[string]string{"retryAfter": "2s"})
	b, err = codec.EncodeError(codec.Protobuf{}, limited)
	if err != nil {
		panic(err)
	}
	back, err := codec.DecodeError(codec.Protobuf{}, b)
	if err != nil {
		panic(err)
	}
	fmt.Println(back, errors.Is(back, &codec.Error{Code: codec.CodeRateLimited}))

	// Any other error reaches the client as PIT-500.
	fmt.Println(codec.AsError(io.ErrUnexpectedEOF))
	// Output:
	// {"code":"PIT-404","msg":"pitaya/handler: chat.room.nosuchhandler not found"}
	// 04 00 00 4e 24 03 ...
	// PIT-429: slow down map[retryAfter:2s] true
	// PIT-500: unexpected EOF
}
