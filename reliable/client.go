package reliable

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nopal-dev/nopal/codec"
	"github.com/nopal-dev/nopal/propagate"
	"github.com/nopal-dev/nopal/stream"
	"github.com/oklog/ulid/v2"
)

// Client enqueues jobs and reads, waits for, lists, retries and cancels
// them. It is safe for concurrent use; any number of processes may have one.
type Client struct {
	s *store
}

// NewClient provisions, idempotently, the KV bucket "jobs" (file storage,
// one revision per key), the work-queue stream "JOBS" on <p>.job.> (file)
// and the stream "JOBS_DLQ" on <p>.jobdlq.> (file, limits, one message per
// jid), and returns a Client on them.
func NewClient(ctx context.Context, bus *stream.Bus, opts ...ClientOption) (*Client, error) {
	var o clientOptions
	for _, opt := range opts {
		opt(&o)
	}
	s, err := provision(ctx, bus, o)
	if err != nil {
		return nil, err
	}
	return &Client{s: s}, nil
}

// Enqueue records a job that calls route ("svtype.component.method") with
// arg (encoded with codec.Auto) on a server of type svtype, and returns its
// jid once the job is durable: its message is in JOBS, acknowledged by the
// stream. A route that codec.ParseFullRoute rejects (see codec.ParseRoute
// for the rule) returns an error matching both ErrInvalidRoute and
// codec.ErrInvalidRoute.
//
// Enqueue is exactly-once per jid with a single write: the job's message
// goes to a subject of its own (<p>.job.<svtype>.<jid>) in a stream that
// keeps one message per subject and refuses a second one. Enqueueing a jid
// that exists (WithJID) is not an error: it returns the jid and nil,
// whatever state the job is in, and a job never runs again because its jid
// was enqueued again (a worker that gets such a message finds the job's
// record and acks the message unrun).
//
// Enqueue returns the jid with every error: when the outcome is unknown
// (the connection died before the stream's ack came back), enqueue again
// with WithJID(jid), which is always safe. There is no crash window: the
// job exists exactly when its message does.
//
// ctx's propagated values (package propagate) are stored with the job and
// reach the context of every attempt, whoever runs it.
func (c *Client) Enqueue(ctx context.Context, route string, arg any, opts ...Option) (jid string, err error) {
	if _, err := parseRoute(route); err != nil {
		return "", err
	}
	o := enqueueOptions{maxAttempts: DefaultMaxAttempts}
	for _, opt := range opts {
		opt(&o)
	}
	if len(o.backoff) == 0 {
		o.backoff = defaultBackoff()
	}
	jid = o.jid
	if jid == "" {
		jid = ulid.Make().String()
	}
	switch {
	case !validJID(jid):
		return "", fmt.Errorf("%w: %q", ErrInvalidJID, jid)
	case o.maxAttempts < 1:
		return "", fmt.Errorf("%w: max attempts %d", ErrConfig, o.maxAttempts)
	case o.target != "" && !validToken(o.target):
		return "", fmt.Errorf("%w: target %q", ErrConfig, o.target)
	}
	for _, d := range o.backoff {
		if d < 0 {
			return "", fmt.Errorf("%w: negative back-off", ErrConfig)
		}
	}
	var payload []byte
	if arg != nil {
		if payload, err = (codec.Auto{}).Marshal(arg); err != nil {
			return "", fmt.Errorf("reliable: encode argument of %s: %w", route, err)
		}
	}
	// The caller's propagated values are stored with the job, so every
	// attempt gets them, whoever publishes its message.
	bag, berr := propagate.Header(ctx)
	if berr != nil {
		c.s.log.Warn("reliable: propagated values not sent", "jid", jid, "err", berr)
	}
	now := time.Now()
	r := &record{Job: Job{
		JID: jid, Route: route, Arg: payload, State: Queued,
		MaxAttempts: o.maxAttempts, Backoff: o.backoff,
		NotBefore: o.notBefore, Deadline: o.deadline, Target: o.target,
		Created: now, Updated: now,
	}, Baggage: bag}
	_, err = stream.RetryMissing(ctx, c.s.bus, func(ctx context.Context) (uint64, error) {
		return c.s.publish(ctx, r, false)
	})
	switch {
	case errors.Is(err, errExists):
		return jid, nil // enqueued before: exactly once
	case err != nil:
		return jid, fmt.Errorf("reliable: enqueue %s: %w", jid, err)
	}
	return jid, nil
}

// Get returns the job's record, or ErrNotFound.
func (c *Client) Get(ctx context.Context, jid string) (Job, error) {
	if !validJID(jid) {
		return Job{}, fmt.Errorf("%w: %q", ErrInvalidJID, jid)
	}
	r, _, err := c.s.load(ctx, jid)
	if err != nil {
		return Job{}, err
	}
	return r.Job, nil
}

