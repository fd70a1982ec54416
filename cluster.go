package nopal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	"github.com/nopal-dev/nopal/bindings"
	"github.com/nopal-dev/nopal/codec"
	"github.com/nopal-dev/nopal/discovery"
	"github.com/nopal-dev/nopal/groups"
	"github.com/nopal-dev/nopal/reliable"
	"github.com/nopal-dev/nopal/session"
	"github.com/nopal-dev/nopal/stream"
)

// Version is reported in discovery.
const Version = "0.2.0"

// Router picks the server of a type that serves a forwarded client request.
// servers is never empty. Register one per type with AddRoute; without one,
// NATS spreads requests at random over the type's servers.
type Router func(ctx context.Context, route string, payload []byte, servers []discovery.Server) (discovery.Server, error)

// AddRoute sets the router for client requests to servers of svType. It
// may be called at any time.
func (a *App) AddRoute(svType string, r Router) {
	a.mu.Lock()
	defer a.mu.Unlock()
	next := map[string]Router{svType: r}
	if old := a.routers.Load(); old != nil {
		for k, v := range *old {
			if k != svType {
				next[k] = v
			}
		}
	}
	a.routers.Store(&next)
}

func (a *App) router(svType string) Router {
	if m := a.routers.Load(); m != nil {
		return (*m)[svType]
	}
	return nil
}

// Header carrying the route of a recorded reply.
const routeHeader = "Nopal-Route"

// cluster is what a server runs when it is part of a cluster.
type cluster struct {
	app     *App
	bus     *stream.Bus
	disc    *discovery.Discovery
	store   *bindings.Store
	groups  *groups.Cluster
	rec     *stream.Recorder
	jobs    *reliable.Client
	worker  *reliable.Worker
	timeout time.Duration
	subs    []*nats.Subscription
	calls   *callPool
	resume  *resumer // frontends with resume on

	deadMu      sync.Mutex
	dead        map[string]time.Time // frontends that died lately, and when
	deathCancel func()

	janitorCancel  func()
	janitorCtx     context.Context // ends when the janitor stops
	janitorEnd     context.CancelFunc
	janitorMu      sync.Mutex
	janitorTimers  []*time.Timer
	janitorStopped bool
	janitorWG      sync.WaitGroup
}

func startCluster(ctx context.Context, a *App) (_ *cluster, err error) {
	cc := a.cfg.Cluster
	bcfg := cc.Bus
	bcfg.ServerID = a.cfg.ServerID
	if bcfg.Logger == nil {
		bcfg.Logger = a.log
	}
	bus, err := stream.Connect(ctx, bcfg)
	if err != nil {
		return nil, err
	}
	c := &cluster{app: a, bus: bus, timeout: cc.RequestTimeout, calls: newCallPool(256)}
	defer func() {
		if err != nil {
			c.stop(context.Background())
		}
	}()
	host, _ := os.Hostname()
	c.disc, err = discovery.New(bus, discovery.Server{
		ID: a.cfg.ServerID, Type: a.cfg.ServerType, Frontend: a.IsFrontend(),
		Metadata: cc.Metadata, Hostname: host, Version: Version,
	}, discovery.Config{Heartbeat: cc.DiscoveryHeartbeat, Logger: a.log})
	if err != nil {
		return nil, err
	}
	if c.groups, err = groups.NewCluster(ctx, bus, a); err != nil {
		return nil, err
	}
	go func() { _ = c.groups.Start(ctx) }()
	if cc.Traffic {
		c.rec, err = stream.NewRecorder(ctx, bus, stream.RecorderConfig{MaxAge: cc.TrafficMaxAge, MaxBytes: cc.TrafficMaxBytes})
		if err != nil {
			return nil, err
		}
	}
	// Every node reads bindings: a push no frontend takes is kept for a
	// bound user's resume.
	if c.store, err = bindings.NewStore(ctx, bus); err != nil {
		return nil, err
	}
	c.watchDeaths()
	if a.IsFrontend() {
		if !a.cfg.Resume.Off {
			if err := c.startResume(ctx); err != nil {
				return nil, err
			}
		}
		c.startJanitor()
		bindings.NewUniqueSession(c.store, a.cfg.ServerID, c, a.log).Attach(a.pool)
		for kind, h := range map[string]nats.MsgHandler{"push": c.onPush, "kick": c.onKick, "sess": c.onSessionOp} {
			if err := c.subscribe(bus.ServerSubject(a.cfg.ServerID, kind), "", h); err != nil {
				return nil, err
			}
		}
	}
	if err := c.subscribe(bus.RPCTypeWildcard(a.cfg.ServerType), a.cfg.ServerType, c.onCall); err != nil {
		return nil, err
	}
	if err := c.subscribe(bus.ServerSubject(a.cfg.ServerID, "rpc"), "", c.onCall); err != nil {
		return nil, err
	}
	if err := c.startJobs(ctx); err != nil {
		return nil, err
	}
	if err := bus.NC.FlushTimeout(10 * time.Second); err != nil {
		return nil, fmt.Errorf("nopal: bus flush: %w", err)
	}
	// Announce the server only once it can answer.
	if err := c.disc.Start(ctx); err != nil {
		return nil, err
	}
	a.log.Info("joined the cluster", "bus", busName(bus))
	return c, nil
}

