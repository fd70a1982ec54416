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

func (p *BufferPool) get(n int) []byte {
	if n > p.size() {
		return make([]byte, n)
	}
	if b, ok := p.pool.Get().(*[]byte); ok {
		return *b
	}
	return make([]byte, p.size())
}

func (p *BufferPool) put(b []byte) {
	if cap(b) != p.size() {
		return
	}
	b = b[:cap(b)]
	p.pool.Put(&b)
}

// PacketReader splits a byte stream into packets. Packets may arrive in
// pieces or several in one read. While nothing is buffered it waits on a
// 4-byte header read and holds no buffer, so idle connections stay small.
//
// A PacketReader is used by one goroutine.
type PacketReader struct {
	r          io.Reader
	pool       *BufferPool
	maxBody    int
	hdr        [HeaderLength]byte
	hdrN       int // bytes of hdr read so far, kept across a failed read
	buf        []byte
	start, end int
}

// NewPacketReader reads packets from r, refusing bodies over maxBody bytes
// (0 means MaxPacketBody). pool may be nil.
func NewPacketReader(r io.Reader, pool *BufferPool, maxBody int) *PacketReader {
	if pool == nil {
		pool = &BufferPool{}
	}
	return &PacketReader{r: r, pool: pool, maxBody: maxBody}
}

// Next returns the next packet: its type, its body and the whole packet
// (header and body). Both slices are valid until the next call to Next.
// A malformed header returns an error; the stream cannot be resynchronised
// after that, so the caller closes the connection.
func (pr *PacketReader) Next() (PacketType, []byte, []byte, error) {
	if pr.start == pr.end {
		pr.release()
		n, err := io.ReadFull(pr.r, pr.hdr[pr.hdrN:])
		pr.hdrN += n
		if err != nil {
			if err == io.EOF && pr.hdrN > 0 {
				err = io.ErrUnexpectedEOF
			}
			return 0, nil, nil, err
		}
		pr.hdrN = 0
		t, n, err := ParseHeader(pr.hdr[:], pr.maxBody)
		if err != nil {
			return 0, nil, nil, err
		}
		pr.buf = pr.pool.get(HeaderLength + n)
		copy(pr.buf, pr.hdr[:])
		pr.start, pr.end = 0, HeaderLength
		if err := pr.fill(HeaderLength + n); err != nil {
			return 0, nil, nil, err
		}
		return pr.take(t, n)
	}
	if err := pr.fill(HeaderLength); err != nil {
		return 0, nil, nil, err
	}
	t, n, err := ParseHeader(pr.buf[pr.start:pr.end], pr.maxBody)
	if err != nil {
		return 0, nil, nil, err
	}
	if err := pr.fill(HeaderLength + n); err != nil {
		return 0, nil, nil, err
	}
	return pr.take(t, n)
}

func (pr *PacketReader) take(t PacketType, n int) (PacketType, []byte, []byte, error) {
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
			nb := pr.pool.get(need)
			copy(nb, pr.buf[pr.start:pr.end])
			pr.pool.put(pr.buf)
			pr.buf = nb
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

func (pr *PacketReader) release() {
	if pr.buf != nil {
		pr.pool.put(pr.buf)
		pr.buf = nil
	}
	pr.start, pr.end = 0, 0
}

// Buffered reports how many bytes have been read but not yet returned.
func (pr *PacketReader) Buffered() int { return pr.end - pr.start }
