package client

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nopal-dev/nopal/codec"
)

// stateRecorder collects the state events of a client.
type stateRecorder chan StateEvent

func newStateRecorder() stateRecorder { return make(stateRecorder, 16) }

func (r stateRecorder) option() Option {
	return WithOnState(func(e StateEvent) { r <- e })
}

// next returns the next event, failing the test if none comes in time.
func (r stateRecorder) next(t *testing.T) StateEvent {
	t.Helper()
	return await(t, (<-chan StateEvent)(r), "a state event")
}

// wantEvent is an expected event: its kind, address and the error its Err
// must match with errors.Is (nil: Err must be nil; errAny: any error).
type wantEvent struct {
	kind StateKind
	addr string
	err  error
}

var errAny = errors.New("any error")

func (r stateRecorder) expect(t *testing.T, want ...wantEvent) {
	t.Helper()
	for i, w := range want {
		e := r.next(t)
		ok := e.Kind == w.kind && e.Addr == w.addr
		switch w.err {
		case nil:
			ok = ok && e.Err == nil
		case errAny:
			ok = ok && e.Err != nil
		default:
			ok = ok && errors.Is(e.Err, w.err)
		}
		if !ok {
			t.Fatalf("event %d: %v %s %v, want %v %s %v", i, e.Kind, e.Addr, e.Err, w.kind, w.addr, w.err)
		}
	}
	// The final event is the last: nothing may be queued behind it.
	select {
	case e := <-r:
		t.Fatalf("an event after the final one: %+v", e)
	default:
	}
}

// Each change of the connection's state reaches WithOnState once, in
// order, with the address concerned and the reason; the final event is
// the last.
func TestOnState(t *testing.T) {
	tests := []struct {
		name   string
		server serverOpts
		handle func(*srvConn)
		other  *serverOpts   // a second frontend, given to WithAutoResume
		within time.Duration // auto-resume window; 0: no auto-resume
		act    func(*Client) // what the test does once connected
		want   func(a, b string) []wantEvent
	}{
		{
			name:   "kicked",
			handle: func(c *srvConn) { _ = c.writePacket(codec.Kick, nil); _, _, _ = c.read() },
			want:   func(a, _ string) []wantEvent { return []wantEvent{{StateKicked, a, ErrKicked}} },
		},
		{
			name:   "kicked with auto-resume",
			server: serverOpts{resume: true},
			handle: func(c *srvConn) { _ = c.writePacket(codec.Kick, nil); _, _, _ = c.read() },
			within: 5 * time.Second,
			want:   func(a, _ string) []wantEvent { return []wantEvent{{StateKicked, a, ErrKicked}} },
		},
		{
			name:   "server closes",
			handle: func(*srvConn) {},
			want:   func(a, _ string) []wantEvent { return []wantEvent{{StateClosed, a, errAny}} },
		},
		{
			name:   "Close",
			handle: echo,
			act:    func(c *Client) { _ = c.Close() },
			want:   func(a, _ string) []wantEvent { return []wantEvent{{StateClosed, a, ErrClosed}} },
		},
		{
			name:   "resumed on the same address",
			server: serverOpts{resume: true},
			handle: echo,
			within: 5 * time.Second,
			act:    (*Client).Drop,
			want: func(a, _ string) []wantEvent {
				return []wantEvent{{StateResuming, a, errAny}, {StateResumed, a, nil}, {StateClosed, a, ErrClosed}}
			},
		},
		{
			name:   "resumed on another frontend",
			server: serverOpts{resume: true, refuseResume: true},
			handle: echo,
			other:  &serverOpts{resume: true},
			within: 5 * time.Second,
			act:    (*Client).Drop,
			want: func(a, b string) []wantEvent {
				return []wantEvent{{StateResuming, a, errAny}, {StateResumed, b, nil}, {StateClosed, b, ErrClosed}}
			},
		},
		{
			name:   "fresh session: lost",
			server: serverOpts{resume: true, fresh: true},
			handle: echo,
			within: 5 * time.Second,
			act:    (*Client).Drop,
			want: func(a, _ string) []wantEvent {
				return []wantEvent{{StateResuming, a, errAny}, {StateLost, a, ErrSessionLost}}
			},
		},
		{
			name:   "no resume in the window: lost",
			server: serverOpts{resume: true, refuseResume: true},
			handle: echo,
			within: 200 * time.Millisecond,
			act:    (*Client).Drop,
			want: func(a, _ string) []wantEvent {
				return []wantEvent{{StateResuming, a, errAny}, {StateLost, a, ErrSessionLost}}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			forEachKind(t, func(t *testing.T, kind string) {
				a := startServer(t, kind, tc.server, tc.handle)
				var b string
				var others []string
				if tc.other != nil {
					b = startServer(t, kind, *tc.other, tc.handle)
					others = append(others, b)
				}
				rec := newStateRecorder()
				opts := []Option{rec.option()}
				if tc.within > 0 {
					opts = append(opts, WithAutoResume(tc.within, others...))
				}
				c := mustDial(t, a, opts...)
				if tc.act != nil {
					tc.act(c)
				}
				want := tc.want(a, b)
				if !want[len(want)-1].kind.Final() {
					t.Fatal("the test expects no final event")
				}
				// A final event of Close comes only after the resume.
				if last := want[len(want)-1]; last.err == ErrClosed && len(want) > 1 {
					rec.expect(t, want[:len(want)-1]...)
					if c.Addr() != want[len(want)-2].addr {
						t.Errorf("Addr() = %s, want %s", c.Addr(), want[len(want)-2].addr)
					}
					_ = c.Close()
					rec.expect(t, last)
				} else {
					rec.expect(t, want...)
				}
				<-c.Done()
				if final := want[len(want)-1]; c.Err() == nil || final.err != errAny && !errors.Is(c.Err(), final.err) {
					t.Errorf("Err() = %v, want %v", c.Err(), final.err)
				}
			})
		})
	}
}

