package client_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nopal-dev/nopal/client"
)

// Against a real Nopal frontend, over TCP and WebSocket: a dropped
// connection is reported, then its resume on the same address; the
// frontend's drain (Shutdown) is reported as a kick, the last event.
func TestOnStateWithNopalFrontend(t *testing.T) {
	for _, kind := range []string{"tcp", "ws"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			fe, addr, err := startEchoFrontend(ctx, kind)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = fe.Shutdown(context.Background()) })
			events := make(chan client.StateEvent, 8)
			c, err := client.Dial(ctx, addr, client.WithAutoResume(5*time.Second),
				client.WithOnState(func(e client.StateEvent) { events <- e }))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Close() })
			next := func(want client.StateKind) client.StateEvent {
				t.Helper()
				select {
				case e := <-events:
					if e.Kind != want || e.Addr != addr {
						t.Fatalf("event %v on %s (%v), want %v on %s", e.Kind, e.Addr, e.Err, want, addr)
					}
					return e
				case <-ctx.Done():
					t.Fatalf("no %v event", want)
					panic("unreachable")
				}
			}

			c.Drop()
			if e := next(client.StateResuming); e.Err == nil {
				t.Error("resuming without the error that dropped the connection")
			}
			if e := next(client.StateResumed); e.Err != nil {
				t.Errorf("resumed with an error: %v", e.Err)
			}
			var out string
			if err := c.Request(ctx, "echo", "after the resume", &out); err != nil || out != "after the resume" {
				t.Fatalf("request after the resume: %q, %v", out, err)
			}
			if err := fe.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			if e := next(client.StateKicked); !errors.Is(e.Err, client.ErrKicked) {
				t.Errorf("kicked with %v", e.Err)
			}
			<-c.Done()
			_ = c.Close()
			select {
			case e := <-events:
				t.Errorf("an event after the kick: %v %v", e.Kind, e.Err)
			default:
			}
		})
	}
}
