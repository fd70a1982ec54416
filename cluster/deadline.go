package cluster

import (
	"context"
	"sync"
	"time"
)

// deadlineCtx is a served call's context: the caller's deadline on top of
// the server's life. context.WithDeadline arms a timer and registers with
// its parent on every call (18 % of a backend's call path in the profile,
// for handlers that mostly never look at Done); this one does both only
// when Done is first asked for. Deadline and Err answer without it.
type deadlineCtx struct {
	context.Context // the parent
	deadline        time.Time

	once sync.Once
	done chan struct{}
	mu   sync.Mutex
	err  error
	stop []func() bool // the timer's and the parent's hooks, set by Done
}

func withDeadline(parent context.Context, d time.Time) *deadlineCtx {
	return &deadlineCtx{Context: parent, deadline: d}
}

func (c *deadlineCtx) Deadline() (time.Time, bool) { return c.deadline, true }

func (c *deadlineCtx) Done() <-chan struct{} {
	c.once.Do(func() {
		c.mu.Lock()
		c.done = make(chan struct{})
		c.mu.Unlock()
		if err := c.now(); err != nil {
			c.cancel(err)
			return
		}
		t := time.AfterFunc(time.Until(c.deadline), func() { c.cancel(context.DeadlineExceeded) })
		p := context.AfterFunc(c.Context, func() { c.cancel(c.Context.Err()) })
		c.mu.Lock()
		c.stop = []func() bool{t.Stop, p}
		c.mu.Unlock()
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.done
}

// now is the error the context has at this moment, Done or not.
func (c *deadlineCtx) now() error {
	if err := c.Context.Err(); err != nil {
		return err
	}
	if !time.Now().Before(c.deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

func (c *deadlineCtx) cancel(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
		close(c.done)
	}
}

func (c *deadlineCtx) Err() error {
	c.mu.Lock()
	started, err := c.done != nil, c.err
	c.mu.Unlock()
	if started {
		return err
	}
	return c.now()
}

// release stops what Done started, once the call is served.
func (c *deadlineCtx) release() {
	c.mu.Lock()
	stop := c.stop
	c.stop = nil
	c.mu.Unlock()
	for _, f := range stop {
		f()
	}
}
