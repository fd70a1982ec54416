package nopal

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/nopal-dev/nopal/bindings"
	"github.com/nopal-dev/nopal/frontend"
	"github.com/nopal-dev/nopal/session"
	"github.com/nopal-dev/nopal/stream"
)

// Session resume across the cluster.
//
// A frontend answers Take requests for its sessions on
// <prefix>.srv.<id>.resume: it hands the session over (uid, data, the
// pushes the client missed) and, for a short while, holds the pushes that
// still reach it for the uid until the new frontend drains them, then
// forwards later ones on <prefix>.srv.<new>.fwd. Copies of one cluster push
// that reach both frontends carry the same id and are dropped.
//
// For frontends that die, a bound session is recorded in the KV bucket
// "sessions" (key <frontend>.<session>: uid, data, a hash of the token's
// secret), written at bind, suspend and resume; the pushes a suspended
// session kept, and pushes that no frontend could take for a bound uid,
// go to the stream MAILBOX (subject <prefix>.mbox.<uid key>, kept for the
// grace window). A client resuming on another frontend after its frontend
// died gets its session from the record and its pushes from the mailbox.

const (
	sessionsBucket = "sessions"
	mailboxStream  = "MAILBOX"

	hdrSeq     = "Nopal-Seq"     // the push's number in its session
	hdrSession = "Nopal-Session" // <frontend>.<session> of a frontend's entry
	hdrPushID  = "Nopal-Push-Id" // the cluster push's id
	hdrRoute   = "Nopal-Route"   // set on a sender's entry: the body is the payload
)

// sessionRecord is a bound session as the "sessions" bucket keeps it.
type sessionRecord struct {
	UID    string         `json:"uid"`
	Secret string         `json:"secret"` // hex SHA-256 of the token's secret
	Data   map[string]any `json:"data,omitempty"`
}

type resumeReq struct {
	Op     string `json:"op"` // "take" or "drain"
	Token  string `json:"token,omitempty"`
	Pushes uint64 `json:"pushes,omitempty"`
	UID    string `json:"uid,omitempty"`
	To     string `json:"to"`
}

type resumeReply struct {
	Handover *frontend.Handover    `json:"handover,omitempty"`
	Drained  []frontend.MissedPush `json:"drained,omitempty"`
	Error    string                `json:"error,omitempty"`
}

// resumer implements frontend.ResumeCluster.
type resumer struct {
	c    *cluster
	kv   jetstream.KeyValue
	mbox jetstream.Stream
	ops  chan func(context.Context) // bus writes of the hooks, in order
	done chan struct{}
	// opsCtx is the parent of every write's context: stop cancels it when
	// the shutdown's deadline passes, so the writes still queued then fail
	// at once instead of waiting for the bus one by one.
	opsCtx    context.Context
	opsCancel context.CancelFunc

	mu      sync.Mutex
	closed  bool
	watches map[string]*mailboxWatch // by record key, from Take to Moved
}

// mailboxWatch catches pushes kept for a uid after its mailbox was read
// during a resume: a sender that found the dead frontend gone a moment
// before the session moved stores the push after the read. It is set up
// before the read, and hands what it catches to the resumed session (which
// drops what it already had, by push id) for dedupeWindow.
type mailboxWatch struct {
	sub *nats.Subscription
	ch  chan *nats.Msg
}

func recordKey(t frontend.Token) string { return t.Frontend + "." + strconv.FormatInt(t.Session, 10) }

