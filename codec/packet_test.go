package codec_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/nopal-dev/nopal/codec"
)

// packet encodes one packet, failing the test on error.
func packet(tb testing.TB, t codec.PacketType, body string) []byte {
	tb.Helper()
	b, err := codec.AppendPacket(nil, t, []byte(body))
	if err != nil {
		tb.Fatalf("AppendPacket(%v, %d bytes): %v", t, len(body), err)
	}
	return b
}

func oneByte(b []byte) io.Reader { return iotest.OneByteReader(bytes.NewReader(b)) }

// step is one Read of a scriptReader: some bytes, or an error.
type step struct {
	data []byte
	err  error
}

// scriptReader plays its steps in order: a data step is delivered in as many
// reads as the caller's buffers need, an error step is returned once. After
// the last step it returns io.EOF.
type scriptReader struct {
	steps []step
	reads int
}

func (r *scriptReader) Read(p []byte) (int, error) {
	r.reads++
	for len(r.steps) > 0 {
		s := &r.steps[0]
		if s.err != nil {
			err := s.err
			r.steps = r.steps[1:]
			return 0, err
		}
		if len(s.data) == 0 {
			r.steps = r.steps[1:]
			continue
		}
		n := copy(p, s.data)
		s.data = s.data[n:]
		return n, nil
	}
	return 0, io.EOF
}

// chunks is a scriptReader returning each chunk in its own read.
func chunks(cs ...[]byte) *scriptReader {
	r := &scriptReader{}
	for _, c := range cs {
		r.steps = append(r.steps, step{data: c})
	}
	return r
}

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

func TestPacketTypeValid(t *testing.T) {
	tests := []struct {
		t     codec.PacketType
		valid bool
		name  string
	}{
		{0x00, false, "PacketType(0x00)"},
		{codec.Handshake, true, "Handshake"},
		{codec.HandshakeAck, true, "HandshakeAck"},
		{codec.Heartbeat, true, "Heartbeat"},
		{codec.Data, true, "Data"},
		{codec.Kick, true, "Kick"},
		{0x06, false, "PacketType(0x06)"},
		{0xff, false, "PacketType(0xff)"},
	}
	for _, tt := range tests {
		if got := tt.t.Valid(); got != tt.valid {
			t.Errorf("%#02x.Valid() = %v", byte(tt.t), got)
		}
		if got := tt.t.String(); got != tt.name {
			t.Errorf("%#02x.String() = %q, want %q", byte(tt.t), got, tt.name)
		}
	}
}

func TestAppendPacket(t *testing.T) {
	huge := make([]byte, codec.MaxPacketBody+1)
	tests := []struct {
		name    string
		typ     codec.PacketType
		body    []byte
		want    string // hex of the header and the start of the body
		wantErr error
	}{
		{"handshake ack", codec.HandshakeAck, nil, "02000000", nil},
		{"heartbeat", codec.Heartbeat, []byte{}, "03000000", nil},
		{"kick", codec.Kick, nil, "05000000", nil},
		{"data", codec.Data, []byte{0x24, 0x00, 0x01}, "04000003240001", nil},
		{"handshake", codec.Handshake, []byte("{}"), "010000027b7d", nil},
		{"length bytes", codec.Data, make([]byte, 0x010203), "04010203", nil},
		{"max body", codec.Data, huge[:codec.MaxPacketBody], "04ffffff", nil},
		{"type 0", 0x00, nil, "", codec.ErrUnknownPacketType},
		{"type 6", 0x06, nil, "", codec.ErrUnknownPacketType},
		{"type 0xff", 0xff, []byte("x"), "", codec.ErrUnknownPacketType},
		{"over max body", codec.Data, huge, "", codec.ErrPacketTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := []byte("keep")
			got, err := codec.AppendPacket(dst, tt.typ, tt.body)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				if string(got) != "keep" {
					t.Fatalf("dst changed on error: %q", got)
				}
				return
			}
			want := unhex(t, tt.want)
			if !bytes.HasPrefix(got[4:], want) || len(got) != 4+codec.HeaderLength+len(tt.body) ||
				!bytes.Equal(got[4+codec.HeaderLength:], tt.body) {
				t.Fatalf("got % x..., want %s...", got[:min(len(got), 16)], tt.want)
			}
		})
	}
}

