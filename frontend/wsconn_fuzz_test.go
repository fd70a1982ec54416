package frontend

// A fuzz target for the WebSocket frame reader of wsconn.go: what a
// client sends after the upgrade, read through a real connection (a
// net.Pipe: the reader's deadlines work on it as on a socket) by the
// reader the agent uses. Every write of the client is followed by a read
// deadline in the past, as the park sweep sets it, so the reader is cut
// off and resumed at arbitrary points of frames.
//
// The seeds are added with f.Add and also committed under
// testdata/fuzz/FuzzWSFrames/ in Go's corpus format. After changing them:
//
//	go test -run=TestWSFuzzCorpus ./frontend/ -args -frontend.writecorpus

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/nopal-dev/nopal/codec"
)

var writeWSCorpus = flag.Bool("frontend.writecorpus", false, "rewrite the committed fuzz seed corpus")

// wsFuzzLimit is the largest packet body a fuzzed connection takes,
// picked by an argument: 16 for frames over the limit, 300 for the 16-bit
// length and the pooled buffer, 5000 for a buffer of its own (over
// wsBigSize).
func wsFuzzLimit(i byte) int {
	switch i % 3 {
	case 0:
		return 16
	case 1:
		return 300
	}
	return 5000
}

// wsRead is what the reader made of a stream.
type wsRead struct {
	msgs [][]byte // the packets, in order
	ctl  [][]byte // the control frames it sent back, in order
	err  error    // what ended it
}

// readWS sends stream over a pipe, chunk bytes a write (0: all at once),
// each write followed by a read deadline in the past, and reads packets
// with GetNextMessage, resuming after each deadline, until an error.
func readWS(tb testing.TB, pool *sync.Pool, stream []byte, chunk, maxBody int) wsRead {
	tb.Helper()
	server, client := net.Pipe()
	c := newWSConn(server, nil, maxBody, pool)
	var r wsRead
	c.setControl(func(f []byte) error {
		r.ctl = append(r.ctl, slices.Clone(f))
		return nil
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer client.Close()
		for b := stream; len(b) > 0; {
			n := len(b)
			if chunk > 0 {
				n = min(n, chunk)
			}
			// Write returns once the reader has taken every byte.
			if _, err := client.Write(b[:n]); err != nil {
				return
			}
			b = b[n:]
			_ = server.SetReadDeadline(aLongTimeAgo)
		}
	}()
	for {
		b, err := c.GetNextMessage()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// An error here is the client gone: the next read says so.
			_ = server.SetReadDeadline(time.Time{})
			continue
		}
		if err != nil {
			r.err = err
			break
		}
		r.msgs = append(r.msgs, slices.Clone(b))
		if c.start > c.end || c.end > len(c.buf) {
			tb.Fatalf("buffered [%d, %d) of %d", c.start, c.end, len(c.buf))
		}
	}
	_ = server.Close()
	<-done
	c.putBig()
	return r
}

// clientFrame is a frame as a client sends it: masked.
func clientFrame(tb testing.TB, op ws.OpCode, fin bool, payload []byte, mask [4]byte) []byte {
	tb.Helper()
	var b bytes.Buffer
	h := ws.Header{Fin: fin, OpCode: op, Masked: true, Mask: mask, Length: int64(len(payload))}
	if err := ws.WriteHeader(&b, h); err != nil {
		tb.Fatal(err)
	}
	p := slices.Clone(payload)
	ws.Cipher(p, mask, 0)
	b.Write(p)
	return b.Bytes()
}

