package frontend

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"github.com/nopal-dev/nopal/codec"
	"github.com/nopal-dev/nopal/session"
)

// Errors of a connection's send side; check them with errors.Is.
var (
	ErrConnClosed = errors.New("frontend: connection closed")
	ErrSlowClient = errors.New("frontend: client too slow, send queue full")
)

const (
	stateNew int32 = iota
	stateHandshaken
	stateWorking
	stateClosed
)

var (
	heartbeatPacket = []byte{byte(codec.Heartbeat), 0, 0, 0}
	kickPacket      = []byte{byte(codec.Kick), 0, 0, 0}
)

// agent runs one client connection: a reader goroutine that handles the
// connection's packets in order (so one session's requests run in arrival
// order) and parks when the connection is idle, and a bounded send queue
// written by the frontend's writer pool without blocking, or by a writer
// goroutine of its own while its socket is full. An idle parked
// connection costs no goroutine.
type agent struct {
	f        *Frontend
	conn     PlayerConn
	lk       atomic.Pointer[link] // the session's link; swapped by a resume
	state    atomic.Int32
	lastSeen atomic.Int64 // unix nanoseconds of the last packet received
	hsTimer  *time.Timer
	refused  bool // handshake refused: input is ignored until the close (reader only)
	badInput bool // closed for bad input: the session is not kept (reader only)
	// cutSlow: closed for not reading (send queue over its bounds): the
	// session is not kept either.
	cutSlow atomic.Bool
	maxBody int // the connection's packet bound, 0: none; payloads inflate no further

	ctx context.Context // the frontend's, for the reader started again after a park
	// sock is the socket the connection's reads come from, nil when it
	// cannot be parked (park.go); parkReq is the sweep's request to park.
	sock    *net.TCPConn
	parkReq atomic.Bool
	// pollID and pollAdded are the poller's (under its lock).
	pollID    uint32
	pollAdded bool

	// raw is the connection's socket for writes that must not block
	// (nil: TLS or a connection of another kind; a writer goroutine
	// writes to it); rc is its raw connection, made on first use by the
	// writer pool.
	raw socketConn
	rc  syscall.RawConn

	mu    sync.Mutex
	queue [][]byte
	spare [][]byte
	// queued is the bytes of queue and rest, held until written: bounded
	// by Config.SendQueueBytes, and counted in the frontend's total.
	queued int
	// rest is the tail of a non-blocking write the socket did not take
	// whole: the writer goroutine writes it first, as it is.
	rest     net.Buffers
	writing  bool
	closing  bool // close once the queue is written
	closed   bool
	busy     bool // a request is being handled
	parked   bool // no reader: the poller waits for the client's bytes
	draining bool
	deadline int64 // unix nanoseconds when the write deadline was last set (the writer's)
}

func (a *agent) link() *link { return a.lk.Load() }

func (a *agent) session() *session.Session { return a.lk.Load().sess }

// Kick queues a Kick packet and closes once it is written.
func (a *agent) Kick(context.Context) error {
	a.mu.Lock()
	kicking := a.closing && !a.closed
	a.mu.Unlock()
	if kicking {
		return nil // a Kick is already queued: let it be written
	}
	if err := a.send(kickPacket); err != nil {
		return err
	}
	a.closeAfterFlush()
	return nil
}

// Close closes the connection at once.
func (a *agent) Close() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	a.queue, a.rest = nil, nil
	a.account(-a.queued)
	parked := a.parked
	a.parked = false
	a.mu.Unlock()
	if parked {
		defer a.closeParked()
	}
	return a.conn.Close()
}

// send queues a packet for the writer. A connection with nothing waiting
// is handed to the frontend's writer pool, whose writers write what is
// queued without blocking (socket.go): no goroutine is started for a
// push, a broadcast never waits for a socket, and pushes that arrive
// while a connection waits for its writer leave in one writev. What the
// socket does not take goes to a writer goroutine of the connection's
// own, which blocks up to WriteTimeout.
//
// A queue over its bounds (SendQueueSize packets, SendQueueBytes bytes,
// or the frontend's SendBudget) means the client does not read fast
// enough: it is disconnected, and its session ended, rather than allowed
// to hold memory or block the sender.
func (a *agent) send(pkt []byte) error {
	a.mu.Lock()
	if a.closed || a.closing {
		a.mu.Unlock()
		return ErrConnClosed
	}
	cost := len(pkt) + queueEntryCost
	if a.overBudget(cost) {
		a.mu.Unlock()
		a.slow()
		return ErrSlowClient
	}
	a.queue = append(a.queue, pkt)
	a.account(cost)
	start := !a.writing
	a.writing = true
	a.mu.Unlock()
	if start {
		a.f.schedule(a)
	}
	return nil
}