func TestParseHeader(t *testing.T) {
	tests := []struct {
		name    string
		hdr     string
		maxBody int
		typ     codec.PacketType
		n       int
		wantErr error
	}{
		{"heartbeat", "03000000", 0, codec.Heartbeat, 0, nil},
		{"longer slice", "04000002ffff", 0, codec.Data, 2, nil},
		{"max body default", "04ffffff", 0, codec.Data, codec.MaxPacketBody, nil},
		{"max body negative", "04ffffff", -1, codec.Data, codec.MaxPacketBody, nil},
		{"limit above protocol max", "04ffffff", 1 << 30, codec.Data, codec.MaxPacketBody, nil},
		{"at limit", "04000064", 100, codec.Data, 100, nil},
		{"over limit", "04000065", 100, 0, 0, codec.ErrPacketTooLarge},
		{"over limit high byte", "04010000", 0xffff, 0, 0, codec.ErrPacketTooLarge},
		{"type 0", "00000000", 0, 0, 0, codec.ErrUnknownPacketType},
		{"type 6", "06000000", 0, 0, 0, codec.ErrUnknownPacketType},
		{"type 0xff", "ff000000", 0, 0, 0, codec.ErrUnknownPacketType},
		{"empty", "", 0, 0, 0, io.ErrUnexpectedEOF},
		{"3 bytes", "040000", 0, 0, 0, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			typ, n, err := codec.ParseHeader(unhex(t, tt.hdr), tt.maxBody)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if typ != tt.typ || n != tt.n {
				t.Fatalf("got %v %d, want %v %d", typ, n, tt.typ, tt.n)
			}
		})
	}
}

func TestParsePacket(t *testing.T) {
	ping := packet(t, codec.Heartbeat, "")
	data := packet(t, codec.Data, "\x00\x01\x09room.join{}")
	tests := []struct {
		name    string
		frame   []byte
		maxBody int
		typ     codec.PacketType
		body    []byte
		wantErr error
	}{
		{"heartbeat", ping, 0, codec.Heartbeat, []byte{}, nil},
		{"data", data, 0, codec.Data, data[4:], nil},
		{"data at limit", data, len(data) - 4, codec.Data, data[4:], nil},
		{"data over limit", data, len(data) - 5, 0, nil, codec.ErrPacketTooLarge},
		{"two packets", cat(data, ping), 0, 0, nil, codec.ErrPacketLength},
		{"two heartbeats", cat(ping, ping), 0, 0, nil, codec.ErrPacketLength},
		{"half a packet", data[:len(data)/2], 0, 0, nil, codec.ErrPacketLength},
		{"header only", data[:4], 0, 0, nil, codec.ErrPacketLength},
		{"one byte short", data[:len(data)-1], 0, 0, nil, codec.ErrPacketLength},
		{"one byte extra", cat(data, []byte{0}), 0, 0, nil, codec.ErrPacketLength},
		{"short header", data[:3], 0, 0, nil, io.ErrUnexpectedEOF},
		{"empty frame", nil, 0, 0, nil, io.ErrUnexpectedEOF},
		{"type 0", []byte{0, 0, 0, 0}, 0, 0, nil, codec.ErrUnknownPacketType},
		{"type 6", []byte{6, 0, 0, 0}, 0, 0, nil, codec.ErrUnknownPacketType},
		{"type 0xff", []byte{0xff, 0, 0, 1, 1}, 0, 0, nil, codec.ErrUnknownPacketType},
		{"length over max", []byte{4, 0xff, 0xff, 0xff}, 1000, 0, nil, codec.ErrPacketTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			typ, body, err := codec.ParsePacket(tt.frame, tt.maxBody)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if typ != tt.typ || !bytes.Equal(body, tt.body) || (body == nil) != (tt.body == nil) {
				t.Fatalf("got %v % x, want %v % x", typ, body, tt.typ, tt.body)
			}
		})
	}
}

func TestParsePacketAliases(t *testing.T) {
	frame := packet(t, codec.Data, "abc")
	_, body, err := codec.ParsePacket(frame, 0)
	if err != nil {
		t.Fatal(err)
	}
	frame[4] = 'X'
	if body[0] != 'X' {
		t.Fatal("body does not alias the frame")
	}
}

type wantPacket struct {
	typ  codec.PacketType
	body string
}

