package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// StartResult is how long a server takes from exec to ready.
type StartResult struct {
	What    string    `json:"what"`
	BuildMs float64   `json:"build_ms,omitempty"`
	RunsMs  []float64 `json:"runs_ms"`
	// MedianMs is the median of RunsMs.
	MedianMs float64 `json:"median_ms"`
}

// moduleRoot walks up from the working directory to the folder holding
// go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for range 64 {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "", errors.New("no go.mod above the working directory: run the suite from the module")
}

// goTool finds the go command.
func goTool() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	if root := os.Getenv("GOROOT"); root != "" {
		p := filepath.Join(root, "bin", "go")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("the go command is not on PATH")
}

// buildNode builds ./cmd/node into dir and returns the binary and how long
// the build took.
func buildNode(dir string) (string, time.Duration, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", 0, err
	}
	gocmd, err := goTool()
	if err != nil {
		return "", 0, err
	}
	bin := filepath.Join(dir, "node")
	cmd := exec.Command(gocmd, "build", "-o", bin, "./cmd/node")
	cmd.Dir = root
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	if err != nil {
		return "", took, fmt.Errorf("go build ./cmd/node: %v\n%s", err, out)
	}
	return bin, took, nil
}

// timeToLine starts exe with args in dir and returns the time from Start
// until a line containing marker appears on its stderr (fromStderr) or
// stdout. The process is then stopped with SIGTERM (killed after 10 s).
func timeToLine(dir, exe string, args []string, marker string, fromStderr bool, timeout time.Duration) (time.Duration, error) {
	cmd := exec.Command(exe, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), childEnv+"=1")
	pr, pw, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	if fromStderr {
		cmd.Stderr = pw
	} else {
		cmd.Stdout = pw
	}
	// Keep stdin open until the process is stopped: the bench servers treat
	// EOF on stdin as a stop request.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		_ = pr.Close()
		_ = pw.Close()
		return 0, err
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		_ = pr.Close()
		_ = pw.Close()
		return 0, err
	}
	_ = pw.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	found := make(chan time.Duration, 1)
	go func() {
		defer pr.Close()
		sc := bufio.NewScanner(pr)
		seen := false
		for sc.Scan() {
			if !seen && strings.Contains(sc.Text(), marker) {
				seen = true
				found <- time.Since(start)
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	stop := func() error {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			_ = stdin.Close()
			return err
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			_ = stdin.Close()
			return fmt.Errorf("%s did not exit on SIGTERM in 10 s: killed", filepath.Base(exe))
		}
	}
	select {
	case took := <-found:
		if err := stop(); err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				return took, fmt.Errorf("%s: after SIGTERM: %v", filepath.Base(exe), err)
			}
			return took, err
		}
		return took, nil
	case err := <-done:
		_ = stdin.Close()
		return 0, fmt.Errorf("%s exited before %q: %v", filepath.Base(exe), marker, err)
	case <-time.After(timeout):
		_ = stop()
		return 0, fmt.Errorf("%s: no %q in %v", filepath.Base(exe), marker, timeout)
	}
}

// runStartup builds ./cmd/node (timed, reported apart) and times `node
// serve` to "msg=ready" runs times; the floor times the bench binary's
// echo-server to its ADDR line.
func runStartup(exe string, runs int) (nopal, floor StartResult, err error) {
	tmp, err := os.MkdirTemp("", "nopal-bench-")
	if err != nil {
		return nopal, floor, err
	}
	defer os.RemoveAll(tmp)
	bin, build, err := buildNode(tmp)
	if err != nil {
		return nopal, floor, err
	}
	nopal = StartResult{What: "node serve -tcp 127.0.0.1:0 -ws 127.0.0.1:0 → msg=ready", BuildMs: ms(build)}
	floor = StartResult{What: "bench echo-server -addr 127.0.0.1:0 → ADDR"}
	for range runs {
		d, err := timeToLine(tmp, exe, []string{"echo-server", "-addr", "127.0.0.1:0"}, "ADDR ", false, 10*time.Second)
		if err != nil {
			return nopal, floor, err
		}
		floor.RunsMs = append(floor.RunsMs, ms(d))
		d, err = timeToLine(tmp, bin, []string{"serve", "-tcp", "127.0.0.1:0", "-ws", "127.0.0.1:0"}, "msg=ready", true, 10*time.Second)
		if err != nil {
			return nopal, floor, err
		}
		nopal.RunsMs = append(nopal.RunsMs, ms(d))
	}
	nopal.MedianMs, floor.MedianMs = median(nopal.RunsMs), median(floor.RunsMs)
	return nopal, floor, nil
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
