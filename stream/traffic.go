package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protowire"
)

// TrafficStream is the name of the traffic log stream (under the bus's
// prefix: "nopal_TRAFFIC").
const TrafficStream = "TRAFFIC"

// RecorderConfig tunes a Recorder. Zero fields take the defaults.
type RecorderConfig struct {
	// MaxBatch is the most records in one stream message (default 128).
	MaxBatch int
	// MaxDelay is how long the first record of a batch waits for others
	// before the batch is published (default 2 ms).
	MaxDelay time.Duration
	// MaxAge and MaxBytes limit the TRAFFIC stream (defaults 24 h and
	// 1 GiB); the oldest messages go first. The stream is shared by all
	// servers: the last recorder to start sets its limits.
	MaxAge   time.Duration
	MaxBytes int64
	// Buffer is how many records may wait in memory for their batch to be
	// published before Record drops new ones (default 65536).
	Buffer int
}

func (c *RecorderConfig) defaults() error {
	if c.MaxBatch == 0 {
		c.MaxBatch = 128
	}
	if c.MaxDelay == 0 {
		c.MaxDelay = 2 * time.Millisecond
	}
	if c.MaxAge == 0 {
		c.MaxAge = 24 * time.Hour
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = 1 << 30
	}
	if c.Buffer == 0 {
		c.Buffer = 65536
	}
	switch {
	case c.MaxBatch < 1:
		return fmt.Errorf("%w: RecorderConfig.MaxBatch %d", ErrConfig, c.MaxBatch)
	case c.MaxDelay < 0:
		return fmt.Errorf("%w: RecorderConfig.MaxDelay %v", ErrConfig, c.MaxDelay)
	case c.MaxAge < 0:
		return fmt.Errorf("%w: RecorderConfig.MaxAge %v", ErrConfig, c.MaxAge)
	case c.MaxBytes < 0:
		return fmt.Errorf("%w: RecorderConfig.MaxBytes %d", ErrConfig, c.MaxBytes)
	case c.Buffer < 1:
		return fmt.Errorf("%w: RecorderConfig.Buffer %d", ErrConfig, c.Buffer)
	}
	return nil
}

const (
	// recorderMaxPending bounds the batches awaiting their ack; past it
	// PublishAsync stalls and the records queue in the buffer.
	recorderMaxPending = 64
	// recorderAckTimeout is how long a batch waits for its ack before its
	// records count as dropped.
	recorderAckTimeout = 10 * time.Second
	// recorderWarnEvery rate-limits the drop warning.
	recorderWarnEvery = 10 * time.Second
	// payloadHeadroom keeps a batch under the server's max payload.
	payloadHeadroom = 512
)

// Recorder appends the messages it is given to the TRAFFIC stream, in
// batches: at most MaxBatch records (and at most the server's max payload)
// per stream message, published with PublishAsync at most MaxDelay after
// the batch's first record. Each record keeps the subject, reply subject,
// headers, payload, time and this server's id (a TrafficRecord; a stream
// message is a TrafficBatch on <prefix>.traffic.<server id>).
//
// Record where the message already is (a frontend records the requests and
// replies it forwards, a node the pushes it sends): the recorder adds no
// subscriber. The log is at-most-once: a record is dropped, and counted in
// Dropped, when the buffer is full, when its batch cannot be published or is
// refused, or when its ack does not come; a crash loses what is queued.
//
// A nil *Recorder records nothing, so callers turn recording off by passing
// nil.
type Recorder struct {
	cfg      RecorderConfig
	js       jetstream.JetStream // private context: its own async acks
	log      *slog.Logger
	id       string
	subject  string
	maxBytes int // of one batch's data

	mu      sync.Mutex
	cur     *batch   // filling
	sealed  []*batch // full, waiting for the batcher
	queued  int      // records in cur and sealed
	lastCap int      // size of the last sealed batch
	closed  bool

	wake chan struct{} // a batch started or was sealed
	quit chan struct{}
	done chan struct{} // the batcher has published everything

	pmu      sync.Mutex
	inflight map[*nats.Msg]int // records per batch awaiting its ack
	drained  chan struct{}     // closed when inflight empties (Close waits)
	free     [][]byte          // buffers of acknowledged batches, for new ones
	freeCap  int               // their capacity

	recorded atomic.Uint64
	dropped  atomic.Uint64
	lastWarn atomic.Int64
	unwarned atomic.Uint64 // drops since the last warning

	closeOnce sync.Once
}

