package timers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nopal-dev/nopal/codec"
	"github.com/nopal-dev/nopal/reliable"
	"github.com/nopal-dev/nopal/stream"
)

// Names of the durable timers' objects: the KV bucket (before the bus's
// prefix) and the remote component whose Tick runs a tick
// ("<svtype>.nopaltimer.tick").
const (
	Bucket    = "timers"
	Component = "nopaltimer"
)

// MinInterval is the shortest interval of a durable timer.
const MinInterval = 100 * time.Millisecond

// Errors of durable timers.
var (
	// ErrNotFound: no durable timer has that name.
	ErrNotFound = errors.New("timers: durable timer not found")
	// ErrInvalid: a bad name, interval or route.
	ErrInvalid = errors.New("timers: invalid durable timer")
)

// Tick is what a durable timer's route receives, once per tick.
type Tick struct {
	// Timer is the timer's name.
	Timer string `json:"timer"`
	// Gen is the generation of the timer's definition (it goes up when a
	// declaration changes the route, argument or interval).
	Gen uint64 `json:"gen"`
	// N numbers the ticks of a generation from 1; ticks skipped while no
	// server could run them leave gaps.
	N uint64 `json:"n"`
	// At is when the tick was due.
	At time.Time `json:"at"`
	// Arg is the argument given at declaration, JSON-encoded (or
	// protobuf-encoded for a proto.Message).
	Arg json.RawMessage `json:"arg,omitempty"`
}

// Key names the tick for the whole cluster (it is the jid of its job):
// a route that must not act twice for one tick records it.
func (t *Tick) Key() string { return jid(t.Timer, t.Gen, t.N) }

// Decode decodes the declaration's argument into v.
func (t *Tick) Decode(v any) error { return (codec.Auto{}).Unmarshal(t.Arg, v) }

// DurableInfo is a durable timer's definition and progress, as stored in
// the bucket.
type DurableInfo struct {
	Name  string          `json:"name"`
	Route string          `json:"route"`
	Arg   json.RawMessage `json:"arg,omitempty"`
	// Interval between ticks.
	Interval time.Duration `json:"interval"`
	// Type is the server type whose servers run the ticks (the one that
	// declared the timer).
	Type string `json:"type"`
	// Gen is the definition's generation; Epoch the start of its ticks
	// (tick n is due at Epoch + n × Interval).
	Gen     uint64    `json:"gen"`
	Epoch   time.Time `json:"epoch"`
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
	// LastTick, LastRun and LastServer describe the last tick whose route
	// succeeded (best effort: written after the call).
	LastTick   uint64    `json:"last_tick,omitempty"`
	LastRun    time.Time `json:"last_run,omitzero"`
	LastServer string    `json:"last_server,omitempty"`
}

// Due is when tick n is due.
func (d *DurableInfo) Due(n uint64) time.Time {
	return d.Epoch.Add(time.Duration(n) * d.Interval)
}

// nextAfter is the first tick due after now.
func (d *DurableInfo) nextAfter(now time.Time) uint64 {
	if now.Before(d.Epoch) {
		return 1
	}
	return uint64(now.Sub(d.Epoch)/d.Interval) + 1
}

func (d *DurableInfo) sameDefinition(o *DurableInfo) bool {
	return d.Route == o.Route && d.Interval == o.Interval && d.Type == o.Type && bytes.Equal(d.Arg, o.Arg)
}

// CallFunc calls a timer's route with a tick: the server's own remote when
// the route names its type, an RPC otherwise.
type CallFunc func(ctx context.Context, route string, tick *Tick) error

// DurableConfig configures Durable.
type DurableConfig struct {
	// ServerType of this server: the timers it declares are run by the
	// servers of this type (required).
	ServerType string
	// ServerID of this server, recorded as a tick's LastServer.
	ServerID string
	// Jobs enqueues the ticks (required).
	Jobs *reliable.Client
	// Call calls a timer's route (required).
	Call CallFunc
	// Logger (default slog.Default()).
	Logger *slog.Logger
}

// Durable declares, stops and runs durable timers. Every server of a type
// whose servers run durable timers has one, behind its Remote.
type Durable struct {
	cfg DurableConfig
	bus *stream.Bus
	kv  jetstream.KeyValue
	log *slog.Logger
}

