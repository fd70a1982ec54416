package console_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nopal-dev/nopal"
	"github.com/nopal-dev/nopal/console"
	"github.com/nopal-dev/nopal/reliable"
	"github.com/nopal-dev/nopal/stream"
)

type serverJSON struct {
	ID       string            `json:"id"`
	Type     string            `json:"type"`
	Frontend bool              `json:"frontend"`
	Metadata map[string]string `json:"metadata"`
	Version  string            `json:"version"`
	LastBeat time.Time         `json:"last_beat"`
	Sessions int               `json:"sessions"`
}

// The API on a real cluster: servers, users, groups, traffic and hops,
// jobs (list, counts, dead letters, retry, cancel) and kicks.
func TestAPI(t *testing.T) {
	tc := startCluster(t, console.Config{})
	token := tc.console.Token()

	// Cluster.
	var servers struct {
		Servers []serverJSON `json:"servers"`
	}
	eventually(t, 5*time.Second, func() bool {
		tc.getJSON(t, "/api/servers", &servers)
		return len(servers.Servers) == 3
	}, "3 servers")
	byID := map[string]serverJSON{}
	for _, s := range servers.Servers {
		byID[s.ID] = s
	}
	if s := byID["connector-1"]; !s.Frontend || s.Type != "connector" || s.Metadata["region"] != "test" || s.Version == "" {
		t.Errorf("connector: %+v", s)
	}
	if s := byID["room-1"]; s.Frontend || s.Type != "room" {
		t.Errorf("room: %+v", s)
	}
	if age := time.Since(byID["flaky-1"].LastBeat); age < 0 || age > 3*time.Second {
		t.Errorf("flaky-1's heartbeat is %v old", age)
	}

	// Users.
	cl, uid := tc.chatter(t)
	var user console.UserInfo
	tc.getJSON(t, "/api/user?uid="+url.QueryEscape(uid), &user)
	if !user.Online || user.Frontend != "connector-1" || user.Session == 0 || user.Data == nil {
		t.Errorf("user %s: %+v", uid, user)
	}
	tc.getJSON(t, "/api/user?uid=nobody", &user)
	if user.Online {
		t.Errorf("nobody is online: %+v", user)
	}
	eventually(t, 3*time.Second, func() bool {
		tc.getJSON(t, "/api/servers", &servers)
		for _, s := range servers.Servers {
			if s.ID == "connector-1" {
				return s.Sessions == 1
			}
		}
		return false
	}, "connector-1 with 1 bound session")

	// Groups.
	var groups []console.GroupView
	tc.getJSON(t, "/api/groups", &groups)
	if len(groups) != 1 || groups[0].Name != "room" || groups[0].Members != 1 {
		t.Errorf("groups: %+v", groups)
	}
	var group console.GroupInfo
	tc.getJSON(t, "/api/group?name=room", &group)
	if !slices.Equal(group.UIDs, []string{uid}) {
		t.Errorf("group room: %+v", group)
	}
	if code, b := tc.do(t, "GET", "/api/group?name=nope", "", ""); code != http.StatusNotFound {
		t.Errorf("unknown group: %d %s", code, b)
	}

	// Traffic: a chat message shows in the live tail and in a query; a
	// request's hops are its call and its reply.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.Notify(ctx, "room.room.message", map[string]string{"name": "ana", "content": "hello console"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() bool {
		var o console.Snapshot
		tc.getJSON(t, "/api/overview", &o)
		return slices.ContainsFunc(o.Traffic, func(e stream.Entry) bool {
			return e.Route == "room.room.message" && strings.Contains(string(e.Payload), "hello console")
		})
	}, "the chat message in the live traffic")
	var page console.TrafficPage
	tc.getJSON(t, "/api/traffic?uid="+url.QueryEscape(uid), &page)
	if len(page.Lines) == 0 {
		t.Errorf("no traffic of %s", uid)
	}
	for _, e := range page.Lines {
		if e.UID != uid && !slices.Contains(e.UIDs, uid) {
			t.Errorf("uid filter let %+v through", e)
		}
	}
	tc.getJSON(t, "/api/traffic?route=room.room&since=1m", &page)
	var join *stream.Entry
	for i, e := range page.Lines {
		if e.Route != "room.room.join" && e.Route != "room.room.message" {
			t.Errorf("route filter let %q through", e.Route)
		}
		if e.Kind == stream.KindCall && e.Route == "room.room.join" {
			join = &page.Lines[i]
		}
	}
	if join == nil {
		t.Fatalf("no join call in %+v", page.Lines)
	}
	var hops console.Hops
	tc.getJSON(t, "/api/traffic/hops?kind=call&route=room.room.join&frontend=connector-1&uid="+url.QueryEscape(join.UID)+"&at="+url.QueryEscape(join.Time.Format(time.RFC3339Nano)), &hops)
	kinds := []string{}
	for _, h := range hops.Hops {
		kinds = append(kinds, h.Kind+" "+h.Recorder)
	}
	if len(kinds) < 2 || kinds[0] != "call connector-1" || kinds[len(kinds)-1] != "reply connector-1" || !slices.Contains(kinds, "push room-1") {
		t.Errorf("hops of the join: %v", kinds)
	}
	t.Logf("hops of the join: %v", kinds)

	// Jobs: a failed job is listed, counted and in the dead letters; a
	// retry needs the token, then the job succeeds.
	tc.failedJob(t, "job-fail-1")
	var list console.JobList
	tc.getJSON(t, "/api/jobs?state=failed&route=flaky.&since=1h", &list)
	if len(list.Jobs) != 1 || list.Jobs[0].JID != "job-fail-1" || len(list.Jobs[0].Attempts) != 1 || list.Jobs[0].Attempts[0].Server != "flaky-1" || list.Jobs[0].Attempts[0].Error == nil {
		t.Fatalf("failed jobs: %+v", list)
	}
	eventually(t, 3*time.Second, func() bool {
		var counts map[string]int
		tc.getJSON(t, "/api/jobs/counts", &counts)
		return counts["failed"] == 1
	}, "1 failed job in the counts")
	var dlq []console.DeadLetter
	tc.getJSON(t, "/api/dlq", &dlq)
	if len(dlq) != 1 || dlq[0].Job.JID != "job-fail-1" {
		t.Errorf("dead letters: %+v", dlq)
	}
	if code, _ := tc.do(t, "POST", "/api/job/retry", "", `{"jid":"job-fail-1"}`); code != http.StatusUnauthorized {
		t.Errorf("retry without token: %d", code)
	}
	if code, _ := tc.do(t, "POST", "/api/job/retry?token="+token, "", `{"jid":"job-fail-1"}`); code != http.StatusUnauthorized {
		t.Errorf("retry with the token in the URL: %d (actions take it from a header only)", code)
	}
	tc.failing.Store(false)
	if code, b := tc.do(t, "POST", "/api/job/retry", token, `{"jid":"job-fail-1"}`); code != http.StatusOK {
		t.Fatalf("retry: %d %s", code, b)
	}
	eventually(t, 10*time.Second, func() bool {
		var j reliable.Job
		tc.getJSON(t, "/api/job?jid=job-fail-1", &j)
		return j.State == reliable.Succeeded
	}, "the retried job to succeed")
	tc.getJSON(t, "/api/dlq", &dlq)
	if len(dlq) != 0 {
		t.Errorf("dead letters after the retry: %+v", dlq)
	}
	if code, b := tc.do(t, "POST", "/api/job/retry", token, `{"jid":"job-fail-1"}`); code != http.StatusConflict {
		t.Errorf("retry of a succeeded job: %d %s", code, b)
	}

	// Cancel a queued job (no server of its type runs).
	if _, err := tc.front.ReliableRPC(ctx, "idle.idle.do", map[string]int{}, reliable.WithJID("job-queued-1")); err != nil {
		t.Fatal(err)
	}
	if code, b := tc.do(t, "POST", "/api/job/cancel", token, `{"jid":"job-queued-1"}`); code != http.StatusOK || !strings.Contains(string(b), `"cancelled"`) {
		t.Errorf("cancel: %d %s", code, b)
	}

	// Kick.
	if code, _ := tc.do(t, "POST", "/api/user/kick", "", `{"uid":"`+uid+`"}`); code != http.StatusUnauthorized {
		t.Errorf("kick without token: %d", code)
	}
	if code, b := tc.do(t, "POST", "/api/user/kick", token, `{"uid":"`+uid+`"}`); code != http.StatusOK {
		t.Fatalf("kick: %d %s", code, b)
	}
	select {
	case <-cl.Done():
		if !cl.Kicked() {
			t.Errorf("client ended with %v, want a kick", cl.Err())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the kicked client is still connected")
	}
	if code, b := tc.do(t, "POST", "/api/user/kick", token, `{"uid":"nobody"}`); code != http.StatusNotFound {
		t.Errorf("kick of nobody: %d %s", code, b)
	}
}

