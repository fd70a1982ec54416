package modules_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/nopal-dev/nopal/modules"
)

// journal records lifecycle calls from several modules.
type journal struct {
	mu    sync.Mutex
	calls []string
}

func (j *journal) add(s string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.calls = append(j.calls, s)
}

func (j *journal) take() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	c := j.calls
	j.calls = nil
	return c
}

// recModule is a module that writes its calls to a journal and fails
// where told.
type recModule struct {
	name        string
	j           *journal
	initErr     error
	shutdownErr error
	onInit      func(ctx context.Context) // runs inside Init
}

func (m *recModule) Init(ctx context.Context) error {
	m.j.add("init " + m.name)
	if m.onInit != nil {
		m.onInit(ctx)
	}
	return m.initErr
}
func (m *recModule) AfterInit(context.Context)      { m.j.add("after " + m.name) }
func (m *recModule) BeforeShutdown(context.Context) { m.j.add("before " + m.name) }
func (m *recModule) Shutdown(context.Context) error {
	m.j.add("shutdown " + m.name)
	return m.shutdownErr
}

type how int

const (
	register how = iota
	after
	before
)

type reg struct {
	name string
	how  how
}

func registerAll(t *testing.T, l *modules.Lifecycle, j *journal, regs []reg) {
	t.Helper()
	for _, r := range regs {
		if err := registerOne(l, &recModule{name: r.name, j: j}, r); err != nil {
			t.Fatalf("register %s: %v", r.name, err)
		}
	}
}

func registerOne(l *modules.Lifecycle, m modules.Module, r reg) error {
	switch r.how {
	case before:
		return l.RegisterBefore(m, r.name)
	case after:
		return l.RegisterAfter(m, r.name)
	default:
		return l.Register(m, r.name)
	}
}

// run walks the whole lifecycle and returns the journal per phase.
func run(t *testing.T, l *modules.Lifecycle, j *journal) (initial, afterInit, beforeShutdown, shutdown []string) {
	t.Helper()
	ctx := context.Background()
	if err := l.Init(ctx); err != nil {
		t.Fatalf("Init: %v", err)
	}
	initial = j.take()
	l.AfterInit(ctx)
	afterInit = j.take()
	l.BeforeShutdown(ctx)
	beforeShutdown = j.take()
	if err := l.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	shutdown = j.take()
	return
}

func prefixed(prefix string, names ...string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = prefix + " " + n
	}
	return out
}

func TestLifecycleOrder(t *testing.T) {
	tests := []struct {
		name  string
		regs  []reg
		order []string // start order
	}{
		{"none", nil, nil},
		{"one", []reg{{"a", register}}, []string{"a"}},
		{"in registration order", []reg{{"a", register}, {"b", register}, {"c", after}}, []string{"a", "b", "c"}},
		{"before goes first", []reg{{"b", register}, {"c", register}, {"a", before}}, []string{"a", "b", "c"}},
		{"the last before is first", []reg{{"c", before}, {"b", before}, {"a", before}}, []string{"a", "b", "c"}},
		{"mixed", []reg{{"c", after}, {"b", before}, {"d", register}, {"a", before}}, []string{"a", "b", "c", "d"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			j := &journal{}
			l := modules.NewLifecycle(slog.New(slog.DiscardHandler))
			registerAll(t, l, j, tc.regs)
			reversed := slices.Clone(tc.order)
			slices.Reverse(reversed)
			in, af, bs, sd := run(t, l, j)
			for _, phase := range []struct {
				name      string
				got, want []string
			}{
				{"Init", in, prefixed("init", tc.order...)},
				{"AfterInit", af, prefixed("after", tc.order...)},
				{"BeforeShutdown", bs, prefixed("before", reversed...)},
				{"Shutdown", sd, prefixed("shutdown", reversed...)},
			} {
				if !slices.Equal(phase.got, phase.want) {
					t.Errorf("%s: got %v, want %v", phase.name, phase.got, phase.want)
				}
			}
		})
	}
}

