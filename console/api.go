package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/nopal-dev/nopal/bindings"
	"github.com/nopal-dev/nopal/groups"
	"github.com/nopal-dev/nopal/reliable"
	"github.com/nopal-dev/nopal/stream"
)

// routes registers the API.
func (c *Console) routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/overview", c.overview)
	mux.HandleFunc("GET /api/events", c.events)
	mux.HandleFunc("GET /api/servers", c.servers)
	mux.HandleFunc("GET /api/users", c.users)
	mux.HandleFunc("GET /api/user", c.user)
	mux.HandleFunc("POST /api/user/kick", c.kick)
	mux.HandleFunc("GET /api/groups", c.groupList)
	mux.HandleFunc("GET /api/group", c.group)
	mux.HandleFunc("GET /api/jobs", c.jobList)
	mux.HandleFunc("GET /api/jobs/counts", c.jobCounts)
	mux.HandleFunc("GET /api/job", c.job)
	mux.HandleFunc("POST /api/job/retry", c.jobAction("retry"))
	mux.HandleFunc("POST /api/job/cancel", c.jobAction("cancel"))
	mux.HandleFunc("GET /api/dlq", c.dlq)
	mux.HandleFunc("GET /api/traffic", c.trafficQuery)
	mux.HandleFunc("GET /api/traffic/hops", c.hops)
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no API endpoint %s %s", r.Method, r.URL.Path))
	})
}

// opCtx bounds a request's bus work.
func opCtx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), 10*time.Second)
}

// busError answers an error of the bus: 503 when the bus is the problem.
func (c *Console) busError(w http.ResponseWriter, what string, err error) {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || !c.bus.Connected() {
		writeError(w, http.StatusServiceUnavailable, what+": the bus did not answer: "+err.Error())
		return
	}
	writeError(w, http.StatusBadGateway, what+": "+err.Error())
}

func (c *Console) overview(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, c.st.snapshot())
}

// events is the Server-Sent Events stream: "snapshot" first, then
// "servers", "cluster", "beats", "users", "groups", "jobs", "traffic".
func (c *Console) events(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, "streaming unsupported")
		return
	}
	s, first := c.hub.subscribe(func() []event { return []event{newEvent("snapshot", c.st.snapshot())} })
	defer c.hub.unsubscribe(s)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	write := func(ev event) bool {
		_, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev.name, ev.data)
		return err == nil
	}
	_, _ = io.WriteString(w, "retry: 1000\n\n")
	for _, ev := range first {
		if !write(ev) {
			return
		}
	}
	fl.Flush()
	keep := time.NewTicker(15 * time.Second)
	defer keep.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.gone:
			return
		case <-keep.C:
			if _, err := io.WriteString(w, ": keep-alive\n\n"); err != nil {
				return
			}
			fl.Flush()
		case ev := <-s.ch:
			if !write(ev) {
				return
			}
			for n := len(s.ch); n > 0; n-- { // what else is waiting, in one flush
				if !write(<-s.ch) {
					return
				}
			}
			fl.Flush()
		}
	}
}

func (c *Console) servers(w http.ResponseWriter, r *http.Request) {
	c.st.mu.Lock()
	list := c.st.serverList()
	events := slices.Clone(c.st.serverEvents)
	c.st.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"now": time.Now(), "servers": list, "events": events})
}

func (c *Console) users(w http.ResponseWriter, r *http.Request) {
	c.st.mu.Lock()
	v := c.st.usersView()
	c.st.mu.Unlock()
	writeJSON(w, http.StatusOK, v)
}

// UserInfo answers GET /api/user?uid=.
type UserInfo struct {
	UID      string          `json:"uid"`
	Online   bool            `json:"online"`
	Frontend string          `json:"frontend,omitempty"`
	Session  int64           `json:"session,omitempty"`
	Data     json.RawMessage `json:"data,omitempty"`
	// DataNote says why Data is missing.
	DataNote string `json:"data_note,omitempty"`
}

