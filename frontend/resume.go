package frontend

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nopal-dev/nopal/codec"
	"github.com/nopal-dev/nopal/session"
)

// Resume defaults.
const (
	DefaultResumeGrace     = 30 * time.Second
	DefaultResumeBuffer    = 64
	DefaultResumeMaxMissed = 1024
)

// Errors of a resume; the client gets a fresh session whatever the cause.
var (
	ErrBadToken      = errors.New("frontend: malformed resume token")
	ErrNoSuchSession = errors.New("frontend: no session to resume (wrong, expired or used token)")
	ErrResumeGap     = errors.New("frontend: pushes the client missed are no longer kept")
)

// ResumeConfig configures session resume. At handshake a client gets a
// token; when its connection drops, the session is suspended for Grace
// (uid binding, data and groups stay) and a client that comes back with the
// token and the count of pushes it received takes the session over and gets
// the pushes it missed, in order, once.
type ResumeConfig struct {
	// Off turns resume off: no token, and a session ends with its
	// connection, as in Pitaya.
	Off bool
	// Grace is how long a session waits for its client (default 30 s).
	Grace time.Duration
	// Buffer is how many of its latest pushes a connected session keeps
	// to replay (default 64, 32 bytes each plus the packets): the pushes
	// written to a link that died before the server noticed. A client that
	// missed more gets a fresh session.
	Buffer int
	// MaxMissed bounds the pushes a suspended session keeps for its client
	// (default 1024); past it the oldest go, and a client that missed them
	// gets a fresh session.
	MaxMissed int
	// Durable keeps every push of a bound session in the bus, not only
	// those made while it is suspended, so that a client whose frontend
	// was killed still gets what that frontend had accepted. It costs a
	// bus write per push (measured in BENCHMARKS.md). Needs Cluster.
	Durable bool
	// Cluster reaches sessions suspended on other frontends and keeps
	// missed pushes in the bus. nil: resume on this frontend only.
	Cluster ResumeCluster
}

func (c *ResumeConfig) defaults() error {
	if c.Grace == 0 {
		c.Grace = DefaultResumeGrace
	}
	if c.Buffer == 0 {
		c.Buffer = DefaultResumeBuffer
	}
	if c.MaxMissed == 0 {
		c.MaxMissed = DefaultResumeMaxMissed
	}
	if c.Grace < 0 || c.Buffer < 0 || c.MaxMissed < 0 {
		return errors.New("frontend: negative ResumeConfig.Grace, Buffer or MaxMissed")
	}
	c.MaxMissed = max(c.MaxMissed, c.Buffer)
	return nil
}

// ResumeCluster is what the frontend needs of a cluster to resume sessions
// begun on other frontends. The App implements it in cluster mode.
type ResumeCluster interface {
	// Take gets the session of token t from the frontend that holds it,
	// which lets go of it, or from the bus when that frontend is gone.
	// pushes is the count of pushes the client received. An error means
	// there is no session to resume (the client gets a fresh one).
	Take(ctx context.Context, t Token, pushes uint64) (*Handover, error)
	// Moved tells the cluster that the session of from now lives here as
	// s: the binding of its uid must follow, and the old frontend hand
	// over the pushes it got for the uid since Take. An error fails the
	// resume: s is then closed.
	Moved(ctx context.Context, from Token, s *session.Session) ([]MissedPush, error)
	// Forward sends a push that reached this frontend after its session
	// moved to frontend to.
	Forward(to, uid string, p MissedPush)
	// Suspended is called when a session is suspended on this frontend,
	// with the pushes it keeps, so they can outlive this process; Keep,
	// with Durable pushes, for every push of a bound session; Ended when
	// a session ends for good. They must not block.
	Suspended(s *session.Session, t Token, kept []MissedPush)
	Keep(s *session.Session, t Token, p MissedPush)
	Ended(s *session.Session, t Token)
}

// Token identifies a session to resume: the frontend that issued it, the
// session's id there and a secret. Its text form is
// "<frontend>.<session>.<secret>".
type Token struct {
	Frontend string
	Session  int64
	Secret   string
}