// overBudget reports whether queueing n more bytes passes a bound. A
// packet is queued whole even if it alone is larger than SendQueueBytes:
// the byte bounds apply to a client that already has something waiting.
// Past the frontend's SendBudget, the clients cut are those at least as
// far behind as the average of the clients with a backlog: the one that
// stopped reading, not one that is a packet behind at that moment.
// The caller holds mu.
func (a *agent) overBudget(n int) bool {
	cfg := &a.f.cfg
	if len(a.queue) >= cfg.SendQueueSize {
		return true
	}
	if a.queued == 0 {
		return false
	}
	if a.queued+n > cfg.SendQueueBytes {
		return true
	}
	if cfg.SendBudget <= 0 {
		return false
	}
	total := a.f.queued.Load()
	if total+int64(n) <= cfg.SendBudget {
		return false
	}
	k := a.f.backlogged.Load()
	return k > 0 && int64(a.queued)*k >= total
}

// queueEntryCost is what a queued packet costs besides its bytes: its
// slice header in the queue. Packets of a broadcast are shared by its
// recipients, their queue entries are not; for small pushes they are a
// large part of what a backlog holds, so the byte bounds count them.
const queueEntryCost = 24

// maxSpareEntries bounds the capacity of the queue slice a connection
// keeps for its next batch: one that took a long backlog does not hold
// that much memory once it has caught up (under overload, kept slices were
// 110 of a frontend's 175 MB live heap).
const maxSpareEntries = 256

// keepSpare keeps batch, just written, for the connection's next queue
// unless it already has one or batch is too large. The caller holds mu.
func (a *agent) keepSpare(batch [][]byte) {
	if a.spare == nil && cap(batch) <= maxSpareEntries {
		a.spare = batch[:0]
	}
}

// account adds n bytes (negative: removes) to the connection's and the
// frontend's queued bytes. The caller holds mu.
func (a *agent) account(n int) {
	if n == 0 {
		return
	}
	was := a.queued
	a.queued += n
	a.f.queued.Add(int64(n))
	switch {
	case was == 0 && a.queued > 0:
		a.f.backlogged.Add(1)
	case was > 0 && a.queued == 0:
		a.f.backlogged.Add(-1)
	}
}

// slow disconnects a client whose queue is over its bounds.
//
// Its session ends with the connection, without a resume window: suspended,
// it would keep up to Resume.MaxMissed more pushes for the grace, for a
// client that has shown it cannot take them. Under overload those kept
// pushes, not the send queues, held most of a frontend's memory (233 of
// 350 MB live at the end of `bench chat -floor=false -send-budget
// 67108864`), beyond any SendBudget.
func (a *agent) slow() {
	a.f.stats.SlowClients.Add(1)
	a.cutSlow.Store(true)
	s := a.session()
	a.f.log.Warn("closing slow client", "session", s.ID(), "uid", s.UID(), "remote", a.conn.RemoteAddr())
	_ = a.Close()
}

// afterWrite ends a write made by the reader (reply): the writers take
// over what was queued meanwhile, or the connection closes if it was to
// close once written. The caller holds mu, which afterWrite releases.
func (a *agent) afterWrite() {
	if !a.closed && (len(a.queue) > 0 || len(a.rest) > 0) {
		a.mu.Unlock()
		a.f.schedule(a)
		return
	}
	a.writing = false
	closing := a.closing && !a.closed
	a.mu.Unlock()
	if closing {
		_ = a.Close()
	}
}

// buffersLen is the bytes in b.
func buffersLen(b net.Buffers) int {
	n := 0
	for _, p := range b {
		n += len(p)
	}
	return n
}