func busName(b *stream.Bus) string {
	switch {
	case b.Server != nil && b.ClientURL() != "":
		return "embedded " + b.ClientURL()
	case b.Server != nil, b.InProcess():
		return "embedded, in-process"
	}
	return b.NC.ConnectedUrlRedacted()
}

func (c *cluster) subscribe(subject, queue string, h nats.MsgHandler) error {
	var sub *nats.Subscription
	var err error
	if queue != "" {
		sub, err = c.bus.NC.QueueSubscribe(subject, queue, h)
	} else {
		sub, err = c.bus.NC.Subscribe(subject, h)
	}
	if err != nil {
		return fmt.Errorf("nopal: subscribe %s: %w", subject, err)
	}
	// A busy server must not drop calls silently: no pending limits, calls
	// are handed to goroutines at once.
	_ = sub.SetPendingLimits(-1, -1)
	c.subs = append(c.subs, sub)
	return nil
}

// stop leaves discovery first so no new calls arrive, lets calls in flight
// finish, then closes the bus.
func (c *cluster) stop(ctx context.Context) {
	c.stopJanitor()
	if c.disc != nil {
		if err := c.disc.Stop(ctx); err != nil {
			c.app.log.Warn("leaving discovery", "err", err)
		}
	}
	// Drain delivers what the subscriptions hold, then closes them: wait for
	// that, so no call that arrived is left without its reply.
	if c.worker != nil {
		if err := c.worker.Stop(ctx); err != nil {
			c.app.log.Warn("stopping the job worker", "err", err)
		}
	}
	for _, s := range c.subs {
		closed := s.StatusChanged(nats.SubscriptionClosed)
		if s.Drain() != nil {
			continue
		}
		select {
		case <-closed:
		case <-ctx.Done():
		}
	}
	done := make(chan struct{})
	go func() { c.calls.wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	c.calls.close()
	if c.resume != nil {
		c.resume.stop(ctx)
	}
	if c.rec != nil {
		_ = c.rec.Close(ctx)
	}
	c.bus.Close()
}

// ---- calls: client requests forwarded here, and user RPCs ----

func (c *cluster) onCall(m *nats.Msg) {
	c.calls.run(func() { c.serveCall(m) })
}

func (c *cluster) serveCall(m *nats.Msg) {
	var call stream.Call
	if err := proto.Unmarshal(m.Data, &call); err != nil {
		c.respond(m, nil, codec.NewError(codec.CodeBadRequest, "nopal: malformed call: "+err.Error(), nil))
		return
	}
	started := time.Now()
	ctx := context.Background()
	var span trace.Span
	if t := c.app.tracer; t != nil {
		ctx, span = t.start(t.extract(ctx, m.Header), "nopal.serve", call.Route, trace.SpanKindServer,
			attribute.String("nopal.call_kind", call.Kind.String()), attribute.String("nopal.frontend", call.FrontendId))
	}
	// The deadline is rebuilt from the time left when the call was sent
	// (both on the sender's clock), so clock skew between hosts does not
	// shorten or stretch it. Notifies have none.
	if call.DeadlineUnixNano > 0 && !call.Notify {
		left := time.Unix(0, call.DeadlineUnixNano).Sub(time.Unix(0, call.SentUnixNano))
		if call.SentUnixNano == 0 {
			left = time.Until(time.Unix(0, call.DeadlineUnixNano))
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, left)
		defer cancel()
	}
	var out []byte
	var err error
	switch call.Kind {
	case stream.CallKind_CALL_KIND_SYS:
		s, serr := c.backendSession(&call)
		if serr != nil {
			err = serr
			break
		}
		out, _, err = c.app.registry.Handle(session.NewContext(ctx, s), call.Route, call.Payload)
	case stream.CallKind_CALL_KIND_USER:
		out, _, err = c.app.remotes.Handle(ctx, call.Route, call.Payload)
	default:
		err = codec.NewError(codec.CodeBadRequest, fmt.Sprintf("nopal: unknown call kind %d", call.Kind), nil)
	}
	if span != nil {
		finish(span, err)
	}
	c.app.obs.served(call.Route, call.Kind == stream.CallKind_CALL_KIND_USER, call.SentUnixNano, started, err)
	if call.Notify {
		if err != nil {
			c.app.log.Debug("notify failed", "route", call.Route, "err", err)
		}
		c.respond(m, nil, nil) // an acknowledgement: notifies never get error replies
		return
	}
	c.respond(m, out, err)
}

func (c *cluster) respond(m *nats.Msg, out []byte, err error) {
	if m.Reply == "" {
		return
	}
	r := &stream.Reply{Payload: out}
	if err != nil {
		r.Error = errorInfo(codec.AsError(err))
	}
	data, merr := proto.Marshal(r)
	if merr != nil {
		c.app.log.Error("encoding reply", "err", merr)
		return
	}
	if rerr := m.Respond(data); rerr != nil {
		c.app.log.Warn("reply lost", "subject", m.Subject, "err", rerr)
	}
}

func errorInfo(e *codec.Error) *stream.ErrorInfo {
	return &stream.ErrorInfo{Code: e.Code, Msg: e.Message, Metadata: e.Metadata}
}

func fromErrorInfo(e *stream.ErrorInfo) *codec.Error {
	return codec.NewError(e.GetCode(), e.GetMsg(), e.GetMetadata())
}

// busError turns a failed bus request into what the client sees.
func busError(route string, err error) error {
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return codec.NewError(codec.CodeTimeout, fmt.Sprintf("nopal: %s timed out", route), nil)
	case errors.Is(err, nats.ErrNoResponders):
		return codec.NewError(codec.CodeServiceMissing, fmt.Sprintf("nopal: no server answers %s", route), nil)
	case errors.Is(err, context.Canceled):
		return codec.NewError(codec.CodeTimeout, fmt.Sprintf("nopal: %s cancelled", route), nil)
	}
	return codec.NewError(codec.CodeServiceMissing, fmt.Sprintf("nopal: bus unavailable for %s: %v", route, err), nil)
}