func secretHash(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// startResume provisions the bucket and the stream and serves the
// frontend's side of resumes.
func (c *cluster) startResume(ctx context.Context) error {
	a := c.app
	grace := a.cfg.Resume.Grace
	if grace <= 0 {
		grace = frontend.DefaultResumeGrace
	}
	r := &resumer{c: c, ops: make(chan func(context.Context), 4096), done: make(chan struct{})}
	r.opsCtx, r.opsCancel = context.WithCancel(context.Background())
	var err error
	if r.kv, err = c.bus.KV(ctx, jetstream.KeyValueConfig{
		Bucket: sessionsBucket, Description: "nopal: bound sessions, for resumes after their frontend died",
		Storage: jetstream.FileStorage, History: 1,
	}); err != nil {
		return fmt.Errorf("nopal: resume: %w", err)
	}
	if r.mbox, err = c.bus.Stream(ctx, jetstream.StreamConfig{
		Name: mailboxStream, Description: "nopal: pushes kept for clients that will resume",
		Subjects: []string{c.bus.Subject("mbox", ">")}, Storage: jetstream.FileStorage,
		MaxAge: max(grace, time.Second), Discard: jetstream.DiscardOld,
	}); err != nil {
		return fmt.Errorf("nopal: resume: %w", err)
	}
	if err := c.subscribe(c.bus.ServerSubject(a.cfg.ServerID, "resume"), "", r.onResume); err != nil {
		return err
	}
	if err := c.subscribe(c.bus.ServerSubject(a.cfg.ServerID, "fwd"), "", r.onForward); err != nil {
		return err
	}
	a.pool.OnAfterSessionBind(func(_ context.Context, s *session.Session) {
		uid := s.UID()
		r.enqueue(func(ctx context.Context) {
			r.purge(ctx, uid) // a fresh session: what an older one missed is not its
			r.record(ctx, s)
		})
	})
	a.pool.OnSessionResume(func(_ context.Context, s *session.Session) {
		if s.UID() != "" {
			r.enqueue(func(ctx context.Context) { r.record(ctx, s) })
		}
	})
	go r.run()
	c.resume = r
	return nil
}

// run performs the hooks' bus writes one at a time, in order.
func (r *resumer) run() {
	defer close(r.done)
	for op := range r.ops {
		ctx, cancel := context.WithTimeout(r.opsCtx, r.c.timeout)
		op(ctx)
		cancel()
	}
}

func (r *resumer) enqueue(op func(context.Context)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	select {
	case r.ops <- op:
	default:
		r.c.app.log.Warn("resume: bus writes backed up: one dropped (a resume after this frontend dies may miss it)")
	}
}

// stop performs the writes queued so far and stops; once ctx ends, the
// writes left are abandoned (a resume after this frontend is gone may then
// miss them), so a bus that does not answer cannot hold the shutdown.
func (r *resumer) stop(ctx context.Context) {
	r.mu.Lock()
	if !r.closed {
		r.closed = true
		close(r.ops)
	}
	r.mu.Unlock()
	abandon := context.AfterFunc(ctx, r.opsCancel)
	defer abandon()
	<-r.done
	r.opsCancel()
}

// pushID numbers a cluster push (never 0).
func pushID() uint64 { return rand.Uint64() | 1 }

// record writes s's record under its current token.
func (r *resumer) record(ctx context.Context, s *session.Session) {
	fe := r.c.app.Frontend()
	if fe == nil || s.Closed() {
		return
	}
	t, ok := fe.TokenOf(s)
	if !ok || s.UID() == "" {
		return
	}
	val, err := json.Marshal(sessionRecord{UID: s.UID(), Secret: secretHash(t.Secret), Data: s.Data()})
	if err == nil {
		_, err = stream.RetryMissing(ctx, r.c.bus, func(ctx context.Context) (uint64, error) {
			return r.kv.Put(ctx, recordKey(t), val)
		})
	}
	if err != nil {
		r.c.app.log.Warn("resume: cannot record the session", "session", s.ID(), "uid", s.UID(), "err", err)
	}
}

func (r *resumer) subject(uid string) string { return mailboxSubject(r.c.bus, uid) }

func mailboxSubject(bus *stream.Bus, uid string) string {
	return bus.Subject("mbox", bindings.Key(uid))
}

func (r *resumer) purge(ctx context.Context, uid string) {
	_, err := stream.RetryMissing(ctx, r.c.bus, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, r.mbox.Purge(ctx, jetstream.WithPurgeSubject(r.subject(uid)))
	})
	if err != nil {
		r.c.app.log.Warn("resume: cannot purge the mailbox", "uid", uid, "err", err)
	}
}

// keep appends a frontend's push of session t to uid's mailbox.
func (r *resumer) keep(uid string, t frontend.Token, p frontend.MissedPush) {
	m := nats.NewMsg(r.subject(uid))
	m.Data = p.Pkt
	m.Header.Set(hdrSeq, strconv.FormatUint(p.Seq, 10))
	m.Header.Set(hdrSession, recordKey(t))
	if p.ID != 0 {
		m.Header.Set(hdrPushID, strconv.FormatUint(p.ID, 10))
	}
	if _, err := r.c.bus.JS.PublishMsgAsync(m); err != nil {
		r.c.bus.RecoverMissing(err)
		r.c.app.log.Warn("resume: cannot keep a push", "uid", uid, "err", err)
	}
}

