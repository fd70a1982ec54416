package nopal

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/nopal-dev/nopal/modules"
)

// ErrModuleNotFound is returned by GetModule.
var ErrModuleNotFound = errors.New("nopal: module not found")

type namedModule struct {
	name string
	m    modules.Module
}

type moduleList struct {
	mu     sync.Mutex
	list   []namedModule
	inited int // how many Init succeeded
}

// RegisterModule adds a module, started after those registered before it.
func (a *App) RegisterModule(m modules.Module, name string) error {
	return a.RegisterModuleAfter(m, name)
}

// RegisterModuleAfter adds a module at the end of the start order.
func (a *App) RegisterModuleAfter(m modules.Module, name string) error {
	return a.addModule(m, name, false)
}

// RegisterModuleBefore adds a module at the start of the start order.
func (a *App) RegisterModuleBefore(m modules.Module, name string) error {
	return a.addModule(m, name, true)
}

func (a *App) addModule(m modules.Module, name string, first bool) error {
	if m == nil || name == "" {
		return errors.New("nopal: a module needs a value and a name")
	}
	a.modules.mu.Lock()
	defer a.modules.mu.Unlock()
	if slices.ContainsFunc(a.modules.list, func(n namedModule) bool { return n.name == name }) {
		return fmt.Errorf("nopal: module %q registered twice", name)
	}
	nm := namedModule{name: name, m: m}
	if first {
		a.modules.list = append([]namedModule{nm}, a.modules.list...)
	} else {
		a.modules.list = append(a.modules.list, nm)
	}
	return nil
}

// GetModule returns the module registered under name.
func (a *App) GetModule(name string) (modules.Module, error) {
	a.modules.mu.Lock()
	defer a.modules.mu.Unlock()
	for _, n := range a.modules.list {
		if n.name == name {
			return n.m, nil
		}
	}
	return nil, fmt.Errorf("%w: %q", ErrModuleNotFound, name)
}

func (a *App) moduleList() []namedModule {
	a.modules.mu.Lock()
	defer a.modules.mu.Unlock()
	return slices.Clone(a.modules.list)
}

// initModules runs Init in order; on a failure it shuts down the modules
// already initialised, in reverse, and returns an error naming the module.
func (a *App) initModules(ctx context.Context) error {
	list := a.moduleList()
	for i, n := range list {
		if err := n.m.Init(ctx); err != nil {
			a.modules.mu.Lock()
			a.modules.inited = i
			a.modules.mu.Unlock()
			_ = a.shutdownModules(ctx)
			return fmt.Errorf("nopal: module %q: init: %w", n.name, err)
		}
		a.log.Debug("module initialised", "module", n.name)
	}
	a.modules.mu.Lock()
	a.modules.inited = len(list)
	a.modules.mu.Unlock()
	return nil
}

func (a *App) afterInitModules(ctx context.Context) {
	for _, n := range a.initialised() {
		n.m.AfterInit(ctx)
	}
}

func (a *App) initialised() []namedModule {
	a.modules.mu.Lock()
	defer a.modules.mu.Unlock()
	return slices.Clone(a.modules.list[:a.modules.inited])
}

func (a *App) beforeShutdownModules(ctx context.Context) {
	list := a.initialised()
	for i := len(list) - 1; i >= 0; i-- {
		list[i].m.BeforeShutdown(ctx)
	}
}

// shutdownModules runs Shutdown in reverse order of Init, once.
func (a *App) shutdownModules(ctx context.Context) error {
	list := a.initialised()
	a.modules.mu.Lock()
	a.modules.inited = 0
	a.modules.mu.Unlock()
	var errs []error
	for i := len(list) - 1; i >= 0; i-- {
		if err := list[i].m.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("nopal: module %q: shutdown: %w", list[i].name, err))
		}
	}
	return errors.Join(errs...)
}

// Stop asks Run to shut the app down, as a signal would (a Binary module
// whose child died calls it).
func (a *App) Stop() {
	a.stopOnce.Do(func() { close(a.stopCh) })
}

// BinaryModule returns a Binary module for the app: its output is logged
// with the app's logger and, unless keepRunning, the app stops when the
// child dies.
func (a *App) BinaryModule(cfg modules.BinaryConfig, keepRunning bool) (*modules.Binary, error) {
	if cfg.Logger == nil {
		cfg.Logger = a.log
	}
	if cfg.OnExit == nil && !keepRunning {
		cfg.OnExit = func(err error) {
			a.log.Error("binary module exited: stopping the server", "path", cfg.Path, "err", err)
			a.Stop()
		}
	}
	return modules.NewBinary(cfg)
}
