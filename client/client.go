package client

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nopal-dev/nopal/codec"
)

// Errors of the client; check them with errors.Is. Errors the server answers
// a request with are *codec.Error values (use errors.As).
var (
	// ErrClosed is returned by calls on a client whose connection has ended,
	// wrapping the reason (see [Client.Err]) when there is one.
	ErrClosed = errors.New("client: connection closed")
	// ErrKicked is the reason a connection ended after a Kick packet.
	ErrKicked = errors.New("client: kicked by the server")
	// ErrHandshakeRefused is wrapped by the error of [Dial] when the server
	// answers the handshake with a code other than 200; the error's text
	// includes the code.
	ErrHandshakeRefused = errors.New("client: handshake refused")
	// ErrSessionLost is the reason a client with [WithAutoResume] ended
	// when it could not resume its session: the server gave it a fresh
	// session (the grace had passed, or the pushes it missed were no longer
	// kept), or no server answered in time. The error wraps the cause.
	ErrSessionLost = errors.New("client: session lost")
)

// maxKeptWriteBuf is the largest encoding buffer a client keeps between
// writes; a larger one (a big request) is left to the garbage collector.
const maxKeptWriteBuf = 1024

// maxHandshakeBody bounds an inflated handshake response.
const maxHandshakeBody = 1 << 20

// Push is a message the server pushed to the client.
type Push struct {
	Route string
	Data  []byte // a copy, owned by the receiver
}

// reply is what the reader hands to a waiting request.
type reply struct {
	data []byte // owned by the receiver
	err  bool   // the error flag: data is an encoded *codec.Error
}

// Client is one connection to a server. Its methods are safe for concurrent
// use. See the package documentation for how it works.
type Client struct {
	tp     atomic.Pointer[tbox] // the connection; a resume replaces it
	addr   string
	o      options
	mc     codec.MessageCodec
	ser    codec.Serializer
	hs     codec.HandshakeResponse
	wtime  time.Duration
	epoch  time.Time
	pushes chan Push
	done   chan struct{}

	nextID  atomic.Uint64
	pendMu  sync.Mutex
	pending map[uint64]chan reply

	wmu  sync.Mutex
	wbuf []byte // encoding buffer, under wmu

	lastWrite atomic.Int64 // time.Since(epoch) at the end of the last write
	hbEvery   time.Duration
	hbTimer   *time.Timer

	closed  atomic.Bool
	life    context.Context    // ended by the first setErr: stops a resume
	endLife context.CancelFunc // ends life
	errMu   sync.Mutex
	err     error
	token   string // the session's resume token, under errMu
	at      string // the address of the connection, under errMu
	dropped atomic.Uint64
	states  *notifier // nil without WithOnState

	received atomic.Uint64 // pushes received in the session
	resumes  atomic.Uint64
}

type tbox struct{ t transport }

func (c *Client) tr() transport { return c.tp.Load().t }

// Dial connects to a server and performs the handshake.
//
// addr is "host:port" (or "tcp://host:port") for TCP, or a "ws://" or
// "wss://" URL for WebSocket, which carries one packet per binary frame.
// Dial sends the Handshake packet, reads the server's answer (inflating it
// when it is zlib-compressed, as Pitaya may send it with no flag), fails with
// an error wrapping [ErrHandshakeRefused] if the code is not 200, builds the
// route dictionary from the answer, sends HandshakeAck and starts the reader
// goroutine.
//
// ctx bounds dialing and the handshake only, together with
// [WithHandshakeTimeout]; it has no effect on the connection afterwards.
func Dial(ctx context.Context, addr string, opts ...Option) (*Client, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if o.handshakeTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.handshakeTimeout)
		defer cancel()
	}
	t, err := dial(ctx, addr, &o)
	if err != nil {
		return nil, fmt.Errorf("client: dial %s: %w", addr, err)
	}
	c, err := handshake(ctx, t, addr, &o)
	if err != nil {
		_ = t.close(false)
		return nil, fmt.Errorf("client: handshake with %s: %w", addr, err)
	}
	return c, nil
}

