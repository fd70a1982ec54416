package nopal

import (
	"context"
	"sync"

	"github.com/nopal-dev/nopal/modules"
)

// ErrModuleNotFound is returned by GetModule (it is modules.ErrNotFound).
var ErrModuleNotFound = modules.ErrNotFound

// moduleList is the App's modules.Lifecycle, made on first use with the
// app's logger (App's zero value for it is usable).
type moduleList struct {
	once sync.Once
	l    *modules.Lifecycle
}

func (a *App) mods() *modules.Lifecycle {
	a.modules.once.Do(func() { a.modules.l = modules.NewLifecycle(a.log) })
	return a.modules.l
}

// RegisterModule adds a module, started after those registered before it.
func (a *App) RegisterModule(m modules.Module, name string) error { return a.mods().Register(m, name) }

// RegisterModuleAfter adds a module at the end of the start order.
func (a *App) RegisterModuleAfter(m modules.Module, name string) error {
	return a.mods().RegisterAfter(m, name)
}

// RegisterModuleBefore adds a module at the start of the start order.
func (a *App) RegisterModuleBefore(m modules.Module, name string) error {
	return a.mods().RegisterBefore(m, name)
}

// GetModule returns the module registered under name.
func (a *App) GetModule(name string) (modules.Module, error) { return a.mods().Get(name) }

func (a *App) initModules(ctx context.Context) error     { return a.mods().Init(ctx) }
func (a *App) afterInitModules(ctx context.Context)      { a.mods().AfterInit(ctx) }
func (a *App) beforeShutdownModules(ctx context.Context) { a.mods().BeforeShutdown(ctx) }
func (a *App) shutdownModules(ctx context.Context) error { return a.mods().Shutdown(ctx) }

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