// Bad input gets a 4xx with a JSON error, never a crash.
func TestBadInput(t *testing.T) {
	tc := startCluster(t, console.Config{})
	token := tc.console.Token()
	big := `{"uid":"` + strings.Repeat("x", 70<<10) + `"}`
	cases := []struct {
		method, path, token, body string
		code                      int
	}{
		{"GET", "/api/user", "", "", 400},
		{"GET", "/api/user?uid=" + strings.Repeat("u", 2000), "", "", 400},
		{"GET", "/api/group", "", "", 400},
		{"GET", "/api/jobs?state=bogus", "", "", 400},
		{"GET", "/api/jobs?limit=0", "", "", 400},
		{"GET", "/api/jobs?limit=x", "", "", 400},
		{"GET", "/api/jobs?since=yesterday", "", "", 400},
		{"GET", "/api/jobs?cursor=garbage", "", "", 400},
		{"GET", "/api/job", "", "", 400},
		{"GET", "/api/job?jid=bad%20jid!", "", "", 400},
		{"GET", "/api/job?jid=nope", "", "", 404},
		{"GET", "/api/dlq?limit=-1", "", "", 400},
		{"GET", "/api/traffic?since=-5m", "", "", 400},
		{"GET", "/api/traffic?since=1m&until=2m", "", "", 400},
		{"GET", "/api/traffic/hops?kind=call&route=a", "", "", 400},
		{"GET", "/api/traffic/hops?kind=push&route=a&at=2026-01-01T00:00:00Z", "", "", 400},
		{"GET", "/api/traffic/hops?kind=call&at=2026-01-01T00:00:00Z", "", "", 400},
		{"GET", "/api/nothing", "", "", 404},
		{"DELETE", "/api/job?jid=x", token, "", 404},
		{"POST", "/api/job/retry", token, `not json`, 400},
		{"POST", "/api/job/retry", token, `{"jid":"a","extra":1}`, 400},
		{"POST", "/api/job/retry", token, `{}`, 400},
		{"POST", "/api/job/retry", token, `{"jid":"nope"}`, 404},
		{"POST", "/api/job/cancel", token, `{"jid":"../etc"}`, 400},
		{"POST", "/api/user/kick", token, `{"uid":""}`, 400},
		{"POST", "/api/user/kick", token, `{"uid":"a"}{"uid":"b"}`, 400},
		{"POST", "/api/user/kick", token, big, 413},
		{"POST", "/api/user/kick", "wrong", `{"uid":"a"}`, 401},
	}
	for _, c := range cases {
		code, b := tc.do(t, c.method, c.path, c.token, c.body)
		var e struct {
			Error string `json:"error"`
		}
		if code != c.code || json.Unmarshal(b, &e) != nil || e.Error == "" {
			t.Errorf("%s %s %.40q: %d %.200s, want %d and a JSON error", c.method, c.path, c.body, code, b, c.code)
		}
	}
	// A POST that is not JSON.
	req, _ := http.NewRequest("POST", tc.srv.URL+"/api/job/retry", strings.NewReader(`jid=x`))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("form POST: %d", res.StatusCode)
	}
}