// wsPacket is a Data packet of body.
func wsPacket(tb testing.TB, body []byte) []byte {
	tb.Helper()
	p, err := codec.AppendPacket(nil, codec.Data, body)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// wsSeed is one input of FuzzWSFrames.
type wsSeed struct {
	stream []byte
	chunk  byte // bytes per write; 0: all at once
	limit  byte // wsFuzzLimit's argument
}

func wsSeeds(tb testing.TB) map[string]wsSeed {
	tb.Helper()
	m := [4]byte{0x12, 0x34, 0x56, 0x78}
	hs := wsPacket(tb, []byte(`{"sys":{"type":"go"}}`))
	hs[0] = byte(codec.Handshake)
	small := wsPacket(tb, []byte("hello"))
	mid := wsPacket(tb, bytes.Repeat([]byte("m"), 200))
	large := wsPacket(tb, bytes.Repeat([]byte("L"), 4500))
	frame := func(op ws.OpCode, fin bool, p []byte) []byte { return clientFrame(tb, op, fin, p, m) }
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	closeBye := frame(ws.OpClose, true, ws.NewCloseFrameBody(ws.StatusNormalClosure, "bye"))
	// Headers written by hand: what the library's encoder refuses to make.
	msb := []byte{0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1, m[0], m[1], m[2], m[3]}
	return map[string]wsSeed{
		"binary":          {stream: frame(ws.OpBinary, true, hs), limit: 1},
		"binary-bytewise": {stream: cat(frame(ws.OpBinary, true, hs), closeBye), chunk: 1, limit: 1},
		"two-messages":    {stream: cat(frame(ws.OpBinary, true, small), frame(ws.OpBinary, true, hs)), chunk: 7, limit: 1},
		"fragmented": {stream: cat(
			frame(ws.OpBinary, false, small[:2]),
			frame(ws.OpContinuation, false, small[2:5]),
			frame(ws.OpContinuation, true, small[5:]),
		), limit: 1},
		"fragmented-ping-between": {stream: cat(
			frame(ws.OpBinary, false, mid[:100]),
			frame(ws.OpPing, true, []byte("p")),
			frame(ws.OpContinuation, true, mid[100:]),
			closeBye,
		), chunk: 50, limit: 1},
		"16-bit-length":        {stream: frame(ws.OpBinary, true, mid), chunk: 3, limit: 1},
		"buffer-of-its-own":    {stream: frame(ws.OpBinary, true, large), chunk: 200, limit: 2},
		"ping":                 {stream: cat(frame(ws.OpPing, true, []byte("are you there")), frame(ws.OpBinary, true, small)), limit: 1},
		"pong":                 {stream: cat(frame(ws.OpPong, true, nil), frame(ws.OpBinary, true, small)), limit: 1},
		"close":                {stream: cat(closeBye, frame(ws.OpBinary, true, small)), limit: 1},
		"close-empty":          {stream: frame(ws.OpClose, true, nil), limit: 1},
		"empty":                {limit: 1},
		"text":                 {stream: frame(ws.OpText, true, small), limit: 1},
		"unmasked":             {stream: cat([]byte{0x82, byte(len(small))}, small), limit: 1},
		"reserved-bits":        {stream: append([]byte{0xc2}, frame(ws.OpBinary, true, small)[1:]...), limit: 1},
		"reserved-opcode":      {stream: frame(ws.OpCode(3), true, small), limit: 1},
		"ping-over-125":        {stream: frame(ws.OpPing, true, make([]byte, 126)), limit: 1},
		"ping-fragmented":      {stream: frame(ws.OpPing, false, []byte("p")), limit: 1},
		"continuation-first":   {stream: frame(ws.OpContinuation, true, small), limit: 1},
		"binary-in-fragmented": {stream: cat(frame(ws.OpBinary, false, small[:3]), frame(ws.OpBinary, true, small[3:])), limit: 1},
		"over-limit":           {stream: frame(ws.OpBinary, true, mid), limit: 0},
		"fragments-over-limit": {stream: cat(frame(ws.OpBinary, false, mid[:15]), frame(ws.OpContinuation, true, mid[15:30])), limit: 0},
		"64-bit-length-msb":    {stream: msb, limit: 2},
		"64-bit-length":        {stream: frame(ws.OpBinary, true, make([]byte, 70000))[:20], limit: 2},
		"short-header":         {stream: frame(ws.OpBinary, true, mid)[:3], limit: 1},
		"short-payload":        {stream: frame(ws.OpBinary, true, hs)[:12], chunk: 5, limit: 1},
		"not-a-packet":         {stream: frame(ws.OpBinary, true, []byte{9, 0, 0, 1, 0}), limit: 1},
		"packet-too-short":     {stream: frame(ws.OpBinary, true, []byte{4, 0}), limit: 1},
	}
}

// FuzzWSFrames: the reader never panics, never returns a packet over the
// limit, and reads a stream cut off by deadlines as it reads it whole;
// the control frames it answers with are well formed. A valid message
// made of the input, fragmented, with a ping among its fragments, comes
// back as it was sent, and the server's frames parse back as binary
// frames of its packets.
func FuzzWSFrames(f *testing.F) {
	for _, s := range wsSeeds(f) {
		f.Add(s.stream, s.chunk, s.limit)
	}
	pool := &sync.Pool{} // shared, as by an acceptor's connections
	f.Fuzz(func(t *testing.T, stream []byte, chunk, limit byte) {
		maxBody := wsFuzzLimit(limit)
		whole := readWS(t, pool, stream, 0, maxBody)
		checkRead(t, whole, maxBody)
		if chunk > 0 {
			cut := readWS(t, pool, stream, int(chunk), maxBody)
			if !sameRead(cut, whole) {
				t.Fatalf("read in writes of %d: %d packets, %d control frames, %v; whole: %d, %d, %v",
					chunk, len(cut.msgs), len(cut.ctl), cut.err, len(whole.msgs), len(whole.ctl), whole.err)
			}
		}
		roundTrip(t, pool, stream, int(chunk), maxBody)
	})
}

// checkRead checks what a reader returned: packets within the limit that
// parse, and well-formed control frames (a pong, or a close that ends
// the read).
func checkRead(t *testing.T, r wsRead, maxBody int) {
	t.Helper()
	for i, m := range r.msgs {
		if len(m) > maxBody+codec.HeaderLength {
			t.Fatalf("packet %d: %d bytes, over the limit of %d", i, len(m), maxBody+codec.HeaderLength)
		}
		if _, _, err := codec.ParsePacket(m, maxBody); err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
	}
	for i, f := range r.ctl {
		if len(f) < 2 || f[1]&0x80 != 0 || int(f[1]) != len(f)-2 {
			t.Fatalf("control frame %d: % x", i, f)
		}
		switch f[0] {
		case 0x8a: // pong
		case 0x88: // close: the code or nothing, and the last
			if len(f) != 2 && len(f) != 4 || i != len(r.ctl)-1 || r.err != io.EOF {
				t.Fatalf("close frame %d of %d: % x, read ended with %v", i, len(r.ctl), f, r.err)
			}
		default:
			t.Fatalf("control frame %d: % x", i, f)
		}
	}
	if r.err == nil {
		t.Fatal("read ended without an error")
	}
}

func sameRead(a, b wsRead) bool {
	eq := func(x, y [][]byte) bool { return slices.EqualFunc(x, y, bytes.Equal) }
	return eq(a.msgs, b.msgs) && eq(a.ctl, b.ctl) && a.err.Error() == b.err.Error()
}

// roundTrip sends a packet of the input (cut to the limit, and one past
// it), as the client would, and writes packets as the server does.
func roundTrip(t *testing.T, pool *sync.Pool, in []byte, chunk, maxBody int) {
	t.Helper()
	mask := [4]byte{0xa5, byte(len(in)), byte(chunk), 0x3c}
	pkt := wsPacket(t, in[:min(len(in), maxBody)])
	// Up to four fragments, a ping after the first.
	parts := 1 + chunk%4
	var stream []byte
	for i := range parts {
		op := ws.OpBinary
		if i > 0 {
			op = ws.OpContinuation
		}
		p := pkt[i*len(pkt)/parts : (i+1)*len(pkt)/parts]
		stream = append(stream, clientFrame(t, op, i == parts-1, p, mask)...)
		if i == 0 {
			stream = append(stream, clientFrame(t, ws.OpPing, true, in[:min(len(in), 125)], mask)...)
		}
	}
	stream = append(stream, clientFrame(t, ws.OpClose, true, ws.NewCloseFrameBody(ws.StatusGoingAway, "bye"), mask)...)
	r := readWS(t, pool, stream, chunk, maxBody)
	pong := append([]byte{0x8a, byte(min(len(in), 125))}, in[:min(len(in), 125)]...)
	want := wsRead{msgs: [][]byte{pkt}, ctl: [][]byte{pong, {0x88, 2, 0x03, 0xe9}}, err: io.EOF}
	if !sameRead(r, want) {
		t.Fatalf("sent a packet of %d bytes in %d fragments: got %d packets, control frames % x, %v",
			len(pkt), parts, len(r.msgs), r.ctl, r.err)
	}

	if len(in) > maxBody {
		over := wsPacket(t, in[:maxBody+1])
		r := readWS(t, pool, clientFrame(t, ws.OpBinary, true, over, mask), chunk, maxBody)
		if len(r.msgs) != 0 || !errors.Is(r.err, codec.ErrPacketLength) {
			t.Fatalf("a packet of %d bytes, over the limit: %d packets, %v", len(over), len(r.msgs), r.err)
		}
	}

	// The server's side: each packet behind a header of the library's
	// encoding, which the library parses back.
	c := newWSConn(nil, nil, maxBody, pool)
	pkts := [][]byte{pkt, smallPacket(in), pkt}
	var hdr []byte
	if chunk%2 == 1 {
		hdr = make([]byte, 0, 3) // too small: appendFrames grows it
	}
	bufs, _ := c.appendFrames(nil, hdr, pkts)
	var wire bytes.Buffer
	if _, err := bufs.WriteTo(&wire); err != nil {
		t.Fatal(err)
	}
	for i, p := range pkts {
		h, err := ws.ReadHeader(&wire)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		got := wire.Next(int(h.Length))
		if !h.Fin || h.OpCode != ws.OpBinary || h.Masked || h.Rsv != 0 || !bytes.Equal(got, p) {
			t.Fatalf("frame %d: %+v % x, want a binary frame of % x", i, h, got, p)
		}
	}
	if wire.Len() != 0 {
		t.Fatalf("%d bytes after the frames", wire.Len())
	}
}

// smallPacket is a packet of at most 10 bytes of in: a frame with a 7-bit length.
func smallPacket(in []byte) []byte {
	p, _ := codec.AppendPacket(nil, codec.Data, in[:min(len(in), 10)])
	return p
}

// TestWSFuzzCorpus checks that the committed seed corpus holds every seed.
func TestWSFuzzCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzWSFrames")
	if *writeWSCorpus {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, s := range wsSeeds(t) {
		path := filepath.Join(dir, "seed-"+name)
		want := fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\nbyte(%q)\nbyte(%q)\n", s.stream, s.chunk, s.limit)
		if *writeWSCorpus {
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s is missing or stale (%v): rerun with -args -frontend.writecorpus", path, err)
		}
	}
}
