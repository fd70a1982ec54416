package timers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nopal-dev/nopal/backend"
	"github.com/nopal-dev/nopal/codec"
	"github.com/nopal-dev/nopal/modules"
	"github.com/nopal-dev/nopal/reliable"
	"github.com/nopal-dev/nopal/stream"
)

// HostConfig is what a Host needs of the app that owns it. The funcs are
// called when needed, never at NewHost, so they may read state the app
// fills in later (its cluster runtime).
type HostConfig struct {
	// Logger of the timers (default slog.Default()).
	Logger *slog.Logger
	// ServerType and ServerID of this server.
	ServerType, ServerID string
	// Clustered: the app has a cluster configured (durable timers need one).
	Clustered bool
	// NoCluster is the error the durable-timer calls return without a
	// cluster, for the operation named what.
	NoCluster func(what string) error
	// Remotes is the server's remotes: the remote that runs durable ticks
	// is registered there on the first DurableTimer, and a timer's route
	// naming this server's type is called there when it has it.
	Remotes *backend.Registry
	// StartMu is the lock under which the app starts, and Started, called
	// with StartMu held, reports whether it has: a timer declared before
	// Start is queued under it, so that the module arming it sees it.
	StartMu sync.Locker
	Started func() bool
	// Jobs, Bus and Worker are the app's reliable-RPC client, bus and job
	// worker (nil when standalone or not started; Worker nil when the
	// server runs no jobs).
	Jobs   func() *reliable.Client
	Bus    func() *stream.Bus
	Worker func() *reliable.Worker
	// RPC calls a remote on a server of the route's type.
	RPC func(ctx context.Context, route string, in, out any) error
	// RegisterModule registers a module with the app (its AfterInit arms
	// the durable timers declared before Start).
	RegisterModule func(m modules.Module, name string) error
}

