package modules

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
)

var (
	// ErrNotFound is returned by Get for a name nobody registered.
	ErrNotFound = errors.New("modules: module not found")
	// ErrDuplicateName is returned when a name is registered twice.
	ErrDuplicateName = errors.New("modules: module registered twice")
)

type named struct {
	name string
	m    Module
}

// Lifecycle holds the app's modules by name, in start order, and runs their
// lifecycle: Init and AfterInit in order, BeforeShutdown and Shutdown in
// reverse, the last two only for the modules whose Init succeeded. It is
// safe for concurrent use; the modules' methods are called without its lock
// held, so a module may look another up from Init.
//
// A module registered after Init is not started by this Lifecycle.
type Lifecycle struct {
	log *slog.Logger

	mu      sync.Mutex
	list    []named // start order
	inited  []named // those whose Init succeeded, in start order
	started bool    // between Init and Shutdown
}

// NewLifecycle returns an empty Lifecycle that logs with log
// (nil: slog.Default()).
func NewLifecycle(log *slog.Logger) *Lifecycle {
	if log == nil {
		log = slog.Default()
	}
	return &Lifecycle{log: log}
}

// Register adds m under name at the end of the start order.
func (l *Lifecycle) Register(m Module, name string) error { return l.add(m, name, false) }

// RegisterAfter is Register: m starts after every module registered so far.
func (l *Lifecycle) RegisterAfter(m Module, name string) error { return l.add(m, name, false) }

// RegisterBefore adds m under name at the start of the start order.
func (l *Lifecycle) RegisterBefore(m Module, name string) error { return l.add(m, name, true) }

func (l *Lifecycle) add(m Module, name string, first bool) error {
	if m == nil || name == "" {
		return errors.New("modules: a module needs a value and a name")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if slices.ContainsFunc(l.list, func(n named) bool { return n.name == name }) {
		return fmt.Errorf("%w: %q", ErrDuplicateName, name)
	}
	n := named{name: name, m: m}
	if first {
		l.list = slices.Insert(l.list, 0, n)
	} else {
		l.list = append(l.list, n)
	}
	return nil
}

// Get returns the module registered under name, or an error wrapping
// ErrNotFound.
func (l *Lifecycle) Get(name string) (Module, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, n := range l.list {
		if n.name == name {
			return n.m, nil
		}
	}
	return nil, fmt.Errorf("%w: %q", ErrNotFound, name)
}

// Init runs every module's Init in start order. On a failure it shuts down
// the modules already initialised, in reverse (without BeforeShutdown), and
// returns an error naming the module that wraps its error. Calling Init
// again before Shutdown is an error.
func (l *Lifecycle) Init(ctx context.Context) error {
	l.mu.Lock()
	if l.started {
		l.mu.Unlock()
		return errors.New("modules: already initialised")
	}
	l.started = true
	list := slices.Clone(l.list)
	l.mu.Unlock()
	for i, n := range list {
		if err := n.m.Init(ctx); err != nil {
			l.setInited(list[:i])
			_ = l.Shutdown(ctx)
			return fmt.Errorf("modules: module %q: init: %w", n.name, err)
		}
		l.log.Debug("module initialised", "module", n.name)
	}
	l.setInited(list)
	return nil
}

func (l *Lifecycle) setInited(list []named) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inited = list
}

func (l *Lifecycle) initialised() []named {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.inited)
}

// AfterInit runs AfterInit on the initialised modules, in start order.
func (l *Lifecycle) AfterInit(ctx context.Context) {
	for _, n := range l.initialised() {
		n.m.AfterInit(ctx)
	}
}

// BeforeShutdown runs BeforeShutdown on the initialised modules, in reverse
// order.
func (l *Lifecycle) BeforeShutdown(ctx context.Context) {
	list := l.initialised()
	for i := len(list) - 1; i >= 0; i-- {
		list[i].m.BeforeShutdown(ctx)
	}
}

// Shutdown runs Shutdown on the initialised modules, in reverse order, and
// forgets them: a second call does nothing. Every module is shut down even
// if some fail; their errors are joined, each naming its module.
func (l *Lifecycle) Shutdown(ctx context.Context) error {
	l.mu.Lock()
	list := l.inited
	l.inited, l.started = nil, false
	l.mu.Unlock()
	var errs []error
	for i := len(list) - 1; i >= 0; i-- {
		if err := list[i].m.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("modules: module %q: shutdown: %w", list[i].name, err))
		}
	}
	return errors.Join(errs...)
}
