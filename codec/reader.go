package codec

import (
	"io"
	"sync"
)

// BufferPool lends the read buffers of idle connections back and forth, so a
// connection that waits for its next packet holds no buffer. The zero value
// is ready to use; share one per server.
type BufferPool struct {
	// Size is the size of a pooled buffer; 0 means 4096.
	Size int
	pool sync.Pool
}

func (p *BufferPool) size() int {
	if p.Size <= 0 {
		return 4096
	}
	return p.Size
}

// get returns a buffer of at least n bytes: a pooled one when n fits the
// pool's size, else a fresh one (pooled is false).
func (p *BufferPool) get(n int) (buf *[]byte, pooled bool) {
	if n > p.size() {
		b := make([]byte, n)
		return &b, false
	}
	if b, ok := p.pool.Get().(*[]byte); ok {
		return b, true
	}
	b := make([]byte, p.size())
	return &b, true
}

func (p *BufferPool) put(b *[]byte) { p.pool.Put(b) }

// smallRead is the size of the buffer every PacketReader carries inline:
// a small packet (most requests) is read with one read call and no pooled
// buffer, and an idle connection holds nothing else.
const smallRead = 128

// PacketReader splits a byte stream into packets. Packets may arrive in
// pieces or several in one read. Small packets are read into a buffer of
// 128 bytes held inline; larger ones borrow a buffer from the pool and give
// it back as soon as everything buffered has been returned, so idle
// connections stay small.
//
// A PacketReader is used by one goroutine.
type PacketReader struct {
	r          io.Reader
	pool       *BufferPool
	maxBody    int
	small      [smallRead]byte
	buf        []byte  // small[:], *big, or a one-off buffer
	big        *[]byte // the pooled buffer in use, if any
	start, end int
}

// NewPacketReader reads packets from r, refusing bodies over maxBody bytes
// (0 means MaxPacketBody). pool may be nil.
func NewPacketReader(r io.Reader, pool *BufferPool, maxBody int) *PacketReader {
	if pool == nil {
		pool = &BufferPool{}
	}
	pr := &PacketReader{r: r, pool: pool, maxBody: maxBody}
	pr.buf = pr.small[:]
	return pr
}

// Next returns the next packet: its type, its body and the whole packet
// (header and body). Both slices are valid until the next call to Next.
// A malformed header returns an error; the stream cannot be resynchronised
// after that, so the caller closes the connection.
func (pr *PacketReader) Next() (PacketType, []byte, []byte, error) {
	if pr.start == pr.end {
		pr.release()
	}
	if err := pr.fill(HeaderLength); err != nil {
		if err == io.ErrUnexpectedEOF && pr.start == pr.end {
			err = io.EOF // nothing buffered: a clean end between packets
		}
		return 0, nil, nil, err
	}
	t, n, err := ParseHeader(pr.buf[pr.start:pr.end], pr.maxBody)
	if err != nil {
		return 0, nil, nil, err
	}
	if err := pr.fill(HeaderLength + n); err != nil {
		return 0, nil, nil, err
	}
	pkt := pr.buf[pr.start : pr.start+HeaderLength+n]
	pr.start += HeaderLength + n
	return t, pkt[HeaderLength:], pkt, nil
}

// fill makes sure at least need bytes are buffered from start on.
func (pr *PacketReader) fill(need int) error {
	if pr.end-pr.start >= need {
		return nil
	}
	if pr.start+need > len(pr.buf) {
		if need > len(pr.buf) {
			nb, pooled := pr.pool.get(need)
			copy(*nb, pr.buf[pr.start:pr.end])
			pr.putBuf()
			pr.buf = *nb
			if pooled {
				pr.big = nb
			}
		} else {
			copy(pr.buf, pr.buf[pr.start:pr.end])
		}
		pr.end -= pr.start
		pr.start = 0
	}
	n, err := io.ReadAtLeast(pr.r, pr.buf[pr.end:], need-(pr.end-pr.start))
	pr.end += n
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

func (pr *PacketReader) putBuf() {
	if pr.big != nil {
		pr.pool.put(pr.big)
		pr.big = nil
	}
}

// release goes back to the inline buffer once nothing is buffered.
func (pr *PacketReader) release() {
	pr.putBuf()
	pr.buf = pr.small[:]
	pr.start, pr.end = 0, 0
}

// Buffered reports how many bytes have been read but not yet returned.
func (pr *PacketReader) Buffered() int { return pr.end - pr.start }