func TestPacketReader(t *testing.T) {
	big := strings.Repeat("0123456789", 100) // 1000 bytes, over the pool buffers
	hs := packet(t, codec.Handshake, handshakeRequestJSON)
	ack := packet(t, codec.HandshakeAck, "")
	ping := packet(t, codec.Heartbeat, "")
	req := packet(t, codec.Data, "\x00\x01\x09room.join{}")
	bigPkt := packet(t, codec.Data, big)
	kick := packet(t, codec.Kick, "")

	tests := []struct {
		name    string
		stream  []byte
		maxBody int
		want    []wantPacket
		wantErr error // after the packets
	}{
		{"empty stream", nil, 0, nil, io.EOF},
		{"one heartbeat", ping, 0, []wantPacket{{codec.Heartbeat, ""}}, io.EOF},
		{"heartbeats", cat(ping, ping, ping), 0,
			[]wantPacket{{codec.Heartbeat, ""}, {codec.Heartbeat, ""}, {codec.Heartbeat, ""}}, io.EOF},
		{"session", cat(hs, ack, ping, req, ping, bigPkt, ping, req, kick), 0, []wantPacket{
			{codec.Handshake, handshakeRequestJSON}, {codec.HandshakeAck, ""}, {codec.Heartbeat, ""},
			{codec.Data, "\x00\x01\x09room.join{}"}, {codec.Heartbeat, ""}, {codec.Data, big},
			{codec.Heartbeat, ""}, {codec.Data, "\x00\x01\x09room.join{}"}, {codec.Kick, ""},
		}, io.EOF},
		{"big first", cat(bigPkt, req), 0, []wantPacket{{codec.Data, big}, {codec.Data, "\x00\x01\x09room.join{}"}}, io.EOF},
		{"big last", cat(req, bigPkt), 0, []wantPacket{{codec.Data, "\x00\x01\x09room.join{}"}, {codec.Data, big}}, io.EOF},
		{"body at max", bigPkt, 1000, []wantPacket{{codec.Data, big}}, io.EOF},
		{"body over max first", bigPkt, 999, nil, codec.ErrPacketTooLarge},
		{"body over max later", cat(req, ping, bigPkt), 999,
			[]wantPacket{{codec.Data, "\x00\x01\x09room.join{}"}, {codec.Heartbeat, ""}}, codec.ErrPacketTooLarge},
		{"huge header", []byte{4, 0xff, 0xff, 0xff}, 0, nil, io.ErrUnexpectedEOF},
		{"unknown type first", []byte{6, 0, 0, 0}, 0, nil, codec.ErrUnknownPacketType},
		{"unknown type later", cat(ping, []byte{0, 0, 0, 0}), 0, []wantPacket{{codec.Heartbeat, ""}}, codec.ErrUnknownPacketType},
		{"eof in first header", req[:2], 0, nil, io.ErrUnexpectedEOF},
		{"eof in later header", cat(req, req[:3]), 0, []wantPacket{{codec.Data, "\x00\x01\x09room.join{}"}}, io.ErrUnexpectedEOF},
		{"eof after first header", req[:4], 0, nil, io.ErrUnexpectedEOF},
		{"eof in first body", req[:7], 0, nil, io.ErrUnexpectedEOF},
		{"eof in later body", cat(ping, req[:len(req)-1]), 0, []wantPacket{{codec.Heartbeat, ""}}, io.ErrUnexpectedEOF},
		{"eof in big body", cat(req, bigPkt[:500]), 0, []wantPacket{{codec.Data, "\x00\x01\x09room.join{}"}}, io.ErrUnexpectedEOF},
	}
	readers := []struct {
		name string
		mk   func([]byte) io.Reader
	}{
		{"whole", func(b []byte) io.Reader { return bytes.NewReader(b) }},
		{"onebyte", oneByte},
		{"half", func(b []byte) io.Reader { return iotest.HalfReader(bytes.NewReader(b)) }},
		{"dataerr", func(b []byte) io.Reader { return iotest.DataErrReader(bytes.NewReader(b)) }},
	}
	pools := []struct {
		name string
		pool *codec.BufferPool
	}{
		{"nil pool", nil},
		{"pool 5", &codec.BufferPool{Size: 5}},
		{"pool 64", &codec.BufferPool{Size: 64}},     // under the 1000-byte body
		{"pool 256", &codec.BufferPool{Size: 256}},   // over the small packets only
		{"pool 2048", &codec.BufferPool{Size: 2048}}, // over every packet
	}
	for _, tt := range tests {
		for _, rd := range readers {
			for _, p := range pools {
				t.Run(fmt.Sprintf("%s/%s/%s", tt.name, rd.name, p.name), func(t *testing.T) {
					pr := codec.NewPacketReader(rd.mk(tt.stream), p.pool, tt.maxBody)
					readAll(t, pr, tt.want, tt.wantErr)
				})
			}
		}
	}
}