// uidParam reads and checks a uid.
func uidParam(w http.ResponseWriter, uid string) bool {
	switch {
	case uid == "":
		writeError(w, http.StatusBadRequest, "uid is required")
		return false
	case len(uid) > bindings.MaxUIDLen:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("uid is longer than %d bytes", bindings.MaxUIDLen))
		return false
	}
	return true
}

func (c *Console) user(w http.ResponseWriter, r *http.Request) {
	uid := r.URL.Query().Get("uid")
	if !uidParam(w, uid) {
		return
	}
	ctx, cancel := opCtx(r)
	defer cancel()
	kv, err := c.bus.JetStream().KeyValue(ctx, c.bus.Name(bindings.Bucket))
	if err != nil {
		c.busError(w, "bindings", err)
		return
	}
	info := UserInfo{UID: uid}
	e, err := kv.Get(ctx, bindings.Key(uid))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		writeJSON(w, http.StatusOK, info) // offline: an answer, not an error
		return
	}
	if err != nil {
		c.busError(w, "bindings", err)
		return
	}
	var b bindings.Binding
	if err := json.Unmarshal(e.Value(), &b); err != nil {
		writeError(w, http.StatusBadGateway, "the binding of this uid is not a binding: "+err.Error())
		return
	}
	info.Online, info.Frontend, info.Session = true, b.FrontendID, b.SessionID
	// The session's data, as its frontend last recorded it (at bind,
	// suspend and resume) in the KV bucket "sessions".
	skv, err := c.bus.JetStream().KeyValue(ctx, c.bus.Name("sessions"))
	if err == nil {
		var se jetstream.KeyValueEntry
		se, err = skv.Get(ctx, b.FrontendID+"."+strconv.FormatInt(b.SessionID, 10))
		if err == nil {
			var rec stream.SessionRecord
			if err = proto.Unmarshal(se.Value(), &rec); err == nil {
				if json.Valid(rec.GetData()) && len(rec.GetData()) > 0 {
					info.Data = rec.GetData()
				} else {
					info.Data = json.RawMessage("{}")
				}
			}
		}
	}
	if info.Data == nil {
		info.DataNote = "no session record (sessions are recorded at bind, suspend and resume; resume off records none)"
		if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) && !errors.Is(err, jetstream.ErrBucketNotFound) {
			info.DataNote = "session record: " + err.Error()
		}
	}
	writeJSON(w, http.StatusOK, info)
}

// readBody decodes a JSON POST body into v (at most 64 KB, no unknown
// fields).
func readBody(w http.ResponseWriter, r *http.Request, v any) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, "the body must be JSON (Content-Type: application/json)")
		return false
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "the body is larger than 64 KB")
		} else {
			writeError(w, http.StatusBadRequest, "bad JSON body: "+err.Error())
		}
		return false
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, "bad JSON body: more than one value")
		return false
	}
	return true
}

// KickResult answers POST /api/user/kick.
type KickResult struct {
	UID      string `json:"uid"`
	Frontend string `json:"frontend"`
	Kicked   bool   `json:"kicked"`
}

func (c *Console) kick(w http.ResponseWriter, r *http.Request) {
	var in struct {
		UID string `json:"uid"`
	}
	if !readBody(w, r, &in) || !uidParam(w, in.UID) {
		return
	}
	ctx, cancel := opCtx(r)
	defer cancel()
	kv, err := c.bus.JetStream().KeyValue(ctx, c.bus.Name(bindings.Bucket))
	if err != nil {
		c.busError(w, "bindings", err)
		return
	}
	e, err := kv.Get(ctx, bindings.Key(in.UID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("uid %q is not online (no binding)", in.UID))
		return
	}
	if err != nil {
		c.busError(w, "bindings", err)
		return
	}
	var b bindings.Binding
	if err := json.Unmarshal(e.Value(), &b); err != nil {
		writeError(w, http.StatusBadGateway, "the binding of this uid is not a binding: "+err.Error())
		return
	}
	// As cluster.Runtime.KickSession: a Kick of that session to its
	// frontend's kick subject, answered with a Delivery.
	data, _ := proto.Marshal(&stream.Kick{Uids: []string{in.UID}, SessionId: b.SessionID})
	msg, err := c.bus.Request(ctx, c.bus.ServerKick(b.FrontendID), data, nil)
	if errors.Is(err, nats.ErrNoResponders) {
		writeError(w, http.StatusConflict, fmt.Sprintf("frontend %s does not answer (stopped or dead): the session ends when its resume grace passes", b.FrontendID))
		return
	}
	if err != nil {
		c.busError(w, "kick", err)
		return
	}
	var d stream.Delivery
	if err := proto.Unmarshal(msg.Data, &d); err != nil {
		writeError(w, http.StatusBadGateway, "the frontend's answer: "+err.Error())
		return
	}
	if slices.Contains(d.GetFailed(), in.UID) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("frontend %s does not hold a session of %q any more", b.FrontendID, in.UID))
		return
	}
	c.log.Info("console: kicked", "uid", in.UID, "frontend", b.FrontendID, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, KickResult{UID: in.UID, Frontend: b.FrontendID, Kicked: true})
}