// Suspended implements frontend.ResumeCluster.
func (r *resumer) Suspended(s *session.Session, t frontend.Token, kept []frontend.MissedPush) {
	uid := s.UID()
	r.enqueue(func(ctx context.Context) {
		r.record(ctx, s)
		if r.c.app.cfg.Resume.Durable {
			return // every push is in the mailbox already
		}
		for _, p := range kept {
			r.keep(uid, t, p)
		}
	})
}

// Keep implements frontend.ResumeCluster (durable pushes).
func (r *resumer) Keep(s *session.Session, t frontend.Token, p frontend.MissedPush) {
	r.keep(s.UID(), t, p)
}

// Ended implements frontend.ResumeCluster.
func (r *resumer) Ended(s *session.Session, t frontend.Token) {
	uid := s.UID()
	r.enqueue(func(ctx context.Context) {
		if err := r.kv.Delete(ctx, recordKey(t)); err != nil {
			r.c.bus.RecoverMissing(err) // nothing to delete then, but the bucket comes back
			r.c.app.log.Warn("resume: cannot delete the session record", "uid", uid, "err", err)
		}
		// The mailbox is left to its age limit: the uid may already have
		// a newer session elsewhere, whose pushes it may hold.
	})
}

// Forward implements frontend.ResumeCluster.
func (r *resumer) Forward(to, uid string, p frontend.MissedPush) {
	data, err := proto.Marshal(&stream.Forward{Uid: uid, Packet: p.Pkt, Id: p.ID, Response: p.Response})
	if err == nil {
		err = r.c.bus.NC.Publish(r.c.bus.ServerSubject(to, "fwd"), data)
	}
	if err != nil {
		r.c.app.log.Warn("resume: cannot forward a push", "uid", uid, "to", to, "err", err)
	}
}

func (r *resumer) onForward(m *nats.Msg) {
	var f stream.Forward
	if err := proto.Unmarshal(m.Data, &f); err != nil {
		r.c.app.log.Warn("malformed forwarded push", "err", err)
		return
	}
	if fe := r.c.app.Frontend(); fe != nil {
		fe.PushPacket(f.Uid, frontend.MissedPush{ID: f.Id, Pkt: f.Packet, Response: f.Response})
	}
}

// onResume serves another frontend's take and drain requests.
func (r *resumer) onResume(m *nats.Msg) {
	r.c.calls.run(func() {
		var req resumeReq
		var rep resumeReply
		fe := r.c.app.Frontend()
		switch err := json.Unmarshal(m.Data, &req); {
		case err != nil:
			rep.Error = "malformed request"
		case fe == nil:
			rep.Error = frontend.ErrNoSuchSession.Error()
		case req.Op == "drain":
			rep.Drained = fe.Drain(req.UID, req.To)
		default:
			t, err := frontend.ParseToken(req.Token)
			if err == nil {
				ctx, cancel := context.WithTimeout(context.Background(), r.c.timeout)
				rep.Handover, err = fe.HandOver(ctx, t, req.Pushes, req.To)
				cancel()
			}
			if err != nil {
				rep.Error = err.Error()
			} else if rep.Handover.UID != "" {
				// The record of the session here goes with it.
				r.enqueue(func(ctx context.Context) { _ = r.kv.Delete(ctx, recordKey(t)) })
			}
		}
		data, _ := json.Marshal(&rep)
		_ = m.Respond(data)
	})
}

// Take implements frontend.ResumeCluster.
func (r *resumer) Take(ctx context.Context, t frontend.Token, pushes uint64) (*frontend.Handover, error) {
	ctx, cancel := context.WithTimeout(ctx, r.c.timeout)
	defer cancel()
	req, _ := json.Marshal(resumeReq{Op: "take", Token: t.String(), Pushes: pushes, To: r.c.app.cfg.ServerID})
	msg, err := r.c.bus.NC.RequestWithContext(ctx, r.c.bus.ServerSubject(t.Frontend, "resume"), req)
	if err != nil && !errors.Is(err, nats.ErrNoResponders) {
		return nil, fmt.Errorf("nopal: resume from %s: %w", t.Frontend, err)
	}
	if err == nil {
		var rep resumeReply
		if err := json.Unmarshal(msg.Data, &rep); err != nil {
			return nil, fmt.Errorf("nopal: resume from %s: %w", t.Frontend, err)
		}
		if rep.Handover != nil {
			rep.Handover.Vetted = true
			return rep.Handover, nil
		}
		// The frontend is up but has no such session: it may have been
		// restarted since the client was there.
	}
	return r.takeFromBus(ctx, t, pushes)
}

