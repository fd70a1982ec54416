package nopal

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nopal-dev/nopal/backend"
	"github.com/nopal-dev/nopal/codec"
	"github.com/nopal-dev/nopal/modules"
	"github.com/nopal-dev/nopal/timers"
)

// appTimers is the App's share of package timers: its timer Manager (made
// on first use; stopped at the start of Shutdown) and its durable timers.
// Its zero value is usable.
type appTimers struct {
	once sync.Once
	m    *timers.Manager

	remote  timers.Remote // runs this server's durable ticks
	regOnce sync.Once
	regErr  error

	mu      sync.Mutex
	durable *timers.Durable
	pending []durableDecl // declared before Start, armed once started
	modErr  error
	modOnce sync.Once
}

type durableDecl struct {
	name     string
	interval time.Duration
	route    string
	arg      any
}

func (a *App) timerManager() *timers.Manager {
	a.timers.once.Do(func() { a.timers.m = timers.NewManager(a.log) })
	return a.timers.m
}

// stopTimers stops the app's timers and waits, within ctx, for their calls
// under way (Shutdown calls it first). Durable timers go on: they belong to
// the cluster.
func (a *App) stopTimers(ctx context.Context) {
	if err := a.timerManager().Stop(ctx); err != nil {
		a.log.Warn("stopping timers", "err", err)
	}
}

// NewTimer calls fn every interval, from one interval from now, until the
// timer is stopped or the app shuts down (Pitaya's pitaya.NewTimer). A
// panic in fn is recovered and logged. It panics when fn is nil or
// interval is not positive.
func (a *App) NewTimer(interval time.Duration, fn timers.Func) *timers.Timer {
	return a.timerManager().NewTimer(interval, fn)
}

// NewCountTimer calls fn every interval, count times (timers.LoopForever:
// without end), until stopped or the app shuts down.
func (a *App) NewCountTimer(interval time.Duration, count int, fn timers.Func) *timers.Timer {
	return a.timerManager().NewCountTimer(interval, count, fn)
}

// NewAfterTimer calls fn once, after d, unless stopped or the app shuts
// down first.
func (a *App) NewAfterTimer(d time.Duration, fn timers.Func) *timers.Timer {
	return a.timerManager().NewAfterTimer(d, fn)
}

// NewCondTimer checks cond every timer precision (SetTimerPrecision,
// default 1 s) and calls fn whenever it holds, until stopped or the app
// shuts down. A nil cond returns timers.ErrNilCondition.
func (a *App) NewCondTimer(cond timers.Condition, fn timers.Func) (*timers.Timer, error) {
	return a.timerManager().NewCondTimer(cond, fn)
}

// SetTimerPrecision sets how often condition timers created from now on
// check their condition (default 1 s, at least 1 ms).
func (a *App) SetTimerPrecision(d time.Duration) { a.timerManager().SetPrecision(d) }

// DurableTimer declares the durable cluster timer name: every interval,
// once per tick for the whole cluster, route ("svtype.component.method", a
// remote) is called with a *timers.Tick carrying arg. Ticks are reliable
// jobs run by the servers of this server's type (the route is called here
// when it names this type, by RPC otherwise); the timer lives on JetStream
// and outlives the server that declared it, as long as a server of the
// type is up or comes back. See package timers for the guarantees.
//
// Declare it on every server of the type, before Start (it is armed when
// the app starts) or after Start on a server that has remotes: declaring
// an existing timer again with the same route, argument and interval
// changes nothing, so servers that all declare it at start do not double
// it; a different definition replaces it. The app's Shutdown does not stop
// a durable timer: StopDurableTimer does, for the whole cluster.
func (a *App) DurableTimer(ctx context.Context, name string, interval time.Duration, route string, arg any) error {
	if a.cfg.Cluster == nil {
		return errNoCluster("DurableTimer")
	}
	if err := timers.CheckDurable(name, interval, route); err != nil {
		return err
	}
	a.timers.regOnce.Do(func() {
		a.timers.regErr = a.remotes.Register(&a.timers.remote, backend.WithName(timers.Component))
	})
	if err := a.timers.regErr; err != nil {
		return fmt.Errorf("nopal: durable timers: %w", err)
	}
	a.mu.Lock()
	started := a.started
	if !started {
		a.timers.mu.Lock()
		a.timers.pending = append(a.timers.pending, durableDecl{name, interval, route, arg})
		a.timers.mu.Unlock()
		a.timers.modOnce.Do(func() {
			a.timers.modErr = a.RegisterModule(durableModule{a: a}, "nopal.durable-timers")
		})
	}
	a.mu.Unlock()
	if !started {
		return a.timers.modErr
	}
	if a.JobWorker() == nil {
		return errors.New("nopal: DurableTimer after Start needs a server that runs jobs (one with remotes, jobs not disabled): declare it before Start")
	}
	d, err := a.durableTimers(ctx)
	if err != nil {
		return err
	}
	_, err = d.Declare(ctx, name, interval, route, arg)
	return err
}

