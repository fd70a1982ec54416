package main

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The cluster scenarios (5–8) run Nopal as a cluster: a frontend of type
// "front" forwards requests over the bus to a backend of type "echo". A
// deployment is the set of cluster-server processes of one run.

// Deployments of the cluster scenarios.
const (
	// deployEmbedded is one process: the backend app and the frontend
	// apps share an embedded NATS server in-process.
	deployEmbedded = "embedded"
	// deployExternal is one process per app plus one for the NATS server,
	// connected over TCP.
	deployExternal = "external"
)

// deployments is every deployment, in the order they are measured.
var deployments = []string{deployEmbedded, deployExternal}

// deployment is the running processes of a cluster.
type deployment struct {
	kind   string
	procs  []*child // in start order; stopped in reverse order
	fronts []string // frontend addresses
}

// pids are the deployment's processes, NATS included.
func (d *deployment) pids() []int {
	out := make([]int, len(d.procs))
	for i, c := range d.procs {
		out[i] = c.pid()
	}
	return out
}

// processes names the deployment's processes.
func (d *deployment) processes() []string {
	out := make([]string, len(d.procs))
	for i, c := range d.procs {
		out[i] = c.name
	}
	return out
}

// describe is "1 process" or "4 processes: nats, echo, front, front".
func (d *deployment) describe() string {
	if len(d.procs) == 1 {
		return "1 process"
	}
	names := make([]string, len(d.procs))
	for i, c := range d.procs {
		names[i] = strings.TrimPrefix(c.name, "cluster "+d.kind+" ")
	}
	return fmt.Sprintf("%d processes: %s", len(d.procs), strings.Join(names, ", "))
}

// stop stops the processes in reverse start order (frontends first, the
// NATS server last).
func (d *deployment) stop() error {
	if d == nil {
		return nil
	}
	var errs []error
	for i := len(d.procs) - 1; i >= 0; i-- {
		errs = append(errs, d.procs[i].stop())
	}
	d.procs = nil
	return errors.Join(errs...)
}

// kill ends every process still running.
func (d *deployment) kill() {
	if d == nil {
		return
	}
	for _, c := range d.procs {
		if c.alive() {
			c.kill()
		}
	}
}

// profilePath inserts suffix before base's extension: /tmp/c.pprof and
// "external-nats" give /tmp/c-external-nats.pprof. An empty base gives "".
func profilePath(base, suffix string) string {
	if base == "" {
		return ""
	}
	ext := filepath.Ext(base)
	return strings.TrimSuffix(base, ext) + "-" + suffix + ext
}

// startDeployment starts a cluster of kind with one backend and fronts
// frontends, traffic recording on or off; cpuprofile, when set, is the base
// name of one CPU profile per process.
func (s suiteServers) startDeployment(kind string, fronts int, traffic bool, cpuprofile string) (_ *deployment, err error) {
	d := &deployment{kind: kind}
	defer func() {
		if err != nil {
			d.kill()
		}
	}()
	common := []string{"-heartbeat", s.o.Heartbeat.String(), "-traffic=" + strconv.FormatBool(traffic)}
	if s.o.Compress {
		common = append(common, "-compress")
	}
	// start runs one process; label names it ("nats", "echo", "front-a",
	// "echo+front" …) and its profile.
	start := func(label string, args ...string) (*child, error) {
		if p := profilePath(cpuprofile, label); p != "" {
			args = append(args, "-cpuprofile", p)
		}
		c, err := startChildReady("cluster "+kind+" "+label, s.exe, append([]string{"cluster-server"}, args...), s.log, 30*time.Second)
		if err != nil {
			return nil, err
		}
		d.procs = append(d.procs, c)
		return c, nil
	}
	switch kind {
	case deployEmbedded:
		roles := backType + strings.Repeat(","+frontType, fronts)
		c, err := start(strings.ReplaceAll(roles, ",", "+"), append([]string{"-mode", "embedded", "-role", roles}, common...)...)
		if err != nil {
			return nil, err
		}
		d.fronts = c.addrs
	case deployExternal:
		nats, err := start("nats", "-role", "nats")
		if err != nil {
			return nil, err
		}
		if nats.natsURL == "" {
			return nil, fmt.Errorf("%s printed no NATS line", nats.name)
		}
		ext := []string{"-mode", "external", "-nats", nats.natsURL}
		if _, err := start(backType, append(append(ext, "-role", backType), common...)...); err != nil {
			return nil, err
		}
		for i := range fronts {
			label := frontType
			if fronts > 1 {
				label += "-" + string(rune('a'+i))
			}
			c, err := start(label, append(append(ext, "-role", frontType), common...)...)
			if err != nil {
				return nil, err
			}
			d.fronts = append(d.fronts, c.addrs...)
		}
	default:
		return nil, fmt.Errorf("unknown deployment %q (embedded or external)", kind)
	}
	if len(d.fronts) != fronts {
		return nil, fmt.Errorf("cluster %s: %d frontend addresses, want %d", kind, len(d.fronts), fronts)
	}
	return d, nil
}

