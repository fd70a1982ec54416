package nopal_test

import (
	"context"
	"errors"
	"log/slog"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nopal-dev/nopal"
	"github.com/nopal-dev/nopal/frontend"
	"github.com/nopal-dev/nopal/modules"
)

// recModule records its lifecycle calls in a shared journal.
type recModule struct {
	modules.Base
	name    string
	journal *journal
	initErr error
}

type journal struct {
	mu    sync.Mutex
	calls []string
}

func (j *journal) add(s string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.calls = append(j.calls, s)
}

func (j *journal) get() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.calls)
}

func (m *recModule) Init(context.Context) error {
	m.journal.add("init " + m.name)
	return m.initErr
}
func (m *recModule) AfterInit(context.Context)      { m.journal.add("after " + m.name) }
func (m *recModule) BeforeShutdown(context.Context) { m.journal.add("before " + m.name) }
func (m *recModule) Shutdown(context.Context) error {
	m.journal.add("shutdown " + m.name)
	return nil
}

func newQuietApp(t *testing.T) *nopal.App {
	t.Helper()
	app, err := nopal.New(nopal.Config{ServerType: "mod", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	app.AddAcceptor(frontend.NewTCPAcceptor("127.0.0.1:0"))
	return app
}

func TestModuleOrder(t *testing.T) {
	j := &journal{}
	app := newQuietApp(t)
	for _, reg := range []struct {
		name   string
		before bool
	}{{"b", false}, {"c", false}, {"a", true}} {
		m := &recModule{name: reg.name, journal: j}
		var err error
		if reg.before {
			err = app.RegisterModuleBefore(m, reg.name)
		} else {
			err = app.RegisterModule(m, reg.name)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := app.RegisterModule(&recModule{name: "b", journal: j}, "b"); err == nil {
		t.Fatal("a second module named b was accepted")
	}
	if m, err := app.GetModule("c"); err != nil || m.(*recModule).name != "c" {
		t.Fatalf("GetModule(c) = %v, %v", m, err)
	}
	if _, err := app.GetModule("zz"); !errors.Is(err, nopal.ErrModuleNotFound) {
		t.Fatalf("GetModule(zz) err = %v", err)
	}
	ctx := context.Background()
	if err := app.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := app.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{"init a", "init b", "init c", "after a", "after b", "after c",
		"before c", "before b", "before a", "shutdown c", "shutdown b", "shutdown a"}
	if got := j.get(); !slices.Equal(got, want) {
		t.Fatalf("lifecycle:\n got %v\nwant %v", got, want)
	}
}

func TestModuleInitFailureStopsStart(t *testing.T) {
	j := &journal{}
	app := newQuietApp(t)
	boom := errors.New("boom")
	for _, m := range []*recModule{{name: "a", journal: j}, {name: "b", journal: j, initErr: boom}, {name: "c", journal: j}} {
		if err := app.RegisterModule(m, m.name); err != nil {
			t.Fatal(err)
		}
	}
	err := app.Start(context.Background())
	if !errors.Is(err, boom) {
		t.Fatalf("Start = %v, want boom", err)
	}
	if app.Frontend() != nil {
		t.Fatal("the frontend started although a module failed")
	}
	want := []string{"init a", "init b", "shutdown a"}
	if got := j.get(); !slices.Equal(got, want) {
		t.Fatalf("lifecycle:\n got %v\nwant %v", got, want)
	}
}

func TestBinaryModuleDeathStopsTheServer(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	app := newQuietApp(t)
	bin, err := app.BinaryModule(modules.BinaryConfig{Path: sh, Args: []string{"-c", "echo ready; sleep 0.2; exit 2"}, ReadyLine: "ready"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := app.RegisterModule(bin, "child"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- app.Run(context.Background()) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the server kept running after its child died")
	}
}

func TestModuleRegisterErrors(t *testing.T) {
	app := newQuietApp(t)
	j := &journal{}
	if err := app.RegisterModuleAfter(&recModule{name: "a", journal: j}, "a"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		register func(modules.Module, string) error
		m        modules.Module
		as       string
	}{
		{"nil module", app.RegisterModule, nil, "x"},
		{"empty name", app.RegisterModuleBefore, &recModule{journal: j}, ""},
		{"duplicate", app.RegisterModuleAfter, &recModule{name: "a", journal: j}, "a"},
		{"duplicate before", app.RegisterModuleBefore, &recModule{name: "a", journal: j}, "a"},
	}
	for _, tc := range tests {
		if err := tc.register(tc.m, tc.as); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}

func TestModuleLogsWithTheAppLogger(t *testing.T) {
	var logs syncLog
	app, err := nopal.New(nopal.Config{ServerType: "mod",
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	app.AddAcceptor(frontend.NewTCPAcceptor("127.0.0.1:0"))
	if err := app.RegisterModule(&recModule{name: "store", journal: &journal{}}, "store"); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := app.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := app.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if out := logs.String(); !strings.Contains(out, `msg="module initialised" server_type=mod`) || !strings.Contains(out, "module=store") {
		t.Fatalf("the app's log lacks the module line:\n%s", out)
	}
}

// syncLog is a log sink safe for the app's goroutines.
type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncLog) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncLog) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
