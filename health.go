package nopal

import (
	"context"
	"errors"
	"strings"
)

// Ready reports whether the server is ready for traffic: nil, or an error
// listing what is not ready, "; "-separated. Ready means started (in a
// cluster: joined, which provisioned the streams and buckets), not
// draining (Shutdown has not begun), and, in a cluster, connected to the
// bus and registered in discovery; a frontend must also be listening. With metrics served
// (MetricsConfig.Addr), /readyz answers it (503 and the list when not
// ready) and /healthz says the process is alive: Kubernetes' readiness
// and liveness probes.
func (a *App) Ready() error {
	a.mu.Lock()
	started, stopped, fe := a.started, a.stopped, a.fe
	a.mu.Unlock()
	switch {
	case stopped:
		return errors.New("draining: shutting down")
	case !started:
		return errors.New("not started")
	}
	var not []string
	if a.cfg.Cluster != nil {
		if cl := a.cluster(); cl == nil {
			not = append(not, "starting: streams not provisioned yet")
		} else {
			if !cl.Bus().Connected() {
				not = append(not, "bus not connected")
			}
			if _, ok := cl.Discovery().ServerByID(a.cfg.ServerID); !ok {
				not = append(not, "not registered in discovery")
			}
		}
	}
	if a.IsFrontend() && fe == nil {
		not = append(not, "starting: frontend not listening yet")
	}
	if len(not) > 0 {
		return errors.New(strings.Join(not, "; "))
	}
	return nil
}

// initOps sets up, from New, what must hook in before Start: the
// presence of a standalone server (session pool hooks) and the app's
// readiness check on its metrics endpoint.
func (a *App) initOps() {
	a.initPresence()
	if a.obs != nil {
		a.obs.set.SetReadiness(func(context.Context) error { return a.Ready() })
	}
}