// Host is an app's share of the timers: its Manager (made on first use)
// and its durable timers (their remote, registered on the first
// DurableTimer; the timers declared before Start, armed by a module once
// the app has joined the cluster; the Durable, made on first use). The
// App's timer methods are Host's.
type Host struct {
	cfg HostConfig

	once sync.Once
	m    *Manager

	remote  Remote // runs this server's durable ticks
	regOnce sync.Once
	regErr  error

	mu      sync.Mutex
	durable *Durable
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

// NewHost returns a Host for the app cfg describes.
func NewHost(cfg HostConfig) *Host {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Host{cfg: cfg}
}

// Manager is the Host's timer Manager, made on first use.
func (h *Host) Manager() *Manager {
	h.once.Do(func() { h.m = NewManager(h.cfg.Logger) })
	return h.m
}

// Stop stops the local timers and waits, within ctx, for their calls under
// way (a failure is logged). Durable timers go on: they belong to the
// cluster.
func (h *Host) Stop(ctx context.Context) {
	if err := h.Manager().Stop(ctx); err != nil {
		h.cfg.Logger.Warn("stopping timers", "err", err)
	}
}

// NewTimer is Manager.NewTimer on the Host's Manager.
func (h *Host) NewTimer(interval time.Duration, fn Func) *Timer {
	return h.Manager().NewTimer(interval, fn)
}

// NewCountTimer is Manager.NewCountTimer on the Host's Manager.
func (h *Host) NewCountTimer(interval time.Duration, count int, fn Func) *Timer {
	return h.Manager().NewCountTimer(interval, count, fn)
}

// NewAfterTimer is Manager.NewAfterTimer on the Host's Manager.
func (h *Host) NewAfterTimer(d time.Duration, fn Func) *Timer {
	return h.Manager().NewAfterTimer(d, fn)
}

// NewCondTimer is Manager.NewCondTimer on the Host's Manager.
func (h *Host) NewCondTimer(cond Condition, fn Func) (*Timer, error) {
	return h.Manager().NewCondTimer(cond, fn)
}

// SetPrecision is Manager.SetPrecision on the Host's Manager.
func (h *Host) SetPrecision(d time.Duration) { h.Manager().SetPrecision(d) }

// DurableTimer declares the durable cluster timer name: every interval,
// once per tick for the whole cluster, route ("svtype.component.method", a
// remote) is called with a *Tick carrying arg. Ticks are reliable jobs run
// by the servers of this server's type (the route is called here when it
// names this type, by RPC otherwise); the timer lives on JetStream and
// outlives the server that declared it, as long as a server of the type is
// up or comes back.
//
// Declare it on every server of the type, before Start (it is armed when
// the app starts) or after Start on a server that has remotes: declaring
// an existing timer again with the same route, argument and interval
// changes nothing, so servers that all declare it at start do not double
// it; a different definition replaces it. Stopping the Host does not stop
// a durable timer: StopDurable does, for the whole cluster.
func (h *Host) DurableTimer(ctx context.Context, name string, interval time.Duration, route string, arg any) error {
	if !h.cfg.Clustered {
		return h.cfg.NoCluster("DurableTimer")
	}
	if err := CheckDurable(name, interval, route); err != nil {
		return err
	}
	h.regOnce.Do(func() {
		h.regErr = h.cfg.Remotes.Register(&h.remote, backend.WithName(Component))
	})
	if err := h.regErr; err != nil {
		return fmt.Errorf("nopal: durable timers: %w", err)
	}
	h.cfg.StartMu.Lock()
	started := h.cfg.Started()
	if !started {
		h.mu.Lock()
		h.pending = append(h.pending, durableDecl{name, interval, route, arg})
		h.mu.Unlock()
		h.modOnce.Do(func() {
			h.modErr = h.cfg.RegisterModule(durableModule{h: h}, "nopal.durable-timers")
		})
	}
	h.cfg.StartMu.Unlock()
	if !started {
		return h.modErr
	}
	if h.cfg.Worker() == nil {
		return errors.New("nopal: DurableTimer after Start needs a server that runs jobs (one with remotes, jobs not disabled): declare it before Start")
	}
	d, err := h.Durable(ctx)
	if err != nil {
		return err
	}
	_, err = d.Declare(ctx, name, interval, route, arg)
	return err
}

// StopDurable stops the durable timer name for the whole cluster
// (ErrNotFound if there is none).
func (h *Host) StopDurable(ctx context.Context, name string) error {
	d, err := h.Durable(ctx)
	if err != nil {
		return err
	}
	return d.Stop(ctx, name)
}

// DurableInfo returns the durable timer's definition and its last tick
// (ErrNotFound if there is none).
func (h *Host) DurableInfo(ctx context.Context, name string) (DurableInfo, error) {
	d, err := h.Durable(ctx)
	if err != nil {
		return DurableInfo{}, err
	}
	return d.Get(ctx, name)
}

// Durable is the Host's Durable, made on first use once the app has joined
// the cluster, and attached to the remote that runs ticks.
func (h *Host) Durable(ctx context.Context) (*Durable, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.durable != nil {
		return h.durable, nil
	}
	jobs, bus := h.cfg.Jobs(), h.cfg.Bus()
	if jobs == nil || bus == nil {
		return nil, h.cfg.NoCluster("durable timers")
	}
	d, err := NewDurable(ctx, bus, DurableConfig{
		ServerType: h.cfg.ServerType, ServerID: h.cfg.ServerID,
		Jobs: jobs, Call: h.callRoute, Logger: h.cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	h.durable = d
	h.remote.Attach(d)
	return d, nil
}

// callRoute calls a durable timer's route: this server's remote when the
// route names its type and it has it, an RPC otherwise.
func (h *Host) callRoute(ctx context.Context, route string, t *Tick) error {
	rt, err := codec.ParseFullRoute(route)
	if err != nil {
		return err
	}
	if rt.ServerType == h.cfg.ServerType && h.cfg.Remotes.HasRoute(rt) {
		data, err := (codec.Auto{}).Marshal(t)
		if err != nil {
			return err
		}
		_, _, err = h.cfg.Remotes.HandleRoute(ctx, rt, data)
		return err
	}
	return h.cfg.RPC(ctx, route, t, nil)
}

// durableModule arms the durable timers declared before Start, once the
// app has joined the cluster (and before its job worker starts).
type durableModule struct {
	modules.Base
	h *Host
}

func (m durableModule) AfterInit(ctx context.Context) {
	h := m.h
	log := h.cfg.Logger
	d, err := h.Durable(ctx)
	if err != nil {
		log.Error("durable timers: not armed", "err", err)
		return
	}
	h.mu.Lock()
	list := h.pending
	h.pending = nil
	h.mu.Unlock()
	for _, p := range list {
		info, err := d.Declare(ctx, p.name, p.interval, p.route, p.arg)
		if err != nil {
			log.Error("durable timers: arming", "timer", p.name, "err", err)
			continue
		}
		log.Info("durable timer armed", "timer", p.name, "route", p.route, "interval", p.interval, "gen", info.Gen)
	}
}
