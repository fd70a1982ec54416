package modules

import "context"

// Module is a piece of the app with a lifecycle.
type Module interface {
	// Init prepares the module; an error stops the app's start-up.
	Init(ctx context.Context) error
	// AfterInit runs once every module is initialised.
	AfterInit(ctx context.Context)
	// BeforeShutdown runs, in reverse order, before any module shuts down.
	BeforeShutdown(ctx context.Context)
	// Shutdown stops the module, in reverse order of Init.
	Shutdown(ctx context.Context) error
}

// Base implements Module with methods that do nothing: embed it and
// override what you need.
type Base struct{}

// Init does nothing.
func (Base) Init(context.Context) error { return nil }

// AfterInit does nothing.
func (Base) AfterInit(context.Context) {}

// BeforeShutdown does nothing.
func (Base) BeforeShutdown(context.Context) {}

// Shutdown does nothing.
func (Base) Shutdown(context.Context) error { return nil }
