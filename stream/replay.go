package stream

import (
	"container/heap"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
)

// Filter selects the records Replay reports. Zero fields select everything.
type Filter struct {
	// Since and Until bound the record time: Since <= t < Until (zero:
	// unbounded).
	Since, Until time.Time
	// Route selects records whose route equals it or starts with it and a
	// '.': "room" matches "room.room.join", "room.room" too; "roo" does
	// not. Replies have the route their recorder put in the Nopal-Route
	// header or, failing that, the route of their call when Replay saw it.
	Route string
	// UID selects calls whose session has this uid, replies to them,
	// pushes and kicks naming it, and session ops for it.
	UID string
	// Server selects records made by this server or whose subject names
	// it (<p>.srv.<id>.… and <p>.reply.<id>.…).
	Server string
	// Follow keeps tailing the log after the stored records, until ctx
	// ends.
	Follow bool
	// Reorder is how late a record may reach the log and still be
	// reported in its time order (default DefaultReorder; negative:
	// report records in stream order, as they are read). Recorders
	// append their records in batches, so the records of different
	// servers, or of different recorders of one server, reach the stream
	// out of time order by up to a batch's delay (RecorderConfig.MaxDelay)
	// and its publishing. Replay holds each record until it has read the
	// records made up to Reorder after it, or, when following live, until
	// it has held it that long: following lags the log by Reorder. It
	// holds 65536 records at most.
	Reorder time.Duration
}

// DefaultReorder is Filter.Reorder's default: well past a batch's default
// 2 ms delay and its publishing, short enough to tail the log live.
const DefaultReorder = 250 * time.Millisecond

// maxHeld bounds the records Replay holds to put them in time order; past
// it the earliest goes out at once.
const maxHeld = 1 << 16

// Entry kinds.
const (
	KindCall    = "call"
	KindReply   = "reply"
	KindPush    = "push"
	KindKick    = "kick"
	KindSession = "session"
	KindOther   = "other"
)