func handshake(ctx context.Context, t transport, addr string, o *options) (*Client, error) {
	hs, err := exchangeHandshake(ctx, t, o, o.resumeFrom)
	if err != nil {
		return nil, err
	}
	c := &Client{
		addr:    addr,
		at:      addr,
		o:       *o,
		ser:     o.serializer,
		hs:      hs,
		token:   hs.Sys.Resume,
		wtime:   o.writeTimeout,
		epoch:   time.Now(),
		pushes:  make(chan Push, o.pushBuffer),
		done:    make(chan struct{}),
		pending: make(map[uint64]chan reply),
	}
	c.life, c.endLife = context.WithCancel(context.Background())
	if o.onState != nil {
		c.states = &notifier{f: o.onState}
	}
	c.tp.Store(&tbox{t})
	if hs.Sys.Resumed {
		c.received.Store(o.resumeFrom.Pushes)
	}
	if c.wtime <= 0 {
		c.wtime = DefaultWriteTimeout
	}
	if c.ser == nil {
		if hs.Sys.Serializer == (codec.Protobuf{}).Name() {
			c.ser = codec.Protobuf{}
		} else {
			c.ser = codec.JSON{}
		}
	}
	if len(hs.Sys.Dict) > 0 {
		d, err := codec.NewDictionary(hs.Sys.Dict)
		if err != nil {
			return nil, err
		}
		c.mc.Dict = d
	}
	c.lastWrite.Store(int64(time.Since(c.epoch)))
	if o.heartbeat && hs.Sys.Heartbeat > 0 {
		c.hbEvery = time.Duration(hs.Sys.Heartbeat) * time.Second
		// Created stopped, then armed, so the callback sees hbTimer set.
		c.hbTimer = time.AfterFunc(math.MaxInt64, c.heartbeatTick)
		c.hbTimer.Reset(c.hbEvery)
	}
	go c.readLoop()
	return c, nil
}

// exchangeHandshake sends the handshake (asking to resume when r is not
// nil), reads and checks the answer, and sends HandshakeAck. Sys of the
// answer is never nil.
func exchangeHandshake(ctx context.Context, t transport, o *options, r *codec.ResumeRequest) (codec.HandshakeResponse, error) {
	var none codec.HandshakeResponse
	var deadline time.Time // zero: none
	if d, ok := ctx.Deadline(); ok {
		deadline = d
	}
	stop := context.AfterFunc(ctx, t.abort)
	defer stop()
	if err := t.setReadDeadline(deadline); err != nil {
		return none, err
	}

	sys := o.sys
	sys.Resume = r
	body, err := json.Marshal(codec.HandshakeRequest{Sys: sys, User: o.user})
	if err != nil {
		return none, err
	}
	pkt, err := codec.AppendPacket(nil, codec.Handshake, body)
	if err != nil {
		return none, err
	}
	if err := t.write(pkt, deadline); err != nil {
		return none, ctxErr(ctx, err)
	}
	typ, body, _, err := t.read()
	if err != nil {
		return none, ctxErr(ctx, err)
	}
	if typ != codec.Handshake {
		return none, fmt.Errorf("client: got a %v packet instead of the handshake response", typ)
	}
	hs, err := parseHandshakeResponse(body)
	if err != nil {
		return none, err
	}
	if hs.Code != codec.HandshakeOK {
		return none, fmt.Errorf("%w: code %d", ErrHandshakeRefused, hs.Code)
	}
	if hs.Sys == nil {
		hs.Sys = &codec.HandshakeResponseSys{}
	}
	ack, _ := codec.AppendPacket(nil, codec.HandshakeAck, nil)
	if err := t.write(ack, deadline); err != nil {
		return none, ctxErr(ctx, err)
	}
	if !stop() {
		// ctx ended and abort ran: the connection is unusable.
		return none, ctx.Err()
	}
	if err := t.setReadDeadline(time.Time{}); err != nil {
		return none, err
	}
	return hs, nil
}

