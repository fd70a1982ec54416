package cluster

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
)

// The resume messages between frontends (stream.ResumeRequest,
// stream.ResumeReply) and the session records (stream.SessionRecord) are
// protobuf, as every other bus message; these convert the frontend's types.

func toMissed(ps []frontend.MissedPush) []*stream.MissedPush {
	if len(ps) == 0 {
		return nil
	}
	out := make([]*stream.MissedPush, len(ps))
	for i, p := range ps {
		out[i] = &stream.MissedPush{Seq: p.Seq, Id: p.ID, Packet: p.Pkt, Response: p.Response}
	}
	return out
}

func fromMissed(ps []*stream.MissedPush) []frontend.MissedPush {
	if len(ps) == 0 {
		return nil
	}
	out := make([]frontend.MissedPush, len(ps))
	for i, p := range ps {
		out[i] = frontend.MissedPush{Seq: p.GetSeq(), ID: p.GetId(), Pkt: p.GetPacket(), Response: p.GetResponse()}
	}
	return out
}

func toHandover(h *frontend.Handover) (*stream.Handover, error) {
	data, err := encodeData(h.Data)
	if err != nil {
		return nil, err
	}
	return &stream.Handover{Uid: h.UID, Data: data, Sent: h.Sent, Missed: toMissed(h.Missed),
		Responses: h.Responses, Extra: toMissed(h.Extra)}, nil
}

func fromHandover(h *stream.Handover) (*frontend.Handover, error) {
	data, err := decodeData(h.GetData())
	if err != nil {
		return nil, err
	}
	return &frontend.Handover{UID: h.GetUid(), Data: data, Sent: h.GetSent(), Missed: fromMissed(h.GetMissed()),
		Responses: h.GetResponses(), Extra: fromMissed(h.GetExtra())}, nil
}

// encodeData and decodeData carry session data as JSON (numbers come back
// as float64, as on every hop of a backend session).
func encodeData(data map[string]any) ([]byte, error) {
	if len(data) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(data)
	if err != nil {
		return nil, fmt.Errorf("cluster: session data: %w", err)
	}
	return b, nil
}

func decodeData(b []byte) (map[string]any, error) {
	if len(b) == 0 {
		return nil, nil
	}
	var data map[string]any
	if err := json.Unmarshal(b, &data); err != nil {
		return nil, fmt.Errorf("cluster: session data: %w", err)
	}
	return data, nil
}

// resumer implements frontend.ResumeCluster.
type resumer struct {
	c    *Runtime
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
func (c *Runtime) startResume(ctx context.Context) error {
	grace := c.cfg.Resume.Grace
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
		Subjects: []string{c.bus.MailboxWildcard()}, Storage: jetstream.FileStorage,
		MaxAge: max(grace, time.Second), Discard: jetstream.DiscardOld,
	}); err != nil {
		return fmt.Errorf("nopal: resume: %w", err)
	}
	if err := c.subscribe(c.bus.ServerResume(c.cfg.ServerID), "", r.onResume); err != nil {
		return err
	}
	if err := c.subscribe(c.bus.ServerForward(c.cfg.ServerID), "", r.onForward); err != nil {
		return err
	}
	c.cfg.Pool.OnAfterSessionBind(func(_ context.Context, s *session.Session) {
		uid := s.UID()
		r.enqueue(func(ctx context.Context) {
			r.purge(ctx, uid) // a fresh session: what an older one missed is not its
			r.record(ctx, s)
		})
	})
	c.cfg.Pool.OnSessionResume(func(_ context.Context, s *session.Session) {
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
		ctx, cancel := context.WithTimeout(r.opsCtx, r.c.cfg.RequestTimeout)
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
		r.c.log.Warn("resume: bus writes backed up: one dropped (a resume after this frontend dies may miss it)")
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
	fe := r.c.frontend()
	if fe == nil || s.Closed() {
		return
	}
	t, ok := fe.TokenOf(s)
	if !ok || s.UID() == "" {
		return
	}
	data, err := encodeData(s.Data())
	var val []byte
	if err == nil {
		val, err = proto.Marshal(&stream.SessionRecord{Uid: s.UID(), Secret: secretHash(t.Secret), Data: data})
	}
	if err == nil {
		_, err = stream.RetryMissing(ctx, r.c.bus, func(ctx context.Context) (uint64, error) {
			return r.kv.Put(ctx, recordKey(t), val)
		})
	}
	if err != nil {
		r.c.log.Warn("resume: cannot record the session", "session", s.ID(), "uid", s.UID(), "err", err)
	}
}

func (r *resumer) subject(uid string) string { return mailboxSubject(r.c.bus, uid) }

func mailboxSubject(bus *stream.Bus, uid string) string {
	return bus.MailboxSubject(bindings.Key(uid))
}

func (r *resumer) purge(ctx context.Context, uid string) {
	_, err := stream.RetryMissing(ctx, r.c.bus, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, r.mbox.Purge(ctx, jetstream.WithPurgeSubject(r.subject(uid)))
	})
	if err != nil {
		r.c.log.Warn("resume: cannot purge the mailbox", "uid", uid, "err", err)
	}
}

