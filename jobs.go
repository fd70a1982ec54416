package nopal

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nopal-dev/nopal/reliable"
)

// JobsConfig configures reliable RPC on a server (ClusterConfig.Jobs).
type JobsConfig struct {
	// Disabled turns off the worker of a server that has remotes: it will
	// not run jobs (it can still enqueue them).
	Disabled bool
	// Concurrency is how many jobs a worker runs at once (default 16).
	Concurrency int
	// AckWait is how long a job may run without a sign of life before
	// another worker takes it over (default 30 s; the worker signals
	// progress every AckWait/3 while a job runs).
	AckWait time.Duration
}

// startJobs opens the reliable-RPC client and, on a server with remotes,
// provisions the worker that runs its type's jobs. The worker starts
// fetching only in startWorker, once the app can run what it fetches.
func (c *cluster) startJobs(ctx context.Context) error {
	a := c.app
	var err error
	if c.jobs, err = reliable.NewClient(ctx, c.bus, reliable.WithLogger(a.log)); err != nil {
		return err
	}
	jc := a.cfg.Cluster.Jobs
	if jc == nil {
		jc = &JobsConfig{}
	}
	if jc.Disabled || len(a.remotes.Routes()) == 0 {
		return nil
	}
	c.worker, err = reliable.NewWorker(ctx, c.bus, reliable.InvokerFunc(func(ctx context.Context, route string, arg []byte) ([]byte, error) {
		if a.cluster() == nil {
			// Not serving (yet, or any more): the worker hands the job
			// back without counting the attempt.
			return nil, fmt.Errorf("nopal: server %s is not serving: %w", a.cfg.ServerID, reliable.ErrUnavailable)
		}
		out, _, err := a.remotes.Handle(ctx, route, arg)
		return out, err
	}), reliable.WorkerConfig{
		ServerType: a.cfg.ServerType, ServerID: a.cfg.ServerID,
		Concurrency: jc.Concurrency, AckWait: jc.AckWait, Logger: a.log,
	})
	return err
}

// startWorker starts fetching jobs: the last step of the app's start, so
// that no job runs before the remotes can do their work (the bus, the
// groups and the modules are ready).
func (c *cluster) startWorker(ctx context.Context) error {
	if c.worker == nil {
		return nil
	}
	return c.worker.Start(ctx)
}

// ReliableRPC enqueues a call to a remote (route "svtype.component.method")
// that survives crashes: it runs at least once on a server of that type,
// retried with back-off, and lands in the dead letters after its last
// attempt. It returns the job id; follow it with Jobs().Get or Wait. Give
// reliable.WithJID(key) to make the call idempotent: the same key enqueued
// twice, even days apart, is one job. Remotes must be idempotent.
func (a *App) ReliableRPC(ctx context.Context, route string, arg any, opts ...reliable.Option) (string, error) {
	c := a.cluster()
	if c == nil || c.jobs == nil {
		return "", errors.New("nopal: ReliableRPC needs a cluster (Config.Cluster) and a started app")
	}
	return c.jobs.Enqueue(ctx, route, arg, opts...)
}

// Jobs is the reliable-RPC client: Get, Wait, List, Retry, Cancel (nil when
// standalone or not started).
func (a *App) Jobs() *reliable.Client {
	if c := a.cluster(); c != nil {
		return c.jobs
	}
	return nil
}

// JobWorker is this server's job worker (nil when it runs no jobs).
func (a *App) JobWorker() *reliable.Worker {
	if c := a.cluster(); c != nil {
		return c.worker
	}
	return nil
}