// ctxErr prefers the context's error when the context ended the I/O. The
// only deadline set during the handshake is the context's, so a deadline
// error means it passed, even if the context has not noticed yet.
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%w (%w)", cerr, err)
	}
	var ne net.Error // gorilla/websocket hides os.ErrDeadlineExceeded
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("%w (%w)", context.DeadlineExceeded, err)
	}
	return err
}

// parseHandshakeResponse decodes a handshake response body, inflating it
// first when it starts with a zlib header (JSON starts with '{').
func parseHandshakeResponse(body []byte) (codec.HandshakeResponse, error) {
	var hs codec.HandshakeResponse
	if len(body) > 0 && body[0] == 0x78 {
		zr, err := zlib.NewReader(bytes.NewReader(body))
		if err != nil {
			return hs, fmt.Errorf("%w: handshake response: %w", codec.ErrBadCompression, err)
		}
		inflated, err := io.ReadAll(io.LimitReader(zr, maxHandshakeBody+1))
		if err != nil {
			return hs, fmt.Errorf("%w: handshake response: %w", codec.ErrBadCompression, err)
		}
		if len(inflated) > maxHandshakeBody {
			return hs, fmt.Errorf("%w: handshake response inflates past %d bytes", codec.ErrBadCompression, maxHandshakeBody)
		}
		body = inflated
	}
	if err := json.Unmarshal(body, &hs); err != nil {
		return hs, fmt.Errorf("client: bad handshake response %q: %w", body, err)
	}
	return hs, nil
}

// Handshake returns the server's handshake response: its code (200), route
// dictionary, heartbeat interval in seconds and serializer name. Sys is never
// nil; the result is a copy.
func (c *Client) Handshake() codec.HandshakeResponse {
	hs := c.hs
	sys := *c.hs.Sys
	sys.Dict = maps.Clone(sys.Dict)
	hs.Sys = &sys
	return hs
}

// Request sends a request to route and waits for its response, which it
// decodes into out (unless out is nil). in is marshaled with the serializer;
// a []byte is sent as it is, and nil sends an empty payload.
//
// If the server answers with the error flag, Request returns the decoded
// *codec.Error. If ctx ends first, Request returns an error wrapping
// ctx.Err() and forgets the request (a late response is ignored). If the
// connection ends first, it returns an error wrapping [ErrClosed] and the
// reason.
func (c *Client) Request(ctx context.Context, route string, in, out any) error {
	data, err := c.marshal(in)
	if err != nil {
		return fmt.Errorf("client: request %q: %w", route, err)
	}
	resp, err := c.roundTrip(ctx, route, data)
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	if err := c.ser.Unmarshal(resp, out); err != nil {
		return fmt.Errorf("client: response to %q: %w", route, err)
	}
	return nil
}

// RequestRaw is [Client.Request] with the payload as bytes both ways: data is
// sent as it is and the response payload is returned, owned by the caller.
func (c *Client) RequestRaw(ctx context.Context, route string, data []byte) ([]byte, error) {
	return c.roundTrip(ctx, route, data)
}

func (c *Client) roundTrip(ctx context.Context, route string, data []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("client: request %q: %w", route, err)
	}
	id := c.nextID.Add(1)
	ch := make(chan reply, 1)
	c.pendMu.Lock()
	c.pending[id] = ch
	c.pendMu.Unlock()

	if err := c.send(&codec.Message{Type: codec.Request, ID: id, Route: route, Data: data}); err != nil {
		c.forget(id)
		return nil, fmt.Errorf("client: request %q: %w", route, err)
	}

	var r reply
	select {
	case r = <-ch:
	case <-ctx.Done():
		c.forget(id)
		return nil, fmt.Errorf("client: request %q: %w", route, ctx.Err())
	case <-c.done:
		// The reader hands over every response before it ends.
		select {
		case r = <-ch:
		default:
			c.forget(id)
			return nil, fmt.Errorf("client: request %q: %w", route, c.closedErr())
		}
	}
	if r.err {
		e, err := codec.DecodeError(c.ser, r.data)
		if err != nil {
			return nil, fmt.Errorf("client: request %q: %w", route, err)
		}
		return nil, e
	}
	return r.data, nil
}