func TestLifecycleRegisterErrors(t *testing.T) {
	j := &journal{}
	tests := []struct {
		name   string
		m      modules.Module
		reg    reg
		wantIs error  // when set, errors.Is must hold
		want   string // the error contains it
	}{
		{"nil module", nil, reg{"x", register}, nil, "needs a value and a name"},
		{"nil module before", nil, reg{"x", before}, nil, "needs a value and a name"},
		{"empty name", &recModule{j: j}, reg{"", register}, nil, "needs a value and a name"},
		{"duplicate", &recModule{name: "a", j: j}, reg{"a", register}, modules.ErrDuplicateName, `"a"`},
		{"duplicate after", &recModule{name: "a", j: j}, reg{"a", after}, modules.ErrDuplicateName, `"a"`},
		{"duplicate before", &recModule{name: "a", j: j}, reg{"a", before}, modules.ErrDuplicateName, `"a"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := modules.NewLifecycle(nil)
			registerAll(t, l, j, []reg{{"a", register}})
			err := registerOne(l, tc.m, tc.reg)
			if err == nil {
				t.Fatal("accepted")
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("err = %v, want errors.Is %v", err, tc.wantIs)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to contain %s", err, tc.want)
			}
			// The refused module is not in the lifecycle.
			if in, _, _, _ := run(t, l, j); !slices.Equal(in, []string{"init a"}) {
				t.Errorf("Init ran %v", in)
			}
		})
	}
}

func TestLifecycleGet(t *testing.T) {
	j := &journal{}
	l := modules.NewLifecycle(nil)
	a, b := &recModule{name: "a", j: j}, &recModule{name: "b", j: j}
	if err := l.Register(a, "a"); err != nil {
		t.Fatal(err)
	}
	if err := l.RegisterBefore(b, "b"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		want modules.Module
	}{{"a", a}, {"b", b}, {"zz", nil}, {"", nil}}
	for _, tc := range tests {
		got, err := l.Get(tc.name)
		if tc.want == nil {
			if !errors.Is(err, modules.ErrNotFound) || got != nil {
				t.Errorf("Get(%q) = %v, %v; want ErrNotFound", tc.name, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Get(%q) = %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
}

func TestLifecycleInitFailure(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name  string
		fails string
		want  []string
	}{
		{"first", "a", []string{"init a"}},
		{"middle", "b", []string{"init a", "init b", "shutdown a"}},
		{"last", "c", []string{"init a", "init b", "init c", "shutdown b", "shutdown a"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			j := &journal{}
			l := modules.NewLifecycle(slog.New(slog.DiscardHandler))
			for _, name := range []string{"a", "b", "c"} {
				m := &recModule{name: name, j: j}
				if name == tc.fails {
					m.initErr = boom
				}
				if err := l.Register(m, name); err != nil {
					t.Fatal(err)
				}
			}
			ctx := context.Background()
			err := l.Init(ctx)
			if !errors.Is(err, boom) || !strings.Contains(err.Error(), fmt.Sprintf("%q", tc.fails)) {
				t.Fatalf("Init = %v, want boom naming %q", err, tc.fails)
			}
			if got := j.take(); !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			// Nothing is left initialised: the later phases do nothing.
			l.AfterInit(ctx)
			l.BeforeShutdown(ctx)
			if err := l.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			if got := j.take(); len(got) != 0 {
				t.Fatalf("calls after a failed Init: %v", got)
			}
		})
	}
}

func TestLifecycleShutdownErrors(t *testing.T) {
	j := &journal{}
	l := modules.NewLifecycle(nil)
	errA, errC := errors.New("a failed"), errors.New("c failed")
	for _, m := range []*recModule{{name: "a", j: j, shutdownErr: errA}, {name: "b", j: j}, {name: "c", j: j, shutdownErr: errC}} {
		if err := l.Register(m, m.name); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	if err := l.Init(ctx); err != nil {
		t.Fatal(err)
	}
	j.take()
	err := l.Shutdown(ctx)
	if !errors.Is(err, errA) || !errors.Is(err, errC) {
		t.Fatalf("Shutdown = %v, want both errors", err)
	}
	for _, want := range []string{`module "a": shutdown`, `module "c": shutdown`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Shutdown = %v, want it to contain %s", err, want)
		}
	}
	if got, want := j.take(), prefixed("shutdown", "c", "b", "a"); !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if err := l.Shutdown(ctx); err != nil {
		t.Fatalf("second Shutdown = %v", err)
	}
	if got := j.take(); len(got) != 0 {
		t.Fatalf("second Shutdown called %v", got)
	}
}

func TestLifecycleInitTwiceAndAgain(t *testing.T) {
	j := &journal{}
	l := modules.NewLifecycle(nil)
	registerAll(t, l, j, []reg{{"a", register}})
	ctx := context.Background()
	if err := l.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Init(ctx); err == nil {
		t.Fatal("a second Init succeeded")
	}
	if err := l.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	j.take()
	// After Shutdown the lifecycle may run again.
	in, af, bs, sd := run(t, l, j)
	if got := slices.Concat(in, af, bs, sd); !slices.Equal(got, []string{"init a", "after a", "before a", "shutdown a"}) {
		t.Fatalf("second run: %v", got)
	}
}

func TestLifecycleLateRegistration(t *testing.T) {
	for _, h := range []how{register, after, before} {
		t.Run([]string{"Register", "RegisterAfter", "RegisterBefore"}[h], func(t *testing.T) {
			j := &journal{}
			l := modules.NewLifecycle(nil)
			registerAll(t, l, j, []reg{{"a", register}, {"b", register}})
			ctx := context.Background()
			if err := l.Init(ctx); err != nil {
				t.Fatal(err)
			}
			j.take()
			// Registered once started: found by name, never started or stopped.
			if err := registerOne(l, &recModule{name: "late", j: j}, reg{"late", h}); err != nil {
				t.Fatal(err)
			}
			if _, err := l.Get("late"); err != nil {
				t.Fatal(err)
			}
			l.AfterInit(ctx)
			l.BeforeShutdown(ctx)
			if err := l.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			want := []string{"after a", "after b", "before b", "before a", "shutdown b", "shutdown a"}
			if got := j.take(); !slices.Equal(got, want) {
				t.Fatalf("got %v, want %v", got, want)
			}
		})
	}
}

// A module may look another up, or register one, from its Init: the
// lifecycle's lock is not held while modules run.
func TestLifecycleModuleCallsBack(t *testing.T) {
	j := &journal{}
	l := modules.NewLifecycle(nil)
	var found modules.Module
	var regErr error
	b := &recModule{name: "b", j: j}
	a := &recModule{name: "a", j: j, onInit: func(context.Context) {
		found, _ = l.Get("b")
		regErr = l.Register(&recModule{name: "extra", j: j}, "extra")
	}}
	if err := l.Register(a, "a"); err != nil {
		t.Fatal(err)
	}
	if err := l.Register(b, "b"); err != nil {
		t.Fatal(err)
	}
	in, _, _, sd := run(t, l, j)
	if found != b || regErr != nil {
		t.Fatalf("from Init: Get = %v, Register = %v", found, regErr)
	}
	if !slices.Equal(in, prefixed("init", "a", "b")) || !slices.Equal(sd, prefixed("shutdown", "b", "a")) {
		t.Fatalf("Init %v, Shutdown %v", in, sd)
	}
}

func TestLifecycleConcurrentUse(t *testing.T) {
	j := &journal{}
	l := modules.NewLifecycle(nil)
	const n = 50
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			name := fmt.Sprint("m", i)
			r := reg{name, how(i % 3)}
			if err := registerOne(l, &recModule{name: name, j: j}, r); err != nil {
				t.Error(err)
			}
			if _, err := l.Get(name); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Go(func() {
		ctx := context.Background()
		_ = l.Init(ctx)
		l.AfterInit(ctx)
	})
	wg.Wait()
	if err := l.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Every module started was stopped, and only those.
	var started, stopped []string
	for _, c := range j.take() {
		if name, ok := strings.CutPrefix(c, "init "); ok {
			started = append(started, name)
		}
		if name, ok := strings.CutPrefix(c, "shutdown "); ok {
			stopped = append(stopped, name)
		}
	}
	slices.Reverse(stopped)
	if !slices.Equal(started, stopped) {
		t.Fatalf("started %v, stopped (reversed) %v", started, stopped)
	}
}

func TestLifecycleLogs(t *testing.T) {
	var logs syncBuffer
	l := modules.NewLifecycle(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	registerAll(t, l, &journal{}, []reg{{"store", register}})
	if err := l.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	if out := logs.String(); !strings.Contains(out, `msg="module initialised" module=store`) {
		t.Fatalf("log lacks the init line:\n%s", out)
	}
}
