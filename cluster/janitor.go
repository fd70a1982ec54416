package cluster

import (
	"context"
	"errors"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/nopal-dev/nopal/bindings"
	"github.com/nopal-dev/nopal/discovery"
	"github.com/nopal-dev/nopal/session"
	"github.com/nopal-dev/nopal/stream"
)

// The sessions of a frontend that died (SIGKILL, a lost machine) cannot
// end by themselves. Once discovery declares it dead and the resume grace
// has passed, one live frontend, the one with the smallest id, ends on its
// behalf every session no client resumed: the app's OnSessionClose hooks run
// there, with the uid and the data the session last recorded (the uid alone
// when resume is off), the uid's binding is removed if it still points at
// the dead frontend, and the session's record is deleted. The hooks are
// where an app leaves its groups, as it would on any close.

// janitorMargin is added to the grace before cleaning up: a resume that
// started in time finishes first.
const janitorMargin = 2 * time.Second

// janitor is the state of the runtime's janitor: a timer per frontend that
// died, and the cleanups under way.
type janitor struct {
	unsubscribe func()
	ctx         context.Context // ends when the janitor stops
	end         context.CancelFunc
	mu          sync.Mutex
	timers      []*time.Timer
	stopped     bool
	wg          sync.WaitGroup
}

// deaths are the frontends discovery declared dead lately, and when.
type deaths struct {
	unsubscribe func()
	mu          sync.Mutex
	at          map[string]time.Time
}

// graceKept is how long the sessions of a dead frontend may still be
// resumed: the resume grace and a margin (none with resume off).
func (c *Runtime) graceKept() time.Duration {
	if c.cfg.Resume.Off {
		return 0
	}
	return c.cfg.Resume.Grace + janitorMargin
}

func (c *Runtime) startJanitor() {
	j := &c.janitor
	grace := c.graceKept()
	j.ctx, j.end = context.WithCancel(context.Background())
	j.unsubscribe = c.disc.Subscribe(func(e discovery.Event) {
		if e.Kind != discovery.Died || !e.Server.Frontend || e.Server.ID == c.cfg.ServerID {
			return
		}
		id := e.Server.ID
		t := time.AfterFunc(grace, func() { c.reapFrontend(id) })
		j.mu.Lock()
		j.timers = append(j.timers, t)
		j.mu.Unlock()
	})
}

func (c *Runtime) stopJanitor() {
	if c.deaths.unsubscribe != nil {
		c.deaths.unsubscribe()
	}
	j := &c.janitor
	if j.unsubscribe != nil {
		j.unsubscribe()
	}
	if j.end != nil {
		j.end() // a cleanup under way stops at its next bus call
	}
	j.mu.Lock()
	j.stopped = true
	for _, t := range j.timers {
		t.Stop()
	}
	j.timers = nil
	j.mu.Unlock()
	j.wg.Wait()
}

// reapFrontend ends the sessions of the dead frontend dead, if this is the
// live frontend with the smallest id and dead has not come back.
func (c *Runtime) reapFrontend(dead string) {
	j := &c.janitor
	j.mu.Lock()
	if j.stopped {
		j.mu.Unlock()
		return
	}
	j.wg.Add(1)
	j.mu.Unlock()
	defer j.wg.Done()
	var live []string
	for _, s := range c.disc.Servers() {
		if s.Frontend {
			live = append(live, s.ID)
		}
	}
	if slices.Contains(live, dead) || len(live) == 0 || slices.Min(live) != c.cfg.ServerID {
		return
	}
	ctx, cancel := context.WithTimeout(j.ctx, time.Minute)
	defer cancel()
	log := c.log.With("dead_frontend", dead)
	ended := map[string]bool{}
	if r := c.resume; r != nil {
		keys, err := stream.RetryMissing(ctx, c.bus, func(ctx context.Context) (jetstream.KeyLister, error) {
			return r.kv.ListKeysFiltered(ctx, dead+".*")
		})
		if err != nil {
			log.Warn("janitor: cannot list the dead frontend's sessions", "err", err)
		} else {
			for key := range keys.Keys() {
				uid, ok := c.endRecorded(ctx, dead, key)
				if ok {
					ended[uid] = true
				}
			}
		}
	}
	orphans, err := c.store.OfFrontend(ctx, dead)
	if err != nil {
		log.Warn("janitor: cannot list the dead frontend's bindings", "err", err)
		return
	}
	for uid, b := range orphans {
		if !ended[uid] {
			c.cfg.Pool.EndedElsewhere(session.NewBackend(b.SessionID, uid, nil, dead, goneConn(dead), nil))
		}
		if err := c.store.Unbind(ctx, uid, b); err != nil {
			log.Warn("janitor: cannot remove a binding", "uid", uid, "err", err)
		}
	}
	log.Info("janitor: ended the sessions of a dead frontend", "sessions", len(ended)+len(orphans)-countIn(orphans, ended))
}