type batch struct {
	buf   []byte // TrafficBatch wire bytes
	n     int
	start time.Time
}

// NewRecorder provisions the TRAFFIC stream (file storage, limits by age
// and bytes, discard old) on <prefix>.traffic.> and starts the batcher.
func NewRecorder(ctx context.Context, bus *Bus, cfg RecorderConfig) (*Recorder, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if _, err := bus.Stream(ctx, trafficStreamConfig(bus, cfg)); err != nil {
		return nil, err
	}
	r := &Recorder{
		cfg:      cfg,
		log:      bus.log,
		id:       bus.ServerID(),
		subject:  bus.TrafficSubject(bus.ServerID()),
		maxBytes: int(bus.nc.MaxPayload()) - payloadHeadroom,
		wake:     make(chan struct{}, 1),
		quit:     make(chan struct{}),
		done:     make(chan struct{}),
		inflight: make(map[*nats.Msg]int),
	}
	if r.maxBytes < 1024 {
		r.maxBytes = 1024
	}
	js, err := jetstream.New(bus.nc,
		jetstream.WithPublishAsyncMaxPending(recorderMaxPending),
		jetstream.WithPublishAsyncTimeout(recorderAckTimeout),
		jetstream.WithPublishAsyncAckHandler(func(_ jetstream.JetStream, m *nats.Msg, _ *jetstream.PubAck) {
			r.settle(m, nil)
		}),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, err error) {
			if err == nil {
				err = errors.New("unknown publish error")
			}
			bus.RecoverMissing(err) // TRAFFIC deleted from outside: it comes back
			r.settle(m, err)
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("stream: recorder: %w", err)
	}
	r.js = js
	go r.run()
	return r, nil
}

func trafficStreamConfig(bus *Bus, cfg RecorderConfig) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        TrafficStream,
		Description: "nopal traffic log (TrafficBatch messages)",
		Subjects:    []string{bus.TrafficWildcard()},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      cfg.MaxAge,
		MaxBytes:    cfg.MaxBytes,
	}
}