// waitServing waits until every frontend of d answers the cluster echo
// route (the backend is in the frontends' discovery).
func (d *deployment) waitServing(ex *exchange, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, addr := range d.fronts {
		c, err := dialRaw(addr, nil, 5*time.Second)
		if err != nil {
			return err
		}
		err = c.handshake(5 * time.Second)
		for err == nil {
			_ = c.c.SetDeadline(time.Now().Add(5 * time.Second))
			if err = c.roundTrip(ex); err == nil || time.Now().After(deadline) {
				break
			}
			err = nil // an error response: not discovered yet
			time.Sleep(20 * time.Millisecond)
		}
		_ = c.Close()
		if err != nil {
			return fmt.Errorf("cluster %s: frontend %s does not serve %s: %w", d.kind, addr, clusterEchoRoute, err)
		}
	}
	return nil
}

// LoadSet is a load scenario measured on the floor and on several Nopal
// servers in the same alternating windows.
type LoadSet struct {
	Floor   LoadResult  `json:"floor"`
	Servers []NamedLoad `json:"servers"`
}

// NamedLoad is one Nopal server of a LoadSet.
type NamedLoad struct {
	Name      string     `json:"name"`       // "embedded", "external", "traffic on", …
	Deploy    string     `json:"deployment"` // embedded or external
	Traffic   bool       `json:"traffic"`
	Processes []string   `json:"processes"` // the server processes whose CPU is summed
	Describe  string     `json:"describe"`
	Result    LoadResult `json:"result"`
}

// clusterSpec is one cluster of a clusterLoad.
type clusterSpec struct {
	name    string
	kind    string
	traffic bool
}

// clusterLoad starts the floor and one deployment per spec (one frontend
// each) and measures echo requests (clusterEchoRoute) on them side by side
// in alternating windows, conns connections each.
func (s suiteServers) clusterLoad(payload []byte, conns int, specs []clusterSpec, cpuprofile string) (*LoadSet, error) {
	floor, err := s.start(false, "")
	if err != nil {
		return nil, err
	}
	defer func() {
		if floor.alive() {
			floor.kill()
		}
	}()
	floorEx, err := newExchange(payload, false)
	if err != nil {
		return nil, err
	}
	ex, err := newRouteExchange(clusterEchoRoute, payload, true)
	if err != nil {
		return nil, err
	}
	targets := []loadTarget{{name: "echo-server", addr: floor.addr, ex: floorEx, pids: []int{floor.pid()}}}
	deps := make([]*deployment, len(specs))
	defer func() {
		for _, d := range deps {
			d.kill()
		}
	}()
	for i, sp := range specs {
		prof := profilePath(cpuprofile, strings.ReplaceAll(sp.name, " ", "-"))
		if deps[i], err = s.startDeployment(sp.kind, 1, sp.traffic, prof); err != nil {
			return nil, err
		}
		if err := deps[i].waitServing(ex, 15*time.Second); err != nil {
			return nil, err
		}
		targets = append(targets, loadTarget{name: "cluster " + sp.name, addr: deps[i].fronts[0], ex: ex, pids: deps[i].pids()})
	}
	res, err := s.measureLoad(targets, conns)
	if err != nil {
		return nil, err
	}
	set := &LoadSet{Floor: res[0]}
	for i, sp := range specs {
		set.Servers = append(set.Servers, NamedLoad{
			Name: sp.name, Deploy: sp.kind, Traffic: sp.traffic,
			Processes: deps[i].processes(), Describe: deps[i].describe(), Result: res[i+1],
		})
	}
	var errs []error
	for i := range deps {
		errs = append(errs, deps[i].stop())
		deps[i] = nil
	}
	errs = append(errs, floor.stop())
	return set, errors.Join(errs...)
}

// LatencyStats summarises latency samples.
type LatencyStats struct {
	Samples int     `json:"samples"`
	MeanUs  float64 `json:"mean_us"`
	P50Us   float64 `json:"p50_us"`
	P90Us   float64 `json:"p90_us"`
	P99Us   float64 `json:"p99_us"`
	MaxUs   float64 `json:"max_us"`
}

// latencyStats sorts v (nanoseconds) and summarises it.
func latencyStats(v []int64) LatencyStats {
	if len(v) == 0 {
		return LatencyStats{}
	}
	slices.Sort(v)
	var sum float64
	for _, x := range v {
		sum += float64(x)
	}
	us := func(ns int64) float64 { return float64(ns) / 1e3 }
	return LatencyStats{
		Samples: len(v), MeanUs: sum / float64(len(v)) / 1e3,
		P50Us: us(percentile(v, 0.5)), P90Us: us(percentile(v, 0.9)), P99Us: us(percentile(v, 0.99)), MaxUs: us(v[len(v)-1]),
	}
}

// dialNopal dials addr (from local, nil: any) and handshakes.
func dialNopal(addr string, local net.IP) (*rawConn, error) {
	c, err := dialRaw(addr, local, 5*time.Second)
	if err != nil {
		return nil, err
	}
	if err := c.handshake(10 * time.Second); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}
