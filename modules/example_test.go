package modules_test

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/nopal-dev/nopal/modules"
)

// store is a module that says what it is doing.
type store struct {
	modules.Base
	name string
}

func (s *store) Init(context.Context) error {
	fmt.Println("init", s.name)
	return nil
}

func (s *store) AfterInit(context.Context) { fmt.Println("after init", s.name) }

func (s *store) Shutdown(context.Context) error {
	fmt.Println("shutdown", s.name)
	return nil
}

func ExampleLifecycle() {
	ctx := context.Background()
	l := modules.NewLifecycle(slog.New(slog.DiscardHandler))
	_ = l.Register(&store{name: "cache"}, "cache")
	_ = l.Register(&store{name: "matchmaker"}, "matchmaker")
	_ = l.RegisterBefore(&store{name: "database"}, "database") // starts first

	if err := l.Init(ctx); err != nil {
		fmt.Println(err)
		return
	}
	l.AfterInit(ctx)
	m, _ := l.Get("cache")
	fmt.Println("found", m.(*store).name)

	// On the way down: BeforeShutdown then Shutdown, in reverse.
	l.BeforeShutdown(ctx)
	if err := l.Shutdown(ctx); err != nil {
		fmt.Println(err)
	}
	// Output:
	// init database
	// init cache
	// init matchmaker
	// after init database
	// after init cache
	// after init matchmaker
	// found cache
	// shutdown matchmaker
	// shutdown cache
	// shutdown database
}