// Record queues a record of a message: its subject, reply subject, headers
// (several values of one key are joined with ", ") and a copy of data, with
// the current time. It never blocks: when Buffer records are already
// waiting, or after Close, the record is dropped and counted.
//
// For a reply, put the route of the call it answers in headers under
// RouteHeader ("Nopal-Route") so Replay can report and filter it.
func (r *Recorder) Record(subject, reply string, headers map[string][]string, data []byte) {
	if r == nil {
		return
	}
	now := time.Now()
	size := recordSize(now.UnixNano(), subject, reply, headers, data, r.id)
	msgSize := 1 + protowire.SizeVarint(uint64(size)) + size
	r.mu.Lock()
	if r.closed || r.queued >= r.cfg.Buffer || msgSize > r.maxBytes {
		reason := errBufferFull
		if msgSize > r.maxBytes {
			reason = errRecordTooLarge
		} else if r.closed {
			reason = errRecorderClosed
		}
		r.mu.Unlock()
		r.drop(1, reason, now)
		return
	}
	signal := false
	b := r.cur
	if b != nil && len(b.buf)+msgSize > r.maxBytes {
		r.sealed = append(r.sealed, b)
		r.lastCap = len(b.buf)
		b, signal = nil, true
	}
	if b == nil {
		b = &batch{buf: r.buffer(r.batchCap(msgSize)), start: now}
		r.cur = b
		signal = true
	}
	b.buf = protowire.AppendTag(b.buf, 1, protowire.BytesType)
	b.buf = protowire.AppendVarint(b.buf, uint64(size))
	b.buf = appendRecord(b.buf, now.UnixNano(), subject, reply, headers, data, r.id)
	b.n++
	r.queued++
	if b.n >= r.cfg.MaxBatch {
		r.sealed = append(r.sealed, b)
		r.lastCap = len(b.buf)
		r.cur = nil
		signal = true
	}
	r.mu.Unlock()
	if signal {
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
}

// Sentinel reasons for drops made by Record (no allocation per drop).
var (
	errRecorderClosed = errors.New("recorder closed")
	errBufferFull     = errors.New("buffer full")
	errRecordTooLarge = errors.New("record larger than the max payload")
)

// batchCap sizes a new batch's buffer like the last one, so batches at a
// low rate stay small and full ones rarely grow.
func (r *Recorder) batchCap(msgSize int) int {
	return min(max(r.lastCap, msgSize, 256), r.maxBytes)
}

// freeBytes bounds the capacity of the buffers kept for new batches:
// enough for the batches in flight at a steady rate, little memory when
// recording stops.
const freeBytes = 4 << 20

// buffer returns an empty buffer of at least n bytes: one of an
// acknowledged batch if there is one (a busy recorder allocated about a
// sixth of a frontend's bytes for its batches), else a new one.
func (r *Recorder) buffer(n int) []byte {
	r.pmu.Lock()
	for len(r.free) > 0 {
		b := r.free[len(r.free)-1]
		r.free[len(r.free)-1] = nil
		r.free = r.free[:len(r.free)-1]
		r.freeCap -= cap(b)
		if cap(b) >= n {
			r.pmu.Unlock()
			return b[:0]
		}
	}
	r.pmu.Unlock()
	return make([]byte, 0, n)
}

// Recorded is how many records the stream has acknowledged.
func (r *Recorder) Recorded() uint64 {
	if r == nil {
		return 0
	}
	return r.recorded.Load()
}

// Dropped is how many records were lost: buffer full, recorder closed,
// publish failed or refused, or no ack in time. After a Close that returned
// nil, Recorded()+Dropped() is the number of Record calls.
func (r *Recorder) Dropped() uint64 {
	if r == nil {
		return 0
	}
	return r.dropped.Load()
}

// Close stops recording (later Records are dropped), publishes what is
// queued and waits for the acks of every batch in flight, or until ctx
// ends: then the records still unacknowledged count as dropped and ctx's
// error is returned.
func (r *Recorder) Close(ctx context.Context) error {
	if r == nil {
		return nil
	}
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.closed = true
		r.mu.Unlock()
		close(r.quit)
	})
	select {
	case <-r.done:
	case <-ctx.Done():
		// The batcher is stalled publishing; what it still publishes
		// is accounted as its acks come.
		r.abandon()
		return ctx.Err()
	}
	for {
		r.pmu.Lock()
		if len(r.inflight) == 0 {
			r.pmu.Unlock()
			r.js.CleanupPublisher()
			return nil
		}
		if r.drained == nil {
			r.drained = make(chan struct{})
		}
		ch := r.drained
		r.pmu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			r.abandon()
			r.js.CleanupPublisher()
			return ctx.Err()
		}
	}
}

// abandon counts the batches still awaiting their ack as dropped.
func (r *Recorder) abandon() {
	r.pmu.Lock()
	n := 0
	for m, c := range r.inflight {
		n += c
		delete(r.inflight, m)
	}
	r.pmu.Unlock()
	if n > 0 {
		r.drop(n, errors.New("no ack before close"), time.Now())
	}
}

// run is the batcher: it publishes sealed batches as soon as they are
// sealed and the filling one MaxDelay after its first record.
func (r *Recorder) run() {
	defer close(r.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var out []*batch
	for {
		final := false
		select {
		case <-r.wake:
		case <-timer.C:
		case <-r.quit:
			final = true
		}
		var next time.Duration
		out, next = r.take(out[:0], final)
		for i, b := range out {
			r.publish(b)
			out[i] = nil
		}
		if final {
			return
		}
		if next > 0 {
			timer.Reset(next)
		}
	}
}

// take moves the sealed batches, and the filling one when it is due (or
// all is set), to out. next is when the filling one is due (0: none).
func (r *Recorder) take(out []*batch, all bool) ([]*batch, time.Duration) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	out = append(out, r.sealed...)
	clear(r.sealed)
	r.sealed = r.sealed[:0]
	if b := r.cur; b != nil && (all || now.Sub(b.start) >= r.cfg.MaxDelay) {
		out = append(out, b)
		r.lastCap = len(b.buf)
		r.cur = nil
	}
	for _, b := range out {
		r.queued -= b.n
	}
	if b := r.cur; b != nil {
		return out, max(b.start.Add(r.cfg.MaxDelay).Sub(now), time.Nanosecond)
	}
	return out, 0
}

