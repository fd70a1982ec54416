package frontend_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nopal-dev/nopal/codec"
	"github.com/nopal-dev/nopal/frontend"
)

// dialStalled opens a raw TCP connection to the standalone frontend,
// handshakes, binds it to uid and then stops reading: a client whose
// socket buffers fill while the server pushes.
func dialStalled(t *testing.T, s *standalone, uid string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.tcp, waitTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(waitTimeout))
	r := codec.NewPacketReader(c, nil, 0)
	write := func(b []byte) {
		t.Helper()
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	write(packet(codec.Handshake, []byte(`{"sys":{"platform":"test"}}`)))
	if pt, _, _, err := r.Next(); err != nil || pt != codec.Handshake {
		t.Fatalf("handshake answer: %v %v", pt, err)
	}
	write(packet(codec.HandshakeAck, nil))
	data, _ := json.Marshal(uid)
	write(request(1, "t.bind", data))
	if pt, _, _, err := r.Next(); err != nil || pt != codec.Data {
		t.Fatalf("bind answer: %v %v", pt, err)
	}
	// Nothing more is read: the connection stalls.
	return c
}

// TestSendQueueBytes pushes to a client that stopped reading, beside one
// that reads, in one broadcast loop: the loop never waits for the stalled
// socket, the stalled client is disconnected as slow once its queue
// passes a byte bound (its own, or the frontend's), the reading client
// gets every push, and no queued byte stays counted.
func TestSendQueueBytes(t *testing.T) {
	const size = 16 << 10
	cases := []struct {
		name  string
		cfg   frontend.Config
		bound int64 // the bytes the stalled client's queue may reach
	}{
		// Bounds of many packets: a reading client a few packets behind at
		// some moment is not the one cut.
		{"per connection", frontend.Config{SendQueueBytes: 512 << 10}, 512 << 10},
		{"frontend budget", frontend.Config{SendQueueBytes: 64 << 20, SendBudget: 1 << 20}, 1 << 20},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.SendQueueSize = 1 << 20  // the byte bounds trip first
			cfg.WriteTimeout = time.Hour // a loop blocked on the socket would hang
			cfg.Resume = frontend.ResumeConfig{Off: true}
			s := startStandalone(t, cfg, false)
			st := s.fe.Stats()
			fast := s.dial(t, "tcp")
			bind(t, fast, "fast")
			dialStalled(t, s, "stalled")

			// The reading client reports each push; the loop keeps at most
			// window pushes ahead of it, so that it is never the slow one.
			const window = 8
			progress := make(chan struct{}, 8192)
			ended := make(chan struct{})
			go func() {
				for p := range fast.Pushes() {
					switch p.Route {
					case "onBig":
						progress <- struct{}{}
					case "onEnd":
						close(ended)
						return
					}
				}
			}()

			type result struct {
				pushes, got int
				maxQueue    int64
				err         error
			}
			done := make(chan result, 1)
			payload := strings.Repeat("x", size)
			ctx := testCtx(t)
			go func() {
				var r result
				// Far more than loopback socket buffers hold (a few MB).
				for r.pushes = 0; r.pushes < 4000; r.pushes++ {
					for r.pushes-r.got >= window {
						select {
						case <-progress:
							r.got++
						case <-ctx.Done():
							r.err = errors.New("the reading client fell behind")
							done <- r
							return
						}
					}
					r.maxQueue = max(r.maxQueue, int64(frontend.QueuedBytesOf(s.fe, s.pool.ByUID("stalled"))))
					failed, err := s.fe.PushToUsers(ctx, "onBig", payload, []string{"fast", "stalled"})
					if err != nil {
						r.err = err
						break
					}
					if len(failed) > 0 {
						if len(failed) != 1 || failed[0] != "stalled" {
							r.err = errors.New("failed " + strings.Join(failed, ","))
						}
						break
					}
				}
				done <- r
			}()
			r := await(t, done, "the broadcast loop")
			if r.err != nil {
				t.Fatal(r.err)
			}
			if r.pushes == 4000 {
				t.Fatal("the stalled client took every push")
			}
			if n := st.SlowClients.Load(); n != 1 {
				t.Errorf("SlowClients %d, want 1", n)
			}
			if limit := tc.bound + size; r.maxQueue > limit {
				t.Errorf("the stalled client's queue held %d bytes, more than %d", r.maxQueue, limit)
			}
			failed, err := s.fe.PushToUsers(t.Context(), "onEnd", "end", []string{"fast"})
			if err != nil || len(failed) > 0 {
				t.Fatalf("end push: %v %v", failed, err)
			}
			await(t, ended, "the reading client's last push")
			if n := r.got + len(progress); n != r.pushes+1 {
				t.Errorf("the reading client got %d pushes, want %d", n, r.pushes+1)
			}
			eventually(t, "the stalled client to be gone", func() bool { return st.Connected.Load() == 1 })
			eventually(t, "the queued bytes to be zero", func() bool { return frontend.QueuedBytes(s.fe) == 0 })
		})
	}
}

// TestSendQueueConfig checks the validation of the send queue bounds.
func TestSendQueueConfig(t *testing.T) {
	cases := []struct {
		name string
		cfg  frontend.Config
		ok   bool
	}{
		{"defaults", frontend.Config{}, true},
		{"negative bytes", frontend.Config{SendQueueBytes: -1}, false},
		{"negative budget", frontend.Config{SendBudget: -1}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Handler = frontend.HandlerFunc(func(_ context.Context, m *codec.Message) ([]byte, error) { return bytes.Clone(m.Data), nil })
			_, err := frontend.New(tc.cfg)
			if (err == nil) != tc.ok {
				t.Fatalf("New: %v, want ok %v", err, tc.ok)
			}
		})
	}
}

// TestSlowClientSessionEnds: a client cut for not reading gets no resume
// window. Its session ends with the connection: nothing is suspended and
// no pushes are kept for it. A client that drops by itself is suspended.
func TestSlowClientSessionEnds(t *testing.T) {
	s := startStandalone(t, frontend.Config{
		SendQueueBytes: 256 << 10, SendQueueSize: 1 << 20, WriteTimeout: time.Hour,
	}, false)
	st := s.fe.Stats()
	dialStalled(t, s, "stalled")
	sess := s.pool.ByUID("stalled")
	if sess == nil {
		t.Fatal("the stalled client's session is not bound")
	}
	payload := strings.Repeat("x", 16<<10)
	ctx := testCtx(t)
	for i := 0; ; i++ {
		if i == 4000 {
			t.Fatal("the stalled client took every push")
		}
		failed, err := s.fe.PushToUsers(ctx, "onBig", payload, []string{"stalled"})
		if err != nil {
			t.Fatal(err)
		}
		if len(failed) > 0 {
			break
		}
	}
	eventually(t, "the slow client's session to end", sess.Closed)
	if n := st.SlowClients.Load(); n != 1 {
		t.Errorf("SlowClients %d, want 1", n)
	}
	if n := st.Suspended.Load(); n != 0 {
		t.Errorf("Suspended %d after a slow client's cut, want 0", n)
	}

	dropped := dialStalled(t, s, "dropper")
	_ = dropped.Close()
	eventually(t, "the dropped client's session to be suspended", func() bool { return st.Suspended.Load() == 1 })
}
