package main

import (
	"errors"
	"fmt"
	"runtime"
	"syscall"
	"time"

	"github.com/nopal-dev/nopal/codec"
)

// The light load generator (DESIGN §6). With a goroutine per connection,
// each request cost the generator a write, a read that found nothing, a
// park, a netpoller wake-up and a second read: about as much CPU as the
// TCP-echo floor's server spent, so on 2 cores the generator, not the
// server, set the floor's rate, and every ratio against it read too kind.
// Here one OS thread drives every connection of a loader: epoll_wait, then
// for each ready socket one read and, when a whole answer is in, one write
// of the next request. The sockets leave Go's netpoller (their descriptors
// are duplicated, the net.Conn closed) once the handshake is done.

// lightConn is one connection of the light generator: its own descriptor,
// what it has read and not parsed yet, and when its request went out.
type lightConn struct {
	fd      int
	buf     []byte
	n       int       // buf[:n] is read and not parsed yet
	sent    time.Time // zero: no request in flight
	timed   bool      // the request in flight started in the window
	lat     []int64
	packets int // packets skipped while waiting (heartbeats), bounded
}

// lightBuffer is what one read of a light connection can take: many
// answers to a 100-byte echo.
const lightBuffer = 16 << 10

// detach takes a handshaken connection out of Go's netpoller: its
// descriptor is duplicated (non-blocking) and the net.Conn closed, so only
// the light generator reads the socket. What the rawConn had read and not
// parsed goes along.
func detach(r *rawConn) (*lightConn, error) {
	sc, err := r.c.SyscallConn()
	if err != nil {
		return nil, err
	}
	fd := -1
	var dupErr error
	if err := sc.Control(func(s uintptr) { fd, dupErr = syscall.Dup(int(s)) }); err != nil {
		return nil, err
	}
	if dupErr != nil {
		return nil, fmt.Errorf("dup: %w", dupErr)
	}
	syscall.CloseOnExec(fd)
	if err := syscall.SetNonblock(fd, true); err != nil {
		_ = syscall.Close(fd)
		return nil, err
	}
	lc := &lightConn{fd: fd, buf: make([]byte, lightBuffer)}
	lc.n = copy(lc.buf, r.rbuf[r.r:r.w])
	_ = r.c.Close()
	return lc, nil
}

func (c *lightConn) Close() error { return syscall.Close(c.fd) }

// answer consumes the packets in c.buf and reports whether the answer to
// the request in flight is among them. Heartbeats are skipped.
func (c *lightConn) answer(ex *exchange) (bool, error) {
	off, done := 0, false
	defer func() {
		c.n = copy(c.buf, c.buf[off:c.n])
	}()
	for c.n-off >= codec.HeaderLength {
		h := c.buf[off:]
		size := codec.HeaderLength + (int(h[1])<<16 | int(h[2])<<8 | int(h[3]))
		if size > len(c.buf) {
			return false, fmt.Errorf("packet of %d bytes", size)
		}
		if c.n-off < size {
			break
		}
		t, body := codec.PacketType(h[0]), h[codec.HeaderLength:size]
		off += size
		if done {
			if ex.nopal && t == codec.Heartbeat {
				continue // the server's, sent just after the answer
			}
			return false, fmt.Errorf("packet %s after the answer, with one request in flight", t)
		}
		ok, err := ex.check(t, body)
		if err != nil {
			return false, err
		}
		if !ok {
			if c.packets++; c.packets > 1000 {
				return false, errors.New("no response among 1000 packets")
			}
			continue
		}
		done, c.packets = true, 0
	}
	return done, nil
}

// send writes the request whole (a small packet on an idle socket: a short
// write means something is wrong).
func (c *lightConn) send(ex *exchange, now time.Time, timed bool) error {
	n, err := syscall.Write(c.fd, ex.req)
	if err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if n != len(ex.req) {
		return fmt.Errorf("short write: %d of %d bytes", n, len(ex.req))
	}
	c.sent, c.timed = now, timed
	return nil
}

// lightWindow runs conns in a closed loop on the calling goroutine, locked
// to its thread: requests start until t1, those started in [t0, t1) are
// timed into each connection's lat; it returns once every answer is in.
// Requests of one connection start back to back, as loadLoop's do.
func lightWindow(conns []*lightConn, ex *exchange, t0, t1 time.Time, maxLat int) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("epoll: %w", err)
	}
	defer syscall.Close(ep)
	for i, c := range conns {
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(i)}
		if err := syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, c.fd, &ev); err != nil {
			return fmt.Errorf("epoll add: %w", err)
		}
	}
	now := time.Now()
	for _, c := range conns {
		if err := c.send(ex, now, !now.Before(t0)); err != nil {
			return err
		}
	}
	inFlight := len(conns)
	events := make([]syscall.EpollEvent, len(conns))
	deadline := t1.Add(10 * time.Second) // a hung server fails the run
	for inFlight > 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("%d answers still missing 10 s after the window", inFlight)
		}
		k, err := syscall.EpollWait(ep, events, 100)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("epoll wait: %w", err)
		}
		for _, ev := range events[:k] {
			c := conns[ev.Fd]
			m, err := syscall.Read(c.fd, c.buf[c.n:])
			if err == syscall.EAGAIN || err == syscall.EINTR {
				continue
			}
			if err != nil {
				return fmt.Errorf("connection %d: read: %w", ev.Fd, err)
			}
			if m == 0 {
				return fmt.Errorf("connection %d: closed by the server", ev.Fd)
			}
			c.n += m
			done, err := c.answer(ex)
			if err != nil {
				return fmt.Errorf("connection %d: %w", ev.Fd, err)
			}
			if !done {
				continue
			}
			now := time.Now()
			if c.timed && len(c.lat) < maxLat {
				c.lat = append(c.lat, int64(now.Sub(c.sent)))
			}
			if !now.Before(t1) {
				c.sent = time.Time{}
				inFlight--
				continue
			}
			if err := c.send(ex, now, !now.Before(t0)); err != nil {
				return fmt.Errorf("connection %d: %w", ev.Fd, err)
			}
		}
	}
	return nil
}

// check reads one packet of the answer to ex: it reports true for the
// answer, false for a packet to skip (a heartbeat), or an error.
func (e *exchange) check(t codec.PacketType, body []byte) (bool, error) {
	if !e.nopal {
		if byte(t) != e.req[0] || len(body) != e.respBody {
			return false, fmt.Errorf("echo: got packet %#02x of %d bytes, want %d", byte(t), len(body), e.respBody)
		}
		return true, nil
	}
	switch t {
	case codec.Heartbeat:
		return false, nil
	case codec.Data:
	default:
		return false, fmt.Errorf("unexpected packet %s", t)
	}
	if len(body) < 2 || body[0]&flagTypeMask != flagResponse || body[1] != e.id {
		return false, fmt.Errorf("not the response to request %d: % x", e.id, body[:min(len(body), 16)])
	}
	if body[0]&flagError != 0 {
		return false, fmt.Errorf("error response: %q", body[2:])
	}
	if body[0]&flagZlib == 0 && len(body) != e.respBody {
		return false, fmt.Errorf("response of %d bytes, want %d", len(body), e.respBody)
	}
	return true, nil
}
