package cluster

import (
	"context"
	"fmt"

	"github.com/nopal-dev/nopal/reliable"
)

// startJobs opens the reliable-RPC client and, on a server with remotes,
// provisions the worker that runs its type's jobs. The worker starts
// fetching only in StartWorker, once the server can run what it fetches.
func (c *Runtime) startJobs(ctx context.Context) error {
	var err error
	if c.jobs, err = reliable.NewClient(ctx, c.bus, reliable.WithLogger(c.log)); err != nil {
		return err
	}
	jc := c.cfg.Jobs
	if jc == nil {
		jc = &JobsConfig{}
	}
	if jc.Disabled || len(c.cfg.Remotes.Routes()) == 0 {
		return nil
	}
	c.worker, err = reliable.NewWorker(ctx, c.bus, reliable.InvokerFunc(func(ctx context.Context, route string, arg []byte) ([]byte, error) {
		if c.life.Err() != nil {
			// Stopped: the worker hands the job back without counting
			// the attempt.
			return nil, fmt.Errorf("cluster: server %s has stopped: %w", c.cfg.ServerID, reliable.ErrUnavailable)
		}
		out, _, err := c.cfg.Remotes.Handle(ctx, route, arg)
		return out, err
	}), reliable.WorkerConfig{
		ServerType: c.cfg.ServerType, ServerID: c.cfg.ServerID,
		Concurrency: jc.Concurrency, AckWait: jc.AckWait, Logger: c.log,
	})
	return err
}

// StartWorker starts fetching jobs. Call it last in a server's start, so
// that no job runs before the remotes can do their work (the bus, the
// groups and the modules are ready).
func (c *Runtime) StartWorker(ctx context.Context) error {
	if c.worker == nil {
		return nil
	}
	return c.worker.Start(ctx)
}