func (r *Recorder) publish(b *batch) {
	m := &nats.Msg{Subject: r.subject, Data: b.buf}
	r.pmu.Lock()
	r.inflight[m] = b.n // before publishing: the ack may come first
	r.pmu.Unlock()
	if _, err := r.js.PublishMsgAsync(m); err != nil {
		r.settle(m, err)
	}
}

// settle accounts for a batch once: acknowledged, or lost with err. The
// counters move before the batch leaves inflight, so Close sees them.
func (r *Recorder) settle(m *nats.Msg, err error) {
	r.pmu.Lock()
	n, ok := r.inflight[m]
	if ok {
		delete(r.inflight, m)
		// Its bytes were copied into the connection's buffer when it was
		// published (and again for each retry, which all come before
		// its ack or its error): nothing reads them again.
		if c := cap(m.Data); r.freeCap+c <= freeBytes {
			r.free = append(r.free, m.Data[:0])
			r.freeCap += c
		}
		if err != nil {
			r.count(n)
		} else {
			r.recorded.Add(uint64(n))
		}
	}
	if len(r.inflight) == 0 && r.drained != nil {
		close(r.drained)
		r.drained = nil
	}
	r.pmu.Unlock()
	if ok && err != nil {
		r.warn(err, time.Now())
	}
}

// drop counts n lost records and warns.
func (r *Recorder) drop(n int, err error, now time.Time) {
	r.count(n)
	r.warn(err, now)
}

func (r *Recorder) count(n int) {
	r.dropped.Add(uint64(n))
	r.unwarned.Add(uint64(n))
}

// warn logs the drops at most every recorderWarnEvery.
func (r *Recorder) warn(err error, now time.Time) {
	last := r.lastWarn.Load()
	t := now.UnixNano()
	if t-last < int64(recorderWarnEvery) || !r.lastWarn.CompareAndSwap(last, t) {
		return
	}
	r.log.Warn("traffic recorder dropped records",
		"dropped", r.unwarned.Swap(0), "dropped_total", r.dropped.Load(), "reason", err)
}

// recordSize is the wire size of a TrafficRecord (without its own tag and
// length), matching appendRecord.
func recordSize(unixNano int64, subject, reply string, headers map[string][]string, data []byte, server string) int {
	n := 1 + protowire.SizeVarint(uint64(unixNano))
	n += sizeString(subject) + sizeString(reply)
	for k, vs := range headers {
		e := sizeString(k) + sizeValues(vs)
		n += 1 + protowire.SizeVarint(uint64(e)) + e
	}
	if len(data) > 0 {
		n += 1 + protowire.SizeBytes(len(data))
	}
	return n + sizeString(server)
}

func sizeString(s string) int {
	if s == "" {
		return 0
	}
	return 1 + protowire.SizeBytes(len(s))
}

func valuesLen(vs []string) int {
	if len(vs) == 0 {
		return 0
	}
	n := 2 * (len(vs) - 1)
	for _, v := range vs {
		n += len(v)
	}
	return n
}

func sizeValues(vs []string) int {
	l := valuesLen(vs)
	if l == 0 {
		return 0
	}
	return 1 + protowire.SizeBytes(l)
}

// appendRecord appends a TrafficRecord's fields (proto3: empty fields
// omitted; map entries as key=1, value=2 messages).
func appendRecord(b []byte, unixNano int64, subject, reply string, headers map[string][]string, data []byte, server string) []byte {
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(unixNano))
	b = appendString(b, 2, subject)
	b = appendString(b, 3, reply)
	for k, vs := range headers {
		b = protowire.AppendTag(b, 4, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(sizeString(k)+sizeValues(vs)))
		b = appendString(b, 1, k)
		if l := valuesLen(vs); l > 0 {
			b = protowire.AppendTag(b, 2, protowire.BytesType)
			b = protowire.AppendVarint(b, uint64(l))
			for i, v := range vs {
				if i > 0 {
					b = append(b, ',', ' ')
				}
				b = append(b, v...)
			}
		}
	}
	if len(data) > 0 {
		b = protowire.AppendTag(b, 5, protowire.BytesType)
		b = protowire.AppendBytes(b, data)
	}
	return appendString(b, 6, server)
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}
