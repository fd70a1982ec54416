package codec_test

import (
	"bytes"
	"compress/zlib"
	"fmt"
	"testing"

	"github.com/nopal-dev/nopal/codec"
)

// benchPayload is a compressible JSON payload of about 1 KB.
func benchPayload(tb testing.TB) []byte {
	tb.Helper()
	var b bytes.Buffer
	b.WriteString(`{"players":[`)
	for i := 0; b.Len() < 1000; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":%d,"name":"player-%d","score":%d}`, i, i, 100*i)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

func BenchmarkDecodeDataPacket(b *testing.B) {
	known, err := codec.NewDictionary(nil, "room.join", "room.message")
	if err != nil {
		b.Fatal(err)
	}
	coded, err := codec.NewDictionary(map[string]uint16{"room.join": 1})
	if err != nil {
		b.Fatal(err)
	}
	codedFrame, err := (&codec.MessageCodec{Dict: coded}).AppendPacket(nil,
		&codec.Message{Type: codec.Request, ID: 1, Route: "room.join", Data: []byte("{}")})
	if err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name  string
		dict  *codec.Dictionary
		frame []byte
	}{
		{"known-route", known, unhex(b, joinRequestHex)}, // row 4: route spelled out, interned
		{"coded-route", coded, codedFrame},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			c := &codec.MessageCodec{Dict: bc.dict}
			var m codec.Message
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.frame)))
			for b.Loop() {
				typ, body, err := codec.ParsePacket(bc.frame, 0)
				if err != nil || typ != codec.Data {
					b.Fatal(typ, err)
				}
				if err := c.Decode(body, &m); err != nil {
					b.Fatal(err)
				}
			}
			if m.Route != "room.join" || m.ID != 1 || string(m.Data) != "{}" {
				b.Fatalf("%+v", m)
			}
		})
	}
}

func BenchmarkDecodeCompressed(b *testing.B) {
	payload := benchPayload(b)
	c := &codec.MessageCodec{Compress: true}
	body, err := c.Append(nil, &codec.Message{Type: codec.Push, Route: "onPlayers", Data: payload})
	if err != nil || body[0]&0x10 == 0 {
		b.Fatal("not compressed", err)
	}
	var m codec.Message
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		if err := c.Decode(body, &m); err != nil {
			b.Fatal(err)
		}
	}
	if !bytes.Equal(m.Data, payload) {
		b.Fatal("bad payload")
	}
}

// loopReader replays a stream of packets forever. With perPacket each Read
// stops at the end of a packet, as interactive TCP traffic tends to arrive;
// otherwise it fills the caller's buffer.
type loopReader struct {
	packets   [][]byte
	i, off    int
	perPacket bool
}

func (r *loopReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.packets[r.i][r.off:])
		n += c
		r.off += c
		if r.off == len(r.packets[r.i]) {
			r.i, r.off = (r.i+1)%len(r.packets), 0
			if r.perPacket {
				break
			}
		}
	}
	return n, nil
}

func BenchmarkPacketReader(b *testing.B) {
	var packets [][]byte
	for i := range 64 {
		p := unhex(b, joinRequestHex)
		switch i % 4 {
		case 1:
			p = unhex(b, "03000000")
		case 2:
			p = unhex(b, onMessageHex)
		}
		packets = append(packets, p)
	}
	large := [][]byte{packet(b, codec.Data, string(benchPayload(b)))} // needs a pooled buffer
	cases := []struct {
		name      string
		packets   [][]byte
		perPacket bool
	}{
		{"small/coalesced", packets, false},
		{"small/one-packet-per-read", packets, true},
		{"1KB/one-packet-per-read", large, true},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			pr := codec.NewPacketReader(&loopReader{packets: bc.packets, perPacket: bc.perPacket}, &codec.BufferPool{}, 0)
			size := 0
			for _, p := range bc.packets {
				size += len(p)
			}
			b.ReportAllocs()
			b.SetBytes(int64(size / len(bc.packets)))
			for b.Loop() {
				if _, _, _, err := pr.Next(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkEncodeResponse(b *testing.B) {
	c := &codec.MessageCodec{Compress: true} // the payload is under the threshold: no zlib
	m := &codec.Message{Type: codec.Response, ID: 1, Data: []byte(`{"code":0,"result":"success"}`)}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = c.AppendPacket(buf[:0], m); err != nil {
			b.Fatal(err)
		}
	}
	if !bytes.Equal(buf, unhex(b, joinResponseHex)) {
		b.Fatalf("% x", buf)
	}
}

func BenchmarkEncodeCompressed(b *testing.B) {
	payload := benchPayload(b)
	m := &codec.Message{Type: codec.Push, Route: "onPlayers", Data: payload}
	b.Run("pooled", func(b *testing.B) {
		c := &codec.MessageCodec{Compress: true}
		buf := make([]byte, 0, 2048)
		b.ReportAllocs()
		b.SetBytes(int64(len(payload)))
		for b.Loop() {
			var err error
			if buf, err = c.AppendPacket(buf[:0], m); err != nil {
				b.Fatal(err)
			}
		}
		if buf[codec.HeaderLength]&0x10 == 0 {
			b.Fatal("not compressed")
		}
	})
	// What Pitaya does for every message: a fresh zlib writer.
	b.Run("fresh-writer", func(b *testing.B) {
		buf := make([]byte, 0, 2048)
		b.ReportAllocs()
		b.SetBytes(int64(len(payload)))
		for b.Loop() {
			var z bytes.Buffer
			w := zlib.NewWriter(&z)
			if _, err := w.Write(payload); err != nil {
				b.Fatal(err)
			}
			if err := w.Close(); err != nil {
				b.Fatal(err)
			}
			buf = append(buf[:0], z.Bytes()...)
		}
	})
}