// The function of WithOnState may block: the reader goes on without it,
// resuming the session and delivering pushes, and the events wait for it,
// in order.
func TestOnStateDoesNotHoldTheReader(t *testing.T) {
	forEachKind(t, func(t *testing.T, kind string) {
		addr := startServer(t, kind, serverOpts{resume: true}, func(c *srvConn) {
			if c.resumed() && c.push("back", []byte(`{}`)) != nil {
				return
			}
			echo(c)
		})
		gate := make(chan struct{})
		rec := newStateRecorder()
		c := mustDial(t, addr, WithAutoResume(5*time.Second), WithOnState(func(e StateEvent) {
			<-gate
			rec <- e
		}))
		c.Drop()
		p := await(t, c.Pushes(), "the push of the resumed connection")
		if p.Route != "back" || c.Resumes() != 1 {
			t.Fatalf("push %q after %d resumes", p.Route, c.Resumes())
		}
		var out string
		if err := c.Request(ctxT(t), "echo", "still here", &out); err != nil || out != "still here" {
			t.Fatalf("request while the state function blocks: %q, %v", out, err)
		}
		close(gate)
		rec.expect(t, wantEvent{StateResuming, addr, errAny}, wantEvent{StateResumed, addr, nil})
		_ = c.Close()
		rec.expect(t, wantEvent{StateClosed, addr, ErrClosed})
	})
}

// The function may close the client from an event.
func TestOnStateMayClose(t *testing.T) {
	addr := startServer(t, "tcp", serverOpts{resume: true, earlyEnd: true}, echo)
	rec := newStateRecorder()
	var c *Client
	ready := make(chan struct{})
	c = mustDial(t, addr, WithAutoResume(5*time.Second), WithOnState(func(e StateEvent) {
		<-ready
		if e.Kind == StateResuming {
			_ = c.Close()
		}
		rec <- e
	}))
	close(ready)
	c.Drop()
	await(t, c.Done(), "the client to end")
	e := rec.next(t)
	if e.Kind != StateResuming {
		t.Fatalf("first event %v", e.Kind)
	}
	// The session may have been resumed before Close: the events end
	// with the Close either way.
	for e.Kind != StateClosed {
		e = rec.next(t)
		if e.Kind != StateResumed && e.Kind != StateClosed {
			t.Fatalf("event %v", e.Kind)
		}
	}
	if !errors.Is(e.Err, ErrClosed) {
		t.Fatalf("closed with %v", e.Err)
	}
}

func TestStateKindString(t *testing.T) {
	for k, want := range map[StateKind]string{
		StateResuming: "resuming", StateResumed: "resumed", StateLost: "lost",
		StateKicked: "kicked", StateClosed: "closed", 0: "StateKind(0)", 9: "StateKind(9)",
	} {
		if got := fmt.Sprint(k); got != want {
			t.Errorf("%d: %q, want %q", int(k), got, want)
		}
	}
}