// endRecorded ends the recorded session under key of frontend dead, unless
// a resume claimed it meanwhile (the record is deleted on its revision).
func (c *Runtime) endRecorded(ctx context.Context, dead, key string) (string, bool) {
	e, err := c.resume.kv.Get(ctx, key)
	if err != nil {
		return "", false
	}
	var rec stream.SessionRecord
	if proto.Unmarshal(e.Value(), &rec) != nil {
		_ = c.resume.kv.Delete(ctx, key, jetstream.LastRevision(e.Revision()))
		return "", false
	}
	if err := c.resume.kv.Delete(ctx, key, jetstream.LastRevision(e.Revision())); err != nil {
		return "", false // resumed or ended by someone else
	}
	data, err := decodeData(rec.Data)
	if err != nil {
		c.log.Warn("janitor: a session record's data", "uid", rec.Uid, "err", err)
	}
	sid, _ := strconv.ParseInt(strings.TrimPrefix(key, dead+"."), 10, 64)
	c.cfg.Pool.EndedElsewhere(session.NewBackend(sid, rec.Uid, data, dead, goneConn(dead), nil))
	if err := c.store.Unbind(ctx, rec.Uid, bindings.Binding{FrontendID: dead, SessionID: sid}); err != nil {
		c.log.Warn("janitor: cannot remove a binding", "uid", rec.Uid, "err", err)
	}
	return rec.Uid, true
}

func countIn(m map[string]bindings.Binding, set map[string]bool) int {
	n := 0
	for uid := range m {
		if set[uid] {
			n++
		}
	}
	return n
}

// goneConn is the connection of a session whose frontend died.
type goneConn string

var errFrontendGone = errors.New("nopal: the session's frontend is gone")

func (g goneConn) Push(string, any) error     { return errFrontendGone }
func (g goneConn) Kick(context.Context) error { return errFrontendGone }
func (g goneConn) Close() error               { return nil }
func (g goneConn) RemoteAddr() net.Addr       { return frontendAddr(g) }

// watchDeaths remembers the frontends discovery declares dead, for the
// resume grace and a margin: a push to one of their users is kept for
// the user's resume (see fanOut).
func (c *Runtime) watchDeaths() {
	d := &c.deaths
	d.unsubscribe = c.disc.Subscribe(func(e discovery.Event) {
		if e.Kind == discovery.Died && e.Server.Frontend {
			d.mu.Lock()
			if d.at == nil {
				d.at = map[string]time.Time{}
			}
			d.at[e.Server.ID] = time.Now()
			d.mu.Unlock()
		}
	})
}

// lateDead returns the frontends that died within the resume grace (and a
// margin), forgetting older ones.
func (c *Runtime) lateDead() map[string]bool {
	d := &c.deaths
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.at) == 0 {
		return nil
	}
	keep := c.graceKept()
	out := make(map[string]bool, len(d.at))
	for id, at := range d.at {
		if time.Since(at) > keep {
			delete(d.at, id)
			continue
		}
		out[id] = true
	}
	return out
}