// Access: loopback reads are open (to loopback host names); any other Host
// needs the token; a non-loopback address needs a configured token.
func TestAccess(t *testing.T) {
	tc := startCluster(t, console.Config{Token: "s3cret"})
	if tc.console.Token() != "s3cret" {
		t.Fatalf("token %q", tc.console.Token())
	}
	get := func(host, query, token string) int {
		req, _ := http.NewRequest("GET", tc.srv.URL+"/api/servers"+query, nil)
		req.Host = host
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	u, _ := url.Parse(tc.srv.URL)
	for _, c := range []struct {
		host, query, token string
		code               int
	}{
		{u.Host, "", "", 200},
		{"localhost:1", "", "", 200},
		{"evil.example", "", "", 401}, // DNS rebinding
		{"evil.example", "", "wrong", 401},
		{"evil.example", "", "s3cret", 200},
		{"evil.example", "?token=s3cret", "", 200},
	} {
		if code := get(c.host, c.query, c.token); code != c.code {
			t.Errorf("Host %s %s token %q: %d, want %d", c.host, c.query, c.token, code, c.code)
		}
	}
	// The page itself needs nothing.
	res, err := http.Get(tc.srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
		t.Errorf("page: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}

	open, err := console.New(tc.front.Bus(), console.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := open.Listen("0.0.0.0:0"); !errors.Is(err, console.ErrConfig) {
		t.Errorf("listening on 0.0.0.0 without a token: %v", err)
	}
	if _, err := open.Listen("nonsense"); !errors.Is(err, console.ErrConfig) {
		t.Errorf("a bad address: %v", err)
	}
	ln, err := tc.console.Listen("0.0.0.0:0")
	if err != nil {
		t.Errorf("listening on 0.0.0.0 with a token: %v", err)
	} else {
		ln.Close()
	}
}

type sse struct {
	name string
	data string
}

// readEvents reads Server-Sent Events into a channel.
func readEvents(t *testing.T, ctx context.Context, u string) <-chan sse {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	ch := make(chan sse, 1024)
	go func() {
		defer res.Body.Close()
		defer close(ch)
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(nil, 1<<20)
		var ev sse
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				ev.name = line[7:]
			case strings.HasPrefix(line, "data: "):
				ev.data = line[6:]
			case line == "" && ev.name != "":
				ch <- ev
				ev = sse{}
			}
		}
	}()
	return ch
}

// waitEvent waits for an event named name whose data holds want.
func waitEvent(t *testing.T, ch <-chan sse, name, want string, d time.Duration) sse {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("event stream ended waiting for %s %q", name, want)
			}
			if ev.name == name && strings.Contains(ev.data, want) {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %s event with %q within %v", name, want, d)
		}
	}
}