// Wait watches the job's KV key (no polling) and returns its record when it
// reaches a terminal state (succeeded, failed, dead, cancelled), ErrNotFound
// if it does not exist (or is deleted), or ctx's error.
func (c *Client) Wait(ctx context.Context, jid string) (Job, error) {
	if !validJID(jid) {
		return Job{}, fmt.Errorf("%w: %q", ErrInvalidJID, jid)
	}
	w, err := stream.RetryMissing(ctx, c.s.bus, func(ctx context.Context) (jetstream.KeyWatcher, error) {
		return c.s.kv.Watch(ctx, jid)
	})
	if err != nil {
		return Job{}, fmt.Errorf("reliable: wait %s: %w", jid, err)
	}
	defer func() { _ = w.Stop() }()
	seen := false
	for {
		select {
		case <-ctx.Done():
			return Job{}, fmt.Errorf("reliable: wait %s: %w", jid, ctx.Err())
		case e, ok := <-w.Updates():
			if !ok {
				return Job{}, fmt.Errorf("reliable: wait %s: watch closed", jid)
			}
			if e == nil { // end of the initial value
				if !seen {
					// No record when the watch began: a job no worker
					// had taken yet, or none. It may have been taken,
					// finished and its message purged since: load reads
					// the record again after the message.
					r, _, err := c.s.load(ctx, jid)
					if errors.Is(err, ErrNotFound) {
						return Job{}, fmt.Errorf("%w: %s", ErrNotFound, jid)
					}
					if err != nil {
						return Job{}, fmt.Errorf("reliable: wait %s: %w", jid, err)
					}
					if r.State.Terminal() {
						return r.Job, nil
					}
					seen = true
				}
				continue
			}
			if e.Operation() != jetstream.KeyValuePut {
				return Job{}, fmt.Errorf("%w: %s (deleted)", ErrNotFound, jid)
			}
			seen = true
			r, err := decode(e.Value())
			if err != nil {
				return Job{}, fmt.Errorf("reliable: wait %s: %w", jid, err)
			}
			if r.State.Terminal() {
				r.Revision = e.Revision()
				return r.Job, nil
			}
		}
	}
}

// Filter selects jobs for List. Zero fields select everything.
type Filter struct {
	States []State
	// Route matches the whole route, or a prefix ending with "." ("room."
	// is every job of server type room).
	Route string
	// Since and Until bound the jobs' Created time (Since inclusive, Until
	// exclusive).
	Since, Until time.Time
	// Limit of jobs per page (default 100, at most 1000).
	Limit int
	// Cursor is the Next of the previous page.
	Cursor string
}

// Page is one page of List, ordered by Created then JID. Next is the cursor
// of the next page, "" on the last one.
type Page struct {
	Jobs []Job
	Next string
}

// List returns the jobs that match f. The bucket is not indexed: List reads
// every record updated since f.Since (all records when Since is zero), so
// give a Since when the bucket holds many jobs.
func (c *Client) List(ctx context.Context, f Filter) (Page, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 1000)
	var after *cursor
	if f.Cursor != "" {
		cur, err := parseCursor(f.Cursor)
		if err != nil {
			return Page{}, err
		}
		after = &cur
	}
	// The scan may see a job twice (rewritten while it ran): the newest
	// revision counts, filtered once all are in. Jobs no worker has taken
	// yet have no record: their messages are read first, so a job taken
	// while List runs is seen at least as queued.
	latest := map[string]*record{}
	err := c.s.scanQueued(ctx, f.Since, func(r *record) bool {
		if _, ok := latest[r.JID]; !ok {
			latest[r.JID] = r
		}
		return true
	})
	if err != nil {
		return Page{}, err
	}
	err = c.s.scan(ctx, f.Since, true, func(r *record) bool {
		if cur, ok := latest[r.JID]; !ok || cur.Revision == 0 || r.Revision > cur.Revision {
			latest[r.JID] = r
		}
		return true
	})
	if err != nil {
		return Page{}, err
	}
	var jobs []Job
	for _, r := range latest {
		switch {
		case len(f.States) > 0 && !slices.Contains(f.States, r.State),
			f.Route != "" && r.Route != f.Route && !(strings.HasSuffix(f.Route, ".") && strings.HasPrefix(r.Route, f.Route)),
			!f.Since.IsZero() && r.Created.Before(f.Since),
			!f.Until.IsZero() && !r.Created.Before(f.Until),
			after != nil && !after.before(r.Created, r.JID):
			continue
		}
		jobs = append(jobs, r.Job)
	}
	slices.SortFunc(jobs, func(a, b Job) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.JID, b.JID)
	})
	p := Page{Jobs: jobs}
	if len(jobs) > limit {
		p.Jobs = jobs[:limit:limit]
		last := p.Jobs[limit-1]
		p.Next = cursor{created: last.Created, jid: last.JID}.String()
	}
	return p, nil
}

