package frontend

// The link: a frontend session's side of its client, which outlives the
// connections of a session that resumes. It owns what the session sends:
// the session.Conn the session talks through (Push, Kick, Close), the
// numbering of pushes under the same lock that queues them (so the numbers
// are the wire order), the latest pushes kept for replay (a ring of Buffer,
// MaxMissed while suspended), responses kept while no connection is
// attached, and the session's life: live, suspended for the grace, ended.
// The frontend finds a session's link in its own table (linkOf), never by
// casting the session's Conn. The resume protocol that moves a link from
// one connection or frontend to another is in resume.go.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"sync"
	"time"

	"github.com/nopal-dev/nopal/codec"
	"github.com/nopal-dev/nopal/session"
)

// link states.
const (
	linkLive      = iota // a connection is attached
	linkResuming         // moving here from another frontend: pushes are held
	linkSuspended        // waiting for the client to resume
	linkEnded            // closed or moved away
)

// link is a frontend session's side of the connection: it outlives the
// connections of a session that resumes. It is the session's session.Conn,
// numbers the session's pushes and keeps the latest for replay.
type link struct {
	f    *Frontend
	sess *session.Session

	mu       sync.Mutex
	ag       *agent   // the connection, nil while suspended
	addr     net.Addr // the client's latest address
	state    int
	noResume bool // the current connection ends the session (kick, close)
	secret   string
	sent     uint64 // pushes made in the session
	// ring holds the latest pushes, circular, oldest at start; they are
	// numbered sent-len(ring)+1 .. sent.
	ring    []kept
	start   int
	pending [][]byte // responses that could not be written
	timer   *time.Timer
	// seen holds the ids of the cluster pushes a session moved here has
	// had, for dedupeWindow (nil otherwise); held, the pushes made while
	// it was resuming, numbered and sent once it goes live.
	seen map[uint64]struct{}
	held []MissedPush
	// movedTo is the frontend the session was handed over to, and uid its
	// uid: a response finished here afterwards follows it.
	movedTo, movedUID string
}

// newLink returns the link of a new connection's fresh session; the
// caller gives it its session.
func (f *Frontend) newLink(a *agent) *link {
	l := &link{f: f, ag: a, addr: a.conn.RemoteAddr()}
	if !f.cfg.Resume.Off {
		l.secret = newSecret()
	}
	f.register(l)
	return l
}

// register adds l to the frontend's links, before its session is in the
// pool: whoever finds the session there finds its link.
func (f *Frontend) register(l *link) {
	f.lmu.Lock()
	f.links[l] = l
	f.lmu.Unlock()
}

// unlink removes l from the frontend's links once its session has left
// the pool (ended, moved away, or never started). It is idempotent.
func (f *Frontend) unlink(l *link) {
	f.lmu.Lock()
	delete(f.links, l)
	f.lmu.Unlock()
}

// linkOf returns the link of s, or nil when s is not a session of this
// frontend (another frontend's sharing the pool, a backend session, or one
// that ended).
func (f *Frontend) linkOf(s *session.Session) *link {
	c := s.Conn()
	if c == nil || !reflect.TypeOf(c).Comparable() {
		// Not one of ours, and a map lookup with an unhashable key would
		// panic: a Conn written elsewhere may be any type.
		return nil
	}
	f.lmu.RLock()
	l := f.links[c]
	f.lmu.RUnlock()
	return l
}

func (l *link) token() Token {
	return Token{Frontend: l.f.cfg.ID, Session: l.sess.ID(), Secret: l.secret}
}

// Push implements session.Conn.
func (l *link) Push(route string, v any) error {
	data, err := l.f.ser.Marshal(v)
	if err != nil {
		return fmt.Errorf("frontend: push %s: %w", route, err)
	}
	pkt, err := l.f.codec.AppendPacket(nil, &codec.Message{Type: codec.Push, Route: route, Data: data})
	if err != nil {
		return fmt.Errorf("frontend: push %s: %w", route, err)
	}
	return l.push(pkt, 0)
}

