package nopal

import (
	"context"
	"sync"
	"time"

	"github.com/nopal-dev/nopal/timers"
)

// appTimers is the App's timers.Host (local and durable timers), made on first use.
type appTimers struct {
	once sync.Once
	h    *timers.Host
}

func (a *App) timerHost() *timers.Host {
	a.timers.once.Do(func() {
		a.timers.h = timers.NewHost(timers.HostConfig{
			Logger: a.log, ServerType: a.cfg.ServerType, ServerID: a.cfg.ServerID,
			Clustered: a.cfg.Cluster != nil, NoCluster: errNoCluster, Remotes: a.remotes,
			StartMu: &a.mu, Started: func() bool { return a.started },
			Jobs: a.Jobs, Bus: a.Bus, Worker: a.JobWorker, RPC: a.RPC, RegisterModule: a.RegisterModule,
		})
	})
	return a.timers.h
}

// stopTimers stops the local timers, within ctx (first thing in Shutdown).
func (a *App) stopTimers(ctx context.Context) { a.timerHost().Stop(ctx) }

// NewTimer calls fn every interval until stopped or the app shuts down.
func (a *App) NewTimer(interval time.Duration, fn timers.Func) *timers.Timer {
	return a.timerHost().NewTimer(interval, fn)
}

// NewCountTimer calls fn every interval, count times (or timers.LoopForever).
func (a *App) NewCountTimer(interval time.Duration, count int, fn timers.Func) *timers.Timer {
	return a.timerHost().NewCountTimer(interval, count, fn)
}

// NewAfterTimer calls fn once, after d, unless stopped or shut down first.
func (a *App) NewAfterTimer(d time.Duration, fn timers.Func) *timers.Timer {
	return a.timerHost().NewAfterTimer(d, fn)
}

// NewCondTimer calls fn whenever cond holds, checked every SetTimerPrecision.
func (a *App) NewCondTimer(cond timers.Condition, fn timers.Func) (*timers.Timer, error) {
	return a.timerHost().NewCondTimer(cond, fn)
}

// SetTimerPrecision sets how often new condition timers check (default 1 s).
func (a *App) SetTimerPrecision(d time.Duration) { a.timerHost().SetPrecision(d) }

// DurableTimer declares the durable cluster timer name: route is called
// once per interval for the whole cluster (see timers.Host.DurableTimer).
func (a *App) DurableTimer(ctx context.Context, name string, interval time.Duration, route string, arg any) error {
	return a.timerHost().DurableTimer(ctx, name, interval, route, arg)
}

// StopDurableTimer stops the durable timer name for the whole cluster.
func (a *App) StopDurableTimer(ctx context.Context, name string) error {
	return a.timerHost().StopDurable(ctx, name)
}

// DurableTimerInfo returns the durable timer's definition and last tick.
func (a *App) DurableTimerInfo(ctx context.Context, name string) (timers.DurableInfo, error) {
	return a.timerHost().DurableInfo(ctx, name)
}
