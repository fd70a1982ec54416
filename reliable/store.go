package reliable

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nopal-dev/nopal/stream"
)

// Names of the JetStream objects, before the bus's prefix ("nopal_jobs",
// "nopal_JOBS", "nopal_JOBS_DLQ" with the default prefix).
const (
	Bucket    = "jobs"
	Stream    = "JOBS"
	DLQStream = "JOBS_DLQ"
)

// Headers set on job messages and dead letters (declared in stream).
const (
	// HeaderRoute is the job's route, on its dead letter (a job message
	// carries its route in its body).
	HeaderRoute = stream.JobRouteHeader
	// HeaderState is the job's final state, on its dead letter.
	HeaderState = stream.JobStateHeader
)

// dupWindow is the streams' Nats-Msg-Id window (dead letters carry one;
// job messages need none: JOBS refuses a second message per subject).
const (
	dupWindow = 2 * time.Minute
	opTimeout = 5 * time.Second
)

// store is what Client and Worker share: the bucket and the two streams.
//
// A job is its message in JOBS until a worker (or Cancel) first writes its
// record in the bucket; from then on the record is the truth and the message
// only carries the job to a worker. The writes of a job that succeeds at the
// first attempt are three: the message (Enqueue), the record created running
// (the claim, a KV Create: it fails if the jid has a record already, which
// keeps a job from running again however late its jid is enqueued again),
// and the record updated succeeded; the consumer's ack stores nothing in
// JOBS.
//
// The bus re-creates them, empty, when they are missing (a NATS server
// restarted with an empty store, an operator's delete): on its reconnection,
// and when an operation here fails for that reason. Reads and writes that
// did not happen are then retried once (stream.RetryMissing): Enqueue's
// publish too (nothing was written if it failed); Retry's publish only asks
// for the re-creation, since Retry undoes its record and reports the
// failure.
type store struct {
	bus      *stream.Bus
	js       jetstream.JetStream
	kv       jetstream.KeyValue
	jobs     jetstream.Stream
	dlq      jetstream.Stream
	kvStream string // the bucket's stream, "KV_<bucket>"
	kvPrefix string // the subject prefix of the bucket's keys, "$KV.<bucket>."
	log      *slog.Logger
}

// ClientOption configures NewClient.
type ClientOption func(*clientOptions)

type clientOptions struct {
	log       *slog.Logger
	dlqMaxAge time.Duration
}

// WithLogger sets the client's logger (default slog.Default()).
func WithLogger(l *slog.Logger) ClientOption { return func(o *clientOptions) { o.log = l } }

// WithDLQMaxAge bounds how long dead letters stay in JOBS_DLQ (default:
// forever; the KV record keeps the job's history either way).
func WithDLQMaxAge(d time.Duration) ClientOption {
	return func(o *clientOptions) { o.dlqMaxAge = d }
}

