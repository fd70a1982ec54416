package frontend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"syscall"
)

// parkSupported: the poller below exists on this platform.
const parkSupported = true

// poller waits for bytes on parked connections with one epoll instance of
// its own, beside the Go runtime's: each parked socket is registered
// one-shot and level-triggered, so bytes that arrived before it was armed
// wake it at once.
type poller struct {
	epfd int
	log  *slog.Logger

	mu     sync.Mutex
	agents map[uint32]*agent // by the id in their epoll events
	next   uint32
	closed bool // epfd is closed (and its number may be another file's)
}

func newPoller(log *slog.Logger) (*poller, error) {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("frontend: epoll: %w", err)
	}
	return &poller{epfd: fd, log: log, agents: make(map[uint32]*agent)}, nil
}

// arm registers a's socket until its next bytes (or its end).
func (p *poller) arm(a *agent) error {
	p.mu.Lock()
	if a.pollID == 0 {
		for {
			p.next++
			if _, used := p.agents[p.next]; p.next != 0 && !used {
				break
			}
		}
		a.pollID = p.next
		p.agents[a.pollID] = a
	}
	id, added := a.pollID, a.pollAdded
	a.pollAdded = true
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("frontend: poller stopped")
	}
	rc, err := a.sock.SyscallConn()
	if err != nil {
		return err
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: int32(id)}
	var cerr error
	err = rc.Control(func(fd uintptr) {
		op := syscall.EPOLL_CTL_MOD
		if !added {
			op = syscall.EPOLL_CTL_ADD
		}
		cerr = syscall.EpollCtl(p.epfd, op, int(fd), &ev)
		if cerr == syscall.ENOENT && op == syscall.EPOLL_CTL_MOD {
			cerr = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
		}
	})
	if err == nil {
		err = cerr
	}
	return err
}

// disarm removes a's socket (before it closes: closing removes it too)
// and forgets a.
func (p *poller) disarm(a *agent) {
	p.mu.Lock()
	if a.pollID != 0 {
		delete(p.agents, a.pollID)
		a.pollID = 0
	}
	added := a.pollAdded
	a.pollAdded = false
	defer p.mu.Unlock()
	if !added || p.closed {
		return
	}
	if rc, err := a.sock.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) {
			_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, int(fd), nil)
		})
	}
}

// run wakes parked connections until ctx ends, then closes the epoll
// instance.
func (p *poller) run(ctx context.Context) {
	defer func() {
		p.mu.Lock()
		p.closed = true
		_ = syscall.Close(p.epfd)
		p.mu.Unlock()
	}()
	events := make([]syscall.EpollEvent, 128)
	for ctx.Err() == nil {
		// A timeout, so that the end of ctx is seen: the wait holds a
		// thread, not a P.
		n, err := syscall.EpollWait(p.epfd, events, 200)
		if err != nil {
			if err != syscall.EINTR {
				p.log.Error("epoll wait", "err", err)
				return
			}
			continue
		}
		for _, ev := range events[:n] {
			p.mu.Lock()
			a := p.agents[uint32(ev.Fd)]
			p.mu.Unlock()
			if a != nil {
				a.unpark()
			}
		}
	}
}