func (c *Client) forget(id uint64) {
	c.pendMu.Lock()
	delete(c.pending, id)
	c.pendMu.Unlock()
}

// Notify sends a notify (a request without a response) to route. in is
// marshaled as for [Client.Request]. Notify returns once the message is
// written; ctx is only checked before writing.
func (c *Client) Notify(ctx context.Context, route string, in any) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("client: notify %q: %w", route, err)
	}
	data, err := c.marshal(in)
	if err != nil {
		return fmt.Errorf("client: notify %q: %w", route, err)
	}
	if err := c.send(&codec.Message{Type: codec.Notify, Route: route, Data: data}); err != nil {
		return fmt.Errorf("client: notify %q: %w", route, err)
	}
	return nil
}

func (c *Client) marshal(in any) ([]byte, error) {
	if in == nil {
		return nil, nil
	}
	return c.ser.Marshal(in)
}

// Pushes returns the channel of the messages the server pushes, in the order
// they arrived. It is closed when the connection ends. See [WithPushBuffer]
// for what happens when nobody reads it.
func (c *Client) Pushes() <-chan Push { return c.pushes }

// Done returns a channel that is closed when the connection has ended and the
// reader goroutine has stopped.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns why the connection ended: [ErrKicked] after a Kick packet,
// [ErrClosed] after [Client.Close], io.EOF (possibly wrapped) when the server
// closed the connection, or the read, write or protocol error that ended it.
// It returns nil while the connection is up.
func (c *Client) Err() error {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	return c.err
}

// Kicked reports whether the server kicked the client.
func (c *Client) Kicked() bool { return c.Err() == ErrKicked }

// DroppedPushes returns how many pushes were dropped because the push channel
// was full.
func (c *Client) DroppedPushes() uint64 { return c.dropped.Load() }

// SendRaw writes b as it is, for protocol tests: over TCP the bytes go into
// the stream (they may be a partial or malformed packet), over WebSocket
// they form one binary frame.
func (c *Client) SendRaw(b []byte) error {
	return c.write(b)
}

// Close closes the connection (over WebSocket after a close frame) and waits
// for the reader goroutine to stop. Pending requests fail with [ErrClosed].
// Close is idempotent; it returns the error of closing the socket, if the
// connection had not already ended.
func (c *Client) Close() error {
	var err error
	if c.setErr(ErrClosed) {
		err = c.tr().close(true)
	}
	<-c.done
	return err
}

// setErr records why the connection ends and marks it closed; it reports
// whether this was the first reason. The caller closes the transport. The
// first reason is also the client's final state event.
func (c *Client) setErr(err error) bool {
	c.errMu.Lock()
	if c.err != nil {
		c.errMu.Unlock()
		return false
	}
	c.err = err
	at := c.at
	c.errMu.Unlock()
	c.closed.Store(true)
	c.endLife()
	if c.hbTimer != nil {
		c.hbTimer.Stop()
	}
	c.states.emit(StateEvent{Kind: stateKindOf(err), Addr: at, Err: err})
	return true
}

// Addr returns the address of the client's connection: the one it dialed,
// or the one [WithAutoResume] last resumed its session on.
func (c *Client) Addr() string {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	return c.at
}

// fail ends the connection with err unless it has already ended.
func (c *Client) fail(err error) {
	if c.setErr(err) {
		_ = c.tr().close(false)
	}
}

// closedErr is ErrClosed wrapping the reason the connection ended.
func (c *Client) closedErr() error {
	err := c.Err()
	if err == nil || err == ErrClosed {
		return ErrClosed
	}
	return fmt.Errorf("%w: %w", ErrClosed, err)
}

// send encodes m into the client's buffer and writes it with one write.
func (c *Client) send(m *codec.Message) error {
	if c.closed.Load() {
		return c.closedErr()
	}
	c.wmu.Lock()
	buf, err := c.mc.AppendPacket(c.wbuf[:0], m)
	if err != nil {
		c.wmu.Unlock()
		return err
	}
	t := c.tr()
	err = t.write(buf, time.Now().Add(c.wtime))
	if cap(buf) <= maxKeptWriteBuf {
		c.wbuf = buf[:0]
	} else {
		c.wbuf = nil
	}
	c.wmu.Unlock()
	return c.wrote(t, err)
}