// sendAll queues pkts in order, whatever the queue holds: what a resumed
// client missed, bounded by the resume buffer.
func (a *agent) sendAll(pkts [][]byte) {
	a.mu.Lock()
	if a.closed || a.closing {
		a.mu.Unlock()
		return
	}
	a.queue = append(a.queue, pkts...)
	n := 0
	for _, p := range pkts {
		n += len(p) + queueEntryCost
	}
	a.account(n)
	start := !a.writing
	a.writing = true
	a.mu.Unlock()
	if start {
		a.f.schedule(a)
	}
}

// reply sends a response from the reader goroutine. When nothing else is
// queued or being written it writes at once, on this goroutine: that saves a
// goroutine hand-off per request, and a slow client only delays its own
// session. Otherwise the response is queued behind what is waiting.
func (a *agent) reply(pkt []byte) error {
	a.mu.Lock()
	if a.closed || a.closing {
		a.mu.Unlock()
		return ErrConnClosed
	}
	if a.writing || len(a.queue) > 0 {
		a.mu.Unlock()
		return a.send(pkt)
	}
	a.writing = true
	a.mu.Unlock()

	err := a.armWrite()
	if err == nil {
		_, err = a.conn.Write(pkt)
	}
	if err != nil {
		a.f.log.Debug("write failed: closing", "session", a.session().ID(), "err", err)
		_ = a.Close()
	}
	// Hand over to a writer whatever was queued meanwhile.
	a.mu.Lock()
	a.afterWrite()
	return err
}

// armWrite sets the write deadline, WriteTimeout from now, unless the one
// set last is younger than a second (or half the timeout, if shorter): a
// write always gets at least half its timeout, and a busy connection does
// not reset a timer per packet. Only the goroutine writing calls it.
func (a *agent) armWrite() error {
	now := time.Now()
	if a.deadline != 0 && now.UnixNano()-a.deadline < int64(min(time.Second, a.f.cfg.WriteTimeout/2)) {
		return nil
	}
	a.deadline = now.UnixNano()
	return a.conn.SetWriteDeadline(now.Add(a.f.cfg.WriteTimeout))
}

func (a *agent) closeAfterFlush() {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return
	}
	a.closing = true
	idle := !a.writing
	a.mu.Unlock()
	if idle {
		_ = a.Close()
	}
}

// write is the writer goroutine: it writes what is queued, blocking up to
// WriteTimeout per write, until the queue is empty.
func (a *agent) write() {
	var hdr []byte
	for {
		a.mu.Lock()
		if a.closed {
			a.writing = false
			a.mu.Unlock()
			return
		}
		if len(a.queue) == 0 && len(a.rest) == 0 {
			a.writing = false
			closing := a.closing
			a.mu.Unlock()
			if closing {
				_ = a.Close()
			}
			return
		}
		batch, rest := a.queue, a.rest
		a.queue, a.spare, a.rest = a.spare[:0], nil, nil
		held := a.queued
		a.mu.Unlock()

		err := a.armWrite()
		switch {
		case err != nil:
		case a.raw != nil:
			// The socket itself: the tail of a non-blocking write first,
			// then the batch, framed, in one writev.
			bufs := make(net.Buffers, 0, len(rest)+2*len(batch))
			bufs = append(bufs, rest...)
			bufs, hdr = a.raw.appendFrames(bufs, hdr[:0], batch)
			_, err = bufs.WriteTo(a.raw.socket())
		default:
			if len(rest) > 0 {
				panic("frontend: a non-blocking write on a connection without a socket")
			}
			if bw, ok := a.conn.(BatchWriter); ok {
				err = bw.WriteBatch(batch)
			} else {
				for _, p := range batch {
					if _, err = a.conn.Write(p); err != nil {
						break
					}
				}
			}
		}
		if err != nil {
			a.f.log.Debug("write failed: closing", "session", a.session().ID(), "err", err)
			_ = a.Close()
			continue
		}
		clear(batch)
		if cap(hdr) > 4<<10 {
			hdr = nil
		}
		a.mu.Lock()
		if !a.closed {
			// What was held when the batch was taken is written; what
			// was queued since stays counted.
			a.account(-held)
		}
		a.keepSpare(batch)
		a.mu.Unlock()
	}
}

// run reads and handles packets until the connection ends.
func (a *agent) run(ctx context.Context) {
	a.ctx = ctx
	a.lastSeen.Store(time.Now().UnixNano())
	a.read()
}