// NewDurable provisions, idempotently, the KV bucket "timers" (file
// storage, one revision per key) and returns a Durable on it.
func NewDurable(ctx context.Context, bus *stream.Bus, cfg DurableConfig) (*Durable, error) {
	switch {
	case bus == nil || cfg.Jobs == nil || cfg.Call == nil:
		return nil, errors.New("timers: NewDurable needs a bus, a jobs client and a call function")
	case !validName(cfg.ServerType):
		return nil, fmt.Errorf("%w: server type %q", ErrInvalid, cfg.ServerType)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	kv, err := bus.KV(ctx, jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "nopal: durable timers by name",
		Storage:     jetstream.FileStorage,
		History:     1,
	})
	if err != nil {
		return nil, fmt.Errorf("timers: %w", err)
	}
	return &Durable{cfg: cfg, bus: bus, kv: kv, log: cfg.Logger}, nil
}

// Declare makes sure the durable timer name calls route (on a server of
// the route's type) with arg every interval, its ticks run by the servers
// of this server's type. It is idempotent: the same definition declared
// again (by this server or any other) only makes sure the next tick is
// enqueued; a different one replaces it (see the package doc). The first
// tick is due one interval after the first declaration.
func (d *Durable) Declare(ctx context.Context, name string, interval time.Duration, route string, arg any) (DurableInfo, error) {
	if err := CheckDurable(name, interval, route); err != nil {
		return DurableInfo{}, err
	}
	var raw json.RawMessage
	if arg != nil {
		b, err := (codec.Auto{}).Marshal(arg)
		if err != nil {
			return DurableInfo{}, fmt.Errorf("timers: encode argument of %s: %w", name, err)
		}
		raw = b
	}
	want := DurableInfo{Name: name, Route: route, Arg: raw, Interval: interval, Type: d.cfg.ServerType}
	for {
		cur, rev, err := d.get(ctx, name)
		now := time.Now()
		switch {
		case errors.Is(err, ErrNotFound):
			def := want
			def.Gen, def.Epoch, def.Created, def.Updated = 1, now, now, now
			_, err = stream.RetryMissing(ctx, d.bus, func(ctx context.Context) (uint64, error) {
				return d.kv.Create(ctx, name, encode(&def))
			})
			if conflict(err) {
				continue
			}
			if err != nil {
				return DurableInfo{}, fmt.Errorf("timers: declare %s: %w", name, err)
			}
			cur = &def
		case err != nil:
			return DurableInfo{}, err
		case !cur.sameDefinition(&want):
			def := want
			def.Gen, def.Epoch, def.Created, def.Updated = cur.Gen+1, now, cur.Created, now
			if _, err := d.kv.Update(ctx, name, encode(&def), rev); conflict(err) {
				continue
			} else if err != nil {
				return DurableInfo{}, fmt.Errorf("timers: declare %s: %w", name, err)
			}
			d.log.Info("timers: durable timer redefined", "timer", name, "gen", def.Gen, "route", route, "interval", interval)
			cur = &def
		}
		if err := d.schedule(ctx, cur, cur.nextAfter(now)); err != nil {
			return *cur, err
		}
		return *cur, nil
	}
}

// Stop deletes the durable timer name: its pending tick runs as a no-op and
// schedules nothing. Stopping a timer that does not exist returns
// ErrNotFound.
func (d *Durable) Stop(ctx context.Context, name string) error {
	if !validName(name) {
		return fmt.Errorf("%w: name %q", ErrInvalid, name)
	}
	if _, _, err := d.get(ctx, name); err != nil {
		return err
	}
	_, err := stream.RetryMissing(ctx, d.bus, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, d.kv.Purge(ctx, name)
	})
	if err != nil {
		return fmt.Errorf("timers: stop %s: %w", name, err)
	}
	return nil
}

// Get returns the durable timer's definition and progress, or ErrNotFound.
func (d *Durable) Get(ctx context.Context, name string) (DurableInfo, error) {
	if !validName(name) {
		return DurableInfo{}, fmt.Errorf("%w: name %q", ErrInvalid, name)
	}
	cur, _, err := d.get(ctx, name)
	if err != nil {
		return DurableInfo{}, err
	}
	return *cur, nil
}

func (d *Durable) get(ctx context.Context, name string) (*DurableInfo, uint64, error) {
	e, err := stream.RetryMissing(ctx, d.bus, func(ctx context.Context) (jetstream.KeyValueEntry, error) {
		return d.kv.Get(ctx, name)
	})
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, 0, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("timers: get %s: %w", name, err)
	}
	var def DurableInfo
	if err := json.Unmarshal(e.Value(), &def); err != nil {
		return nil, 0, fmt.Errorf("timers: decode %s: %w", name, err)
	}
	return &def, e.Revision(), nil
}

