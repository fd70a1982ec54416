package reliable_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nopal-dev/nopal/propagate"
	"github.com/nopal-dev/nopal/reliable"
)

// The enqueuer's propagated values reach every attempt of its job, and a
// job enqueued without values runs without.
func TestJobPropagatedValues(t *testing.T) {
	bus := newBus(t, "a")
	c := newClient(t, bus)
	var mu sync.Mutex
	seen := map[string][]map[string]any{} // jid → the values of each attempt
	attempts := map[string]int{}
	inv := reliable.InvokerFunc(func(ctx context.Context, _ string, arg []byte) ([]byte, error) {
		jid := string(arg)
		mu.Lock()
		defer mu.Unlock()
		seen[jid] = append(seen[jid], propagate.ToMap(ctx))
		if attempts[jid]++; attempts[jid] == 1 {
			return nil, errors.New("first attempt fails")
		}
		return []byte(`{}`), nil
	})
	startWorker(t, bus, inv, reliable.WorkerConfig{ServerType: "mail"})
	ctx := testCtx(t)

	vctx, err := propagate.Add(ctx, "player", map[string]any{"id": "p1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		jid  string
		ctx  context.Context
		want int // values per attempt
	}{{"WITHVALUES", vctx, 1}, {"WITHOUT", ctx, 0}} {
		if _, err := c.Enqueue(tc.ctx, route, []byte(tc.jid), reliable.WithJID(tc.jid), reliable.WithBackoff(10*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		j, err := c.Wait(ctx, tc.jid)
		if err != nil || j.State != reliable.Succeeded {
			t.Fatalf("%s: %+v, %v", tc.jid, j, err)
		}
		mu.Lock()
		got := seen[tc.jid]
		mu.Unlock()
		if len(got) != 2 {
			t.Fatalf("%s: %d attempts", tc.jid, len(got))
		}
		for i, vals := range got {
			if len(vals) != tc.want {
				t.Errorf("%s: attempt %d saw %v", tc.jid, i+1, vals)
			}
			if tc.want > 0 {
				if p, _ := vals["player"].(map[string]any); p["id"] != "p1" {
					t.Errorf("%s: attempt %d saw %v", tc.jid, i+1, vals)
				}
			}
		}
	}
}