// provision creates or updates the bucket and the streams (idempotent).
//
// JOBS keeps every job's message (limits retention, one message per
// subject, new ones refused): the message is the job as enqueued, and the
// refusal of a second message for its subject is what makes Enqueue
// exactly-once with a single write. A consumer's ack then costs the stream
// nothing (a work queue would remove the message on every ack, which the file
// store pays for with a tombstone write, and with a new block file each time
// the queue runs empty). Rollup is allowed so that Retry can replace the
// message of a dead job with a new one.
func provision(ctx context.Context, bus *stream.Bus, o clientOptions) (*store, error) {
	if bus == nil {
		return nil, fmt.Errorf("%w: nil bus", ErrConfig)
	}
	if o.log == nil {
		o.log = slog.Default()
	}
	kv, err := bus.KV(ctx, jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "nopal: reliable RPC jobs by jid",
		Storage:     jetstream.FileStorage,
		History:     1,
	})
	if err != nil {
		return nil, fmt.Errorf("reliable: %w", err)
	}
	jobs, err := bus.Stream(ctx, jetstream.StreamConfig{
		Name:                 Stream,
		Description:          "nopal: reliable RPC jobs, one message per job as enqueued",
		Subjects:             []string{bus.JobsWildcard()},
		Retention:            jetstream.LimitsPolicy,
		Storage:              jetstream.FileStorage,
		MaxMsgsPerSubject:    1,
		Discard:              jetstream.DiscardNew,
		DiscardNewPerSubject: true,
		AllowRollup:          true,
		Duplicates:           dupWindow,
		AllowDirect:          true,
	})
	if err != nil {
		return nil, fmt.Errorf("reliable: %w", err)
	}
	if err := checkJobsStream(jobs.CachedInfo().Config); err != nil {
		return nil, err
	}
	dlq, err := bus.Stream(ctx, jetstream.StreamConfig{
		Name:              DLQStream,
		Description:       "nopal: reliable RPC jobs that died or failed, with their history",
		Subjects:          []string{bus.DLQWildcard()},
		Retention:         jetstream.LimitsPolicy,
		Storage:           jetstream.FileStorage,
		MaxMsgsPerSubject: 1,
		MaxAge:            o.dlqMaxAge,
		Duplicates:        dupWindow,
		AllowDirect:       true,
	})
	if err != nil {
		return nil, fmt.Errorf("reliable: %w", err)
	}
	return &store{bus: bus, js: bus.JetStream(), kv: kv, jobs: jobs, dlq: dlq, kvStream: "KV_" + kv.Bucket(), kvPrefix: "$KV." + kv.Bucket() + ".", log: o.log}, nil
}

// jobSubject is where a record's message is published:
// <p>.job.<svtype>.<jid>, or <p>.job.<svtype>.srv.<target>.<jid>.
func (s *store) jobSubject(r *record) string {
	if r.Target != "" {
		return s.bus.JobTargetSubject(r.ServerType(), r.Target, r.JID)
	}
	return s.bus.JobSubject(r.ServerType(), r.JID)
}

// dlqSubject is where a record's dead letter goes: <p>.jobdlq.<svtype>.<jid>.
func (s *store) dlqSubject(r *record) string {
	return s.bus.DLQSubject(r.ServerType(), r.JID)
}

func (s *store) get(ctx context.Context, jid string) (*record, uint64, error) {
	e, err := stream.RetryMissing(ctx, s.bus, func(ctx context.Context) (jetstream.KeyValueEntry, error) {
		return s.kv.Get(ctx, jid)
	})
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, fmt.Errorf("%w: %s", ErrNotFound, jid)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("reliable: get %s: %w", jid, err)
	}
	r, err := decode(e.Value())
	if err != nil {
		return nil, 0, fmt.Errorf("reliable: get %s: %w", jid, err)
	}
	r.Revision = e.Revision()
	return r, e.Revision(), nil
}

// load returns the job's record, or, for a job no worker has taken yet (it
// has no record), the job as enqueued, read from its message in JOBS, with
// revision 0.
func (s *store) load(ctx context.Context, jid string) (*record, uint64, error) {
	r, rev, err := s.get(ctx, jid)
	if !errors.Is(err, ErrNotFound) {
		return r, rev, err
	}
	q, qerr := s.queued(ctx, jid)
	if qerr != nil {
		return nil, 0, qerr
	}
	// Taken meanwhile? The record has the last word. Read it again even
	// when the message is gone: a job may have been claimed, finished and
	// purged from JOBS since the first read, and every path that removes a
	// message (a purge below an ack floor, Cancel) writes the record first.
	if r, rev, err := s.get(ctx, jid); !errors.Is(err, ErrNotFound) {
		return r, rev, err
	}
	if q == nil {
		return nil, 0, err
	}
	return q, 0, nil
}

// queued reads the message of a job by its jid alone (any server type, any
// target), nil if there is none.
func (s *store) queued(ctx context.Context, jid string) (*record, error) {
	for _, subj := range []string{s.bus.JobSubject("*", jid), s.bus.JobTargetSubject("*", "*", jid)} {
		m, err := stream.RetryMissing(ctx, s.bus, func(ctx context.Context) (*jetstream.RawStreamMsg, error) {
			return s.jobs.GetLastMsgForSubject(ctx, subj)
		})
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reliable: get %s: %w", jid, err)
		}
		r, err := decodeMsg(m.Data)
		if err != nil || r.JID != jid {
			continue // not a job message (a message published from outside)
		}
		return r, nil
	}
	return nil, nil
}

