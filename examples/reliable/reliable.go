package reliable

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nopal-dev/nopal"
	"github.com/nopal-dev/nopal/backend"
	"github.com/nopal-dev/nopal/codec"
	jobs "github.com/nopal-dev/nopal/reliable"
	"github.com/nopal-dev/nopal/session"
)

// RewardsType is the type of the servers that grant rewards.
const RewardsType = "rewards"

// GrantRoute is the reliable RPC that grants a reward.
const GrantRoute = RewardsType + ".rewards.grant"

// ClaimReq asks for a reward.
type ClaimReq struct {
	Reward string `json:"reward"`
}

// ClaimRes answers a claim with the job that grants it.
type ClaimRes struct {
	JID string `json:"jid"`
}

// GrantArg is the job's argument.
type GrantArg struct {
	UID    string `json:"uid"`
	Reward string `json:"reward"`
	// Work, when set, is how long the grant works before granting, as a
	// Go duration ("20s", at most MaxWork): a slow job to kill a worker
	// in (see the package doc). A bad, negative or too long duration
	// fails the job at once (a reliable.Permanent error, code PIT-400).
	Work string `json:"work,omitempty"`
}

// MaxWork is the longest GrantArg.Work.
const MaxWork = 10 * time.Minute

// work parses GrantArg.Work: 0 when it is empty.
func (a *GrantArg) work() (time.Duration, error) {
	if a.Work == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(a.Work)
	switch {
	case err != nil:
		return 0, fmt.Errorf("rewards: work %q is not a duration such as \"20s\": %w", a.Work, err)
	case d < 0:
		return 0, fmt.Errorf("rewards: work %q is negative", a.Work)
	case d > MaxWork:
		return 0, fmt.Errorf("rewards: work %q is longer than %v", a.Work, MaxWork)
	}
	return d, nil
}

// Granted is the job's result.
type Granted struct {
	UID     string    `json:"uid"`
	Reward  string    `json:"reward"`
	At      time.Time `json:"at"`
	Already bool      `json:"already"` // an earlier attempt had granted it
}

// Claims is the frontend's handler component.
type Claims struct{ app *nopal.App }

// SetupClaims registers claims.claim on a frontend.
func SetupClaims(app *nopal.App) error {
	return app.Register(&Claims{app: app}, backend.WithName("claims"))
}

// Claim enqueues the grant of a reward to the session's user and answers
// its jid. The jid is derived from the user and the reward: claiming twice
// enqueues one job.
func (c *Claims) Claim(ctx context.Context, req *ClaimReq) (*ClaimRes, error) {
	s := session.FromContext(ctx)
	uid := s.UID()
	if uid == "" {
		uid = fmt.Sprintf("guest-%d", s.ID())
	}
	if req.Reward == "" {
		return nil, codec.NewError(codec.CodeBadRequest, "reward is required", nil)
	}
	jid, err := c.app.ReliableRPC(ctx, GrantRoute, &GrantArg{UID: uid, Reward: req.Reward},
		jobs.WithJID(jobKey("grant-"+uid+"-"+req.Reward)))
	if err != nil {
		return nil, err
	}
	return &ClaimRes{JID: jid}, nil
}

// jobKey keeps a caller-chosen key within what a jid may hold.
func jobKey(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c == '-' || c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			b[i] = '_'
		}
	}
	return string(b)
}

// Rewards is the rewards server's remote component.
type Rewards struct {
	app *nopal.App
	// Slow, when set, runs before each grant (tests kill a worker in it).
	Slow func(ctx context.Context)
}

// SetupRewards registers the remote on a rewards server.
func SetupRewards(app *nopal.App) (*Rewards, error) {
	r := &Rewards{app: app}
	return r, app.RegisterRemote(r, backend.WithName("rewards"))
}

// Grant grants a reward once: the grant is recorded with a KV Create, so a
// second attempt (a retry, or a job run again after a crash) finds it and
// grants nothing more.
//
// With arg.Work it first works that long (or until ctx ends: the job's
// deadline, or its worker stopping); a bad Work fails the job without
// retries.
func (r *Rewards) Grant(ctx context.Context, arg *GrantArg) (*Granted, error) {
	work, err := arg.work()
	if err != nil {
		// Permanent: another attempt would fail the same way. The
		// codec.Error gives it a code (the remotes registry keeps a
		// *codec.Error, and this one unwraps to the Permanent mark).
		return nil, codec.WrapError(codec.CodeBadRequest, jobs.Permanent(err))
	}
	if r.Slow != nil {
		r.Slow(ctx)
	}
	if work > 0 {
		t := time.NewTimer(work)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("rewards: grant interrupted after less than %v of work: %w", work, ctx.Err())
		}
	}
	bus := r.app.Bus()
	if bus == nil {
		return nil, errors.New("rewards: not in a cluster")
	}
	kv, err := bus.KV(ctx, jetstream.KeyValueConfig{Bucket: "rewards", Storage: jetstream.FileStorage})
	if err != nil {
		return nil, err
	}
	g := Granted{UID: arg.UID, Reward: arg.Reward, At: time.Now().UTC()}
	val, _ := json.Marshal(g)
	key := jobKey(arg.UID) + "." + jobKey(arg.Reward)
	if _, err := kv.Create(ctx, key, val); err != nil {
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, err
		}
		e, err := kv.Get(ctx, key)
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(e.Value(), &g); err != nil {
			return nil, err
		}
		g.Already = true
	}
	return &g, nil
}

// Grants counts the rewards granted so far (for tests and the README).
func Grants(ctx context.Context, app *nopal.App) (int, error) {
	kv, err := app.Bus().KV(ctx, jetstream.KeyValueConfig{Bucket: "rewards", Storage: jetstream.FileStorage})
	if err != nil {
		return 0, err
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for range keys.Keys() {
		n++
	}
	return n, nil
}