// keep appends a frontend's push of session t to uid's mailbox.
func (r *resumer) keep(uid string, t frontend.Token, p frontend.MissedPush) {
	m := nats.NewMsg(r.subject(uid))
	m.Data = p.Pkt
	m.Header.Set(stream.SeqHeader, strconv.FormatUint(p.Seq, 10))
	m.Header.Set(stream.SessionHeader, recordKey(t))
	if p.ID != 0 {
		m.Header.Set(stream.PushIDHeader, strconv.FormatUint(p.ID, 10))
	}
	if _, err := r.c.bus.StreamPublishAsync(m); err != nil {
		r.c.bus.RecoverMissing(err)
		r.c.log.Warn("resume: cannot keep a push", "uid", uid, "err", err)
	}
}

// Suspended implements frontend.ResumeCluster.
func (r *resumer) Suspended(s *session.Session, t frontend.Token, kept []frontend.MissedPush) {
	uid := s.UID()
	r.enqueue(func(ctx context.Context) {
		r.record(ctx, s)
		if r.c.cfg.Resume.Durable {
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
			r.c.log.Warn("resume: cannot delete the session record", "uid", uid, "err", err)
		}
		// The mailbox is left to its age limit: the uid may already have
		// a newer session elsewhere, whose pushes it may hold.
	})
}

// Forward implements frontend.ResumeCluster.
func (r *resumer) Forward(to, uid string, p frontend.MissedPush) {
	data, err := proto.Marshal(&stream.Forward{Uid: uid, Packet: p.Pkt, Id: p.ID, Response: p.Response})
	if err == nil {
		err = r.c.bus.Publish(r.c.bus.ServerForward(to), data)
	}
	if err != nil {
		r.c.log.Warn("resume: cannot forward a push", "uid", uid, "to", to, "err", err)
	}
}

func (r *resumer) onForward(m *nats.Msg) {
	var f stream.Forward
	if err := proto.Unmarshal(m.Data, &f); err != nil {
		r.c.log.Warn("malformed forwarded push", "err", err)
		return
	}
	if fe := r.c.frontend(); fe != nil {
		fe.PushPacket(f.Uid, frontend.MissedPush{ID: f.Id, Pkt: f.Packet, Response: f.Response})
	}
}

// onResume serves another frontend's take and drain requests.
func (r *resumer) onResume(m *nats.Msg) {
	r.c.calls.run(func() {
		var req stream.ResumeRequest
		var rep stream.ResumeReply
		fe := r.c.frontend()
		switch err := proto.Unmarshal(m.Data, &req); {
		case err != nil:
			rep.Error = "malformed request"
		case fe == nil:
			rep.Error = frontend.ErrNoSuchSession.Error()
		case req.Op == stream.ResumeOp_RESUME_OP_DRAIN:
			rep.Drained = toMissed(fe.Drain(req.Uid, req.To))
		default:
			t, err := frontend.ParseToken(req.Token)
			var h *frontend.Handover
			if err == nil {
				ctx, cancel := context.WithTimeout(r.c.life, r.c.cfg.RequestTimeout)
				h, err = fe.HandOver(ctx, t, req.Pushes, req.To)
				cancel()
			}
			if err == nil {
				rep.Handover, err = toHandover(h)
			}
			if err != nil {
				rep.Error = err.Error()
			} else if h.UID != "" {
				// The record of the session here goes with it.
				r.enqueue(func(ctx context.Context) { _ = r.kv.Delete(ctx, recordKey(t)) })
			}
		}
		data, _ := proto.Marshal(&rep)
		_ = m.Respond(data)
	})
}