func decode(b []byte) (*record, error) {
	r := &record{}
	if err := json.Unmarshal(b, r); err != nil {
		return nil, fmt.Errorf("bad record: %w", err)
	}
	return r, nil
}

// encode is the record's JSON, as json.Marshal writes it (appendRecord).
func encode(r *record) []byte {
	return appendRecord(make([]byte, 0, 384+160*len(r.Attempts)+len(r.Baggage)+(len(r.Arg)+len(r.Result))*4/3), r)
}

// publish sends the job's message and waits for the stream's ack. The
// message is the record as it is now (queued, its attempts dropped): what a
// worker needs to run the job without reading anything else when the job
// has no record yet. It carries the record's propagated values (r.Baggage)
// in its baggage header, not ctx's.
//
// Without replace, JOBS refuses the message if the subject has one already
// (errExists): that is Enqueue's exactly-once. With replace (a Retry, a
// sweep), the message replaces the subject's old one (rollup).
func (s *store) publish(ctx context.Context, r *record, replace bool) (uint64, error) {
	// No header unless needed: the body has the route and the values,
	// and a message without headers is cheaper to parse at both ends.
	m := &nats.Msg{Subject: s.jobSubject(r)}
	if r.Baggage != "" {
		// The enqueuer's propagated values, also as a header for
		// whoever reads the stream: those stored with the job, not
		// ctx's (a sweeper's or a Retry caller's).
		m.Header = nats.Header{stream.BaggageHeader: []string{r.Baggage}}
	}
	if replace {
		if m.Header == nil {
			m.Header = nats.Header{}
		}
		m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	}
	m.Data = encodeMsg(r)
	// No responders means no stream took the message (JOBS is gone):
	// the bus re-creates it and the publish is tried again.
	seq, err := stream.RetryMissing(ctx, s.bus, func(ctx context.Context) (uint64, error) {
		return s.store(ctx, m)
	})
	if exists(err) {
		return 0, errExists
	}
	return seq, err
}

// checkJobsStream refuses a JOBS stream made by an older version (a work
// queue that deletes each job on ack and stores a second message for a
// jid): provisioning keeps an existing stream's configuration, JetStream
// cannot change a stream's retention, and exactly-once Enqueue relies on
// one message per jid subject with new ones refused.
func checkJobsStream(c jetstream.StreamConfig) error {
	if c.Retention == jetstream.LimitsPolicy && c.MaxMsgsPerSubject == 1 &&
		c.Discard == jetstream.DiscardNew && c.DiscardNewPerSubject && c.AllowRollup {
		return nil
	}
	return fmt.Errorf("%w: the stream %s was made by an older version of Nopal (retention %s, %d messages per subject): "+
		"jobs are now kept one message per jid; delete the stream (nats stream rm %s) and start again",
		ErrConfig, c.Name, c.Retention, c.MaxMsgsPerSubject, c.Name)
}

// codeStoreFailed is JetStream's JSStreamStoreFailedF: a message the stream
// did not store, for the reason in the description.
const codeStoreFailed jetstream.ErrorCode = 10077

// store writes one message to a stream and returns its sequence. It is
// jetstream's PublishMsg without the JSON decoding of every ack (only an
// error is decoded): the worker's and Enqueue's writes are the hot path.
func (s *store) store(ctx context.Context, m *nats.Msg) (uint64, error) {
	// As jetstream's publish does, never wait forever for an ack (a
	// timeout, not a context with a deadline: see stream.Bus.Call).
	resp, err := s.bus.Call(ctx, m.Subject, m.Data, m.Header, opTimeout)
	if err != nil {
		return 0, err
	}
	return parseAck(resp.Data)
}

