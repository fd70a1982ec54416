package nopal

import (
	"context"
	"errors"
	"fmt"

	"github.com/nopal-dev/nopal/cluster"
	"github.com/nopal-dev/nopal/discovery"
	"github.com/nopal-dev/nopal/reliable"
	"github.com/nopal-dev/nopal/stream"
)

// ClusterConfig configures a server in a cluster: the bus, timeouts,
// discovery metadata, the traffic log and the job worker (see
// cluster.Options for each field).
type ClusterConfig = cluster.Options

// JobsConfig configures reliable RPC on a server (ClusterConfig.Jobs).
type JobsConfig = cluster.JobsConfig

// Router picks the server of a type that serves a forwarded client request.
// servers is never empty. Register one per type with AddRoute; without one,
// NATS spreads requests at random over the type's servers.
type Router = cluster.Router

// RandomRouter picks a server at random; it is what NATS does without a
// router, given here as an example of a Router.
func RandomRouter(ctx context.Context, route string, payload []byte, servers []discovery.Server) (discovery.Server, error) {
	return cluster.RandomRouter(ctx, route, payload, servers)
}

// Version is reported in discovery.
const Version = cluster.Version

// startCluster joins the cluster with the app's parts.
func (a *App) startCluster(ctx context.Context) (*cluster.Runtime, error) {
	var obs cluster.Observer
	if a.obs != nil {
		obs = a.obs
	}
	return cluster.Start(ctx, cluster.Config{
		Options: *a.cfg.Cluster, ServerID: a.cfg.ServerID, ServerType: a.cfg.ServerType, Frontend: a.IsFrontend(),
		Resume: a.cfg.Resume, Serializer: a.cfg.Serializer,
		Handlers: a.registry, Remotes: a.remotes, Pool: a.pool,
		Router: a.router, Tracer: a.tracer, Observer: obs, Logger: a.log,
	})
}

// AddRoute sets the router for client requests to servers of svType. It
// may be called at any time.
func (a *App) AddRoute(svType string, r Router) {
	a.mu.Lock()
	defer a.mu.Unlock()
	next := map[string]Router{svType: r}
	if old := a.routers.Load(); old != nil {
		for k, v := range *old {
			if k != svType {
				next[k] = v
			}
		}
	}
	a.routers.Store(&next)
}

func (a *App) router(svType string) Router {
	if m := a.routers.Load(); m != nil {
		return (*m)[svType]
	}
	return nil
}

// errNoCluster is what the cluster calls of a standalone or stopped app
// answer.
func errNoCluster(what string) error {
	return fmt.Errorf("nopal: %s needs a cluster (Config.Cluster) and a started app", what)
}

// RPC calls a remote on any server of the route's type (route
// "svtype.component.method") and decodes its result into out. Arguments
// and results are protobuf for proto.Message types, JSON otherwise. Errors
// returned by the remote keep their code, message and metadata.
func (a *App) RPC(ctx context.Context, route string, in, out any) error {
	c := a.cluster()
	if c == nil {
		return errNoCluster("RPC")
	}
	return c.RPC(ctx, "", route, in, out)
}

// RPCTo calls a remote on the server serverID.
func (a *App) RPCTo(ctx context.Context, serverID, route string, in, out any) error {
	if serverID == "" {
		return errors.New("nopal: RPCTo needs a server id")
	}
	c := a.cluster()
	if c == nil {
		return errNoCluster("RPC")
	}
	return c.RPC(ctx, serverID, route, in, out)
}

// SendPushToUsers pushes v to users wherever they are connected: one bus
// message per frontend (of frontendType, or every frontend when it is "")
// carrying the uid list. It returns the uids no frontend held. A session
// suspended while its client reconnects counts as held. When a user's
// frontend died, the push is kept in the bus for the user's resume on
// another frontend (within the resume grace), and the uid is still
// returned. Standalone, it pushes to this server's users.
func (a *App) SendPushToUsers(ctx context.Context, route string, v any, uids []string, frontendType string) ([]string, error) {
	if c := a.cluster(); c != nil {
		return c.SendPush(ctx, route, v, uids, frontendType)
	}
	return a.pushLocal(ctx, route, v, uids)
}

// SendKickToUsers kicks users wherever they are connected and returns the
// uids no frontend held.
func (a *App) SendKickToUsers(ctx context.Context, uids []string, frontendType string) ([]string, error) {
	if c := a.cluster(); c != nil {
		return c.SendKick(ctx, uids, frontendType)
	}
	var failed []string
	for _, uid := range uids {
		if s := a.pool.ByUID(uid); s == nil || s.Kick(ctx) != nil {
			failed = append(failed, uid)
		}
	}
	return failed, nil
}

// ReliableRPC enqueues a call to a remote (route "svtype.component.method")
// that survives crashes: it runs at least once on a server of that type,
// retried with back-off, and lands in the dead letters after its last
// attempt. It returns the job id; follow it with Jobs().Get or Wait. Give
// reliable.WithJID(key) to make the call idempotent: the same key enqueued
// twice, even days apart, is one job. Remotes must be idempotent.
func (a *App) ReliableRPC(ctx context.Context, route string, arg any, opts ...reliable.Option) (string, error) {
	c := a.cluster()
	if c == nil {
		return "", errNoCluster("ReliableRPC")
	}
	return c.Jobs().Enqueue(ctx, route, arg, opts...)
}

// Jobs is the reliable-RPC client: Get, Wait, List, Retry, Cancel (nil when
// standalone or not started).
func (a *App) Jobs() *reliable.Client {
	if c := a.cluster(); c != nil {
		return c.Jobs()
	}
	return nil
}

// Servers lists the servers of the cluster (nil when standalone).
func (a *App) Servers() []discovery.Server {
	if c := a.cluster(); c != nil {
		return c.Discovery().Servers()
	}
	return nil
}

// Discovery is the cluster's discovery (nil when standalone or not started).
func (a *App) Discovery() *discovery.Discovery {
	if c := a.cluster(); c != nil {
		return c.Discovery()
	}
	return nil
}

// Bus is the connection to the bus (nil when standalone or not started).
func (a *App) Bus() *stream.Bus {
	if c := a.cluster(); c != nil {
		return c.Bus()
	}
	return nil
}

// JobWorker is this server's job worker, for its Stats (nil when it runs no
// jobs).
func (a *App) JobWorker() *reliable.Worker {
	if c := a.cluster(); c != nil {
		return c.Worker()
	}
	return nil
}