// read is the reader goroutine: it reads and handles packets until the
// connection ends, or until it parks (then it ends, and the poller starts
// it again on the client's next bytes).
func (a *agent) read() {
	parked := false
	defer func() {
		if !parked {
			a.cleanup()
		}
	}()
	// One context with the session for the reader's life (until a resume
	// changes the session), not one allocated per message.
	cur := a.link()
	sctx := session.NewContext(a.ctx, cur.sess)
	var msg codec.Message
	for {
		if l := a.link(); l != cur {
			cur, sctx = l, session.NewContext(a.ctx, l.sess)
		}
		pkt, err := a.conn.GetNextMessage()
		if err != nil {
			if a.parkWanted(err) {
				if parked = a.park(); parked {
					return
				}
				continue
			}
			var rl *RateLimitedError
			if errors.As(err, &rl) {
				a.answerRateLimited(rl.Packet, &msg)
				continue
			}
			if !isClosedErr(err) {
				a.badInput = true
				a.f.stats.Malformed.Add(1)
				a.f.log.Info("closing connection: bad input", "remote", a.conn.RemoteAddr(), "session", a.session().ID(), "err", err)
			}
			return
		}
		a.lastSeen.Store(time.Now().UnixNano())
		if a.refused {
			continue
		}
		if !a.handlePacket(sctx, pkt, &msg) {
			return
		}
	}
}

// handlePacket handles one packet and reports whether to go on reading.
func (a *agent) handlePacket(ctx context.Context, pkt []byte, msg *codec.Message) bool {
	t, body, err := codec.ParsePacket(pkt, 0)
	if err != nil {
		return a.bad("bad packet", err)
	}
	switch t {
	case codec.Handshake:
		if a.state.Load() != stateNew {
			return a.bad("second handshake", nil)
		}
		return a.handshake(ctx, body)
	case codec.HandshakeAck:
		if !a.state.CompareAndSwap(stateHandshaken, stateWorking) {
			return a.bad("handshake ack out of order", nil)
		}
		return true
	case codec.Heartbeat:
		return true
	case codec.Data:
		if a.state.Load() != stateWorking {
			return a.bad("data before handshake ack", nil)
		}
		if err := a.f.codec.DecodeLimit(body, msg, a.maxBody); err != nil {
			return a.bad("bad message", err)
		}
		switch msg.Type {
		case codec.Request, codec.Notify:
			return a.handleMessage(ctx, msg)
		}
		return a.bad("unexpected message type "+msg.Type.String(), nil)
	}
	return a.bad("unexpected packet "+t.String(), nil)
}

func (a *agent) bad(what string, err error) bool {
	a.badInput = true
	a.f.stats.Malformed.Add(1)
	a.f.log.Info("closing connection: "+what, "remote", a.conn.RemoteAddr(), "session", a.session().ID(), "err", err)
	return false
}

func (a *agent) handshake(ctx context.Context, body []byte) bool {
	var req codec.HandshakeRequest
	err := json.Unmarshal(body, &req)
	if err == nil {
		for _, v := range a.f.cfg.HandshakeValidators {
			if err = v(ctx, a.session(), &req); err != nil {
				break
			}
		}
	}
	if err != nil {
		a.f.stats.HandshakeFailed.Add(1)
		a.f.log.Info("handshake refused", "remote", a.conn.RemoteAddr(), "err", err)
		_ = a.send(a.f.handshakeRefused)
		a.closeAfterFlush()
		// Read on, ignoring what comes, until the close lands: the
		// refusal is written first.
		a.refused = true
		return true
	}
	if a.hsTimer != nil {
		a.hsTimer.Stop()
		a.hsTimer = nil // not kept for the connection's life
	}
	// The state changes once the response is queued: the heartbeat ticker
	// sends only to handshaken connections, and must not get ahead of it.
	if r := req.Sys.Resume; r != nil && !a.f.cfg.Resume.Off && a.resume(ctx, r) {
		a.state.Store(stateHandshaken)
		return true
	}
	// Under the link's lock: the token it gives is the one a resume on
	// another connection checks and replaces under that lock (the client
	// passing it over the network is no synchronisation Go can see).
	l := a.link()
	l.mu.Lock()
	resp, err := a.f.handshakeResponse(l, false)
	l.mu.Unlock()
	if err != nil {
		a.f.log.Error("handshake response", "err", err)
		return false
	}
	err = a.send(resp)
	a.state.Store(stateHandshaken)
	return err == nil
}

