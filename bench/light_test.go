package main

import (
	"testing"

	"github.com/nopal-dev/nopal/codec"
)

// TestLightAnswer feeds the light client's reader the packets a Nopal
// server may send around the answer to the one request in flight.
func TestLightAnswer(t *testing.T) {
	ex, err := newExchange([]byte("ping"), true)
	if err != nil {
		t.Fatal(err)
	}
	packet := func(typ codec.PacketType, body ...byte) []byte {
		n := len(body)
		return append([]byte{byte(typ), byte(n >> 16), byte(n >> 8), byte(n)}, body...)
	}
	answer := packet(codec.Data, flagResponse, byte(ex.id), 'p', 'i', 'n', 'g')
	heartbeat := packet(codec.Heartbeat)
	cat := func(ps ...[]byte) (b []byte) {
		for _, p := range ps {
			b = append(b, p...)
		}
		return b
	}
	for _, tc := range []struct {
		name    string
		in      []byte
		done    bool
		left    int // bytes kept for the next read
		wantErr bool
	}{
		{"answer", answer, true, 0, false},
		{"heartbeat, answer", cat(heartbeat, answer), true, 0, false},
		{"answer, heartbeat", cat(answer, heartbeat), true, 0, false},
		{"heartbeat only", heartbeat, false, 0, false},
		{"half an answer", answer[:5], false, 5, false},
		{"answer, half a heartbeat", cat(answer, heartbeat[:2]), true, 2, false},
		{"two answers", cat(answer, answer), false, 0, true},
		{"a push", packet(codec.Data, flagPush, 0), false, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &lightConn{buf: make([]byte, lightBuffer)}
			c.n = copy(c.buf, tc.in)
			done, err := c.answer(ex)
			if (err != nil) != tc.wantErr {
				t.Fatalf("answer: %v, want an error: %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if done != tc.done || c.n != tc.left {
				t.Errorf("answer = %v with %d bytes left, want %v with %d", done, c.n, tc.done, tc.left)
			}
		})
	}
}
