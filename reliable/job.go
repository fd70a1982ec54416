package reliable

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nopal-dev/nopal/codec"
)

// State is where a job is in its life.
type State string

// The states of a job. Succeeded, Failed, Dead and Cancelled are terminal.
const (
	Queued    State = "queued"    // waiting for its first counted attempt (or its NotBefore)
	Running   State = "running"   // an attempt is running on Attempts[len-1].Server
	Retrying  State = "retrying"  // an attempt failed; the next one runs at NotBefore
	Succeeded State = "succeeded" // an attempt returned a result (Job.Result)
	Failed    State = "failed"    // its deadline passed, or an attempt returned a Permanent error
	Dead      State = "dead"      // MaxAttempts attempts failed; a copy is in JOBS_DLQ
	Cancelled State = "cancelled" // cancelled before it ran (Client.Cancel)
)

// Terminal reports whether s is a final state (succeeded, failed, dead,
// cancelled): Client.Wait returns on these.
func (s State) Terminal() bool {
	switch s {
	case Succeeded, Failed, Dead, Cancelled:
		return true
	}
	return false
}

// Error codes the package itself writes in ErrorInfo.Code; errors returned by
// the Invoker keep their own code (PIT-500 for a plain error).
const (
	// CodeAbandoned: the worker running the attempt stopped acknowledging
	// the job (killed, disconnected, or stuck past AckWait) and another
	// worker took it over.
	CodeAbandoned = "JOB-ABANDONED"
	// CodeDeadline: the job's deadline passed before it could run or finish.
	CodeDeadline = codec.CodeTimeout
	// CodeUnavailable: the worker's server could not run the attempt (not
	// ready, or draining); the attempt is skipped, not counted.
	CodeUnavailable = "JOB-UNAVAILABLE"
)

// Errors returned by the Client; check them with errors.Is.
var (
	ErrNotFound = errors.New("reliable: job not found")
	// ErrInvalidRoute: Enqueue's route is not a valid three-part route;
	// the error wraps codec.ErrInvalidRoute too.
	ErrInvalidRoute = errors.New(`reliable: invalid route (want "svtype.component.method")`)
	ErrInvalidJID   = errors.New("reliable: invalid job id (1 to 200 characters of A-Z a-z 0-9 _ - =)")
	ErrState        = errors.New("reliable: job is not in a state that allows this")
	ErrConfig       = errors.New("reliable: bad configuration")
	// ErrUnavailable is returned, wrapped, by an Invoker whose server cannot
	// run jobs now for a reason of its own (not started yet, draining):
	// the attempt is recorded as skipped, does not count against the job's
	// MaxAttempts, and the job is handed back to run again soon, on this
	// server or another of its type.
	ErrUnavailable = errors.New("reliable: the worker's server cannot run jobs now")
)

