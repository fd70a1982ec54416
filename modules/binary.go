package modules

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// BinaryConfig configures a Binary module.
type BinaryConfig struct {
	// Path and Args of the program to run.
	Path string
	Args []string
	// Dir and Env (nil: the server's) of the child.
	Dir string
	Env []string
	// StartTimeout is how long Init waits for the child to print a line
	// containing ReadyLine, when ReadyLine is set.
	ReadyLine    string
	StartTimeout time.Duration
	// StopTimeout is how long Shutdown waits after SIGTERM before killing
	// the child (default 5 s).
	StopTimeout time.Duration
	// OnExit is called when the child exits on its own (not because the
	// module stopped it), with its error. The app passes a function that
	// shuts the server down unless KeepRunning is set.
	OnExit func(err error)
	// Logger receives the child's output lines (default slog.Default()).
	Logger *slog.Logger
}

// Binary runs a child process for the app's lifetime.
type Binary struct {
	Base
	cfg BinaryConfig
	log *slog.Logger

	mu       sync.Mutex
	cmd      *exec.Cmd
	stopping bool
	exited   chan struct{}
	err      error
}

// NewBinary returns a Binary module; the child starts at Init.
func NewBinary(cfg BinaryConfig) (*Binary, error) {
	if cfg.Path == "" {
		return nil, errors.New("modules: Binary needs a Path")
	}
	if cfg.StopTimeout == 0 {
		cfg.StopTimeout = 5 * time.Second
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Binary{cfg: cfg, log: cfg.Logger.With("module", "binary", "path", cfg.Path)}, nil
}

// Init starts the child and, with ReadyLine set, waits for it to say so.
func (b *Binary) Init(ctx context.Context) error {
	cmd := exec.Command(b.cfg.Path, b.cfg.Args...)
	cmd.Dir, cmd.Env = b.cfg.Dir, b.cfg.Env
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("modules: start %s: %w", b.cfg.Path, err)
	}
	b.log.Info("child started", "pid", cmd.Process.Pid)
	ready := make(chan struct{})
	var once sync.Once
	var lines sync.WaitGroup
	logLines := func(r io.Reader, stream string) {
		defer lines.Done()
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			b.log.Info(line, "stream", stream, "pid", cmd.Process.Pid)
			if b.cfg.ReadyLine != "" && strings.Contains(line, b.cfg.ReadyLine) {
				once.Do(func() { close(ready) })
			}
		}
	}
	lines.Add(2)
	go logLines(stdout, "stdout")
	go logLines(stderr, "stderr")

	b.mu.Lock()
	b.cmd, b.exited = cmd, make(chan struct{})
	b.mu.Unlock()
	go func() {
		lines.Wait() // read all output before Wait closes the pipes
		err := cmd.Wait()
		b.mu.Lock()
		b.err = err
		stopping := b.stopping
		close(b.exited)
		b.mu.Unlock()
		if stopping {
			b.log.Info("child stopped", "err", err)
			return
		}
		b.log.Error("child exited", "err", err)
		if b.cfg.OnExit != nil {
			b.cfg.OnExit(err)
		}
	}()

	if b.cfg.ReadyLine == "" {
		return nil
	}
	select {
	case <-ready:
		return nil
	case <-b.exited:
		return fmt.Errorf("modules: %s exited before it was ready: %v", b.cfg.Path, b.err)
	case <-time.After(b.cfg.StartTimeout):
	case <-ctx.Done():
	}
	_ = b.Shutdown(context.Background())
	return fmt.Errorf("modules: %s not ready within %s", b.cfg.Path, b.cfg.StartTimeout)
}

// Shutdown stops the child: SIGTERM, then SIGKILL after StopTimeout.
func (b *Binary) Shutdown(ctx context.Context) error {
	b.mu.Lock()
	cmd, exited := b.cmd, b.exited
	b.stopping = true
	b.mu.Unlock()
	if cmd == nil {
		return nil
	}
	select {
	case <-exited:
		return nil
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		return nil
	case <-time.After(b.cfg.StopTimeout):
	case <-ctx.Done():
	}
	_ = cmd.Process.Kill()
	<-exited
	return nil
}

// Pid is the child's process id (0 before Init).
func (b *Binary) Pid() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd == nil || b.cmd.Process == nil {
		return 0
	}
	return b.cmd.Process.Pid
}

// Exited is closed when the child has exited (nil before Init).
func (b *Binary) Exited() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.exited
}
