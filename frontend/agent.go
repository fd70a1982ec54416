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
// order), and a send queue drained by a writer goroutine that exists only
// while there is something to write. An idle connection costs one goroutine.
type agent struct {
	f        *Frontend
	conn     PlayerConn
	lk       atomic.Pointer[link] // the session's link; swapped by a resume
	state    atomic.Int32
	lastSeen atomic.Int64 // unix nanoseconds of the last packet received
	hsTimer  *time.Timer
	refused  bool // handshake refused: input is ignored until the close (reader only)
	badInput bool // closed for bad input: the session is not kept (reader only)
	maxBody  int  // the connection's packet bound, 0: none; payloads inflate no further

	mu       sync.Mutex
	queue    [][]byte
	spare    [][]byte
	writing  bool
	closing  bool // close once the queue is written
	closed   bool
	busy     bool // a request is being handled
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
	a.queue = nil
	a.mu.Unlock()
	return a.conn.Close()
}

// send queues a packet for the writer. A full queue means the client does
// not read fast enough: it is disconnected rather than allowed to hold
// memory or block the sender.
func (a *agent) send(pkt []byte) error {
	a.mu.Lock()
	if a.closed || a.closing {
		a.mu.Unlock()
		return ErrConnClosed
	}
	if len(a.queue) >= a.f.cfg.SendQueueSize {
		a.mu.Unlock()
		a.f.stats.SlowClients.Add(1)
		s := a.session()
		a.f.log.Warn("closing slow client", "session", s.ID(), "uid", s.UID(), "remote", a.conn.RemoteAddr())
		_ = a.Close()
		return ErrSlowClient
	}
	a.queue = append(a.queue, pkt)
	start := !a.writing
	a.writing = true
	a.mu.Unlock()
	if start {
		go a.write()
	}
	return nil
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
	start := !a.writing
	a.writing = true
	a.mu.Unlock()
	if start {
		go a.write()
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
	// Hand over to a writer goroutine whatever was queued meanwhile.
	a.mu.Lock()
	more := len(a.queue) > 0 || a.closing
	if !more {
		a.writing = false
	}
	a.mu.Unlock()
	if more {
		go a.write()
	}
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

func (a *agent) write() {
	for {
		a.mu.Lock()
		if a.closed {
			a.writing = false
			a.mu.Unlock()
			return
		}
		if len(a.queue) == 0 {
			a.writing = false
			closing := a.closing
			a.mu.Unlock()
			if closing {
				_ = a.Close()
			}
			return
		}
		batch := a.queue
		a.queue, a.spare = a.spare[:0], nil
		a.mu.Unlock()

		err := a.armWrite()
		if err == nil {
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
		a.mu.Lock()
		if a.spare == nil {
			a.spare = batch[:0]
		}
		a.mu.Unlock()
	}
}

// run reads and handles packets until the connection ends.
func (a *agent) run(ctx context.Context) {
	// One context with the session for the connection's life (until a
	// resume changes the session), not one allocated per message.
	defer a.cleanup()
	cur := a.link()
	sctx := session.NewContext(ctx, cur.sess)
	a.lastSeen.Store(time.Now().UnixNano())
	var msg codec.Message
	for {
		if l := a.link(); l != cur {
			cur, sctx = l, session.NewContext(ctx, l.sess)
		}
		pkt, err := a.conn.GetNextMessage()
		if err != nil {
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
	}
	// The state changes once the response is queued: the heartbeat ticker
	// sends only to handshaken connections, and must not get ahead of it.
	if r := req.Sys.Resume; r != nil && !a.f.cfg.Resume.Off && a.resume(ctx, r) {
		a.state.Store(stateHandshaken)
		return true
	}
	resp, err := a.f.handshakeResponse(a.link(), false)
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
	// The session is suspended if its client may resume it; otherwise its
	// close callbacks run before the frontend forgets the connection, so
	// that Shutdown returns only after they have run.
	l := a.link()
	if !l.detach(a, st >= stateHandshaken && !a.badInput) {
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