func (t Token) String() string {
	return t.Frontend + "." + strconv.FormatInt(t.Session, 10) + "." + t.Secret
}

// ParseToken parses a token's text form.
func ParseToken(s string) (Token, error) {
	i := strings.LastIndexByte(s, '.')
	if i < 0 {
		return Token{}, ErrBadToken
	}
	j := strings.LastIndexByte(s[:i], '.')
	if j < 0 {
		return Token{}, ErrBadToken
	}
	id, err := strconv.ParseInt(s[j+1:i], 10, 64)
	if err != nil || id <= 0 || len(s)-i-1 != secretLen {
		return Token{}, ErrBadToken
	}
	return Token{Frontend: s[:j], Session: id, Secret: s[i+1:]}, nil
}

const secretLen = 22 // 16 random bytes in unpadded base64url

func newSecret() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// SameSecret compares secrets in constant time.
func SameSecret(a, b string) bool {
	return len(a) == len(b) && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// MissedPush is a push kept for a client that may resume: its number in
// the session (1 for the first push), the id of the cluster push it came
// from (0 for a push made on this frontend), and its packet.
type MissedPush struct {
	Seq uint64 `json:"seq"`
	ID  uint64 `json:"id,omitempty"`
	Pkt []byte `json:"pkt"`
	// Response marks a response packet forwarded after its session moved
	// (not a push: not numbered).
	Response bool `json:"response,omitempty"`
}

// Handover is a session leaving a frontend for another.
type Handover struct {
	UID  string         `json:"uid,omitempty"`
	Data map[string]any `json:"data,omitempty"`
	// Sent counts the pushes of the session so far.
	Sent uint64 `json:"sent"`
	// Missed are the pushes after the client's count, in order.
	Missed []MissedPush `json:"missed,omitempty"`
	// Responses are response packets the client has not received.
	Responses [][]byte `json:"responses,omitempty"`
	// Extra are pushes the client missed that have no number (sent to its
	// uid while no frontend held the session), in order, after Missed.
	Extra []MissedPush `json:"extra,omitempty"`
	// Vetted is set when the frontend that held the session ran the bind
	// vetoes for the resume; otherwise the new frontend runs them.
	Vetted bool `json:"-"`
}

// link states.
const (
	linkLive      = iota // a connection is attached
	linkResuming         // moving here from another frontend: pushes are held
	linkSuspended        // waiting for the client to resume
	linkEnded            // closed or moved away
)

// dedupeWindow is how long a session moved here from another frontend
// drops cluster pushes it has already had: a push to a uid goes to every
// frontend, so during a move the old and the new frontend may both get it.
const dedupeWindow = 10 * time.Second

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

func (f *Frontend) newLink(a *agent) *link {
	l := &link{f: f, ag: a, addr: a.conn.RemoteAddr()}
	if !f.cfg.Resume.Off {
		l.secret = newSecret()
	}
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
	if l.f.cfg.Resume.Durable && l.f.cfg.Resume.Cluster != nil && l.sess.UID() != "" {
		l.f.cfg.Resume.Cluster.Keep(l.sess, l.token(), MissedPush{Seq: l.sent, ID: id, Pkt: pkt})
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
		if rc := l.f.cfg.Resume.Cluster; rc != nil {
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
	rc := l.f.cfg.Resume.Cluster
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
	if was == linkSuspended {
		l.f.track(l, false)
	}
	if was == linkEnded && l.sess.Closed() {
		return true
	}
	l.f.pool.Closed(l.sess)
	if rc := l.f.cfg.Resume.Cluster; rc != nil && l.sess.UID() != "" {
		rc.Ended(l.sess, tok)
	}
	return true
}

// claimed is what a successful claim found: what the client missed, and
// what to let go of once the link's lock is released.
type claimed struct {
	missed       []MissedPush
	old          *agent // a half-open connection the client gave up on
	wasSuspended bool
}

// release closes the connection the session leaves and stops counting it
// as suspended. The caller has released l.mu.
func (c claimed) release(f *Frontend, l *link) {
	if c.old != nil {
		_ = c.old.Close()
	}
	if c.wasSuspended {
		f.track(l, false)
	}
}

// claim finds the session of token t and checks that its client, which
// received pushes pushes, may take it over: the bind vetoes, the secret,
// and that what it missed is still kept. On success it returns with l.mu
// held, the grace timer stopped; the caller moves the session and calls
// release after unlocking. A client that missed more than is kept ends the
// session at once rather than at the end of the grace.
func (f *Frontend) claim(ctx context.Context, t Token, pushes uint64) (*link, claimed, error) {
	l, err := f.lookup(t)
	if err != nil {
		return nil, claimed{}, err
	}
	if err := f.pool.CheckResume(ctx, l.sess, l.sess.UID()); err != nil {
		return nil, claimed{}, err
	}
	l.mu.Lock()
	if l.state == linkEnded || l.state == linkResuming || !SameSecret(l.secret, t.Secret) {
		l.mu.Unlock()
		return nil, claimed{}, ErrNoSuchSession
	}
	missed, err := l.missed(pushes)
	if err != nil {
		l.mu.Unlock()
		_ = l.Close()
		return nil, claimed{}, err
	}
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	return l, claimed{missed: missed, old: l.ag, wasSuspended: l.state == linkSuspended}, nil
}

// HandOver serves another frontend's Take: it checks the token and the
// client's count, runs the bind vetoes, and returns what the client missed.
// The session then lives on the other frontend: here it ends without
// callbacks, and its binding stays until the new frontend moves it.
func (f *Frontend) HandOver(ctx context.Context, t Token, pushes uint64, to string) (*Handover, error) {
	if f.cfg.Resume.Off || t.Frontend != f.cfg.ID {
		return nil, ErrNoSuchSession
	}
	l, c, err := f.claim(ctx, t, pushes)
	if err != nil {
		return nil, err
	}
	h := &Handover{UID: l.sess.UID(), Data: l.sess.Data(), Sent: l.sent, Missed: c.missed, Responses: l.pending, Vetted: true}
	l.state, l.ag, l.secret = linkEnded, nil, ""
	if h.UID != "" {
		l.movedTo, l.movedUID = to, h.UID
	}
	l.ring, l.pending = nil, nil
	l.mu.Unlock()
	c.release(f, l)
	if h.UID != "" {
		f.tomb(h.UID, to)
	}
	f.pool.Forget(l.sess)
	f.stats.Moved.Add(1)
	return h, nil
}

// tomb remembers for dedupeWindow that uid's session moved to frontend
// to: pushes for uid that reach this frontend meanwhile are held until the
// new frontend drains them (Drain), then forwarded.
func (f *Frontend) tomb(uid, to string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	tb := &tombstone{to: to}
	f.moved[uid] = tb
	f.movedN.Store(int32(len(f.moved)))
	time.AfterFunc(dedupeWindow, func() {
		f.mu.Lock()
		if f.moved[uid] == tb {
			delete(f.moved, uid)
			f.movedN.Store(int32(len(f.moved)))
		}
		f.mu.Unlock()
	})
}

type tombstone struct {
	to      string
	held    []MissedPush
	drained bool
}

// pushMoved handles a push for uid, which has no session here: it reports
// whether uid's session moved away lately, in which case the push is held
// or forwarded.
func (f *Frontend) pushMoved(uid string, p MissedPush) bool {
	if f.movedN.Load() == 0 {
		// Every frontend gets every cluster push and holds only some of
		// its users: no lock for the others unless a session moved lately.
		return false
	}
	f.mu.Lock()
	tb := f.moved[uid]
	if tb == nil {
		f.mu.Unlock()
		return false
	}
	if !tb.drained {
		tb.held = append(tb.held, p)
		f.mu.Unlock()
		return true
	}
	to := tb.to
	f.mu.Unlock()
	if rc := f.cfg.Resume.Cluster; rc != nil {
		rc.Forward(to, uid, p)
	}
	return true
}

// Drain serves the new frontend of uid's session (to): it returns the
// pushes for uid held since the session left, and forwards later ones.
func (f *Frontend) Drain(uid, to string) []MissedPush {
	f.mu.Lock()
	defer f.mu.Unlock()
	tb := f.moved[uid]
	if tb == nil || tb.to != to {
		return nil
	}
	held := tb.held
	tb.held, tb.drained = nil, true
	return held
}

// PushPacket pushes an encoded packet to uid's session here (a push
// forwarded by the frontend the session moved from): it reports whether
// uid has a session here.
func (f *Frontend) PushPacket(uid string, p MissedPush) bool {
	s := f.pool.ByUID(uid)
	if s == nil {
		return false
	}
	l, ok := s.Conn().(*link)
	if !ok {
		return false
	}
	if p.Response {
		return l.forwarded(p.Pkt)
	}
	return l.push(p.Pkt, p.ID) == nil
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

// TokenOf returns the current resume token of a session of this frontend.
func (f *Frontend) TokenOf(s *session.Session) (Token, bool) {
	l, ok := s.Conn().(*link)
	if !ok {
		return Token{}, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.secret == "" || l.state == linkEnded {
		return Token{}, false
	}
	return l.token(), true
}

func (f *Frontend) lookup(t Token) (*link, error) {
	s := f.pool.ByID(t.Session)
	if s == nil {
		return nil, ErrNoSuchSession
	}
	l, ok := s.Conn().(*link)
	if !ok {
		return nil, ErrNoSuchSession
	}
	return l, nil
}

// resume makes a's connection take over the session of the client's
// token, on this frontend or from another. It reports whether it did (and
// sent the handshake response); on false the connection keeps its fresh
// session. It runs on a's reader, after the handshake validators.
func (a *agent) resume(ctx context.Context, req *codec.ResumeRequest) bool {
	f := a.f
	t, err := ParseToken(req.Token)
	if err == nil {
		switch {
		case t.Frontend == f.cfg.ID:
			err = a.resumeHere(ctx, t, req.Pushes)
		case f.cfg.Resume.Cluster != nil:
			err = a.resumeMoved(ctx, t, req.Pushes)
		default:
			err = ErrNoSuchSession
		}
	}
	if err != nil {
		f.log.Info("resume refused: fresh session", "remote", a.conn.RemoteAddr(), "token_frontend", t.Frontend, "session", t.Session, "err", err)
		f.stats.ResumeFailed.Add(1)
		return false
	}
	f.stats.Resumed.Add(1)
	return true
}

// resumeHere resumes a session of this frontend: the same session object
// goes on with a's connection.
func (a *agent) resumeHere(ctx context.Context, t Token, pushes uint64) error {
	f := a.f
	l, c, err := f.claim(ctx, t, pushes)
	if err != nil {
		return err
	}
	missed := c.missed
	fresh := a.link()
	l.ag, l.addr, l.state, l.noResume = a, a.conn.RemoteAddr(), linkLive, false
	l.secret = newSecret() // a token works once
	pending := l.pending
	l.pending = nil
	resp, err := f.handshakeResponse(l, true)
	if err != nil {
		l.mu.Unlock()
		return err
	}
	pkts := make([][]byte, 0, 1+len(missed)+len(pending))
	pkts = append(pkts, resp)
	for _, p := range missed {
		pkts = append(pkts, p.Pkt)
	}
	pkts = append(pkts, pending...)
	l.trim()
	// Queued under the link's lock, which live pushes take too: the
	// handshake response, what the client missed, then live pushes.
	a.sendAll(pkts)
	a.lk.Store(l)
	l.mu.Unlock()

	c.release(f, l)
	f.pool.Forget(fresh.sess)
	f.log.Debug("session resumed", "session", l.sess.ID(), "uid", l.sess.UID(), "missed", len(missed))
	f.pool.Resumed(ctx, l.sess)
	return nil
}

// resumeMoved resumes a session begun on another frontend: it takes it
// over through the cluster and adopts it as a new session of this pool.
func (a *agent) resumeMoved(ctx context.Context, t Token, pushes uint64) error {
	f := a.f
	rc := f.cfg.Resume.Cluster
	h, err := rc.Take(ctx, t, pushes)
	if err != nil {
		return err
	}
	l := &link{f: f, addr: a.conn.RemoteAddr(), secret: newSecret(), state: linkResuming,
		seen: make(map[uint64]struct{}, len(h.Missed)+len(h.Extra))}
	pkts := make([][]byte, 0, 1+len(h.Missed)+len(h.Extra)+len(h.Responses))
	pkts = append(pkts, nil) // the handshake response, once the token is known
	for _, p := range h.Missed {
		l.sent = p.Seq
		l.keep(p.Pkt, p.ID, false)
		l.seenID(p.ID)
		pkts = append(pkts, p.Pkt)
	}
	l.sent = max(l.sent, h.Sent)
	// number numbers a push and queues it; check drops a cluster push
	// already had (held pushes were checked as they came).
	number := func(p MissedPush, check bool) {
		if check && p.ID != 0 {
			if _, dup := l.seen[p.ID]; dup {
				return
			}
			l.seen[p.ID] = struct{}{}
		}
		l.sent++
		l.keep(p.Pkt, p.ID, false)
		pkts = append(pkts, p.Pkt)
	}
	for _, p := range h.Extra {
		number(p, true)
	}
	l.sess, err = f.pool.Adopt(ctx, l, h.UID, h.Data, !h.Vetted)
	if err != nil {
		return err
	}
	// From here pushes to the uid reach l and are held (state resuming).
	drained, err := rc.Moved(ctx, t, l.sess)
	if err != nil {
		l.end()
		return fmt.Errorf("frontend: moving the session here: %w", err)
	}
	fresh := a.link()
	l.mu.Lock()
	if l.state == linkEnded { // kicked while it moved
		l.mu.Unlock()
		return ErrNoSuchSession
	}
	for _, p := range drained {
		number(p, true)
	}
	for _, p := range l.held {
		number(p, false)
	}
	l.held = nil
	pkts = append(pkts, h.Responses...)
	pkts = append(pkts, l.pending...) // forwarded while it moved
	l.pending = nil
	resp, err := f.handshakeResponse(l, true)
	if err != nil {
		l.mu.Unlock()
		l.end()
		return err
	}
	pkts[0] = resp
	l.ag, l.state = a, linkLive
	a.sendAll(pkts)
	a.lk.Store(l)
	l.mu.Unlock()
	time.AfterFunc(dedupeWindow, func() {
		l.mu.Lock()
		l.seen = nil
		l.mu.Unlock()
	})

	f.pool.Forget(fresh.sess)
	f.log.Debug("session resumed from another frontend", "session", l.sess.ID(), "uid", h.UID,
		"from", t.Frontend, "missed", len(pkts)-1-len(h.Responses))
	f.pool.Resumed(ctx, l.sess)
	return nil
}

func (l *link) seenID(id uint64) {
	if id != 0 {
		l.seen[id] = struct{}{}
	}
}

// handshakeResponse encodes the handshake response packet for l's client.
func (f *Frontend) handshakeResponse(l *link, resumed bool) ([]byte, error) {
	if l.secret == "" {
		return f.handshakeOK, nil
	}
	sys := f.hsSys
	sys.Resume = l.token().String()
	sys.Resumed = resumed
	body, err := json.Marshal(codec.HandshakeResponse{Code: codec.HandshakeOK, Sys: &sys})
	if err != nil {
		return nil, err
	}
	if f.cfg.Compress && len(body) >= f.codec.Threshold() {
		body, _ = f.codec.Deflate(body)
	}
	return codec.AppendPacket(nil, codec.Handshake, body)
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

func (f *Frontend) isDraining() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.draining
}