// write writes b under the write mutex.
func (c *Client) write(b []byte) error {
	if c.closed.Load() {
		return c.closedErr()
	}
	c.wmu.Lock()
	t := c.tr()
	err := t.write(b, time.Now().Add(c.wtime))
	c.wmu.Unlock()
	return c.wrote(t, err)
}

// wrote records a write; a failed write ends the connection, as the stream
// may hold part of a packet. With auto-resume only the socket ends: the
// reader resumes the session on a new one.
func (c *Client) wrote(t transport, err error) error {
	if err != nil {
		if c.o.autoResume != nil && !c.closed.Load() {
			_ = t.close(false)
			return fmt.Errorf("client: connection lost, resuming: %w", err)
		}
		// A server that closes the connection says why first (a Kick,
		// when it drains): a write racing with that close fails, while
		// the reason waits to be read. Let the reader deliver it, so the
		// client ends kicked rather than with the write's broken pipe.
		grace := time.NewTimer(writeFailGrace)
		select {
		case <-c.done:
		case <-grace.C:
		}
		grace.Stop()
		c.fail(err)
		return c.closedErr()
	}
	c.lastWrite.Store(int64(time.Since(c.epoch)))
	return nil
}

// writeFailGrace is how long a failed write waits for the reader to end the
// client with what the server said before it closed.
const writeFailGrace = 500 * time.Millisecond

// sendHeartbeat writes a Heartbeat packet. The reader answers every server
// heartbeat (waiting for the write mutex if it must: a write that blocks on
// the server is bounded by the write timeout); the idle timer passes idle
// true and skips the heartbeat while another write is in progress, since the
// server then sees traffic anyway.
func (c *Client) sendHeartbeat(idle bool) {
	if c.closed.Load() {
		return
	}
	if idle {
		if !c.wmu.TryLock() {
			return
		}
	} else {
		c.wmu.Lock()
	}
	hb := [codec.HeaderLength]byte{byte(codec.Heartbeat)}
	t := c.tr()
	err := t.write(hb[:], time.Now().Add(c.wtime))
	c.wmu.Unlock()
	_ = c.wrote(t, err)
}

// heartbeatTick runs on the heartbeat timer: it sends a heartbeat if nothing
// was written for the interval, then re-arms the timer for when the interval
// will have passed since the last write. Writes never touch the timer.
func (c *Client) heartbeatTick() {
	if c.closed.Load() {
		return
	}
	idle := time.Since(c.epoch) - time.Duration(c.lastWrite.Load())
	if idle >= c.hbEvery {
		c.sendHeartbeat(true)
		idle = 0
	}
	if !c.closed.Load() {
		c.hbTimer.Reset(c.hbEvery - idle)
	}
}

// readLoop is the client's one goroutine: it reads packets until the
// connection ends, answers heartbeats, hands responses to their requests and
// pushes to the push channel.
func (c *Client) readLoop() {
	defer close(c.done)
	defer close(c.pushes)
	var m codec.Message
	for {
		typ, body, owned, err := c.tr().read()
		if err != nil {
			if c.o.autoResume != nil && !c.closed.Load() {
				c.states.emit(StateEvent{Kind: StateResuming, Addr: c.Addr(), Err: err})
				if err = c.resume(err); err == nil {
					continue
				}
			}
			c.fail(err)
			return
		}
		switch typ {
		case codec.Heartbeat:
			c.sendHeartbeat(false)
		case codec.Kick:
			c.fail(ErrKicked)
			return
		case codec.Data:
			if err := c.mc.Decode(body, &m); err != nil {
				c.fail(err)
				return
			}
			if err := c.deliver(&m, owned); err != nil {
				c.fail(err)
				return
			}
		default:
			// A stray Handshake or HandshakeAck: nothing to do.
		}
	}
}