// push numbers pkt and sends it, or keeps it while the session is
// suspended. Numbering and queueing happen under one lock, so the order on
// the wire is the order of the numbers.
func (l *link) push(pkt []byte, id uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.state == linkEnded {
		return ErrConnClosed
	}
	if id != 0 && l.seen != nil {
		if _, dup := l.seen[id]; dup {
			return nil
		}
		l.seen[id] = struct{}{}
	}
	if l.state == linkResuming {
		l.held = append(l.held, MissedPush{ID: id, Pkt: pkt})
		return nil
	}
	var err error
	if l.ag != nil {
		err = l.ag.send(pkt)
	}
	if l.secret == "" {
		return err // no resume: nothing to keep
	}
	l.sent++
	// A push that did not reach a queue (suspended, or the connection is
	// going) is one the client surely misses: kept like a suspended
	// session's, beyond Buffer.
	l.keep(pkt, id, l.ag == nil || err != nil)
	if l.f.cfg.Resume.Durable && l.f.cfg.Cluster != nil && l.sess.UID() != "" {
		l.f.cfg.Cluster.Keep(l.sess, l.token(), MissedPush{Seq: l.sent, ID: id, Pkt: pkt})
	}
	if errors.Is(err, ErrConnClosed) && !l.noResume {
		return nil // the connection is going: kept for the resume
	}
	return err
}

// kept is a push in a session's ring; its number follows from its place.
type kept struct {
	pkt []byte
	id  uint64
}

// keep adds the push just numbered l.sent to the ring. A connected session
// keeps its latest Buffer pushes, a suspended one (or one whose connection
// is going: away) its latest MaxMissed.
func (l *link) keep(pkt []byte, id uint64, away bool) {
	rc := &l.f.cfg.Resume
	n := rc.Buffer
	if away || l.state == linkSuspended {
		n = rc.MaxMissed
	}
	switch {
	case n == 0:
		return
	case len(l.ring) < n && l.start == 0:
		l.ring = append(l.ring, kept{pkt, id})
	case len(l.ring) < n:
		// Suspended with a full ring of Buffer: unwind it and grow.
		l.ring = append(l.linear(), kept{pkt, id})
		l.start = 0
	default:
		l.ring[l.start] = kept{pkt, id}
		l.start = (l.start + 1) % len(l.ring)
	}
}

// linear returns the ring's pushes in order, oldest first.
func (l *link) linear() []kept {
	out := make([]kept, 0, len(l.ring)+1)
	out = append(out, l.ring[l.start:]...)
	return append(out, l.ring[:l.start]...)
}

// trim shrinks the ring to Buffer once a connection is back.
func (l *link) trim() {
	if n := l.f.cfg.Resume.Buffer; len(l.ring) > n {
		lin := l.linear()
		l.ring, l.start = lin[len(lin)-n:], 0
	}
}

// missed returns the kept pushes numbered after pushes, in order, or
// ErrResumeGap when some of those are no longer kept. The caller holds mu.
func (l *link) missed(pushes uint64) ([]MissedPush, error) {
	if pushes > l.sent {
		return nil, fmt.Errorf("frontend: client counts %d pushes, the session made %d", pushes, l.sent)
	}
	want := int(l.sent - pushes)
	if want > len(l.ring) {
		return nil, ErrResumeGap
	}
	return l.keptFrom(len(l.ring) - want), nil
}

// keptFrom returns the ring's pushes from the i-th oldest on, numbered.
// The caller holds mu.
func (l *link) keptFrom(i int) []MissedPush {
	out := make([]MissedPush, 0, len(l.ring)-i)
	first := l.sent - uint64(len(l.ring)) + 1
	for ; i < len(l.ring); i++ {
		k := l.ring[(l.start+i)%len(l.ring)]
		out = append(out, MissedPush{Seq: first + uint64(i), ID: k.id, Pkt: k.pkt})
	}
	return out
}