func (c *Console) groupList(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := opCtx(r)
	defer cancel()
	list, err := listGroups(ctx, c.bus)
	if err != nil {
		c.busError(w, "groups", err)
		return
	}
	if list == nil {
		list = []GroupView{}
	}
	writeJSON(w, http.StatusOK, list)
}

// GroupInfo answers GET /api/group?name=.
type GroupInfo struct {
	GroupView
	UIDs []string `json:"uids"`
}

func (c *Console) group(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("name")
	if !r.URL.Query().Has("name") {
		writeError(w, http.StatusBadRequest, "name is required")
		return
	}
	if len(name) > 1024 {
		writeError(w, http.StatusBadRequest, "name is longer than 1024 bytes")
		return
	}
	ctx, cancel := opCtx(r)
	defer cancel()
	uids, err := c.st.groupsSvc.Members(ctx, name)
	if errors.Is(err, groups.ErrGroupNotFound) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no group %q (or it expired)", name))
		return
	}
	if err != nil {
		c.busError(w, "group", err)
		return
	}
	slices.Sort(uids)
	info := GroupInfo{GroupView: GroupView{Name: name, Members: len(uids)}, UIDs: uids}
	if list, err := listGroups(ctx, c.bus); err == nil {
		for _, g := range list {
			if g.Name == name {
				info.GroupView = g
				info.Members = len(uids)
			}
		}
	}
	writeJSON(w, http.StatusOK, info)
}

// parseWhen reads a time: RFC 3339, or a duration ago ("10m").
func parseWhen(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("%q: a duration ago must not be negative", s)
		}
		return time.Now().Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither a duration ago (10m) nor an RFC 3339 time", s)
	}
	return t, nil
}

// limitParam reads ?limit= (def when absent, 1 to max).
func limitParam(w http.ResponseWriter, r *http.Request, def, max int) (int, bool) {
	s := r.URL.Query().Get("limit")
	if s == "" {
		return def, true
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > max {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("limit must be a number from 1 to %d, not %q", max, s))
		return 0, false
	}
	return n, true
}

// JobList answers GET /api/jobs.
type JobList struct {
	Jobs []reliable.Job `json:"jobs"`
	Next string         `json:"next,omitempty"`
}

func (c *Console) jobList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var f reliable.Filter
	for _, s := range strings.FieldsFunc(q.Get("state"), func(r rune) bool { return r == ',' || r == ' ' }) {
		st := reliable.State(s)
		if !slices.Contains(allStates, st) {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("unknown state %q (queued, running, retrying, succeeded, failed, dead, cancelled)", s))
			return
		}
		f.States = append(f.States, st)
	}
	f.Route = q.Get("route")
	var err error
	if f.Since, err = parseWhen(q.Get("since")); err != nil {
		writeError(w, http.StatusBadRequest, "since: "+err.Error())
		return
	}
	if f.Until, err = parseWhen(q.Get("until")); err != nil {
		writeError(w, http.StatusBadRequest, "until: "+err.Error())
		return
	}
	var ok bool
	if f.Limit, ok = limitParam(w, r, 100, 1000); !ok {
		return
	}
	f.Cursor = q.Get("cursor")
	ctx, cancel := opCtx(r)
	defer cancel()
	p, err := c.jobs.List(ctx, f)
	if errors.Is(err, reliable.ErrConfig) {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err != nil {
		c.busError(w, "jobs", err)
		return
	}
	slices.Reverse(p.Jobs) // newest first on the page
	if p.Jobs == nil {
		p.Jobs = []reliable.Job{}
	}
	writeJSON(w, http.StatusOK, JobList{Jobs: p.Jobs, Next: p.Next})
}