// deliver hands a decoded message to its receiver. Unless owned (or
// inflated), m.Data aliases the read buffer and is copied.
func (c *Client) deliver(m *codec.Message, owned bool) error {
	own := func(b []byte) []byte {
		if owned || m.Compressed || len(b) == 0 {
			return b
		}
		return bytes.Clone(b)
	}
	switch m.Type {
	case codec.Response:
		c.pendMu.Lock()
		ch, ok := c.pending[m.ID]
		if ok {
			delete(c.pending, m.ID)
		}
		c.pendMu.Unlock()
		if ok {
			ch <- reply{data: own(m.Data), err: m.Err} // buffered, never blocks
		}
	case codec.Push:
		c.received.Add(1)
		if len(c.pushes) == cap(c.pushes) { // only this goroutine sends
			c.dropped.Add(1)
			return nil
		}
		c.pushes <- Push{Route: m.Route, Data: own(m.Data)}
	default:
		return fmt.Errorf("%w: server sent a %v", codec.ErrBadMessage, m.Type)
	}
	return nil
}

// ResumeToken returns the token of the client's session: with
// [WithResume], a new client takes the session over if it presents it in
// time. It is "" when the server does not offer resume.
func (c *Client) ResumeToken() string {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	return c.token
}

// PushesReceived counts the pushes received in the session, over every
// connection it had (those dropped because the push channel was full
// included): what a resume presents to the server.
func (c *Client) PushesReceived() uint64 { return c.received.Load() }

// Resumes counts the times [WithAutoResume] resumed the session.
func (c *Client) Resumes() uint64 { return c.resumes.Load() }

// Drop closes the socket without ending the client, as a network failure
// would: with [WithAutoResume] the client resumes its session, otherwise it
// ends. For tests and demos.
func (c *Client) Drop() {
	_ = c.tr().close(false)
}

// resume reconnects after the connection failed with cause and takes the
// session over, trying the client's address and then the others given to
// [WithAutoResume] in turn, with exponential backoff, until the resume
// window ends. It returns nil once resumed, or why not (wrapping
// [ErrSessionLost]).
func (c *Client) resume(cause error) error {
	ar := c.o.autoResume
	addrs := append([]string{c.addr}, ar.addrs...)
	deadline := time.Now().Add(ar.within)
	backoff := 20 * time.Millisecond
	for i := 0; ; i++ {
		if c.closed.Load() {
			return cause
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: no server resumed it within %v (%w)", ErrSessionLost, ar.within, cause)
		}
		hctx, cancel := context.WithDeadline(c.life, deadline)
		if c.o.handshakeTimeout > 0 {
			var cancelTimeout context.CancelFunc
			hctx, cancelTimeout = context.WithTimeout(hctx, c.o.handshakeTimeout)
			cancelDeadline := cancel
			cancel = func() { cancelTimeout(); cancelDeadline() }
		}
		addr := addrs[i%len(addrs)]
		t, err := dial(hctx, addr, &c.o)
		if err == nil {
			var hs codec.HandshakeResponse
			hs, err = exchangeHandshake(hctx, t, &c.o, &codec.ResumeRequest{Token: c.ResumeToken(), Pushes: c.received.Load()})
			switch {
			case err == nil && hs.Sys.Resumed:
				cancel()
				c.wmu.Lock()
				c.tp.Store(&tbox{t})
				c.wmu.Unlock()
				c.errMu.Lock()
				c.token = hs.Sys.Resume
				c.at = addr
				c.errMu.Unlock()
				c.lastWrite.Store(int64(time.Since(c.epoch)))
				if c.closed.Load() { // Close ran meanwhile, on the old socket
					_ = t.close(true)
					return ErrClosed
				}
				c.resumes.Add(1)
				c.states.emit(StateEvent{Kind: StateResumed, Addr: addr})
				return nil
			case err == nil:
				cancel()
				_ = t.close(true)
				return fmt.Errorf("%w: %s gave a fresh session (%w)", ErrSessionLost, addr, cause)
			}
			_ = t.close(false)
		}
		cancel()
		select {
		case <-time.After(backoff):
		case <-c.life.Done():
			return cause
		}
		backoff = min(2*backoff, time.Second)
	}
}
