package client

import (
	"errors"
	"fmt"
	"sync"
)

// StateKind is what happened to a client's connection; see [StateEvent].
type StateKind int

// The kinds of [StateEvent]. StateResuming and StateResumed come only with
// [WithAutoResume]; every client ends with exactly one of StateLost,
// StateKicked and StateClosed.
const (
	// StateResuming: the connection dropped and auto-resume is trying to
	// take the session over on a new one. Addr is the address that was
	// lost, Err why.
	StateResuming StateKind = iota + 1
	// StateResumed: the session was resumed on Addr: the address dialed,
	// or another one given to [WithAutoResume]. Err is nil.
	StateResumed
	// StateLost: auto-resume failed; the client has ended with Err, which
	// wraps [ErrSessionLost].
	StateLost
	// StateKicked: the server sent a Kick (as it does to every client
	// when it drains or shuts down); the client has ended with
	// [ErrKicked].
	StateKicked
	// StateClosed: the client has ended for another reason, Err:
	// [ErrClosed] after [Client.Close], io.EOF (possibly wrapped) when the
	// server closed the connection, or a read, write or protocol error.
	StateClosed
)

var stateNames = [...]string{
	StateResuming: "resuming",
	StateResumed:  "resumed",
	StateLost:     "lost",
	StateKicked:   "kicked",
	StateClosed:   "closed",
}

// String returns the kind's name: "resuming", "resumed", "lost", "kicked"
// or "closed".
func (k StateKind) String() string {
	if k > 0 && int(k) < len(stateNames) {
		return stateNames[k]
	}
	return fmt.Sprintf("StateKind(%d)", int(k))
}

// Final reports whether k ends the client: StateLost, StateKicked or
// StateClosed.
func (k StateKind) Final() bool { return k >= StateLost && k <= StateClosed }

// StateEvent is a change of a client's connection, passed to the function
// given to [WithOnState].
type StateEvent struct {
	Kind StateKind
	// Addr is the address concerned: the one that was lost (resuming), the
	// one the session was resumed on (resumed), or the one the client was
	// connected to when it ended.
	Addr string
	// Err is why: the error that dropped the connection (resuming), or
	// the reason the client ended, as [Client.Err] returns it. It is nil
	// for StateResumed.
	Err error
}

// stateKindOf is the kind of the final event for the reason a client ended.
func stateKindOf(err error) StateKind {
	switch {
	case errors.Is(err, ErrKicked):
		return StateKicked
	case errors.Is(err, ErrSessionLost):
		return StateLost
	default:
		return StateClosed
	}
}

// notifier hands state events to the function of WithOnState, in order and
// one at a time, on a goroutine of its own that runs only while events are
// waiting: the reader never waits for the function.
type notifier struct {
	f       func(StateEvent)
	mu      sync.Mutex
	queue   []StateEvent
	running bool // a goroutine is delivering the queue
	ended   bool // the final event is queued: no more events
}

// emit queues e for delivery. Nothing is queued after a final event.
func (n *notifier) emit(e StateEvent) {
	if n == nil {
		return
	}
	n.mu.Lock()
	if n.ended {
		n.mu.Unlock()
		return
	}
	n.ended = e.Kind.Final()
	n.queue = append(n.queue, e)
	if n.running {
		n.mu.Unlock()
		return
	}
	n.running = true
	n.mu.Unlock()
	go n.deliver()
}

func (n *notifier) deliver() {
	for {
		n.mu.Lock()
		if len(n.queue) == 0 {
			n.running = false
			n.queue = nil
			n.mu.Unlock()
			return
		}
		e := n.queue[0]
		n.queue[0] = StateEvent{}
		n.queue = n.queue[1:]
		n.mu.Unlock()
		n.f(e)
	}
}
