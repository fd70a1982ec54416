package cluster

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestDeadlineCtx(t *testing.T) {
	tests := []struct {
		name    string
		left    time.Duration
		cancel  bool // the parent is cancelled
		wantErr error
	}{
		{"deadline passes", 20 * time.Millisecond, false, context.DeadlineExceeded},
		{"deadline already past", -time.Millisecond, false, context.DeadlineExceeded},
		{"parent cancelled", time.Hour, true, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent, cancel := context.WithCancel(context.WithValue(context.Background(), ctxKey{}, "v"))
			defer cancel()
			c := withDeadline(parent, time.Now().Add(tt.left))
			defer c.release()
			if c.Value(ctxKey{}) != "v" {
				t.Fatal("the parent's values are lost")
			}
			if dl, ok := c.Deadline(); !ok || dl.IsZero() {
				t.Fatal("no deadline")
			}
			if tt.left > 0 && c.Err() != nil {
				t.Fatalf("Err before the deadline: %v", c.Err())
			}
			child, cancelChild := context.WithCancel(c) // handlers derive contexts
			defer cancelChild()
			if tt.cancel {
				cancel()
			}
			select {
			case <-child.Done():
			case <-time.After(10 * time.Second):
				t.Fatal("Done never closed")
			}
			if err := c.Err(); !errors.Is(err, tt.wantErr) {
				t.Fatalf("Err %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// TestDeadlineCtxErrWithoutDone: a handler that only polls Err sees the
// deadline pass without Done ever being asked for.
func TestDeadlineCtxErrWithoutDone(t *testing.T) {
	c := withDeadline(context.Background(), time.Now().Add(-time.Second))
	defer c.release()
	if !errors.Is(c.Err(), context.DeadlineExceeded) {
		t.Fatalf("Err %v", c.Err())
	}
	select {
	case <-c.Done():
	default:
		t.Fatal("Done not closed though Err said the deadline passed")
	}
}

type ctxKey struct{}