// parseAck reads a JetStream publish ack: the sequence, or its error as a
// *jetstream.APIError.
func parseAck(b []byte) (uint64, error) {
	if bytes.Contains(b, []byte(`"error"`)) {
		var r struct {
			Error *jetstream.APIError `json:"error"`
		}
		if err := json.Unmarshal(b, &r); err != nil || r.Error == nil {
			return 0, fmt.Errorf("reliable: bad publish ack %q", b)
		}
		return 0, fmt.Errorf("nats: %w", r.Error)
	}
	_, rest, ok := bytes.Cut(b, []byte(`"seq":`))
	if !ok {
		return 0, fmt.Errorf("reliable: bad publish ack %q", b)
	}
	var seq uint64
	for _, c := range rest {
		if c < '0' || c > '9' {
			break
		}
		seq = seq*10 + uint64(c-'0')
	}
	if seq == 0 {
		return 0, fmt.Errorf("reliable: bad publish ack %q", b)
	}
	return seq, nil
}

// put writes a record over revision rev (0: the jid's first record, which
// fails if it has one), as KeyValue's Update and Create do, and returns the
// new revision.
func (s *store) put(ctx context.Context, jid string, r *record, rev uint64) (uint64, error) {
	m := nats.NewMsg(s.kvPrefix + jid)
	m.Data = encode(r)
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(rev, 10))
	nrev, err := s.store(ctx, m)
	if rev == 0 && conflict(err) {
		// The key may only have a delete marker, which Create handles.
		return s.kv.Create(ctx, jid, m.Data)
	}
	return nrev, err
}

// errExists: JOBS refused a job message because its subject has one.
var errExists = errors.New("reliable: the job has a message already")

// exists reports whether a publish was refused because the subject has a
// message already (DiscardNewPerSubject).
func exists(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == codeStoreFailed &&
		strings.Contains(apiErr.Description, "maximum messages per subject")
}

// fromMessage returns the job as enqueued that a job message carries, nil
// if it carries none.
func fromMessage(msg jetstream.Msg) *record {
	r, err := decodeMsg(msg.Data())
	if err != nil {
		return nil
	}
	return r
}

// ensurePublished publishes the record's message unless JOBS holds the one
// of its current generation. It closes the window of a crash between a
// Retry's record update and its publish (and repairs a purge from outside).
// A duplicate message is harmless: the worker that claims the job records
// the message's sequence and drops any other.
func (s *store) ensurePublished(ctx context.Context, r *record) error {
	m, err := stream.RetryMissing(ctx, s.bus, func(ctx context.Context) (*jetstream.RawStreamMsg, error) {
		return s.jobs.GetLastMsgForSubject(ctx, s.jobSubject(r))
	})
	if err == nil {
		if cur, derr := decodeMsg(m.Data); derr == nil && cur.JID == r.JID && cur.Gen == r.Gen {
			return nil
		}
	} else if !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("reliable: look up message of %s: %w", r.JID, err)
	}
	// Publishing is the point here: retry it once if JOBS was missing.
	_, err = stream.RetryMissing(ctx, s.bus, func(ctx context.Context) (uint64, error) {
		return s.publish(ctx, r, true)
	})
	if err != nil {
		return fmt.Errorf("reliable: publish %s: %w", r.JID, err)
	}
	s.log.Info("reliable: job message re-published", "jid", r.JID, "state", r.State)
	return nil
}

// publishDLQ stores the record, with its attempts, in JOBS_DLQ (one copy per
// jid: a later one replaces it).
func (s *store) publishDLQ(ctx context.Context, r *record) error {
	body, err := json.Marshal(&r.Job)
	if err != nil {
		return fmt.Errorf("reliable: dead letter %s: %w", r.JID, err)
	}
	m := nats.NewMsg(s.dlqSubject(r))
	m.Data = body
	m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("%s#dlq#%d#%s", r.JID, r.Gen, r.State))
	m.Header.Set(HeaderRoute, r.Route)
	m.Header.Set(HeaderState, string(r.State))
	// The message id makes a retry harmless.
	_, err = stream.RetryMissing(ctx, s.bus, func(ctx context.Context) (*jetstream.PubAck, error) {
		return s.js.PublishMsg(ctx, m)
	})
	if err != nil {
		return fmt.Errorf("reliable: dead letter %s: %w", r.JID, err)
	}
	return nil
}

// scanOvertime bounds how long a scan reads past the end it started with.
const scanOvertime = 5 * time.Second

