package stream_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nopal-dev/nopal/stream"
)

// reservePorts returns n free loopback ports. They are found by listening
// on port 0 and closing at once, so another process may take one before the
// NATS server binds it: startCluster then fails fast with "address already
// in use" (Connect reports the embedded server's listen error) and is
// retried with new ports.
func reservePorts(t *testing.T, n int) []int {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	return ports
}

// startCluster starts three buses, n1 to n3, each with an embedded NATS
// server routed to the other two, replicas 3. They start together: JetStream
// answers (Connect waits for it) only once a meta leader is elected, which
// takes a quorum.
func startCluster(t *testing.T) ([]*stream.Bus, []stream.Config, error) {
	t.Helper()
	ports := reservePorts(t, 3)
	buses := make([]*stream.Bus, 3)
	cfgs := make([]stream.Config, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := range buses {
		var routes []string
		for j, p := range ports {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
			}
		}
		name := fmt.Sprintf("n%d", i+1)
		cfgs[i] = stream.Config{
			ServerID: name,
			Replicas: 3,
			Embedded: stream.Embedded{
				StoreDir:      t.TempDir(),
				Listen:        "127.0.0.1:0",
				ServerName:    name,
				ClusterName:   "t",
				ClusterListen: fmt.Sprintf("127.0.0.1:%d", ports[i]),
				Routes:        routes,
			},
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			buses[i], errs[i] = stream.Connect(ctx, cfgs[i])
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, b := range buses {
			if b != nil {
				b.Close()
			}
		}
		return nil, nil, err
	}
	return buses, cfgs, nil
}

// eventually retries f every 100 ms until it succeeds or 15 s pass (leader
// elections after a server goes take a few seconds at most).
func eventually(t *testing.T, what string, f func(ctx context.Context) error) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(15 * time.Second)
	var first error
	for tries := 1; ; tries++ {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := f(ctx)
		cancel()
		if err == nil {
			if first != nil {
				t.Logf("%s: ok after %d tries, first error: %v", what, tries, first)
			}
			return time.Since(start)
		}
		if first == nil {
			first = err
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %v: %v", what, time.Since(start).Round(time.Millisecond), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// readStream reads every message of the stream from the first and returns
// their payloads.
func readStream(ctx context.Context, js jetstream.JetStream, name string) ([]string, error) {
	s, err := js.Stream(ctx, name)
	if err != nil {
		return nil, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, err
	}
	want := int(info.State.Msgs)
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, err
	}
	var out []string
	for len(out) < want {
		batch, err := c.Fetch(want-len(out), jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return nil, err
		}
		for m := range batch.Messages() {
			out = append(out, string(m.Data()))
		}
		if err := batch.Error(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func checkKV(ctx context.Context, b *stream.Bus, bucket string, want map[string]string) error {
	kv, err := b.JetStream().KeyValue(ctx, b.Name(bucket))
	if err != nil {
		return fmt.Errorf("bucket: %w", err)
	}
	for k, v := range want {
		e, err := kv.Get(ctx, k)
		if err != nil {
			return fmt.Errorf("get %s: %w", k, err)
		}
		if string(e.Value()) != v {
			return fmt.Errorf("get %s = %q, want %q", k, e.Value(), v)
		}
	}
	return nil
}

func checkStream(ctx context.Context, b *stream.Bus, name string, want []string) error {
	got, err := readStream(ctx, b.JetStream(), b.Name(name))
	if err != nil {
		return err
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		return fmt.Errorf("stream holds %q, want %q", got, want)
	}
	return nil
}

// TestEmbeddedClusterSurvivesServerLoss runs a 3-server cluster of embedded
// NATS servers with replicas 3, stops the server leading the bucket and
// the stream, and checks that the other two keep every acknowledged value
// and message and still take writes: a quorum of 2 of 3.
func TestEmbeddedClusterSurvivesServerLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the 3-server NATS cluster test")
	}
	begin := time.Now()
	var buses []*stream.Bus
	var cfgs []stream.Config
	for attempt := 1; ; attempt++ {
		var err error
		if buses, cfgs, err = startCluster(t); err == nil {
			break
		}
		if attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			t.Fatalf("starting the cluster (attempt %d): %v", attempt, err)
		}
		t.Logf("a reserved port was taken, retrying: %v", err)
	}
	for _, b := range buses {
		t.Cleanup(b.Close) // closing twice is harmless
	}
	t.Logf("3-server cluster up in %v", time.Since(begin).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	b1 := buses[0]
	if b1.Replicas() != 3 {
		t.Fatalf("Replicas() = %d", b1.Replicas())
	}
	if _, err := b1.KV(ctx, jetstream.KeyValueConfig{Bucket: "state"}); err != nil {
		t.Fatal(err)
	}
	// Reads of the stream go through its leader (no direct get).
	if _, err := b1.Stream(ctx, jetstream.StreamConfig{Name: "EVENTS", Subjects: []string{b1.Prefix() + ".events.>"}}); err != nil {
		t.Fatal(err)
	}
	kvStream := "KV_" + b1.Name("state")
	// streamInfo asks the stream's leader: during an election the call
	// fails or times out, so callers retry.
	streamInfo := func(ctx context.Context, b *stream.Bus, name string) (*jetstream.StreamInfo, error) {
		s, err := b.JetStream().Stream(ctx, name)
		if err != nil {
			return nil, err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return nil, err
		}
		if info.Cluster == nil {
			return nil, fmt.Errorf("%s: no cluster info", name)
		}
		return info, nil
	}
	for _, name := range []string{kvStream, b1.Name("EVENTS")} {
		eventually(t, name+" has 3 replicas", func(ctx context.Context) error {
			info, err := streamInfo(ctx, b1, name)
			if err != nil {
				return err
			}
			if info.Config.Replicas != 3 || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != 2 {
				return fmt.Errorf("replicas %d, cluster %+v", info.Config.Replicas, info.Cluster)
			}
			return nil
		})
	}

	// Acknowledged writes, spread over the three servers' connections.
	values := map[string]string{}
	var events []string
	for i := range 30 {
		b := buses[i%3]
		k, v := fmt.Sprintf("k%02d", i), fmt.Sprintf("v%d", i)
		bkv, err := b.JetStream().KeyValue(ctx, b.Name("state"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bkv.Put(ctx, k, []byte(v)); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
		values[k] = v
		ev := fmt.Sprintf("e%02d", i)
		if _, err := b.JetStream().Publish(ctx, b.Prefix()+".events.x", []byte(ev)); err != nil {
			t.Fatalf("publish %s: %v", ev, err)
		}
		events = append(events, ev)
	}

	// The victim leads the bucket's stream; make it lead EVENTS too, so
	// that both need a new leader.
	var victimName string
	eventually(t, "leader of "+kvStream, func(ctx context.Context) error {
		info, err := streamInfo(ctx, b1, kvStream)
		if err != nil {
			return err
		}
		if victimName = info.Cluster.Leader; victimName == "" {
			return errors.New("no leader")
		}
		return nil
	})
	req, _ := json.Marshal(map[string]any{"placement": map[string]string{"preferred": victimName}})
	eventually(t, "EVENTS led by "+victimName, func(ctx context.Context) error {
		info, err := streamInfo(ctx, b1, b1.Name("EVENTS"))
		if err != nil {
			return err
		}
		if info.Cluster.Leader == victimName {
			return nil
		}
		if info.Cluster.Leader != "" {
			if _, err := b1.Request(ctx, "$JS.API.STREAM.LEADER.STEPDOWN."+b1.Name("EVENTS"), req, nil); err != nil {
				return err
			}
		}
		return fmt.Errorf("led by %q", info.Cluster.Leader)
	})
	var victim *stream.Bus
	var victimCfg stream.Config
	var survivors []*stream.Bus
	for i, b := range buses {
		if b.Server.Name() == victimName {
			victim, victimCfg = b, cfgs[i]
		} else {
			survivors = append(survivors, b)
		}
	}
	if victim == nil {
		t.Fatalf("no bus runs the leader %q", victimName)
	}

	// A client over TCP of the victim's server: it must fail over to
	// another server of the cluster (learned from the server's INFO).
	remote := connect(t, stream.Config{ServerID: "remote", URL: victim.ClientURL(), Replicas: 3})
	victimURL := victim.ClientURL()

	stopped := time.Now()
	victim.Close()
	t.Logf("stopped %s (leader of both) in %v", victimName, time.Since(stopped).Round(time.Millisecond))

	// A fresh client of a surviving server.
	fresh := connect(t, stream.Config{ServerID: "fresh", URL: survivors[0].ClientURL(), Replicas: 3})

	took := eventually(t, "remote client reconnected", func(context.Context) error {
		if !remote.Connected() || remote.ConnectedURL() == victimURL {
			return fmt.Errorf("connected=%v to %s", remote.Connected(), remote.ConnectedURL())
		}
		return nil
	})
	t.Logf("remote client on %s %v after the stop", remote.ConnectedURL(), took.Round(time.Millisecond))

	readers := map[string]*stream.Bus{"survivor " + survivors[0].Server.Name(): survivors[0],
		"survivor " + survivors[1].Server.Name(): survivors[1], "fresh": fresh, "remote": remote}
	for who, b := range readers {
		took := eventually(t, who+" reads every acknowledged value", func(ctx context.Context) error {
			return checkKV(ctx, b, "state", values)
		})
		took2 := eventually(t, who+" reads every acknowledged message", func(ctx context.Context) error {
			return checkStream(ctx, b, "EVENTS", events)
		})
		t.Logf("%s: values read in %v, messages in %v", who, took.Round(time.Millisecond), took2.Round(time.Millisecond))
	}
	for _, name := range []string{kvStream, b1.Name("EVENTS")} {
		var l string
		eventually(t, "new leader of "+name, func(ctx context.Context) error {
			info, err := streamInfo(ctx, fresh, name)
			if err != nil {
				return err
			}
			if l = info.Cluster.Leader; l == "" || l == victimName {
				return fmt.Errorf("leader %q", l)
			}
			return nil
		})
		t.Logf("%s: new leader %s", name, l)
	}

	// Writes still reach a quorum: through each survivor and the two
	// clients.
	writers := []*stream.Bus{survivors[0], survivors[1], fresh, remote}
	for i, b := range writers {
		k, v, ev := fmt.Sprintf("after%d", i), fmt.Sprintf("w%d", i), fmt.Sprintf("a%d", i)
		eventually(t, "write through "+b.ServerID(), func(ctx context.Context) error {
			bkv, err := b.JetStream().KeyValue(ctx, b.Name("state"))
			if err != nil {
				return err
			}
			if _, err := bkv.Put(ctx, k, []byte(v)); err != nil {
				return err
			}
			return nil
		})
		values[k] = v
		// Publish once the stream answers: a retried publish could store
		// the message twice, so ack it with a message id.
		eventually(t, "publish through "+b.ServerID(), func(ctx context.Context) error {
			_, err := b.JetStream().Publish(ctx, b.Prefix()+".events.x", []byte(ev), jetstream.WithMsgID(ev))
			return err
		})
		events = append(events, ev)
	}
	for who, b := range readers {
		eventually(t, who+" reads the writes made after the stop", func(ctx context.Context) error {
			if err := checkKV(ctx, b, "state", values); err != nil {
				return err
			}
			return checkStream(ctx, b, "EVENTS", events)
		})
	}

	// The stopped server comes back on its store and catches up: its
	// replicas become current again.
	restarted := time.Now()
	back := connect(t, victimCfg)
	for _, name := range []string{kvStream, b1.Name("EVENTS")} {
		eventually(t, victimName+" catches up on "+name, func(ctx context.Context) error {
			info, err := streamInfo(ctx, fresh, name)
			if err != nil {
				return err
			}
			if info.Cluster.Leader == victimName {
				return nil
			}
			for _, r := range info.Cluster.Replicas {
				if r.Name == victimName {
					if r.Current && !r.Offline && r.Lag == 0 {
						return nil
					}
					return fmt.Errorf("replica %+v", r)
				}
			}
			return fmt.Errorf("%s is not a replica: %+v", victimName, info.Cluster)
		})
	}
	t.Logf("%s back and current in %v", back.Server.Name(), time.Since(restarted).Round(time.Millisecond))
	t.Logf("total %v", time.Since(begin).Round(time.Millisecond))
}

// TestEmbeddedStartErrors checks that an embedded server that cannot start
// says why at once (it used to wait 10 s and report a timeout).
func TestEmbeddedStartErrors(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := l.Addr().String()
	free := reservePorts(t, 1)[0]
	tests := []struct {
		name string
		e    stream.Embedded
		want string
	}{
		{"client port taken", stream.Embedded{Listen: taken}, "address already in use"},
		{"cluster port taken", stream.Embedded{Listen: "127.0.0.1:0", ClusterName: "t", ClusterListen: taken,
			Routes: []string{fmt.Sprintf("nats://127.0.0.1:%d", free)}}, "address already in use"},
		{"cluster without routes", stream.Embedded{Listen: "127.0.0.1:0", ClusterName: "t", ClusterListen: "127.0.0.1:0"}, "routes"},
		{"cluster without a client port", stream.Embedded{ClusterName: "t", ClusterListen: "127.0.0.1:0",
			Routes: []string{fmt.Sprintf("nats://127.0.0.1:%d", free)}}, "needs Embedded.Listen"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.e.StoreDir = t.TempDir()
			start := time.Now()
			b, err := stream.Connect(context.Background(), stream.Config{ServerID: "x", Embedded: tc.e})
			if err == nil {
				b.Close()
				t.Fatal("Connect succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) || time.Since(start) > 5*time.Second {
				t.Fatalf("after %v: %v, want an error containing %q", time.Since(start), err, tc.want)
			}
		})
	}
}