// ErrorInfo is an error an attempt ended with: the code, message and
// metadata of a *codec.Error returned by the Invoker (PIT-500 and the error's
// text for any other error), or one of the package's codes.
type ErrorInfo struct {
	Code     string            `json:"code"`
	Message  string            `json:"msg"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

func (e *ErrorInfo) Error() string { return e.Code + ": " + e.Message }

// Attempt is one run of a job on one server. Ended is zero while it runs.
type Attempt struct {
	N       int        `json:"n"`
	Server  string     `json:"server"`
	Started time.Time  `json:"started"`
	Ended   time.Time  `json:"ended,omitzero"`
	Error   *ErrorInfo `json:"error,omitempty"`
	// Skipped marks an attempt that failed for a reason of the worker's
	// own (its server was not ready or was draining; see ErrUnavailable):
	// it stays in the history but does not count against MaxAttempts.
	Skipped bool `json:"skipped,omitempty"`
}

// Job is a job's record, as stored in the KV bucket "jobs" under its JID.
type Job struct {
	JID   string `json:"jid"`
	Route string `json:"route"`
	// Arg is the encoded argument (codec.Auto: protobuf for a
	// proto.Message, raw for []byte, JSON otherwise).
	Arg         []byte          `json:"arg,omitempty"`
	State       State           `json:"state"`
	Attempts    []Attempt       `json:"attempts,omitempty"`
	MaxAttempts int             `json:"max_attempts"`
	Backoff     []time.Duration `json:"backoff,omitempty"`
	// NotBefore: no attempt starts before it (WithDelay, or the back-off
	// of a retrying job).
	NotBefore time.Time `json:"not_before,omitzero"`
	// Deadline: past it the job is failed instead of run, and a running
	// attempt's context ends.
	Deadline time.Time `json:"deadline,omitzero"`
	// Target is the server id the job must run on ("" = any server of the
	// route's type).
	Target string `json:"target,omitempty"`
	// Result is the encoded result of the attempt that succeeded.
	Result    []byte     `json:"result,omitempty"`
	LastError *ErrorInfo `json:"last_error,omitempty"`
	Created   time.Time  `json:"created"`
	Updated   time.Time  `json:"updated"`
	// Revision is the record's KV revision (not stored in the value).
	Revision uint64 `json:"-"`
}

// Tries is the number of attempts that count against MaxAttempts: every
// attempt but the skipped ones.
func (j Job) Tries() int {
	n := 0
	for _, a := range j.Attempts {
		if !a.Skipped {
			n++
		}
	}
	return n
}

// Decode decodes the job's Result into v with codec.Auto (the encoding the
// remote's registry used, if it uses codec.Auto too).
func (j Job) Decode(v any) error {
	if err := (codec.Auto{}).Unmarshal(j.Result, v); err != nil {
		return fmt.Errorf("reliable: decode result of %s: %w", j.JID, err)
	}
	return nil
}

// ServerType is the first token of the job's route.
func (j Job) ServerType() string {
	t, _, _ := strings.Cut(j.Route, ".")
	return t
}

// record is the value stored in KV, and the body of a job message (with no
// attempts, result or Seq): the Job plus bookkeeping.
type record struct {
	Job
	// Seq is the JOBS stream sequence of the message that owns the job:
	// set by the worker that claims it, so another message of the same jid
	// (enqueued again for another target or server type) is recognised and
	// dropped. 0 = not claimed since the last publish.
	Seq uint64 `json:"seq,omitempty"`
	// Gen counts Retry calls; a job message carries the generation it was
	// published for, so a sweep can tell a message that Retry replaced
	// from one it did not get to publish.
	Gen int `json:"gen,omitempty"`
	// Baggage is the enqueuer's propagated values, as the W3C baggage
	// header value propagate.Header made of Enqueue's context ("" = none;
	// also for records written before the field existed). Every attempt
	// runs with these values, whoever published the message that carried
	// the job to the worker (Enqueue, Retry, a sweep).
	Baggage string `json:"baggage,omitempty"`
}

// openAttempt returns the last attempt if it has not ended.
func (r *record) openAttempt() *Attempt {
	if n := len(r.Attempts); n > 0 && r.Attempts[n-1].Ended.IsZero() {
		return &r.Attempts[n-1]
	}
	return nil
}

// backoffFor is the delay after attempt n (1-based) failed; the last value
// repeats.
func (r *record) backoffFor(n int) time.Duration {
	b := r.Backoff
	if len(b) == 0 {
		b = defaultBackoff()
	}
	if n < 1 {
		n = 1
	}
	if n > len(b) {
		return b[len(b)-1]
	}
	return b[n-1]
}

// defaultBackoff is the delay after the 1st, 2nd, 3rd, 4th and later failed
// attempts, when Enqueue is not given WithBackoff.
func defaultBackoff() []time.Duration {
	return []time.Duration{time.Second, 5 * time.Second, 30 * time.Second, 2 * time.Minute}
}

// DefaultMaxAttempts is the number of attempts of a job before it is dead.
const DefaultMaxAttempts = 5

// Option configures one Enqueue.
type Option func(*enqueueOptions)

type enqueueOptions struct {
	jid         string
	maxAttempts int
	backoff     []time.Duration
	notBefore   time.Time
	deadline    time.Time
	target      string
}

// WithJID sets the job id: a caller-given idempotency key (an order id, a
// request id). Enqueueing a jid that exists is a no-op that returns the jid
// and no error, however long after the first Enqueue (the later call's route,
// argument and options are ignored). A jid is 1 to 200
// characters of A-Z a-z 0-9 _ - = (it is a KV key and a subject token); hash
// longer or richer keys. Default: a new ULID.
func WithJID(key string) Option { return func(o *enqueueOptions) { o.jid = key } }

// WithMaxAttempts sets how many attempts the job gets before it is dead
// (default 5; at least 1).
func WithMaxAttempts(n int) Option { return func(o *enqueueOptions) { o.maxAttempts = n } }

// WithBackoff sets the delays after each failed attempt; the last one
// repeats (default 1s, 5s, 30s, 2m).
func WithBackoff(ds ...time.Duration) Option {
	return func(o *enqueueOptions) { o.backoff = append([]time.Duration(nil), ds...) }
}

// WithDelay makes the first attempt start no sooner than d from now.
func WithDelay(d time.Duration) Option {
	return func(o *enqueueOptions) { o.notBefore = time.Now().Add(d) }
}

// WithNotBefore makes the first attempt start no sooner than t.
func WithNotBefore(t time.Time) Option { return func(o *enqueueOptions) { o.notBefore = t } }

// WithDeadline sets the time past which the job is failed rather than run;
// a running attempt's context ends at it.
func WithDeadline(t time.Time) Option { return func(o *enqueueOptions) { o.deadline = t } }

// WithTarget makes the job run only on the server with this id (it must be
// of the route's server type and run a Worker). A job targeted at a server
// that never comes back stays queued until cancelled.
func WithTarget(serverID string) Option { return func(o *enqueueOptions) { o.target = serverID } }

// Permanent marks err as not worth retrying: an Invoker returning it ends the
// job as failed at once, whatever attempts are left.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

// IsUnavailable reports whether err says the worker's server could not run
// the job (ErrUnavailable).
func IsUnavailable(err error) bool { return errors.Is(err, ErrUnavailable) }

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

type permanentError struct{ err error }

func (p *permanentError) Error() string { return p.err.Error() }
func (p *permanentError) Unwrap() error { return p.err }

// errorInfo converts an Invoker error.
func errorInfo(err error) *ErrorInfo {
	if errors.Is(err, context.DeadlineExceeded) {
		var ce *codec.Error
		if !errors.As(err, &ce) {
			return &ErrorInfo{Code: CodeDeadline, Message: err.Error()}
		}
	}
	e := codec.AsError(err)
	info := &ErrorInfo{Code: e.Code, Message: e.Message}
	if len(e.Metadata) > 0 {
		info.Metadata = make(map[string]string, len(e.Metadata))
		for k, v := range e.Metadata {
			info.Metadata[k] = v
		}
	}
	return info
}

// parseRoute checks a job's route: a three-part route that
// codec.ParseFullRoute accepts. Its error wraps both ErrInvalidRoute and
// codec.ErrInvalidRoute.
func parseRoute(route string) (codec.Route, error) {
	r, err := codec.ParseFullRoute(route)
	if err != nil {
		return codec.Route{}, fmt.Errorf("%w: %w", ErrInvalidRoute, err)
	}
	return r, nil
}

// validToken reports whether s can be a subject token: a server type, a
// server id or a job's target.
func validToken(s string) bool {
	return s != "" && !strings.ContainsAny(s, ".*> \t\r\n/\\")
}

func validJID(s string) bool {
	if s == "" || len(s) > 200 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-', c == '=':
		default:
			return false
		}
	}
	return true
}