func (c *Console) jobCounts(w http.ResponseWriter, r *http.Request) {
	c.st.mu.Lock()
	counts := c.st.jobCounts()
	c.st.mu.Unlock()
	writeJSON(w, http.StatusOK, counts)
}

// jobError answers the errors of reliable's Get, Retry and Cancel.
func (c *Console) jobError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, reliable.ErrInvalidJID):
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, reliable.ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, reliable.ErrState):
		writeError(w, http.StatusConflict, err.Error())
	default:
		c.busError(w, "job", err)
	}
}

func (c *Console) job(w http.ResponseWriter, r *http.Request) {
	jid := r.URL.Query().Get("jid")
	if jid == "" {
		writeError(w, http.StatusBadRequest, "jid is required")
		return
	}
	ctx, cancel := opCtx(r)
	defer cancel()
	j, err := c.jobs.Get(ctx, jid)
	if err != nil {
		c.jobError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, j)
}

func (c *Console) jobAction(action string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			JID string `json:"jid"`
		}
		if !readBody(w, r, &in) {
			return
		}
		if in.JID == "" {
			writeError(w, http.StatusBadRequest, "jid is required")
			return
		}
		ctx, cancel := opCtx(r)
		defer cancel()
		var err error
		if action == "retry" {
			err = c.jobs.Retry(ctx, in.JID)
		} else {
			err = c.jobs.Cancel(ctx, in.JID)
		}
		if err != nil {
			c.jobError(w, err)
			return
		}
		c.log.Info("console: job "+action, "jid", in.JID, "remote", r.RemoteAddr)
		j, err := c.jobs.Get(ctx, in.JID)
		if err != nil {
			c.jobError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, j)
	}
}

// DeadLetter is one message of JOBS_DLQ.
type DeadLetter struct {
	Seq   uint64       `json:"seq"`
	Time  time.Time    `json:"time"`
	State string       `json:"state"`
	Job   reliable.Job `json:"job"`
}

// dlq lists the dead letters, newest first (?limit=, default 100).
func (c *Console) dlq(w http.ResponseWriter, r *http.Request) {
	limit, ok := limitParam(w, r, 100, 1000)
	if !ok {
		return
	}
	ctx, cancel := opCtx(r)
	defer cancel()
	str, err := c.bus.JetStream().Stream(ctx, c.bus.Name(reliable.DLQStream))
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		writeJSON(w, http.StatusOK, []DeadLetter{})
		return
	}
	if err != nil {
		c.busError(w, "dead letters", err)
		return
	}
	info := str.CachedInfo()
	out := []DeadLetter{}
	if info.State.Msgs == 0 {
		writeJSON(w, http.StatusOK, out)
		return
	}
	cfg := jetstream.OrderedConsumerConfig{InactiveThreshold: 10 * time.Second}
	if last := info.State.LastSeq; last > uint64(limit)*2 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, last-uint64(limit)*2+1
	}
	cons, err := str.OrderedConsumer(ctx, cfg)
	if err != nil {
		c.busError(w, "dead letters", err)
		return
	}
	defer func() {
		if ci := cons.CachedInfo(); ci != nil {
			_ = c.bus.JetStream().DeleteConsumer(context.WithoutCancel(ctx), str.CachedInfo().Config.Name, ci.Name)
		}
	}()
	for {
		batch, err := cons.Fetch(256, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			c.busError(w, "dead letters", err)
			return
		}
		n, done := 0, false
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				continue
			}
			d := DeadLetter{Seq: md.Sequence.Stream, Time: md.Timestamp, State: m.Headers().Get(reliable.HeaderState)}
			_ = json.Unmarshal(m.Data(), &d.Job)
			out = append(out, d)
			if md.NumPending == 0 || md.Sequence.Stream >= info.State.LastSeq {
				done = true
			}
		}
		if done || n == 0 {
			break
		}
	}
	slices.Reverse(out)
	if len(out) > limit {
		out = out[:limit]
	}
	writeJSON(w, http.StatusOK, out)
}