// Take implements frontend.ResumeCluster.
func (r *resumer) Take(ctx context.Context, t frontend.Token, pushes uint64) (*frontend.Handover, error) {
	ctx, cancel := context.WithTimeout(ctx, r.c.cfg.RequestTimeout)
	defer cancel()
	req, _ := proto.Marshal(&stream.ResumeRequest{Op: stream.ResumeOp_RESUME_OP_TAKE, Token: t.String(), Pushes: pushes, To: r.c.cfg.ServerID})
	msg, err := r.c.bus.Request(ctx, r.c.bus.ServerResume(t.Frontend), req, nil)
	if err != nil && !errors.Is(err, nats.ErrNoResponders) {
		return nil, fmt.Errorf("nopal: resume from %s: %w", t.Frontend, err)
	}
	if err == nil {
		var rep stream.ResumeReply
		if err := proto.Unmarshal(msg.Data, &rep); err != nil {
			return nil, fmt.Errorf("cluster: resume from %s: %w", t.Frontend, err)
		}
		if rep.Handover != nil {
			h, err := fromHandover(rep.Handover)
			if err != nil {
				return nil, fmt.Errorf("cluster: resume from %s: %w", t.Frontend, err)
			}
			h.Vetted = true
			return h, nil
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
	var rec stream.SessionRecord
	if err := proto.Unmarshal(e.Value(), &rec); err != nil || !frontend.SameSecret(rec.Secret, secretHash(t.Secret)) {
		return nil, frontend.ErrNoSuchSession
	}
	data, err := decodeData(rec.Data)
	if err != nil {
		return nil, frontend.ErrNoSuchSession
	}
	if err := r.kv.Delete(ctx, recordKey(t), jetstream.LastRevision(e.Revision())); err != nil {
		return nil, frontend.ErrNoSuchSession // claimed by another resume
	}
	h := &frontend.Handover{UID: rec.Uid, Data: data, Sent: pushes}
	w := &mailboxWatch{ch: make(chan *nats.Msg, 256)}
	if w.sub, err = r.c.bus.ChanSubscribe(r.subject(rec.Uid), w.ch); err != nil {
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
	if err := r.readMailbox(ctx, rec.Uid, recordKey(t), pushes, h); err != nil {
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
	fe := r.c.frontend()
	timer := time.NewTimer(resumeWatchWindow)
	defer timer.Stop()
	for {
		select {
		case m := <-w.ch:
			route := m.Header.Get(stream.RouteHeader)
			if route == "" || fe == nil {
				continue // a frontend's own numbered entry: not late
			}
			id, _ := strconv.ParseUint(m.Header.Get(stream.PushIDHeader), 10, 64)
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
	fe := r.c.frontend()
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
			id, _ := strconv.ParseUint(hd.Get(stream.PushIDHeader), 10, 64)
			if route := hd.Get(stream.RouteHeader); route != "" {
				pkt, err := fe.EncodePush(route, m.Data())
				if err == nil {
					h.Extra = append(h.Extra, frontend.MissedPush{ID: id, Pkt: pkt})
				}
				continue
			}
			seq, _ := strconv.ParseUint(hd.Get(stream.SeqHeader), 10, 64)
			if hd.Get(stream.SessionHeader) != key {
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
	ctx, cancel := context.WithTimeout(ctx, r.c.cfg.RequestTimeout)
	defer cancel()
	uid := s.UID()
	if uid == "" {
		return nil, nil
	}
	me := r.c.cfg.ServerID
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
	req, _ := proto.Marshal(&stream.ResumeRequest{Op: stream.ResumeOp_RESUME_OP_DRAIN, Uid: uid, To: me})
	msg, err := r.c.bus.Request(ctx, r.c.bus.ServerResume(from.Frontend), req, nil)
	if err == nil {
		var rep stream.ResumeReply
		if proto.Unmarshal(msg.Data, &rep) == nil {
			drained = fromMissed(rep.Drained)
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
func (c *Runtime) fallback(ctx context.Context, uids []string, route string, payload []byte, id uint64, gone map[string]bool) {
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
		m.Header.Set(stream.RouteHeader, route)
		m.Header.Set(stream.PushIDHeader, strconv.FormatUint(id, 10))
		// Nothing is stored when the stream is missing: a retry once it is
		// back stores the push once.
		if _, err := stream.RetryMissing(ctx, c.bus, func(ctx context.Context) (*jetstream.PubAck, error) {
			return c.bus.StreamPublish(ctx, m)
		}); err != nil {
			c.log.Warn("resume: cannot keep a push for a user whose frontend is gone", "uid", uid, "err", err)
		}
	}
}