// request sends a call and waits for its reply.
func (c *cluster) request(ctx context.Context, subject, route string, call *stream.Call) (_ []byte, err error) {
	if !c.bus.Connected() {
		return nil, codec.NewError(codec.CodeServiceMissing, fmt.Sprintf("nopal: bus unavailable for %s", route), nil)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	dl, _ := ctx.Deadline()
	call.DeadlineUnixNano = dl.UnixNano()
	call.SourceId = c.app.cfg.ServerID
	call.SentUnixNano = time.Now().UnixNano()
	data, err := proto.Marshal(call)
	if err != nil {
		return nil, codec.WrapError(codec.CodeInternal, err)
	}
	out := &nats.Msg{Subject: subject, Data: data}
	if t := c.app.tracer; t != nil {
		var span trace.Span
		ctx, span = t.start(ctx, "nopal.call", route, trace.SpanKindClient,
			attribute.String("nopal.call_kind", call.Kind.String()), attribute.String("nats.subject", subject))
		defer func() { finish(span, err) }()
		out.Header = nats.Header{}
		t.inject(ctx, out.Header)
	}
	c.rec.Record(subject, "", out.Header, data)
	// A notify waits for the backend's acknowledgement too: the next
	// message of the session is only sent once it is handled, so a
	// session's messages run in order on the backends as on a frontend.
	msg, err := c.bus.NC.RequestMsgWithContext(ctx, out)
	if err != nil {
		return nil, busError(route, err)
	}
	if call.Notify {
		return nil, nil
	}
	if c.rec != nil {
		c.rec.Record(msg.Subject, "", map[string][]string{routeHeader: {route}}, msg.Data)
	}
	var r stream.Reply
	if err := proto.Unmarshal(msg.Data, &r); err != nil {
		return nil, codec.NewError(codec.CodeInternal, "nopal: malformed reply: "+err.Error(), nil)
	}
	if r.Error != nil {
		return nil, fromErrorInfo(r.Error)
	}
	return r.Payload, nil
}

// forward sends a client request or notify to a server of its route's type.
func (c *cluster) forward(ctx context.Context, msg *codec.Message) ([]byte, error) {
	svType, ok := splitRoute(msg.Route)
	if !ok {
		return nil, codec.NewError(codec.CodeNotFound, fmt.Sprintf("nopal/handler: %s not found", msg.Route), nil)
	}
	if !c.disc.HasType(svType) {
		return nil, codec.NewError(codec.CodeServiceMissing, fmt.Sprintf("nopal: no server of type %q for %s", svType, msg.Route), nil)
	}
	subject := c.bus.RPCSubject(msg.Route)
	if r := c.app.router(svType); r != nil {
		servers := c.disc.ServersByType(svType)
		if len(servers) == 0 {
			return nil, codec.NewError(codec.CodeServiceMissing, fmt.Sprintf("nopal: no server of type %q for %s", svType, msg.Route), nil)
		}
		sv, err := r(ctx, msg.Route, msg.Data, servers)
		if err != nil {
			return nil, err
		}
		subject = c.bus.ServerSubject(sv.ID, "rpc")
	}
	call := &stream.Call{
		Kind:       stream.CallKind_CALL_KIND_SYS,
		Route:      msg.Route,
		Payload:    msg.Data,
		FrontendId: c.app.cfg.ServerID,
		RequestId:  msg.ID,
		Notify:     msg.Type == codec.Notify,
	}
	if s := session.FromContext(ctx); s != nil {
		snap, err := snapshot(s)
		if err != nil {
			return nil, err
		}
		call.Session = snap
	}
	return c.request(ctx, subject, msg.Route, call)
}

func snapshot(s *session.Session) (*stream.SessionSnapshot, error) {
	snap := &stream.SessionSnapshot{Id: s.ID(), Uid: s.UID()}
	if data := s.Data(); len(data) > 0 {
		b, err := json.Marshal(data)
		if err != nil {
			return nil, codec.WrapError(codec.CodeInternal, fmt.Errorf("nopal: session data: %w", err))
		}
		snap.Data = b
	}
	return snap, nil
}

// RPC calls a remote on any server of the route's type (route
// "svtype.component.method") and decodes its result into out. Arguments
// and results are protobuf for proto.Message types, JSON otherwise. Errors
// returned by the remote keep their code, message and metadata.
func (a *App) RPC(ctx context.Context, route string, in, out any) error {
	return a.rpc(ctx, "", route, in, out)
}

// RPCTo calls a remote on the server serverID.
func (a *App) RPCTo(ctx context.Context, serverID, route string, in, out any) error {
	if serverID == "" {
		return errors.New("nopal: RPCTo needs a server id")
	}
	return a.rpc(ctx, serverID, route, in, out)
}

func (a *App) rpc(ctx context.Context, serverID, route string, in, out any) error {
	c := a.cluster()
	if c == nil {
		return errors.New("nopal: RPC needs a cluster (Config.Cluster) and a started app")
	}
	svType, ok := splitRoute(route)
	if !ok {
		return fmt.Errorf("nopal: RPC route %q must be svtype.component.method", route)
	}
	subject := c.bus.RPCSubject(route)
	if serverID != "" {
		if _, ok := c.disc.ServerByID(serverID); !ok {
			return codec.NewError(codec.CodeServiceMissing, fmt.Sprintf("nopal: no server %q", serverID), nil)
		}
		subject = c.bus.ServerSubject(serverID, "rpc")
	} else if !c.disc.HasType(svType) {
		return codec.NewError(codec.CodeServiceMissing, fmt.Sprintf("nopal: no server of type %q for %s", svType, route), nil)
	}
	payload, err := (codec.Auto{}).Marshal(in)
	if err != nil {
		return fmt.Errorf("nopal: RPC %s: encode: %w", route, err)
	}
	res, err := c.request(ctx, subject, route, &stream.Call{Kind: stream.CallKind_CALL_KIND_USER, Route: route, Payload: payload})
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	if err := (codec.Auto{}).Unmarshal(res, out); err != nil {
		return fmt.Errorf("nopal: RPC %s: decode: %w", route, err)
	}
	return nil
}

// ---- pushes and kicks to users anywhere ----

// SendPushToUsers pushes v to users wherever they are connected: one bus
// message per frontend (of frontendType, or every frontend when it is "")
// carrying the uid list. It returns the uids no frontend held. A session
// suspended while its client reconnects counts as held. When a user's
// frontend died, the push is kept in the bus for the user's resume on
// another frontend (within the resume grace), and the uid is still
// returned.
func (a *App) SendPushToUsers(ctx context.Context, route string, v any, uids []string, frontendType string) ([]string, error) {
	payload, err := a.cfg.Serializer.Marshal(v)
	if err != nil {
		return uids, fmt.Errorf("nopal: push %s: %w", route, err)
	}
	return a.fanOut(ctx, "push", frontendType, uids, &stream.Push{Uids: uids, Route: route, Payload: payload, Id: pushID()})
}

// SendKickToUsers kicks users wherever they are connected and returns the
// uids no frontend held.
func (a *App) SendKickToUsers(ctx context.Context, uids []string, frontendType string) ([]string, error) {
	return a.fanOut(ctx, "kick", frontendType, uids, &stream.Kick{Uids: uids})
}

func (a *App) fanOut(ctx context.Context, kind, frontendType string, uids []string, m proto.Message) ([]string, error) {
	if len(uids) == 0 {
		return nil, nil
	}
	c := a.cluster()
	if c == nil {
		if kind == "push" {
			p := m.(*stream.Push)
			return a.PushToUsers(ctx, p.Route, p.Payload, uids)
		}
		return a.kickLocal(ctx, uids, 0), nil
	}
	var targets []discovery.Server
	for _, s := range c.disc.Servers() {
		if s.Frontend && (frontendType == "" || s.Type == frontendType) {
			targets = append(targets, s)
		}
	}
	data, err := proto.Marshal(m)
	if err != nil {
		return uids, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	delivered := make(map[string]bool, len(uids))
	gone := map[string]bool{} // frontends that did not answer: dead
	var mu sync.Mutex
	var wg sync.WaitGroup
	var firstErr error
	for _, t := range targets {
		wg.Go(func() {
			failed, err := c.deliver(ctx, t.ID, kind, m, data)
			mu.Lock()
			defer mu.Unlock()
			if errors.Is(err, nats.ErrNoResponders) {
				gone[t.ID] = true
				return // a frontend gone (dead, not yet expired): it holds nobody
			}
			if err != nil {
				gone[t.ID] = true // or hung: its users' pushes are kept too
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			missed := make(map[string]bool, len(failed))
			for _, u := range failed {
				missed[u] = true
			}
			for _, u := range uids {
				if !missed[u] {
					delivered[u] = true
				}
			}
		})
	}
	wg.Wait()
	var failed []string
	for _, u := range uids {
		if !delivered[u] {
			failed = append(failed, u)
		}
	}
	if p, ok := m.(*stream.Push); ok && len(failed) > 0 && !a.cfg.Resume.Off && c.bus.Connected() {
		// Bound users whose frontend is gone (it did not answer, or
		// died lately) may resume elsewhere: keep the push for them.
		// They are still reported: it may never be delivered. With no
		// frontend gone, a failed uid is simply offline: no lookup.
		for id := range c.lateDead() {
			gone[id] = true
		}
		if len(gone) > 0 {
			c.fallback(ctx, failed, p.Route, p.Payload, p.Id, gone)
		}
	}
	if len(failed) > 0 && firstErr != nil {
		return failed, fmt.Errorf("nopal: %s: %w", kind, firstErr)
	}
	return failed, nil
}

// deliver hands a push or kick to one frontend (this one directly) and
// returns the uids it did not hold.
func (c *cluster) deliver(ctx context.Context, frontendID, kind string, m proto.Message, data []byte) ([]string, error) {
	if frontendID == c.app.cfg.ServerID {
		switch p := m.(type) {
		case *stream.Push:
			return c.pushLocal(ctx, p)
		case *stream.Kick:
			return c.app.kickLocal(ctx, p.Uids, p.SessionId), nil
		}
	}
	subject := c.bus.ServerSubject(frontendID, kind)
	if !c.bus.Connected() {
		return nil, errors.New("bus unavailable")
	}
	c.rec.Record(subject, "", nil, data)
	msg, err := c.bus.NC.RequestWithContext(ctx, subject, data)
	if err != nil {
		return nil, err
	}
	var d stream.Delivery
	if err := proto.Unmarshal(msg.Data, &d); err != nil {
		return nil, err
	}
	return d.Failed, nil
}

func (c *cluster) pushLocal(ctx context.Context, p *stream.Push) ([]string, error) {
	fe := c.app.Frontend()
	if fe == nil {
		return p.Uids, nil
	}
	return fe.PushToUsersID(ctx, p.Route, p.Payload, p.Uids, p.Id)
}

// kickLocal kicks users of this frontend (only session sid when sid != 0)
// and returns the uids it did not hold.
func (a *App) kickLocal(ctx context.Context, uids []string, sid int64) []string {
	var failed []string
	for _, uid := range uids {
		s := a.pool.ByUID(uid)
		if sid != 0 {
			s = a.pool.ByID(sid)
			if s != nil && s.UID() != uid {
				s = nil
			}
		}
		if s == nil || s.Kick(ctx) != nil {
			failed = append(failed, uid)
		}
	}
	return failed
}

// KickSession implements bindings.Kicker: it kicks one session of another
// frontend, which the unique-session rule has replaced.
func (c *cluster) KickSession(ctx context.Context, frontendID string, sessionID int64, uid string) error {
	k := &stream.Kick{Uids: []string{uid}, SessionId: sessionID}
	data, err := proto.Marshal(k)
	if err != nil {
		return err
	}
	failed, err := c.deliver(ctx, frontendID, "kick", k, data)
	if err != nil {
		return err
	}
	if len(failed) > 0 {
		return fmt.Errorf("nopal: session %d of %q not found on %s", sessionID, uid, frontendID)
	}
	return nil
}

// ---- frontend side: what backends and other servers ask of this one ----

func (c *cluster) onPush(m *nats.Msg) {
	var p stream.Push
	if err := proto.Unmarshal(m.Data, &p); err != nil {
		c.app.log.Warn("malformed push", "err", err)
		return
	}
	failed, _ := c.pushLocal(context.Background(), &p)
	c.respondDelivery(m, failed)
}

func (c *cluster) onKick(m *nats.Msg) {
	var k stream.Kick
	if err := proto.Unmarshal(m.Data, &k); err != nil {
		c.app.log.Warn("malformed kick", "err", err)
		return
	}
	c.respondDelivery(m, c.app.kickLocal(context.Background(), k.Uids, k.SessionId))
}

func (c *cluster) respondDelivery(m *nats.Msg, failed []string) {
	if m.Reply == "" {
		return
	}
	data, _ := proto.Marshal(&stream.Delivery{Failed: failed})
	_ = m.Respond(data)
}

// onSessionOp binds a session or takes its data, for a backend session.
// Binds run the app's hooks (and the unique-session rule), which may talk
// to the bus: they run on their own goroutine.
func (c *cluster) onSessionOp(m *nats.Msg) {
	c.calls.run(func() {
		var op stream.SessionOp
		if err := proto.Unmarshal(m.Data, &op); err != nil {
			c.respond(m, nil, codec.NewError(codec.CodeBadRequest, "nopal: malformed session op", nil))
			return
		}
		s := c.app.pool.ByID(op.SessionId)
		if s == nil {
			c.respond(m, nil, codec.NewError(codec.CodeNotFound, fmt.Sprintf("nopal: session %d is gone", op.SessionId), nil))
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		defer cancel()
		if op.Uid != "" {
			if err := s.Bind(ctx, op.Uid); err != nil {
				c.respond(m, nil, codec.WrapError(codec.CodeBadRequest, err))
				return
			}
		}
		if op.SetData {
			var data map[string]any
			if len(op.Data) > 0 {
				if err := json.Unmarshal(op.Data, &data); err != nil {
					c.respond(m, nil, codec.NewError(codec.CodeBadRequest, "nopal: session data: "+err.Error(), nil))
					return
				}
			}
			s.SetData(data)
		}
		c.respond(m, nil, nil)
	})
}

// ---- backend sessions ----

func (c *cluster) backendSession(call *stream.Call) (*session.Session, error) {
	snap := call.GetSession()
	var data map[string]any
	if len(snap.GetData()) > 0 {
		if err := json.Unmarshal(snap.GetData(), &data); err != nil {
			return nil, codec.NewError(codec.CodeBadRequest, "nopal: session data: "+err.Error(), nil)
		}
	}
	conn := &remoteConn{c: c, frontendID: call.FrontendId}
	s := session.NewBackend(snap.GetId(), snap.GetUid(), data, call.FrontendId, conn, c)
	conn.s = s
	return s, nil
}

// Bind implements session.Remote: the frontend binds its session.
func (c *cluster) Bind(ctx context.Context, s *session.Session, uid string) error {
	return c.sessionOp(ctx, s, &stream.SessionOp{SessionId: s.ID(), Uid: uid})
}

// PushToFront implements session.Remote: the frontend session takes the
// backend session's data.
func (c *cluster) PushToFront(ctx context.Context, s *session.Session) error {
	data, err := json.Marshal(s.Data())
	if err != nil {
		return fmt.Errorf("nopal: session data: %w", err)
	}
	return c.sessionOp(ctx, s, &stream.SessionOp{SessionId: s.ID(), SetData: true, Data: data})
}

func (c *cluster) sessionOp(ctx context.Context, s *session.Session, op *stream.SessionOp) error {
	data, err := proto.Marshal(op)
	if err != nil {
		return err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	subject := c.bus.ServerSubject(s.FrontendID(), "sess")
	c.rec.Record(subject, "", nil, data)
	msg, err := c.bus.NC.RequestWithContext(ctx, subject, data)
	if err != nil {
		return busError("session op", err)
	}
	var r stream.Reply
	if err := proto.Unmarshal(msg.Data, &r); err != nil {
		return err
	}
	if r.Error != nil {
		return fromErrorInfo(r.Error)
	}
	return nil
}

// remoteConn carries a backend session's pushes and kicks to its frontend.
type remoteConn struct {
	c          *cluster
	frontendID string
	s          *session.Session
}

// Push waits for the frontend to take the push, so a handler's pushes
// reach the client before its response, as on a frontend.
func (r *remoteConn) Push(route string, v any) error {
	uid := r.s.UID()
	if uid == "" {
		return errors.New("nopal: push from a backend session needs a bound uid")
	}
	payload, err := r.c.app.cfg.Serializer.Marshal(v)
	if err != nil {
		return err
	}
	p := &stream.Push{Uids: []string{uid}, Route: route, Payload: payload}
	data, err := proto.Marshal(p)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.c.timeout)
	defer cancel()
	failed, err := r.c.deliver(ctx, r.frontendID, "push", p, data)
	if err != nil {
		return err
	}
	if len(failed) > 0 {
		return session.ErrClosed
	}
	return nil
}

func (r *remoteConn) Kick(ctx context.Context) error {
	return r.c.KickSession(ctx, r.frontendID, r.s.ID(), r.s.UID())
}

func (r *remoteConn) Close() error { return r.Kick(context.Background()) }

func (r *remoteConn) RemoteAddr() net.Addr { return frontendAddr(r.frontendID) }

// frontendAddr stands for a client reached through another frontend.
type frontendAddr string

func (f frontendAddr) Network() string { return "nopal" }
func (f frontendAddr) String() string  { return string(f) }

// ---- cluster accessors ----

// Servers lists the servers of the cluster (nil when standalone).
func (a *App) Servers() []discovery.Server {
	if c := a.cluster(); c != nil {
		return c.disc.Servers()
	}
	return nil
}

// Discovery is the cluster's discovery (nil when standalone or not started).
func (a *App) Discovery() *discovery.Discovery {
	if c := a.cluster(); c != nil {
		return c.disc
	}
	return nil
}

// Bus is the connection to the bus (nil when standalone or not started).
func (a *App) Bus() *stream.Bus {
	if c := a.cluster(); c != nil {
		return c.bus
	}
	return nil
}

// RandomRouter picks a server at random; it is what NATS does without a
// router, given here as an example of a Router.
func RandomRouter(_ context.Context, _ string, _ []byte, servers []discovery.Server) (discovery.Server, error) {
	return servers[rand.IntN(len(servers))], nil
}