// trafficFilter reads the filter parameters shared by the traffic
// queries.
func trafficFilter(w http.ResponseWriter, r *http.Request) (stream.Filter, bool) {
	q := r.URL.Query()
	f := stream.Filter{Route: q.Get("route"), UID: q.Get("uid"), Server: q.Get("server")}
	var err error
	if f.Since, err = parseWhen(q.Get("since")); err != nil {
		writeError(w, http.StatusBadRequest, "since: "+err.Error())
		return f, false
	}
	if f.Until, err = parseWhen(q.Get("until")); err != nil {
		writeError(w, http.StatusBadRequest, "until: "+err.Error())
		return f, false
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		writeError(w, http.StatusBadRequest, "since must be before until")
		return f, false
	}
	return f, true
}

// TrafficPage answers GET /api/traffic.
type TrafficPage struct {
	Lines []stream.Entry `json:"lines"`
	// More says the replay stopped at the limit or its time budget.
	More bool `json:"more,omitempty"`
}

var errEnough = errors.New("enough")

// trafficQuery replays the log as `node replay` does (route, uid, server,
// since, until), the latest ?limit= lines (default 200); since defaults to
// 10 minutes ago. The replay gets 5 s.
func (c *Console) trafficQuery(w http.ResponseWriter, r *http.Request) {
	f, ok := trafficFilter(w, r)
	if !ok {
		return
	}
	limit, ok := limitParam(w, r, 200, 5000)
	if !ok {
		return
	}
	if f.Since.IsZero() {
		f.Since = time.Now().Add(-10 * time.Minute)
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	var lines []stream.Entry
	more := false
	err := stream.Replay(ctx, c.bus, f, func(e stream.Entry) error {
		lines = append(lines, e)
		if len(lines) > 4*limit { // keep the latest
			lines = slices.Delete(lines, 0, len(lines)-limit)
			more = true
		}
		return nil
	})
	switch {
	case errors.Is(err, context.DeadlineExceeded) && r.Context().Err() == nil:
		more = true
	case err != nil && strings.Contains(err.Error(), "no traffic log"):
		writeJSON(w, http.StatusOK, TrafficPage{Lines: []stream.Entry{}})
		return
	case err != nil:
		c.busError(w, "traffic", err)
		return
	}
	if len(lines) > limit {
		lines, more = lines[len(lines)-limit:], true
	}
	if lines == nil {
		lines = []stream.Entry{}
	}
	writeJSON(w, http.StatusOK, TrafficPage{Lines: lines, More: more})
}

// Hops answers GET /api/traffic/hops: a request's records side by side.
type Hops struct {
	Hops []stream.Entry `json:"hops"`
}

// hops finds a request's records: its call, what happened for its user
// while it ran (session ops, pushes, kicks, calls to other servers
// recorded with the same trace id) and its reply. Calls do not record
// their reply subject, so the reply is the first one after the call with
// the call's route, to the call's frontend, for its user (requests of a
// session run in order). The parameters are the clicked record's: kind
// (call or reply), at (its time, RFC 3339), route, frontend, uid, and
// reply (a reply's subject) or trace (a W3C trace id) when it has them.
func (c *Console) hops(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	at, err := time.Parse(time.RFC3339Nano, q.Get("at"))
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("at must be an RFC 3339 time (the record's), not %q", q.Get("at")))
		return
	}
	kind, route, frontend, uid, trace := q.Get("kind"), q.Get("route"), q.Get("frontend"), q.Get("uid"), q.Get("trace")
	if kind != stream.KindCall && kind != stream.KindReply {
		writeError(w, http.StatusBadRequest, "kind must be call or reply (the record whose hops to show)")
		return
	}
	if route == "" {
		writeError(w, http.StatusBadRequest, "route is required")
		return
	}
	f := stream.Filter{Since: at.Add(-time.Millisecond), Until: at.Add(10 * time.Second)}
	if kind == stream.KindReply {
		f = stream.Filter{Since: at.Add(-10 * time.Second), Until: at.Add(time.Millisecond)}
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	var all []stream.Entry
	err = stream.Replay(ctx, c.bus, f, func(e stream.Entry) error {
		all = append(all, e)
		if len(all) >= 50000 {
			return errEnough
		}
		return nil
	})
	if err != nil && !errors.Is(err, errEnough) && !(errors.Is(err, context.DeadlineExceeded) && r.Context().Err() == nil) {
		if strings.Contains(err.Error(), "no traffic log") {
			writeError(w, http.StatusNotFound, "no traffic log (servers run with -traffic=false?)")
			return
		}
		c.busError(w, "traffic", err)
		return
	}
	prefix := c.bus.Prefix() + "."
	hasUID := func(e stream.Entry) bool { return uid != "" && (e.UID == uid || slices.Contains(e.UIDs, uid)) }
	isCall := func(e stream.Entry) bool {
		return e.Kind == stream.KindCall && e.Route == route && (frontend == "" || e.Frontend == frontend) && (uid == "" || e.UID == "" || e.UID == uid)
	}
	isReply := func(e stream.Entry) bool {
		fe := e.Frontend
		if fe == "" {
			fe = subjectServer(prefix, e.Subject)
		}
		return e.Kind == stream.KindReply && e.Route == route && (frontend == "" || fe == frontend) &&
			(uid == "" || (e.UID == "" && len(e.UIDs) == 0) || hasUID(e))
	}
	first, last := -1, -1
	if kind == stream.KindCall {
		for i, e := range all {
			if first < 0 {
				if isCall(e) && !e.Time.Before(at.Add(-time.Microsecond)) {
					first = i
				}
				continue
			}
			if uid == "" && e.Kind == stream.KindSession && e.Session != 0 && e.Session == all[first].Session && e.UID != "" {
				uid = e.UID // the call binds its session
			}
			if isReply(e) {
				last = i
				break
			}
		}
	} else {
		for i := len(all) - 1; i >= 0; i-- {
			if last < 0 {
				if isReply(all[i]) && !all[i].Time.After(at.Add(time.Microsecond)) {
					last = i
				}
				continue
			}
			if isCall(all[i]) {
				first = i
				break
			}
		}
	}
	hops := []stream.Entry{}
	switch {
	case first >= 0 && last >= 0:
		sess := all[first].Session
		for i := first; i <= last; i++ {
			e := all[i]
			mine := hasUID(e) || (sess != 0 && e.Session == sess && e.Frontend == all[first].Frontend)
			if i == first || i == last || (e.Kind != stream.KindCall && e.Kind != stream.KindReply && mine) || (trace != "" && traceID(e) == trace) {
				hops = append(hops, e)
			}
		}
	case first >= 0:
		hops = append(hops, all[first]) // a notify, or no reply yet
	case last >= 0:
		hops = append(hops, all[last])
	}
	writeJSON(w, http.StatusOK, Hops{Hops: hops})
}

// subjectServer is the server id a subject names: <p>.srv.<id>.… or
// <p>.reply.<id>.….
func subjectServer(prefix, subject string) string {
	rest, ok := strings.CutPrefix(subject, prefix)
	if !ok {
		return ""
	}
	parts := strings.SplitN(rest, ".", 3)
	if len(parts) >= 2 && (parts[0] == "srv" || parts[0] == "reply") {
		return parts[1]
	}
	return ""
}

// traceID is the trace id of a record's W3C traceparent header, if any.
func traceID(e stream.Entry) string {
	for k, v := range e.Headers {
		if strings.EqualFold(k, "traceparent") {
			if parts := strings.Split(v, "-"); len(parts) == 4 {
				return parts[1]
			}
		}
	}
	return ""
}
