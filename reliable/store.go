package reliable

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nopal-dev/nopal/stream"
	"github.com/oklog/ulid/v2"
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
	// HeaderRoute is the job's route, on its message and dead letter.
	HeaderRoute = stream.JobRouteHeader
	// HeaderState is the job's final state, on its dead letter.
	HeaderState = stream.JobStateHeader
)

// dupWindow is the JOBS stream's Nats-Msg-Id window; orphanGrace is how long
// a message whose record does not exist is kept before it is dropped (it
// must outlast dupWindow, see worker.orphan).
const (
	dupWindow   = 2 * time.Minute
	orphanGrace = dupWindow + time.Minute
	opTimeout   = 5 * time.Second
)

// store is what Client and Worker share: the bucket and the two streams.
//
// The bus re-creates them, empty, when they are missing (a NATS server
// restarted with an empty store, an operator's delete): on its reconnection,
// and when an operation here fails for that reason. Reads and writes that
// did not happen are then retried once (stream.RetryMissing); a publish of a
// job message only asks for the re-creation, since Enqueue and Retry undo
// their record and report the failure (enqueue again with WithJID).
type store struct {
	bus      *stream.Bus
	js       jetstream.JetStream
	kv       jetstream.KeyValue
	jobs     jetstream.Stream
	dlq      jetstream.Stream
	kvStream string // the bucket's stream, "KV_<bucket>"
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
		Name:        Stream,
		Description: "nopal: reliable RPC jobs to run (work queue)",
		Subjects:    []string{bus.JobsWildcard()},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Duplicates:  dupWindow,
		AllowDirect: true,
	})
	if err != nil {
		return nil, fmt.Errorf("reliable: %w", err)
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
	return &store{bus: bus, js: bus.JetStream(), kv: kv, jobs: jobs, dlq: dlq, kvStream: "KV_" + kv.Bucket(), log: o.log}, nil
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

func decode(b []byte) (*record, error) {
	r := &record{}
	if err := json.Unmarshal(b, r); err != nil {
		return nil, fmt.Errorf("bad record: %w", err)
	}
	return r, nil
}

func encode(r *record) []byte {
	b, err := json.Marshal(r)
	if err != nil {
		// A record holds only strings, byte slices, numbers and times.
		panic("reliable: encode record: " + err.Error())
	}
	return b
}

// publish sends the record's job message with Nats-Msg-Id id and waits for
// the stream's ack. The message carries the record's propagated values
// (r.Baggage) in its baggage header, not ctx's, and a copy of the record at
// revision r.Revision: a worker claims the job with a compare-and-set on that
// revision without reading the record first, and reads it only when the
// record has changed since (a redelivery, a cancel).
func (s *store) publish(ctx context.Context, r *record, id string) (*jetstream.PubAck, error) {
	m := nats.NewMsg(s.jobSubject(r))
	m.Header.Set(jetstream.MsgIDHeader, id)
	m.Header.Set(HeaderRoute, r.Route)
	// The enqueuer's propagated values, for the job's context: those
	// stored at Enqueue, not ctx's (a sweeper's or a Retry caller's).
	if r.Baggage != "" {
		m.Header.Set(stream.BaggageHeader, r.Baggage)
	}
	if r.Revision != 0 {
		m.Header.Set(headerRevision, strconv.FormatUint(r.Revision, 10))
		m.Data = encode(r)
	}
	ack, err := s.js.PublishMsg(ctx, m)
	if err != nil {
		s.bus.RecoverMissing(err) // no JOBS to take it: have it re-created
	}
	return ack, err
}

// headerRevision is the KV revision of the record copy a job message carries.
const headerRevision = stream.JobRevisionHeader

// fromMessage returns the record copy carried by a job message, and its
// revision (0 if there is none).
func fromMessage(msg jetstream.Msg) (*record, uint64) {
	rev, err := strconv.ParseUint(msg.Headers().Get(headerRevision), 10, 64)
	if err != nil || rev == 0 {
		return nil, 0
	}
	r, err := decode(msg.Data())
	if err != nil {
		return nil, 0
	}
	r.Revision = rev
	return r, rev
}

// ensurePublished publishes the record's message unless one for its jid is
// in JOBS. It closes the window of a crash between the KV Create (or a
// Retry's Update) and the publish. A duplicate message is harmless: the
// worker that claims the job records the message's sequence and drops any
// other.
func (s *store) ensurePublished(ctx context.Context, r *record) error {
	_, err := stream.RetryMissing(ctx, s.bus, func(ctx context.Context) (*jetstream.RawStreamMsg, error) {
		return s.jobs.GetLastMsgForSubject(ctx, s.jobSubject(r))
	})
	if err == nil {
		return nil
	}
	if !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("reliable: look up message of %s: %w", r.JID, err)
	}
	// Publishing is the point here: retry it once if JOBS was missing.
	ack, err := stream.RetryMissing(ctx, s.bus, func(ctx context.Context) (*jetstream.PubAck, error) {
		return s.publish(ctx, r, r.msgID())
	})
	if err != nil {
		return fmt.Errorf("reliable: publish %s: %w", r.JID, err)
	}
	if ack.Duplicate {
		// A message with this id was stored less than 2 minutes ago and
		// is gone (an operator purged it): publish under a fresh id.
		if _, err := s.publish(ctx, r, r.msgID()+"#"+ulid.Make().String()); err != nil {
			return fmt.Errorf("reliable: publish %s: %w", r.JID, err)
		}
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
	st, err := stream.RetryMissing(ctx, s.bus, func(ctx context.Context) (jetstream.Stream, error) {
		return s.js.Stream(ctx, s.kvStream)
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
		FilterSubjects:    []string{"$KV." + s.kv.Bucket() + ".>"},
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		InactiveThreshold: 10 * time.Second,
	}
	if !since.IsZero() {
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &since
	}
	cons, err := s.js.OrderedConsumer(ctx, s.kvStream, cfg)
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
				if r, err := decode(m.Data()); err == nil {
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