// readAll reads the wanted packets from pr, then expects wantErr.
func readAll(tb testing.TB, pr *codec.PacketReader, want []wantPacket, wantErr error) {
	tb.Helper()
	for i, w := range want {
		typ, body, pkt, err := pr.Next()
		if err != nil {
			tb.Fatalf("packet %d: %v", i, err)
		}
		if typ != w.typ || string(body) != w.body {
			tb.Fatalf("packet %d: %v %q, want %v %q", i, typ, trunc(body), w.typ, trunc([]byte(w.body)))
		}
		if !bytes.Equal(pkt, packet(tb, w.typ, w.body)) {
			tb.Fatalf("packet %d: whole packet % x", i, trunc(pkt))
		}
		if len(body) > 0 && &body[0] != &pkt[codec.HeaderLength] {
			tb.Fatalf("packet %d: body does not alias the packet", i)
		}
	}
	_, _, _, err := pr.Next()
	if !errors.Is(err, wantErr) {
		tb.Fatalf("after %d packets: err = %v, want %v", len(want), err, wantErr)
	}
	if err == io.EOF {
		if _, _, _, err := pr.Next(); err != io.EOF {
			tb.Fatalf("Next after io.EOF: %v", err)
		}
	}
}

func trunc(b []byte) []byte { return b[:min(len(b), 32)] }

// TestPacketReaderCoalesced: several packets in one read are returned one by
// one without reading again.
func TestPacketReaderCoalesced(t *testing.T) {
	a := packet(t, codec.Data, "\x06\x09onMembers{}")
	b := packet(t, codec.Heartbeat, "")
	c := packet(t, codec.Data, "\x04\x01{}")
	r := chunks(cat(a, b, c))
	pr := codec.NewPacketReader(r, nil, 0)
	if _, _, pkt, err := pr.Next(); err != nil || !bytes.Equal(pkt, a) {
		t.Fatalf("first: % x %v", pkt, err)
	}
	if got := pr.Buffered(); got != len(b)+len(c) {
		t.Fatalf("Buffered = %d, want %d", got, len(b)+len(c))
	}
	reads := r.reads
	for i, want := range [][]byte{b, c} {
		if _, _, pkt, err := pr.Next(); err != nil || !bytes.Equal(pkt, want) {
			t.Fatalf("packet %d: % x %v", i+2, pkt, err)
		}
	}
	if r.reads != reads {
		t.Fatalf("%d more reads for buffered packets", r.reads-reads)
	}
	if pr.Buffered() != 0 {
		t.Fatalf("Buffered = %d", pr.Buffered())
	}
	if _, _, _, err := pr.Next(); err != io.EOF {
		t.Fatalf("end: %v", err)
	}
}

// TestPacketReaderSplits cuts a stream at every pair of places, so every
// header and body is split both when the reader's buffer is empty and when
// it holds a previous packet.
func TestPacketReaderSplits(t *testing.T) {
	want := []wantPacket{
		{codec.Data, "\x00\x01\x09room.join{}"},
		{codec.Heartbeat, ""},
		{codec.Data, strings.Repeat("x", 70)},
		{codec.Kick, ""},
	}
	var stream []byte
	for _, w := range want {
		stream = append(stream, packet(t, w.typ, w.body)...)
	}
	pool := &codec.BufferPool{Size: 32}
	for i := 0; i <= len(stream); i++ {
		for j := i; j <= len(stream); j++ {
			pr := codec.NewPacketReader(chunks(stream[:i], stream[i:j], stream[j:]), pool, 0)
			readAll(t, pr, want, io.EOF)
		}
	}
}