// takeFromBus resumes a session whose frontend is gone, from its record
// and its mailbox. Deleting the record claims it: a token works once.
func (r *resumer) takeFromBus(ctx context.Context, t frontend.Token, pushes uint64) (*frontend.Handover, error) {
	e, err := stream.RetryMissing(ctx, r.c.bus, func(ctx context.Context) (jetstream.KeyValueEntry, error) {
		return r.kv.Get(ctx, recordKey(t))
	})
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, frontend.ErrNoSuchSession
	}
	if err != nil {
		return nil, fmt.Errorf("nopal: resume: %w", err)
	}
	var rec sessionRecord
	if err := json.Unmarshal(e.Value(), &rec); err != nil || !frontend.SameSecret(rec.Secret, secretHash(t.Secret)) {
		return nil, frontend.ErrNoSuchSession
	}
	if err := r.kv.Delete(ctx, recordKey(t), jetstream.LastRevision(e.Revision())); err != nil {
		return nil, frontend.ErrNoSuchSession // claimed by another resume
	}
	h := &frontend.Handover{UID: rec.UID, Data: rec.Data, Sent: pushes}
	w := &mailboxWatch{ch: make(chan *nats.Msg, 256)}
	if w.sub, err = r.c.bus.NC.ChanSubscribe(r.subject(rec.UID), w.ch); err != nil {
		return nil, fmt.Errorf("nopal: resume: mailbox: %w", err)
	}
	// Whatever happens next, the watch ends after the window.
	key := recordKey(t)
	time.AfterFunc(resumeWatchWindow, func() {
		_ = w.sub.Unsubscribe()
		r.mu.Lock()
		if r.watches[key] == w {
			delete(r.watches, key) // the resume failed before Moved
		}
		r.mu.Unlock()
	})
	if err := r.readMailbox(ctx, rec.UID, recordKey(t), pushes, h); err != nil {
		return nil, err
	}
	r.mu.Lock()
	if r.watches == nil {
		r.watches = map[string]*mailboxWatch{}
	}
	r.watches[key] = w
	r.mu.Unlock()
	return h, nil
}

// resumeWatchWindow is how long a resumed session watches its mailbox for
// late pushes.
const resumeWatchWindow = 10 * time.Second

// watch hands the pushes w catches to uid's session here until the window
// ends.
func (r *resumer) watch(w *mailboxWatch, uid string) {
	fe := r.c.app.Frontend()
	timer := time.NewTimer(resumeWatchWindow)
	defer timer.Stop()
	for {
		select {
		case m := <-w.ch:
			route := m.Header.Get(hdrRoute)
			if route == "" || fe == nil {
				continue // a frontend's own numbered entry: not late
			}
			id, _ := strconv.ParseUint(m.Header.Get(hdrPushID), 10, 64)
			pkt, err := fe.EncodePush(route, m.Data)
			if err == nil {
				fe.PushPacket(uid, frontend.MissedPush{ID: id, Pkt: pkt})
			}
		case <-timer.C:
			return
		}
	}
}