type cursor struct {
	created time.Time
	jid     string
}

func (c cursor) String() string { return strconv.FormatInt(c.created.UnixNano(), 36) + "." + c.jid }

// before reports whether the cursor sorts before (created, jid).
func (c cursor) before(created time.Time, jid string) bool {
	if cmp := c.created.Compare(created); cmp != 0 {
		return cmp < 0
	}
	return c.jid < jid
}

func parseCursor(s string) (cursor, error) {
	ts, jid, ok := strings.Cut(s, ".")
	n, err := strconv.ParseInt(ts, 36, 64)
	if !ok || err != nil || !validJID(jid) {
		return cursor{}, fmt.Errorf("%w: bad cursor %q", ErrConfig, s)
	}
	return cursor{created: time.Unix(0, n), jid: jid}, nil
}

// Retry runs a dead or failed job again: its attempts start from scratch
// (the previous history is dropped from the record, and its dead letter
// removed from JOBS_DLQ), its state becomes queued and its message is
// published again from the record (replacing the old one in JOBS), with the
// propagated values of its Enqueue (not those of Retry's ctx). A job whose
// deadline has passed cannot be retried (it would fail at once). Any other
// state returns ErrState.
func (c *Client) Retry(ctx context.Context, jid string) error {
	if !validJID(jid) {
		return fmt.Errorf("%w: %q", ErrInvalidJID, jid)
	}
	for {
		r, rev, err := c.s.load(ctx, jid)
		if err != nil {
			return err
		}
		if r.State != Dead && r.State != Failed {
			return fmt.Errorf("%w: retry %s: job is %s (only dead or failed jobs)", ErrState, jid, r.State)
		}
		if !r.Deadline.IsZero() && !time.Now().Before(r.Deadline) {
			return fmt.Errorf("%w: retry %s: its deadline has passed", ErrState, jid)
		}
		prev := *r
		// Dead jobs change only through Retry, so removing the dead
		// letter first cannot remove a newer one.
		_, err = stream.RetryMissing(ctx, c.s.bus, func(ctx context.Context) (struct{}, error) {
			return struct{}{}, c.s.dlq.Purge(ctx, jetstream.WithPurgeSubject(c.s.dlqSubject(r)))
		})
		if err != nil {
			return fmt.Errorf("reliable: retry %s: purge dead letter: %w", jid, err)
		}
		r.State, r.Attempts, r.LastError, r.Result = Queued, nil, nil, nil
		r.Seq, r.Gen, r.NotBefore, r.Updated = 0, r.Gen+1, time.Time{}, time.Now()
		nrev, err := c.s.kv.Update(ctx, jid, encode(r), rev)
		if conflict(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("reliable: retry %s: %w", jid, err)
		}
		r.Revision = nrev
		if _, err := c.s.publish(ctx, r, true); err != nil {
			// Undo, unless a worker claimed it.
			perr := fmt.Errorf("reliable: retry %s: publish: %w", jid, err)
			uctx, cancel := opCtx()
			defer cancel()
			if _, uerr := c.s.kv.Update(uctx, jid, encode(&prev), nrev); uerr != nil {
				if conflict(uerr) {
					return nil
				}
				return fmt.Errorf("%w (record left queued: a worker's sweeper re-publishes it)", perr)
			}
			_ = c.s.publishDLQ(uctx, &prev)
			return perr
		}
		return nil
	}
}

// Cancel cancels a queued or retrying job (compare-and-set on its record,
// or the creation of its record for a job no worker has taken yet): it
// never runs again, and its message is removed from JOBS (a worker that
// still receives one acks it without running it). A running or finished job
// returns ErrState.
func (c *Client) Cancel(ctx context.Context, jid string) error {
	if !validJID(jid) {
		return fmt.Errorf("%w: %q", ErrInvalidJID, jid)
	}
	for {
		r, rev, err := c.s.load(ctx, jid)
		if err != nil {
			return err
		}
		if r.State != Queued && r.State != Retrying {
			return fmt.Errorf("%w: cancel %s: job is %s (only queued or retrying jobs)", ErrState, jid, r.State)
		}
		r.State, r.Updated = Cancelled, time.Now()
		if rev == 0 {
			_, err = c.s.kv.Create(ctx, jid, encode(r))
		} else {
			_, err = c.s.kv.Update(ctx, jid, encode(r), rev)
		}
		if conflict(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("reliable: cancel %s: %w", jid, err)
		}
		// Best effort: free the message (a delayed one holds one of the
		// consumer's MaxAckPending slots until it is redelivered). The
		// record now keeps the jid from being enqueued again.
		if m, err := c.s.jobs.GetLastMsgForSubject(ctx, c.s.jobSubject(r)); err == nil {
			_ = c.s.jobs.DeleteMsg(ctx, m.Sequence)
		}
		return nil
	}
}
