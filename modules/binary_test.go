package modules_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nopal-dev/nopal/modules"
)

// syncBuffer is a log sink safe for the module's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func needSh(t *testing.T) string {
	t.Helper()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh on this machine")
	}
	return sh
}

func TestBinaryLogsAndStops(t *testing.T) {
	sh := needSh(t)
	var logs syncBuffer
	exited := make(chan error, 1)
	b, err := modules.NewBinary(modules.BinaryConfig{
		Path:      sh,
		Args:      []string{"-c", `trap 'echo bye; exit 0' TERM; echo hello from child; echo oops >&2; echo ready; while :; do sleep 0.05; done`},
		ReadyLine: "ready",
		OnExit:    func(err error) { exited <- err },
		Logger:    slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	if b.Pid() == 0 {
		t.Fatal("no pid")
	}
	if err := b.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-b.Exited()
	for _, want := range []string{"hello from child", "stream=stdout", "oops", "stream=stderr", "bye"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %q:\n%s", want, logs.String())
		}
	}
	select {
	case err := <-exited:
		t.Fatalf("OnExit called for a child the module stopped: %v", err)
	default:
	}
}

func TestBinaryChildDeathCallsOnExit(t *testing.T) {
	sh := needSh(t)
	exited := make(chan error, 1)
	b, err := modules.NewBinary(modules.BinaryConfig{
		Path:   sh,
		Args:   []string{"-c", "exit 3"},
		OnExit: func(err error) { exited <- err },
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 3 {
			t.Fatalf("OnExit err = %v, want exit status 3", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("OnExit not called")
	}
}

func TestBinaryKilledAfterStopTimeout(t *testing.T) {
	sh := needSh(t)
	b, err := modules.NewBinary(modules.BinaryConfig{
		Path:        sh,
		Args:        []string{"-c", `trap '' TERM; echo ready; while :; do sleep 0.05; done`},
		ReadyLine:   "ready",
		StopTimeout: 200 * time.Millisecond,
		Logger:      slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	pid := b.Pid()
	if err := b.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Fatal("child still alive after Shutdown")
	}
}

func TestBinaryInitErrors(t *testing.T) {
	sh := needSh(t)
	tests := []struct {
		name string
		cfg  modules.BinaryConfig
		want string
	}{
		{"missing program", modules.BinaryConfig{Path: "/nonexistent/program"}, "start"},
		{"exits before ready", modules.BinaryConfig{Path: sh, Args: []string{"-c", "exit 1"}, ReadyLine: "ready"}, "exited before it was ready"},
		{"never ready", modules.BinaryConfig{Path: sh, Args: []string{"-c", "sleep 5"}, ReadyLine: "ready", StartTimeout: 200 * time.Millisecond, StopTimeout: 100 * time.Millisecond}, "not ready"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Logger = slog.New(slog.DiscardHandler)
			b, err := modules.NewBinary(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			err = b.Init(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Init = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if _, err := modules.NewBinary(modules.BinaryConfig{}); err == nil {
		t.Fatal("NewBinary without a path succeeded")
	}
}