// readMailbox fills h with uid's kept pushes: those numbered by session
// key after pushes (Missed), then those no frontend could take (Extra).
func (r *resumer) readMailbox(ctx context.Context, uid, key string, pushes uint64, h *frontend.Handover) error {
	subj := r.subject(uid)
	info, err := stream.RetryMissing(ctx, r.c.bus, func(ctx context.Context) (*jetstream.StreamInfo, error) {
		return r.mbox.Info(ctx, jetstream.WithSubjectFilter(subj))
	})
	if err != nil {
		return fmt.Errorf("nopal: resume: mailbox: %w", err)
	}
	n := info.State.Subjects[subj]
	if n == 0 {
		return nil
	}
	cons, err := r.mbox.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subj}})
	if err != nil {
		return fmt.Errorf("nopal: resume: mailbox: %w", err)
	}
	fe := r.c.app.Frontend()
	numbered := map[uint64]frontend.MissedPush{}
	had := map[uint64]bool{} // ids of the session's numbered pushes, received or not
	for read := uint64(0); read < n; {
		batch, err := cons.Fetch(int(min(n-read, 256)), jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return fmt.Errorf("nopal: resume: mailbox: %w", err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			hd := m.Headers()
			id, _ := strconv.ParseUint(hd.Get(hdrPushID), 10, 64)
			if route := hd.Get(hdrRoute); route != "" {
				pkt, err := fe.EncodePush(route, m.Data())
				if err == nil {
					h.Extra = append(h.Extra, frontend.MissedPush{ID: id, Pkt: pkt})
				}
				continue
			}
			seq, _ := strconv.ParseUint(hd.Get(hdrSeq), 10, 64)
			if hd.Get(hdrSession) != key {
				continue // another session's
			}
			if id != 0 {
				had[id] = true
			}
			if seq <= pushes {
				continue // received
			}
			numbered[seq] = frontend.MissedPush{Seq: seq, ID: id, Pkt: m.Data()}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return fmt.Errorf("nopal: resume: mailbox: %w", err)
		}
		if got == 0 {
			break // expired meanwhile
		}
		read += uint64(got)
	}
	// A sender keeps a push when the frontend did not answer in time; if
	// that frontend had taken it after all, it is numbered here too.
	h.Extra = slices.DeleteFunc(h.Extra, func(p frontend.MissedPush) bool { return p.ID != 0 && had[p.ID] })
	seqs := make([]uint64, 0, len(numbered))
	for s := range numbered {
		seqs = append(seqs, s)
	}
	slices.Sort(seqs)
	for i, s := range seqs {
		if s != pushes+uint64(i)+1 {
			return fmt.Errorf("nopal: resume: push %d of the session is not kept: %w", pushes+uint64(i)+1, frontend.ErrResumeGap)
		}
		h.Missed = append(h.Missed, numbered[s])
	}
	if len(seqs) > 0 {
		h.Sent = seqs[len(seqs)-1]
	}
	return nil
}

// Moved implements frontend.ResumeCluster: the binding follows the session
// and the old frontend, if alive, hands over what it held meanwhile.
func (r *resumer) Moved(ctx context.Context, from frontend.Token, s *session.Session) ([]frontend.MissedPush, error) {
	ctx, cancel := context.WithTimeout(ctx, r.c.timeout)
	defer cancel()
	uid := s.UID()
	if uid == "" {
		return nil, nil
	}
	me := r.c.app.cfg.ServerID
	if err := r.c.store.Move(ctx, uid, bindings.Binding{FrontendID: from.Frontend, SessionID: from.Session},
		bindings.Binding{FrontendID: me, SessionID: s.ID()}); err != nil {
		return nil, err
	}
	r.mu.Lock()
	w := r.watches[recordKey(from)]
	delete(r.watches, recordKey(from))
	r.mu.Unlock()
	if w != nil {
		go r.watch(w, uid) // the session's frontend died: late pushes come by the mailbox
	}
	var drained []frontend.MissedPush
	req, _ := json.Marshal(resumeReq{Op: "drain", UID: uid, To: me})
	msg, err := r.c.bus.NC.RequestWithContext(ctx, r.c.bus.ServerSubject(from.Frontend, "resume"), req)
	if err == nil {
		var rep resumeReply
		if json.Unmarshal(msg.Data, &rep) == nil {
			drained = rep.Drained
		}
	}
	r.enqueue(func(ctx context.Context) {
		r.purge(ctx, uid) // what the mailbox kept is in the handover
		r.record(ctx, s)
	})
	return drained, nil
}

// fallback keeps a cluster push for bound uids whose frontend is gone
// (not answering, or no longer discovered): their clients may resume on
// another frontend and get it there.
func (c *cluster) fallback(ctx context.Context, uids []string, route string, payload []byte, id uint64, gone map[string]bool) {
	for _, uid := range uids {
		b, err := c.store.Get(ctx, uid)
		if err != nil {
			continue // not bound: nobody to resume
		}
		if _, alive := c.disc.ServerByID(b.FrontendID); alive && !gone[b.FrontendID] {
			continue // its frontend is up and does not have it: not ours to keep
		}
		m := nats.NewMsg(mailboxSubject(c.bus, uid))
		m.Data = payload
		m.Header.Set(hdrRoute, route)
		m.Header.Set(hdrPushID, strconv.FormatUint(id, 10))
		// Nothing is stored when the stream is missing: a retry once it is
		// back stores the push once.
		if _, err := stream.RetryMissing(ctx, c.bus, func(ctx context.Context) (*jetstream.PubAck, error) {
			return c.bus.JS.PublishMsg(ctx, m)
		}); err != nil {
			c.app.log.Warn("resume: cannot keep a push for a user whose frontend is gone", "uid", uid, "err", err)
		}
	}
}
