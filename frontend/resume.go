package frontend

// The resume protocol: its configuration and defaults, tokens, what
// crosses between frontends (MissedPush, Handover), claiming a session for
// a client's resume handshake (resumeHere on this frontend, resumeMoved
// from another through ResumeCluster), and the old frontend's side of a
// move: HandOver, the tombstones that hold pushes for a moved uid, Drain
// and PushPacket. What a session sends, and keeps for a resume, is the
// link's (link.go).

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
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
	// bus write per push (measured in BENCHMARKS.md). Needs a cluster.
	Durable bool
}

// Resolved returns c as a Frontend applies it: zero Grace, Buffer and
// MaxMissed set to DefaultResumeGrace, DefaultResumeBuffer and
// DefaultResumeMaxMissed, and MaxMissed raised to Buffer. A negative
// field is an error. Off and the other fields are kept as they are;
// resolving twice changes nothing. A cluster that must agree with the
// frontend on the grace (how long a dead frontend's sessions wait, how
// long missed pushes are kept) reads it here rather than repeating the
// default.
func (c ResumeConfig) Resolved() (ResumeConfig, error) {
	if c.Grace < 0 || c.Buffer < 0 || c.MaxMissed < 0 {
		return c, errors.New("frontend: negative ResumeConfig.Grace, Buffer or MaxMissed")
	}
	if c.Grace == 0 {
		c.Grace = DefaultResumeGrace
	}
	if c.Buffer == 0 {
		c.Buffer = DefaultResumeBuffer
	}
	if c.MaxMissed == 0 {
		c.MaxMissed = DefaultResumeMaxMissed
	}
	c.MaxMissed = max(c.MaxMissed, c.Buffer)
	return c, nil
}

// ResumeCluster is what the frontend needs of a cluster to resume sessions
// begun on other frontends: the one interface between the frontend and the
// cluster runtime for the hand-over (the runtime implements it; see
// Config.Cluster).
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

// dedupeWindow is how long a session moved here from another frontend
// drops cluster pushes it has already had: a push to a uid goes to every
// frontend, so during a move the old and the new frontend may both get it.
const dedupeWindow = 10 * time.Second

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
	f.unlink(l)
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
	if rc := f.cfg.Cluster; rc != nil {
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
	l := f.linkOf(s)
	if l == nil {
		return false
	}
	if p.Response {
		return l.forwarded(p.Pkt)
	}
	return l.push(p.Pkt, p.ID) == nil
}

// TokenOf returns the current resume token of a session of this frontend.
func (f *Frontend) TokenOf(s *session.Session) (Token, bool) {
	l := f.linkOf(s)
	if l == nil {
		return Token{}, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.secret == "" || l.state == linkEnded || l.sess == nil {
		return Token{}, false // no token, ended, or still being adopted
	}
	return l.token(), true
}

func (f *Frontend) lookup(t Token) (*link, error) {
	s := f.pool.ByID(t.Session)
	if s == nil {
		return nil, ErrNoSuchSession
	}
	l := f.linkOf(s)
	if l == nil {
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
		case f.cfg.Cluster != nil:
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
	f.unlink(fresh)
	f.log.Debug("session resumed", "session", l.sess.ID(), "uid", l.sess.UID(), "missed", len(missed))
	f.pool.Resumed(ctx, l.sess)
	return nil
}

// resumeMoved resumes a session begun on another frontend: it takes it
// over through the cluster and adopts it as a new session of this pool.
func (a *agent) resumeMoved(ctx context.Context, t Token, pushes uint64) error {
	f := a.f
	rc := f.cfg.Cluster
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
	f.register(l)
	s, err := f.pool.Adopt(ctx, l, h.UID, h.Data, !h.Vetted)
	if err != nil {
		f.unlink(l)
		return err
	}
	// Set under the link's lock: the session is in the pool already, and a
	// hook's TokenOf may look at the link meanwhile.
	l.mu.Lock()
	l.sess = s
	l.mu.Unlock()
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
	f.unlink(fresh)
	f.log.Debug("session resumed from another frontend", "session", l.sess.ID(), "uid", h.UID,
		"from", t.Frontend, "missed", len(pkts)-1-len(h.Responses))
	f.pool.Resumed(ctx, l.sess)
	return nil
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