// StopDurableTimer stops the durable timer name for the whole cluster
// (timers.ErrNotFound if there is none).
func (a *App) StopDurableTimer(ctx context.Context, name string) error {
	d, err := a.durableTimers(ctx)
	if err != nil {
		return err
	}
	return d.Stop(ctx, name)
}

// DurableTimerInfo returns the durable timer's definition and its last
// tick (timers.ErrNotFound if there is none).
func (a *App) DurableTimerInfo(ctx context.Context, name string) (timers.DurableInfo, error) {
	d, err := a.durableTimers(ctx)
	if err != nil {
		return timers.DurableInfo{}, err
	}
	return d.Get(ctx, name)
}

// durableTimers is the app's timers.Durable, made on first use once the
// app has joined the cluster, and attached to the remote that runs ticks.
func (a *App) durableTimers(ctx context.Context) (*timers.Durable, error) {
	a.timers.mu.Lock()
	defer a.timers.mu.Unlock()
	if a.timers.durable != nil {
		return a.timers.durable, nil
	}
	jobs, bus := a.Jobs(), a.Bus()
	if jobs == nil || bus == nil {
		return nil, errNoCluster("durable timers")
	}
	d, err := timers.NewDurable(ctx, bus, timers.DurableConfig{
		ServerType: a.cfg.ServerType, ServerID: a.cfg.ServerID,
		Jobs: jobs, Call: a.callTimerRoute, Logger: a.log,
	})
	if err != nil {
		return nil, err
	}
	a.timers.durable = d
	a.timers.remote.Attach(d)
	return d, nil
}

// callTimerRoute calls a durable timer's route: this server's remote when
// the route names its type and it has it, an RPC otherwise.
func (a *App) callTimerRoute(ctx context.Context, route string, t *timers.Tick) error {
	rt, err := codec.ParseFullRoute(route)
	if err != nil {
		return err
	}
	if rt.ServerType == a.cfg.ServerType && a.remotes.HasRoute(rt) {
		data, err := (codec.Auto{}).Marshal(t)
		if err != nil {
			return err
		}
		_, _, err = a.remotes.HandleRoute(ctx, rt, data)
		return err
	}
	return a.RPC(ctx, route, t, nil)
}

// durableModule arms the durable timers declared before Start, once the
// app has joined the cluster (and before its job worker starts).
type durableModule struct {
	modules.Base
	a *App
}

func (m durableModule) AfterInit(ctx context.Context) {
	a := m.a
	d, err := a.durableTimers(ctx)
	if err != nil {
		a.log.Error("durable timers: not armed", "err", err)
		return
	}
	a.timers.mu.Lock()
	list := a.timers.pending
	a.timers.pending = nil
	a.timers.mu.Unlock()
	for _, p := range list {
		info, err := d.Declare(ctx, p.name, p.interval, p.route, p.arg)
		if err != nil {
			a.log.Error("durable timers: arming", "timer", p.name, "err", err)
			continue
		}
		a.log.Info("durable timer armed", "timer", p.name, "route", p.route, "interval", p.interval, "gen", info.Gen)
	}
}