// Entry is one decoded record of the traffic log.
type Entry struct {
	Time     time.Time `json:"time"`
	Kind     string    `json:"kind"` // KindCall, KindReply, ...
	Subject  string    `json:"subject"`
	Reply    string    `json:"reply,omitempty"`
	Route    string    `json:"route,omitempty"`
	CallKind string    `json:"call_kind,omitempty"` // "sys" or "user"
	UID      string    `json:"uid,omitempty"`
	UIDs     []string  `json:"uids,omitempty"`
	Session  int64     `json:"session,omitempty"`
	Frontend string    `json:"frontend,omitempty"`
	Source   string    `json:"source,omitempty"`
	Recorder string    `json:"recorder"`
	// Payload is the message's payload (a call's, reply's or push's, a
	// session op's data) as JSON when it is JSON, else a JSON string of
	// its base64.
	Payload json.RawMessage   `json:"payload,omitempty"`
	Error   *ErrorInfoJSON    `json:"error,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
}

// ErrorInfoJSON is the error a reply carries.
type ErrorInfoJSON struct {
	Code     string            `json:"code"`
	Msg      string            `json:"msg,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// replaySlack is how far before Filter.Since Replay starts reading: a
// record is made before its batch reaches the stream, but the recording
// server's clock may run ahead of the NATS server's. Likewise Replay stops
// reading once a batch is stamped later than Filter.Until plus this.
const replaySlack = time.Minute

// maxPendingCalls bounds the calls Replay remembers to give their replies
// a uid and route.
const maxPendingCalls = 1 << 16

// Replay reads the traffic log and calls each, in record time order, for
// every record that f selects, decoded by its subject under the bus's
// prefix:
//
//	<p>.rpc.…, <p>.srv.<id>.rpc   a Call
//	<p>.reply.…                   a Reply (route from the Nopal-Route header)
//	<p>.srv.<id>.push             a Push
//	<p>.srv.<id>.kick             a Kick
//	<p>.srv.<id>.sess             a SessionOp
//
// anything else is KindOther with its data as payload. The stream holds
// each recorder's records in the order they were recorded, but those of
// different recorders interleave by batch: Replay puts them back in time
// order within f.Reorder (records are stamped by their server's clock, so
// records of servers whose clocks disagree by more stay in stream order).
// Without f.Follow, Replay returns nil once it has read what the log held
// when it started; with f.Follow it keeps reading new records until ctx
// ends and returns ctx's error (records still held are dropped). An error
// from each stops Replay and is returned.
func Replay(ctx context.Context, bus *Bus, f Filter, each func(Entry) error) error {
	if each == nil {
		return errors.New("stream: Replay: nil callback")
	}
	name := bus.Name(TrafficStream)
	s, err := bus.JetStream().Stream(ctx, name)
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("stream: no traffic log (stream %s): %w", name, err)
		}
		return fmt.Errorf("stream: stream %s: %w", name, err)
	}
	state := s.CachedInfo().State
	last := state.LastSeq
	if !f.Follow && state.Msgs == 0 {
		return nil
	}

	cfg := jetstream.OrderedConsumerConfig{InactiveThreshold: time.Minute}
	if !f.Since.IsZero() {
		start := f.Since.Add(-replaySlack)
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &start
	}
	cons, err := s.OrderedConsumer(ctx, cfg)
	if err != nil {
		return fmt.Errorf("stream: replay consumer: %w", err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("stream: replay consumer: %w", err)
	}
	defer func() {
		it.Stop()
		if ci := cons.CachedInfo(); ci != nil {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			_ = bus.JetStream().DeleteConsumer(dctx, name, ci.Name)
			cancel()
		}
	}()
	if ci := cons.CachedInfo(); !f.Follow && ci != nil && ci.NumPending == 0 {
		return nil // nothing stored from the start position on
	}

	f.Route = strings.TrimSuffix(f.Route, ".")
	d := decoder{prefix: bus.Prefix() + ".", calls: make(map[string]callRef)}
	window := f.Reorder
	if window == 0 {
		window = DefaultReorder
	}
	r := reorderer{window: max(window, 0), live: f.Follow}
	// emit decodes and reports the records r releases (all of them when
	// flush), in time order: calls are decoded before their replies.
	emit := func(flush bool) error {
		for rec := range r.release(time.Now(), flush) {
			e, server := d.decode(rec)
			if !f.match(&e, server) {
				continue
			}
			if err := each(e); err != nil {
				return err
			}
		}
		return nil
	}
	for {
		next := ctx
		cancel := context.CancelFunc(func() {})
		if wake, ok := r.wake(); ok {
			next, cancel = context.WithDeadline(ctx, wake)
		}
		msg, err := it.Next(jetstream.NextContext(next))
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if next != ctx && errors.Is(err, context.DeadlineExceeded) {
				// Following, with no new record: release those held long
				// enough.
				if err := emit(false); err != nil {
					return err
				}
				continue
			}
			return fmt.Errorf("stream: replay: %w", err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			return fmt.Errorf("stream: replay: %w", err)
		}
		seq := meta.Sequence.Stream
		if !f.Follow && seq > last {
			return emit(true)
		}
		if !f.Until.IsZero() && meta.Timestamp.After(f.Until.Add(replaySlack)) {
			return emit(true)
		}
		var tb TrafficBatch
		if err := proto.Unmarshal(msg.Data(), &tb); err != nil {
			bus.log.Warn("traffic replay: undecodable batch", "seq", seq, "subject", msg.Subject(), "err", err)
		}
		r.add(tb.Records, time.Now())
		if !f.Follow && (seq >= last || meta.NumPending == 0) {
			return emit(true)
		}
		if err := emit(false); err != nil {
			return err
		}
	}
}

// reorderer holds records to release them in time order: a record goes
// once a record made window after it has been read (the log has moved
// past it), or, when live, once the batch it came in has been held for
// window (no later batch can still bring an earlier record), or when more
// than maxHeld are held.
type reorderer struct {
	window time.Duration
	live   bool

	held    recordHeap
	n       uint64 // records added: ties keep stream order
	maxSeen int64  // the latest record time read
	cut     int64  // records up to this time may go
	arrived []arrival
}