// The event stream: a snapshot, then joins, deaths, binds, groups, jobs
// and traffic as they happen.
func TestEvents(t *testing.T) {
	tc := startCluster(t, console.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := readEvents(t, ctx, tc.srv.URL+"/api/events")
	snap := waitEvent(t, ch, "snapshot", `"connector-1"`, 5*time.Second)
	var s console.Snapshot
	if err := json.Unmarshal([]byte(snap.data), &s); err != nil || len(s.Servers) != 3 || s.Prefix != "nopal" {
		t.Fatalf("snapshot: %v %s", err, snap.data)
	}
	waitEvent(t, ch, "beats", `"room-1"`, 3*time.Second)

	room2 := startApp(t, tc.front, "room", "room-2", func(*nopal.App) error { return nil })
	waitEvent(t, ch, "cluster", `"kind":"joined","server":{"id":"room-2"`, 3*time.Second)
	start := time.Now()
	room2.Bus().Abort() // a crash: its heartbeats stop
	waitEvent(t, ch, "cluster", `"kind":"died","server":{"id":"room-2"`, 8*time.Second)
	t.Logf("room-2's death reported %v after its crash", time.Since(start).Round(time.Millisecond))

	_, uid := tc.chatter(t)
	waitEvent(t, ch, "users", `"kind":"bound","uid":"`+uid+`"`, 3*time.Second)
	waitEvent(t, ch, "groups", `"name":"room","members":1`, 3*time.Second)
	waitEvent(t, ch, "traffic", `"route":"room.room.join"`, 3*time.Second)
	// Members leave and groups go by stream purges, which KV watchers do
	// not see: the console hears the purge requests.
	if err := tc.room.Groups().Remove(ctx, "room", uid); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, ch, "groups", `"name":"room","members":0`, 3*time.Second)
	if err := tc.room.Groups().CreateWithTTL(ctx, "lobby", time.Minute); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, ch, "groups", `"name":"lobby","members":0,"ttl":"1m0s","expires_at"`, 3*time.Second)
	if err := tc.room.Groups().Delete(ctx, "lobby"); err != nil {
		t.Fatal(err)
	}
	ev := waitEvent(t, ch, "groups", `"name":"room"`, 3*time.Second)
	if strings.Contains(ev.data, "lobby") {
		t.Errorf("a deleted group is still listed: %s", ev.data)
	}
	tc.failedJob(t, "job-events-1")
	waitEvent(t, ch, "jobs", `"jid":"job-events-1","route":"flaky.flaky.do","state":"failed"`, 3*time.Second)
}