func (a *agent) handleMessage(ctx context.Context, msg *codec.Message) bool {
	a.mu.Lock()
	if a.draining {
		// The client is being kicked: ignore the message and read on until
		// the Kick is written and the connection closes. Returning false
		// would close at once and could drop the response in flight and
		// the Kick still queued.
		a.mu.Unlock()
		return true
	}
	a.busy = true
	a.mu.Unlock()

	start := time.Now()
	out, herr := a.f.cfg.Handler.Handle(ctx, msg) // ctx carries the session (run)
	if msg.Type == codec.Request {
		if err := a.respond(msg, out, herr); err != nil {
			a.f.log.Error("cannot encode response", "route", msg.Route, "err", err)
		}
	} else if herr != nil {
		a.f.log.Debug("notify failed", "route", msg.Route, "err", herr)
	}
	if a.f.cfg.OnHandled != nil {
		a.f.cfg.OnHandled(msg.Route, msg.Type, time.Since(start), herr)
	}

	a.mu.Lock()
	a.busy = false
	draining := a.draining
	a.mu.Unlock()
	if draining {
		_ = a.Kick(ctx)
	}
	return true
}

// respond writes the response to request msg: out, or herr as an error
// response.
func (a *agent) respond(msg *codec.Message, out []byte, herr error) error {
	resp := codec.Message{Type: codec.Response, ID: msg.ID, Data: out}
	if herr != nil {
		data, err := codec.EncodeError(a.f.ser, codec.AsError(herr))
		if err != nil {
			return err
		}
		resp.Err, resp.Data = true, data
	}
	pkt, err := a.f.codec.AppendPacket(make([]byte, 0, codec.HeaderLength+8+len(resp.Data)), &resp)
	if err != nil {
		return err
	}
	a.link().respond(a, pkt)
	return nil
}

func (a *agent) answerRateLimited(pkt []byte, msg *codec.Message) {
	t, body, err := codec.ParsePacket(pkt, 0)
	if err != nil || t != codec.Data || a.state.Load() != stateWorking || a.f.codec.Decode(body, msg) != nil || msg.Type != codec.Request {
		return
	}
	data, err := codec.EncodeError(a.f.ser, codec.NewError(codec.CodeRateLimited, "too many requests", nil))
	if err != nil {
		return
	}
	if out, err := a.f.codec.AppendPacket(nil, &codec.Message{Type: codec.Response, ID: msg.ID, Err: true, Data: data}); err == nil {
		a.f.stats.RateLimited.Add(1) // requests only: a dropped notify gets no answer
		_ = a.send(out)
	}
}

// drain kicks the client now if it is idle, or after its current request.
func (a *agent) drain(ctx context.Context) {
	a.mu.Lock()
	a.draining = true
	busy := a.busy
	a.mu.Unlock()
	if !busy {
		_ = a.Kick(ctx)
	}
}

// beat is called by the frontend's heartbeat ticker.
func (a *agent) beat(now time.Time, interval time.Duration) {
	st := a.state.Load()
	if st == stateClosed || st == stateNew {
		return
	}
	if now.UnixNano()-a.lastSeen.Load() > int64(2*interval) {
		a.mu.Lock()
		busy := a.busy
		a.mu.Unlock()
		if !busy {
			a.f.stats.HeartbeatTimeouts.Add(1)
			s := a.session()
			a.f.log.Info("closing connection: heartbeat timeout", "session", s.ID(), "uid", s.UID())
			_ = a.Close()
			return
		}
	}
	_ = a.send(heartbeatPacket)
}

func (a *agent) cleanup() {
	st := a.state.Swap(stateClosed)
	if a.hsTimer != nil {
		a.hsTimer.Stop()
	}
	_ = a.Close()
	a.unpoll()
	// The session is suspended if its client may resume it; otherwise its
	// close callbacks run before the frontend forgets the connection, so
	// that Shutdown returns only after they have run.
	l := a.link()
	if !l.detach(a, st >= stateHandshaken && !a.badInput && !a.cutSlow.Load()) {
		l.end()
	}
	a.f.remove(a)
}

// isClosedErr reports whether a read error is the peer or the server going
// away rather than bad input.
func isClosedErr(err error) bool {
	var ce *websocket.CloseError
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET) ||
		errors.As(err, &ce)
}