// arrival is one batch read while following: when, and its latest record.
type arrival struct {
	at     time.Time
	latest int64
}

type heldRecord struct {
	rec *TrafficRecord
	n   uint64
}

type recordHeap []heldRecord

func (h recordHeap) Len() int { return len(h) }
func (h recordHeap) Less(i, j int) bool {
	ti, tj := h[i].rec.GetUnixNano(), h[j].rec.GetUnixNano()
	return ti < tj || ti == tj && h[i].n < h[j].n
}
func (h recordHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *recordHeap) Push(x any)   { *h = append(*h, x.(heldRecord)) }
func (h *recordHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = heldRecord{}
	*h = old[:len(old)-1]
	return x
}

// add holds the records of one batch, read at now.
func (r *reorderer) add(recs []*TrafficRecord, now time.Time) {
	if len(recs) == 0 {
		return
	}
	latest := int64(math.MinInt64)
	for _, rec := range recs {
		t := rec.GetUnixNano()
		latest = max(latest, t)
		heap.Push(&r.held, heldRecord{rec: rec, n: r.n})
		r.n++
	}
	r.maxSeen = max(r.maxSeen, latest)
	r.cut = max(r.cut, r.maxSeen-int64(r.window))
	if r.live {
		r.arrived = append(r.arrived, arrival{at: now, latest: latest})
	}
}

// release yields the records that may go at now, earliest first; all of
// them when flush.
func (r *reorderer) release(now time.Time, flush bool) iter.Seq[*TrafficRecord] {
	return func(yield func(*TrafficRecord) bool) {
		i := 0
		for ; i < len(r.arrived) && !now.Before(r.arrived[i].at.Add(r.window)); i++ {
			r.cut = max(r.cut, r.arrived[i].latest)
		}
		r.arrived = r.arrived[i:]
		defer func() {
			if len(r.held) == 0 {
				r.arrived = r.arrived[:0] // nothing left for them to release
			}
		}()
		for len(r.held) > 0 {
			top := r.held[0]
			if !flush && len(r.held) <= maxHeld && top.rec.GetUnixNano() > r.cut {
				return
			}
			heap.Pop(&r.held)
			if !yield(top.rec) {
				return
			}
		}
	}
}

// wake is when a live reorderer next has records to release without
// reading more.
func (r *reorderer) wake() (time.Time, bool) {
	if !r.live || len(r.held) == 0 || len(r.arrived) == 0 {
		return time.Time{}, false
	}
	return r.arrived[0].at.Add(r.window), true
}

func (f *Filter) match(e *Entry, subjectServer string) bool {
	switch {
	case !f.Since.IsZero() && e.Time.Before(f.Since):
		return false
	case !f.Until.IsZero() && !e.Time.Before(f.Until):
		return false
	case f.Route != "" && e.Route != f.Route && !(strings.HasPrefix(e.Route, f.Route) && e.Route[len(f.Route)] == '.'):
		return false
	case f.UID != "" && e.UID != f.UID && !slices.Contains(e.UIDs, f.UID):
		return false
	case f.Server != "" && e.Recorder != f.Server && subjectServer != f.Server:
		return false
	}
	return true
}

// decoder turns records into entries; it remembers calls by their reply
// subject to give each reply its call's uid, session and route.
type decoder struct {
	prefix string // "<p>."
	calls  map[string]callRef
}

type callRef struct {
	route, uid, frontend, source string
	session                      int64
}