// respond writes a response packet, or keeps it for the resume when the
// connection is gone.
func (l *link) respond(a *agent, pkt []byte) {
	if a.reply(pkt) == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.movedTo != "" {
		// The session left for another frontend while the request ran.
		if rc := l.f.cfg.Cluster; rc != nil {
			rc.Forward(l.movedTo, l.movedUID, MissedPush{Pkt: pkt, Response: true})
		}
		return
	}
	if l.state == linkEnded || l.secret == "" || l.noResume {
		return
	}
	if l.ag != nil && l.ag != a {
		_ = l.ag.send(pkt) // resumed meanwhile on a new connection
		return
	}
	l.pending = append(l.pending, pkt)
}

// Kick implements session.Conn: the session ends (no resume), with a Kick
// packet if a client is connected.
func (l *link) Kick(ctx context.Context) error {
	l.mu.Lock()
	ag := l.ag
	if ag != nil {
		l.noResume = true
		l.mu.Unlock()
		return ag.Kick(ctx)
	}
	l.mu.Unlock()
	l.end()
	return nil
}

// Close implements session.Conn: the session ends at once.
func (l *link) Close() error {
	l.mu.Lock()
	ag := l.ag
	if ag != nil {
		l.noResume = true
		l.mu.Unlock()
		return ag.Close()
	}
	l.mu.Unlock()
	l.end()
	return nil
}

// RemoteAddr implements session.Conn: the address of the client's latest
// connection.
func (l *link) RemoteAddr() net.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.addr
}

// detach is called when connection a ends. It reports whether the session
// lives on (suspended, or already on a newer connection); false means the
// caller ends it.
func (l *link) detach(a *agent, resumable bool) bool {
	l.mu.Lock()
	if l.ag != a {
		l.mu.Unlock()
		return true // taken over by a newer connection, or moved away
	}
	l.ag = nil
	if !resumable || l.noResume || l.secret == "" || l.state != linkLive || l.f.isDraining() {
		l.state = linkEnded
		l.mu.Unlock()
		return false
	}
	l.state = linkSuspended
	l.timer = time.AfterFunc(l.f.cfg.Resume.Grace, l.expire)
	var kept []MissedPush
	rc := l.f.cfg.Cluster
	if rc != nil {
		kept = l.keptFrom(0)
	}
	tok := l.token()
	l.mu.Unlock()
	l.f.track(l, true)
	l.f.stats.Suspended.Add(1)
	l.f.log.Debug("session suspended", "session", l.sess.ID(), "uid", l.sess.UID())
	l.f.pool.Suspended(l.sess)
	if rc != nil && l.sess.UID() != "" {
		rc.Suspended(l.sess, tok, kept)
	}
	return true
}

// expire ends a session whose client did not come back in time, unless a
// resume got there first.
func (l *link) expire() {
	if l.endIf(linkSuspended) {
		l.f.stats.Expired.Add(1)
	}
}

// end ends the session for good: its callbacks run. It is idempotent.
func (l *link) end() { l.endIf(-1) }

// endIf ends the session if its state is only (any state for -1), and
// reports whether it did.
func (l *link) endIf(only int) bool {
	l.mu.Lock()
	was := l.state
	if only >= 0 && was != only {
		l.mu.Unlock()
		return false
	}
	l.state = linkEnded
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	l.ring, l.pending, l.held = nil, nil, nil
	tok := l.token()
	l.mu.Unlock()
	l.f.unlink(l)
	if was == linkSuspended {
		l.f.track(l, false)
	}
	if was == linkEnded && l.sess.Closed() {
		return true
	}
	l.f.pool.Closed(l.sess)
	if rc := l.f.cfg.Cluster; rc != nil && l.sess.UID() != "" {
		rc.Ended(l.sess, tok)
	}
	return true
}

// forwarded sends a response packet that followed the session from the
// frontend it left, or keeps it with the others the client has not had.
func (l *link) forwarded(pkt []byte) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.state == linkEnded:
		return false
	case l.state == linkLive && l.ag != nil:
		return l.ag.send(pkt) == nil
	}
	l.pending = append(l.pending, pkt) // resuming or suspended
	return true
}

func (l *link) seenID(id uint64) {
	if id != 0 {
		l.seen[id] = struct{}{}
	}
}

// track adds or removes a suspended link.
func (f *Frontend) track(l *link, add bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if add {
		f.suspended[l] = struct{}{}
	} else {
		delete(f.suspended, l)
	}
}
