package stream

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Requests and their replies, multiplexed on one wildcard subscription of
// this process's inbox, <p>.reply.<id>.q.*. nats.go does the same
// (RequestMsgWithContext), but each of its requests made a channel and
// needed a context with a deadline: the profile of a frontend forwarding
// requests showed context.WithTimeout alone at 15 % of the request path
// (a timer, a cancel context registered with its parent, and their
// teardown). Here a request takes a pooled waiter (its channel and timer
// live on between requests) and a number for its reply subject.
//
// The subscription is a channel one: NATS's reader puts each reply on one
// channel, and the requests waiting read it themselves, each handing on
// the replies that are not its own. With one request in flight its reply
// wakes it directly, one goroutine hand-off where a handler subscription
// (NATS's reader, the subscription's goroutine, the requester) made two.

// replyToken is the inbox token of the request multiplexer's replies: a
// token no NATS inbox (<prefix>.<nuid>, <prefix>.<nuid>.<n>) can be.
const replyToken = "q"

type waiter struct {
	ch    chan *nats.Msg // capacity 1: the reply
	timer *time.Timer
}

// replyBacklog bounds the replies NATS's reader may queue before one of
// the waiting requests reads them: past it, NATS drops them (a slow
// consumer, logged). It is far above the requests one process has in
// flight.
const replyBacklog = 1 << 16

// requests is the Bus's request multiplexer.
type requests struct {
	prefix  string         // <p>.reply.<id>.q.
	replies chan *nats.Msg // every reply, from NATS's reader
	mu      sync.Mutex
	next    uint64
	wait    map[uint64]*waiter
	pool    sync.Pool // *waiter
}

func newRequests(replyPrefix string) *requests {
	return &requests{prefix: replyPrefix + "." + replyToken + ".", replies: make(chan *nats.Msg, replyBacklog), wait: map[uint64]*waiter{}}
}

// subject is the wildcard the multiplexer subscribes to.
func (r *requests) subject() string { return r.prefix + "*" }

// deliver hands a reply to its waiter, unless that is mine (the caller's
// number): then it reports true and the caller keeps m. A reply nobody
// waits for any more (its request timed out) is dropped.
func (r *requests) deliver(m *nats.Msg, mine uint64) bool {
	if len(m.Subject) <= len(r.prefix) {
		return false
	}
	n, err := strconv.ParseUint(m.Subject[len(r.prefix):], 10, 64)
	if err != nil {
		return false
	}
	r.mu.Lock()
	w := r.wait[n]
	delete(r.wait, n)
	r.mu.Unlock()
	if w == nil {
		return false
	}
	if n == mine {
		return true
	}
	w.ch <- m
	return false
}

func (r *requests) get() *waiter {
	if w, ok := r.pool.Get().(*waiter); ok {
		return w
	}
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &waiter{ch: make(chan *nats.Msg, 1), timer: t}
}

// register gives w a number and returns its reply subject.
func (r *requests) register(w *waiter) (uint64, string) {
	r.mu.Lock()
	r.next++
	n := r.next
	r.wait[n] = w
	r.mu.Unlock()
	return n, r.prefix + strconv.FormatUint(n, 10)
}

// release takes n's waiter back. If the reply is on its way (deliver took
// the waiter out already) it is awaited and dropped, so the channel goes
// back to the pool empty.
func (r *requests) release(n uint64, w *waiter) {
	r.mu.Lock()
	_, waiting := r.wait[n]
	delete(r.wait, n)
	r.mu.Unlock()
	if !waiting {
		<-w.ch
	}
	w.timer.Stop()
	r.pool.Put(w)
}

// Call sends data, with hdr (nil for none), on subject and waits for the
// first reply, for at most timeout (or until ctx ends, if sooner). It is
// Request without a deadline on ctx: the timeout is a pooled timer.
// With nobody subscribed to subject the error is nats.ErrNoResponders;
// when the time is up it is nats.ErrTimeout, when ctx ends first ctx's
// error.
func (b *Bus) Call(ctx context.Context, subject string, data []byte, hdr nats.Header, timeout time.Duration) (*nats.Msg, error) {
	if b.req == nil {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return b.nc.RequestMsgWithContext(ctx, &nats.Msg{Subject: subject, Data: data, Header: hdr})
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ctxFirst := false // ctx's deadline comes before timeout
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl); left <= timeout {
			timeout, ctxFirst = left, true
		}
	}
	if timeout <= 0 {
		if ctxFirst {
			return nil, context.DeadlineExceeded
		}
		return nil, nats.ErrTimeout
	}
	w := b.req.get()
	n, reply := b.req.register(w)
	err := b.nc.PublishMsg(&nats.Msg{Subject: subject, Reply: reply, Data: data, Header: hdr})
	if err != nil {
		b.req.release(n, w)
		return nil, err
	}
	w.timer.Reset(timeout)
	for {
		var m *nats.Msg
		select {
		case m = <-w.ch:
		case m = <-b.req.replies:
			if !b.req.deliver(m, n) {
				continue
			}
		case <-w.timer.C:
			b.req.release(n, w)
			if ctxFirst {
				return nil, context.DeadlineExceeded // as ctx.Err() says now or a moment later
			}
			return nil, nats.ErrTimeout
		case <-ctx.Done():
			b.req.release(n, w)
			return nil, ctx.Err()
		}
		w.timer.Stop()
		b.req.pool.Put(w)
		if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
			return nil, nats.ErrNoResponders
		}
		return m, nil
	}
}

// startRequests subscribes the request multiplexer.
func (b *Bus) startRequests() error {
	r := newRequests(b.ReplyPrefix())
	if _, err := b.nc.ChanSubscribe(r.subject(), r.replies); err != nil {
		return fmt.Errorf("stream: reply subscription: %w", err)
	}
	b.req = r
	return nil
}