// TickJob is the argument of a tick's job.
type TickJob struct {
	Timer string `json:"timer"`
	Gen   uint64 `json:"gen"`
	N     uint64 `json:"n"`
}

// schedule enqueues tick n of def (exactly once per tick: the jid names
// it).
func (d *Durable) schedule(ctx context.Context, def *DurableInfo, n uint64) error {
	route := def.Type + "." + Component + ".tick"
	_, err := d.cfg.Jobs.Enqueue(ctx, route, &TickJob{Timer: def.Name, Gen: def.Gen, N: n},
		reliable.WithJID(jid(def.Name, def.Gen, n)), reliable.WithNotBefore(def.Due(n)))
	if err != nil {
		return fmt.Errorf("timers: schedule tick %d of %s: %w", n, def.Name, err)
	}
	return nil
}

// RunTick runs one tick: it enqueues the next tick, then calls the
// timer's route. A tick of a stopped timer, or of an older generation, does
// nothing. The reliable worker calls it (through Remote) at least once per
// tick.
func (d *Durable) RunTick(ctx context.Context, job *TickJob) (*Tick, error) {
	if job == nil || !validName(job.Timer) || job.N == 0 {
		return nil, reliable.Permanent(fmt.Errorf("%w: tick %+v", ErrInvalid, job))
	}
	def, _, err := d.get(ctx, job.Timer)
	if errors.Is(err, ErrNotFound) {
		d.log.Debug("timers: tick of a stopped timer", "timer", job.Timer, "tick", job.N)
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if def.Gen != job.Gen {
		d.log.Debug("timers: tick of an older definition", "timer", job.Timer, "gen", job.Gen, "current", def.Gen)
		return nil, nil
	}
	// The next tick first: whatever the route does, the chain goes on.
	if err := d.schedule(ctx, def, max(job.N+1, def.nextAfter(time.Now()))); err != nil {
		return nil, err
	}
	t := &Tick{Timer: def.Name, Gen: def.Gen, N: job.N, At: def.Due(job.N), Arg: def.Arg}
	if err := d.cfg.Call(ctx, def.Route, t); err != nil {
		return nil, err
	}
	d.recordRun(ctx, job)
	return t, nil
}

// recordRun writes LastTick, LastRun and LastServer (best effort).
func (d *Durable) recordRun(ctx context.Context, job *TickJob) {
	for range 3 {
		def, rev, err := d.get(ctx, job.Timer)
		if err != nil || def.Gen != job.Gen || def.LastTick >= job.N {
			return
		}
		def.LastTick, def.LastRun, def.LastServer = job.N, time.Now(), d.cfg.ServerID
		if _, err := d.kv.Update(ctx, job.Timer, encode(def), rev); !conflict(err) {
			return
		}
	}
}

// Remote is the component that runs durable ticks on a server: register it
// with backend.WithName(Component) among the server's remotes, and Attach
// its Durable once the server has joined the cluster. Until then ticks are
// handed back to the queue (reliable.ErrUnavailable).
type Remote struct {
	d atomic.Pointer[Durable]
}

// Attach sets the Durable that runs the ticks.
func (r *Remote) Attach(d *Durable) { r.d.Store(d) }

// Tick runs a tick (route "<svtype>.nopaltimer.tick").
func (r *Remote) Tick(ctx context.Context, job *TickJob) (*Tick, error) {
	d := r.d.Load()
	if d == nil {
		return nil, fmt.Errorf("timers: durable timers are not ready on this server: %w", reliable.ErrUnavailable)
	}
	return d.RunTick(ctx, job)
}

func jid(name string, gen, n uint64) string {
	return "timer=" + name + "=" + strconv.FormatUint(gen, 10) + "=" + strconv.FormatUint(n, 10)
}

func encode(d *DurableInfo) []byte {
	b, _ := json.Marshal(d)
	return b
}

func validName(s string) bool {
	if s == "" || len(s) > 100 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

func conflict(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// CheckDurable reports whether name, interval and route make a valid
// durable timer (what Declare checks first).
func CheckDurable(name string, interval time.Duration, route string) error {
	if !validName(name) {
		return fmt.Errorf("%w: name %q (1 to 100 letters, digits, '-' or '_')", ErrInvalid, name)
	}
	if interval < MinInterval {
		return fmt.Errorf("%w: interval %v (at least %v)", ErrInvalid, interval, MinInterval)
	}
	if _, err := codec.ParseFullRoute(route); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}