// TestPacketReaderResumes: an error from the underlying reader (a read
// deadline, say) loses no bytes, wherever it falls, so Next can be retried.
func TestPacketReaderResumes(t *testing.T) {
	errTimeout := errors.New("timeout")
	want := []wantPacket{
		{codec.Data, "\x00\x01\x09room.join{}"},
		{codec.Heartbeat, ""},
		{codec.Data, strings.Repeat("y", 100)},
		{codec.Data, "\x02\x0croom.message{}"},
	}
	var stream []byte
	for _, w := range want {
		stream = append(stream, packet(t, w.typ, w.body)...)
	}
	for i := 0; i <= len(stream); i++ {
		r := &scriptReader{steps: []step{{data: stream[:i]}, {err: errTimeout}, {data: stream[i:]}}}
		pr := codec.NewPacketReader(r, &codec.BufferPool{Size: 64}, 0)
		var got []wantPacket
		failed := false
		for len(got) < len(want) {
			typ, body, _, err := pr.Next()
			if err == errTimeout && !failed {
				failed = true
				continue
			}
			if err != nil {
				t.Fatalf("cut at %d, after %d packets: %v", i, len(got), err)
			}
			got = append(got, wantPacket{typ, string(body)})
		}
		for k := range want {
			if got[k] != want[k] {
				t.Fatalf("cut at %d: packet %d = %v %q, want %v %q", i, k, got[k].typ, got[k].body, want[k].typ, want[k].body)
			}
		}
		_, _, _, err := pr.Next()
		if err == errTimeout && !failed {
			failed = true
			_, _, _, err = pr.Next()
		}
		if err != io.EOF || !failed {
			t.Fatalf("cut at %d: end %v, saw the error: %v", i, err, failed)
		}
	}
}

// TestPacketReaderSharedPool: a packet stays intact while other readers of
// the same pool read theirs, until its own reader's next call.
func TestPacketReaderSharedPool(t *testing.T) {
	pool := &codec.BufferPool{Size: 64}
	const n = 50
	var streams [3][]byte
	for i := range streams {
		for k := range n {
			streams[i] = append(streams[i], packet(t, codec.Data, fmt.Sprintf("reader %d packet %d", i, k))...)
			if k%3 == 0 {
				streams[i] = append(streams[i], packet(t, codec.Heartbeat, "")...)
			}
		}
	}
	var readers [3]*codec.PacketReader
	for i := range readers {
		readers[i] = codec.NewPacketReader(iotest.HalfReader(bytes.NewReader(streams[i])), pool, 0)
	}
	var last [3][]byte
	var want [3]string
	count := [3]int{}
	for round := 0; round < 2*n; round++ {
		for i, pr := range readers {
			typ, body, _, err := pr.Next()
			if err == io.EOF {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			if typ == codec.Heartbeat {
				continue
			}
			last[i], want[i] = body, fmt.Sprintf("reader %d packet %d", i, count[i])
			count[i]++
			for j := range readers {
				if last[j] != nil && string(last[j]) != want[j] {
					t.Fatalf("reader %d's packet changed to %q while reader %d read", j, last[j], i)
				}
			}
		}
	}
	if count != [3]int{n, n, n} {
		t.Fatalf("read %v packets", count)
	}
}

// TestBufferPoolReuse: once warm, a reader of packets that need a pooled
// buffer borrows and returns the same buffer instead of allocating one per
// packet, while a packet larger than the pool's buffers gets a buffer of its
// own that is not kept. (BufferPool.put does box each slice for sync.Pool,
// 24 bytes per large packet, hence bytes rather than allocations.)
func TestBufferPoolReuse(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops buffers at random under the race detector")
	}
	tests := []struct {
		name     string
		poolSize int
		body     int
		min, max uint64 // bytes allocated per packet
	}{
		{"fits the pool", 2048, 1000, 0, 64},
		{"over the pool", 512, 1000, 1004, 1200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := packet(t, codec.Data, strings.Repeat("z", tt.body))
			r := &loopReader{packets: [][]byte{p}, perPacket: true}
			pr := codec.NewPacketReader(r, &codec.BufferPool{Size: tt.poolSize}, 0)
			next := func() {
				if _, body, _, err := pr.Next(); err != nil || len(body) != tt.body {
					t.Fatal(len(body), err)
				}
			}
			next() // warm the pool
			const runs = 1000
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			for range runs {
				next()
			}
			runtime.ReadMemStats(&after)
			if got := (after.TotalAlloc - before.TotalAlloc) / runs; got < tt.min || got > tt.max {
				t.Fatalf("%d bytes allocated per packet, want %d to %d", got, tt.min, tt.max)
			}
		})
	}
}
