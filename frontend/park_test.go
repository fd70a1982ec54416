package frontend_test

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/nopal-dev/nopal/frontend"
)

// TestParkedConnections checks that an idle connection gives its reader
// back (ParkIdle) and that a parked connection still gets its requests
// answered, its pushes, its heartbeats' timeout and its end, whichever side
// ends it.
func TestParkedConnections(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("connections park on Linux only")
	}
	ends := []struct {
		name string
		end  func(t *testing.T, s *standalone, uid string, closeClient func())
	}{
		{"client closes", func(t *testing.T, _ *standalone, _ string, closeClient func()) {
			t.Helper()
			closeClient()
		}},
		{"server kicks", func(t *testing.T, s *standalone, uid string, _ func()) {
			t.Helper()
			if err := s.pool.ByUID(uid).Kick(testCtx(t)); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tr := range []string{"tcp", "ws"} {
		for _, end := range ends {
			t.Run(tr+"/"+end.name, func(t *testing.T) {
				s := startStandalone(t, frontend.Config{ParkIdle: 20 * time.Millisecond, Resume: frontend.ResumeConfig{Off: true}}, false)
				st := s.fe.Stats()
				c := s.dial(t, tr)
				uid := "u-" + tr
				bind(t, c, uid)
				for round := int64(1); round <= 3; round++ {
					eventually(t, "the connection to park", func() bool { return st.Parked.Load() >= round })
					// A request wakes it.
					var out string
					if err := c.Request(testCtx(t), "t.echo", "hi", &out); err != nil || out != "hi" {
						t.Fatalf("round %d: echo %q, %v", round, out, err)
					}
					// A push reaches it, parked or not.
					s.pushN(t, uid, int(round))
					expectSeq(t, c, int(round))
				}
				eventually(t, "the connection to park", func() bool { return st.Parked.Load() >= 4 })
				end.end(t, s, uid, func() { _ = c.Close() })
				eventually(t, "the parked connection to end", func() bool { return st.Connected.Load() == 0 })
				await(t, s.closed, "the session to close")
			})
		}
	}
}

// TestParkIdleOff checks that a negative ParkIdle keeps every reader.
func TestParkIdleOff(t *testing.T) {
	s := startStandalone(t, frontend.Config{ParkIdle: -1}, false)
	c := s.dial(t, "tcp")
	bind(t, c, "u")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	<-ctx.Done() // a window in which a connection would have parked
	if n := s.fe.Stats().Parked.Load(); n != 0 {
		t.Errorf("Parked %d with ParkIdle off", n)
	}
}