// decode returns the entry and the server id named by the subject, if any.
func (d *decoder) decode(rec *TrafficRecord) (Entry, string) {
	e := Entry{
		Time:     time.Unix(0, rec.GetUnixNano()),
		Kind:     KindOther,
		Subject:  rec.GetSubject(),
		Reply:    rec.GetReply(),
		Recorder: rec.GetServerId(),
	}
	if len(rec.GetHeaders()) > 0 {
		e.Headers = rec.GetHeaders()
	}
	data := rec.GetData()
	rest, ok := strings.CutPrefix(e.Subject, d.prefix)
	if !ok {
		e.Payload = payloadJSON(data)
		return e, ""
	}
	head, rest, _ := strings.Cut(rest, ".")
	switch head {
	case tokRPC:
		d.call(&e, data, rest)
		return e, ""
	case tokReply:
		server, _, _ := strings.Cut(rest, ".")
		d.reply(&e, data)
		return e, server
	case tokServer:
		server, kind, _ := strings.Cut(rest, ".")
		switch kind {
		case kindRPC:
			d.call(&e, data, "")
		case kindPush:
			e.Kind, e.Frontend = KindPush, server
			var p Push
			if proto.Unmarshal(data, &p) != nil {
				e.Payload = payloadJSON(data)
				break
			}
			e.Route, e.UIDs, e.Payload = p.GetRoute(), p.GetUids(), payloadJSON(p.GetPayload())
		case kindKick:
			e.Kind, e.Frontend = KindKick, server
			var k Kick
			if proto.Unmarshal(data, &k) != nil {
				e.Payload = payloadJSON(data)
				break
			}
			e.UIDs, e.Session = k.GetUids(), k.GetSessionId()
		case kindSession:
			e.Kind, e.Frontend = KindSession, server
			var op SessionOp
			if proto.Unmarshal(data, &op) != nil {
				e.Payload = payloadJSON(data)
				break
			}
			e.Session, e.UID = op.GetSessionId(), op.GetUid()
			if op.GetSetData() {
				e.Payload = payloadJSON(op.GetData())
			}
		default:
			e.Payload = payloadJSON(data)
		}
		return e, server
	}
	e.Payload = payloadJSON(data)
	return e, ""
}

func (d *decoder) call(e *Entry, data []byte, subjectRoute string) {
	e.Kind, e.Route = KindCall, subjectRoute
	var c Call
	if proto.Unmarshal(data, &c) != nil {
		e.Payload = payloadJSON(data)
		return
	}
	if c.GetRoute() != "" {
		e.Route = c.GetRoute()
	}
	e.CallKind = "sys"
	if c.GetKind() == CallKind_CALL_KIND_USER {
		e.CallKind = "user"
	}
	if s := c.GetSession(); s != nil {
		e.UID, e.Session = s.GetUid(), s.GetId()
	}
	e.Frontend, e.Source = c.GetFrontendId(), c.GetSourceId()
	e.Payload = payloadJSON(c.GetPayload())
	if e.Reply != "" {
		if len(d.calls) >= maxPendingCalls {
			clear(d.calls) // replies never recorded: forget them all
		}
		d.calls[e.Reply] = callRef{route: e.Route, uid: e.UID, session: e.Session, frontend: e.Frontend, source: e.Source}
	}
}

func (d *decoder) reply(e *Entry, data []byte) {
	e.Kind = KindReply
	e.Route = e.Headers[RouteHeader]
	if c, ok := d.calls[e.Subject]; ok {
		delete(d.calls, e.Subject)
		if e.Route == "" {
			e.Route = c.route
		}
		e.UID, e.Session, e.Frontend, e.Source = c.uid, c.session, c.frontend, c.source
	}
	var r Reply
	if proto.Unmarshal(data, &r) != nil {
		e.Payload = payloadJSON(data)
		return
	}
	e.Payload = payloadJSON(r.GetPayload())
	if ei := r.GetError(); ei != nil {
		e.Error = &ErrorInfoJSON{Code: ei.GetCode(), Msg: ei.GetMsg(), Metadata: ei.GetMetadata()}
	}
}

// payloadJSON is p itself when it is JSON, else a JSON string of its
// base64; nil when p is empty.
func payloadJSON(p []byte) json.RawMessage {
	if len(p) == 0 {
		return nil
	}
	if json.Valid(p) {
		return json.RawMessage(p)
	}
	s := make([]byte, 0, base64.StdEncoding.EncodedLen(len(p))+2)
	s = append(s, '"')
	s = base64.StdEncoding.AppendEncode(s, p)
	return append(s, '"')
}
