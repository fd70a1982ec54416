package nopal

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

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

func (c *cluster) startJanitor() {
	grace := time.Duration(0)
	if !c.app.cfg.Resume.Off {
		grace = c.app.cfg.Resume.Grace
		if grace <= 0 {
			grace = 30 * time.Second
		}
		grace += janitorMargin
	}
	c.janitorCtx, c.janitorEnd = context.WithCancel(context.Background())
	c.janitorCancel = c.disc.Subscribe(func(e discovery.Event) {
		if e.Kind != discovery.Died || !e.Server.Frontend || e.Server.ID == c.app.cfg.ServerID {
			return
		}
		id := e.Server.ID
		t := time.AfterFunc(grace, func() { c.reapFrontend(id) })
		c.janitorMu.Lock()
		c.janitorTimers = append(c.janitorTimers, t)
		c.janitorMu.Unlock()
	})
}

func (c *cluster) stopJanitor() {
	if c.deathCancel != nil {
		c.deathCancel()
	}
	if c.janitorCancel != nil {
		c.janitorCancel()
	}
	if c.janitorEnd != nil {
		c.janitorEnd() // a cleanup under way stops at its next bus call
	}
	c.janitorMu.Lock()
	c.janitorStopped = true
	for _, t := range c.janitorTimers {
		t.Stop()
	}
	c.janitorTimers = nil
	c.janitorMu.Unlock()
	c.janitorWG.Wait()
}

// reapFrontend ends the sessions of the dead frontend dead, if this is the
// live frontend with the smallest id and dead has not come back.
func (c *cluster) reapFrontend(dead string) {
	c.janitorMu.Lock()
	if c.janitorStopped {
		c.janitorMu.Unlock()
		return
	}
	c.janitorWG.Add(1)
	c.janitorMu.Unlock()
	defer c.janitorWG.Done()
	var live []string
	for _, s := range c.disc.Servers() {
		if s.Frontend {
			live = append(live, s.ID)
		}
	}
	if slices.Contains(live, dead) || len(live) == 0 || slices.Min(live) != c.app.cfg.ServerID {
		return
	}
	ctx, cancel := context.WithTimeout(c.janitorCtx, time.Minute)
	defer cancel()
	log := c.app.log.With("dead_frontend", dead)
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
			c.app.pool.EndedElsewhere(session.NewBackend(b.SessionID, uid, nil, dead, goneConn(dead), nil))
		}
		if err := c.store.Unbind(ctx, uid, b); err != nil {
			log.Warn("janitor: cannot remove a binding", "uid", uid, "err", err)
		}
	}
	log.Info("janitor: ended the sessions of a dead frontend", "sessions", len(ended)+len(orphans)-countIn(orphans, ended))
}

// endRecorded ends the recorded session under key of frontend dead, unless
// a resume claimed it meanwhile (the record is deleted on its revision).
func (c *cluster) endRecorded(ctx context.Context, dead, key string) (string, bool) {
	e, err := c.resume.kv.Get(ctx, key)
	if err != nil {
		return "", false
	}
	var rec sessionRecord
	if json.Unmarshal(e.Value(), &rec) != nil {
		_ = c.resume.kv.Delete(ctx, key, jetstream.LastRevision(e.Revision()))
		return "", false
	}
	if err := c.resume.kv.Delete(ctx, key, jetstream.LastRevision(e.Revision())); err != nil {
		return "", false // resumed or ended by someone else
	}
	sid, _ := strconv.ParseInt(strings.TrimPrefix(key, dead+"."), 10, 64)
	c.app.pool.EndedElsewhere(session.NewBackend(sid, rec.UID, rec.Data, dead, goneConn(dead), nil))
	if err := c.store.Unbind(ctx, rec.UID, bindings.Binding{FrontendID: dead, SessionID: sid}); err != nil {
		c.app.log.Warn("janitor: cannot remove a binding", "uid", rec.UID, "err", err)
	}
	return rec.UID, true
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
func (c *cluster) watchDeaths() {
	cancel := c.disc.Subscribe(func(e discovery.Event) {
		if e.Kind == discovery.Died && e.Server.Frontend {
			c.deadMu.Lock()
			if c.dead == nil {
				c.dead = map[string]time.Time{}
			}
			c.dead[e.Server.ID] = time.Now()
			c.deadMu.Unlock()
		}
	})
	c.deathCancel = cancel
}

// lateDead returns the frontends that died within the resume grace (and a
// margin), forgetting older ones.
func (c *cluster) lateDead() map[string]bool {
	c.deadMu.Lock()
	defer c.deadMu.Unlock()
	if len(c.dead) == 0 {
		return nil
	}
	keep := c.app.cfg.Resume.Grace
	if keep <= 0 {
		keep = 30 * time.Second
	}
	keep += janitorMargin
	out := make(map[string]bool, len(c.dead))
	for id, at := range c.dead {
		if time.Since(at) > keep {
			delete(c.dead, id)
			continue
		}
		out[id] = true
	}
	return out
}
