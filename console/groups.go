package console

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nopal-dev/nopal/groups"
	"github.com/nopal-dev/nopal/stream"
)

// noPusher is the console's groups.Pusher: it reads groups, never pushes.
type noPusher struct{}

func (noPusher) PushToUsers(_ context.Context, _ string, _ any, uids []string) ([]string, error) {
	return uids, errors.New("console: read-only")
}

// groupMeta is the value of a group's meta key (groups.Cluster's layout:
// <g>.meta and <g>.m.<gen>.<uid>).
type groupMeta struct {
	TTL       int64  `json:"ttl"`
	ExpiresAt int64  `json:"expiresAt"`
	Created   int64  `json:"created"`
	Gen       string `json:"gen"`
}

// untoken decodes a key token of the groups bucket.
func untoken(t string) (string, bool) {
	if enc, ok := strings.CutPrefix(t, "="); ok {
		b, err := base64.RawURLEncoding.DecodeString(enc)
		return string(b), err == nil
	}
	return t, t != ""
}

// listGroups lists the groups with their member counts: one stream-info
// request for the bucket's keys (the bucket holds exactly the live keys),
// then one get per group's meta key.
func listGroups(ctx context.Context, bus *stream.Bus) ([]GroupView, error) {
	bucket := bus.Name(groups.ClusterBucket)
	str, err := bus.JetStream().Stream(ctx, "KV_"+bucket)
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, nil
		}
		return nil, err
	}
	kv, err := bus.JetStream().KeyValue(ctx, bucket)
	if err != nil {
		return nil, err
	}
	prefix := "$KV." + bucket + "."
	info, err := str.Info(ctx, jetstream.WithSubjectFilter(prefix+">"))
	if err != nil {
		return nil, err
	}
	metas := map[string]bool{}             // group tokens with a meta key
	members := map[string]map[string]int{} // group token → gen → members
	for subj := range info.State.Subjects {
		key := strings.TrimPrefix(subj, prefix)
		parts := strings.Split(key, ".")
		switch {
		case len(parts) == 2 && parts[1] == "meta":
			metas[parts[0]] = true
		case len(parts) == 4 && parts[1] == "m":
			if members[parts[0]] == nil {
				members[parts[0]] = map[string]int{}
			}
			members[parts[0]][parts[2]]++
		}
	}
	now := time.Now()
	out := make([]GroupView, 0, len(metas))
	for tok := range metas {
		name, ok := untoken(tok)
		if !ok {
			continue
		}
		e, err := kv.Get(ctx, tok+".meta")
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		var m groupMeta
		if json.Unmarshal(e.Value(), &m) != nil {
			continue
		}
		g := GroupView{Name: name, Members: members[tok][m.Gen]}
		if m.Created > 0 {
			g.Created = time.Unix(0, m.Created)
		}
		if m.TTL > 0 {
			g.TTL = time.Duration(m.TTL).String()
			g.ExpiresAt = time.Unix(0, m.ExpiresAt)
			g.Expired = !now.Before(g.ExpiresAt)
		}
		out = append(out, g)
	}
	slices.SortFunc(out, func(a, b GroupView) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}