// scan calls fn with every record last updated at or after since (all when
// since is zero), reading the bucket's stream with an ordered consumer.
// fn returning false stops the scan.
//
// The bucket keeps one revision per job: a job rewritten during the scan
// loses its old message and gets a new one past the stream's last sequence
// at the start. So a complete scan reads past that point until nothing is
// pending (for at most scanOvertime, under a steady stream of writes), and
// fn may see a job twice: the caller keeps the newest revision. A scan
// that is not complete stops at that point (the sweep: a job rewritten
// meanwhile is not stuck).
func (s *store) scan(ctx context.Context, since time.Time, complete bool, fn func(*record) bool) error {
	return s.scanStream(ctx, s.kvStream, "$KV."+s.kv.Bucket()+".>", decode, since, complete, fn)
}

// scanQueued calls fn with every job message of JOBS stored at or after
// since (all when since is zero), as the job was enqueued (state queued,
// revision 0). Messages are never rewritten in place, so the scan stops at
// the stream's last sequence at its start.
func (s *store) scanQueued(ctx context.Context, since time.Time, fn func(*record) bool) error {
	return s.scanStream(ctx, s.bus.Name(Stream), s.bus.JobsWildcard(), decodeMsg, since, false, func(r *record) bool {
		r.Revision = 0
		return fn(r)
	})
}

// scanStream reads the stream name's messages on filter with an ordered
// consumer; see scan.
func (s *store) scanStream(ctx context.Context, name, filter string, dec func([]byte) (*record, error), since time.Time, complete bool, fn func(*record) bool) error {
	st, err := stream.RetryMissing(ctx, s.bus, func(ctx context.Context) (jetstream.Stream, error) {
		return s.js.Stream(ctx, name)
	})
	if err != nil {
		return fmt.Errorf("reliable: scan: %w", err)
	}
	info := st.CachedInfo()
	if info.State.Msgs == 0 || (!since.IsZero() && info.State.LastTime.Before(since)) {
		return nil
	}
	last := info.State.LastSeq
	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects:    []string{filter},
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		InactiveThreshold: 10 * time.Second,
	}
	if !since.IsZero() {
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &since
	}
	cons, err := s.js.OrderedConsumer(ctx, name, cfg)
	if err != nil {
		return fmt.Errorf("reliable: scan: %w", err)
	}
	var passed time.Time // when the scan reached the last sequence of its start
	sawAny, empties := false, 0
	for {
		batch, err := cons.Fetch(512, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return fmt.Errorf("reliable: scan: %w", err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				continue
			}
			sawAny = true
			if md.Sequence.Stream >= last && passed.IsZero() {
				passed = time.Now()
			}
			switch m.Headers().Get("KV-Operation") {
			case "DEL", "PURGE":
			default:
				if r, err := dec(m.Data()); err == nil {
					r.Revision = md.Sequence.Stream
					if !fn(r) {
						return ctx.Err()
					}
				}
			}
			if !passed.IsZero() && (!complete || time.Since(passed) > scanOvertime) {
				return ctx.Err()
			}
			if md.NumPending == 0 {
				// Nothing pending, as the consumer counts: its count of a
				// message just stored may lag, so the stream has the last
				// word. The rest of the batch would only wait for the
				// pull to expire: leave it (the fetch ends on its own).
				info, err := st.Info(ctx)
				if err != nil {
					return fmt.Errorf("reliable: scan: %w", err)
				}
				if info.State.LastSeq <= md.Sequence.Stream {
					return ctx.Err()
				}
				// More since: the pull, still open, delivers them.
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return fmt.Errorf("reliable: scan: %w", err)
		}
		if n == 0 {
			// An empty fetch is not the end: the last message said how
			// many were still pending (an ordered consumer being reset
			// delivers nothing for a moment): fetch again, up to three
			// times. No message at all means nothing matched.
			if empties++; !sawAny || empties >= 3 {
				return ctx.Err()
			}
			continue
		}
		empties = 0
	}
}

// conflict reports whether err is a compare-and-set failure: the key exists
// (Create) or its last revision is not the one given (Update, Delete).
func conflict(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// opCtx is a context for one I/O step that must happen even when the
// caller's context is done (undoing a half-done Enqueue, recording a result).
func opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), opTimeout)
}
