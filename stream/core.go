package stream

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The Bus's methods below are the only way to core NATS for the rest of
// the project: nothing outside this package holds the *nats.Conn. The
// messages they hand to handlers and return are plain *nats.Msg, which a
// handler may use (Data, Header, Respond).

// Request sends data, with hdr (nil for none), on subject and waits for
// the first reply until ctx ends. The reply comes on this process's reply
// prefix (ReplyPrefix). With nobody subscribed to subject the error is
// nats.ErrNoResponders; when ctx ends first it is ctx's error (or
// nats.ErrTimeout).
func (b *Bus) Request(ctx context.Context, subject string, data []byte, hdr nats.Header) (*nats.Msg, error) {
	timeout := time.Duration(1<<63 - 1)
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	return b.Call(ctx, subject, data, hdr, timeout)
}

// Publish sends data on subject, with no reply expected (core NATS: at most
// once, lost when nobody listens).
func (b *Bus) Publish(subject string, data []byte) error {
	return b.nc.Publish(subject, data)
}

// Subscribe calls h for each message on subject (which may hold
// wildcards), in one goroutine per subscription, in order. With a queue
// name the subscription joins that queue group: each message goes to one
// member of the group. The subscription has no pending limits: a busy
// server must not drop calls silently, so h should hand long work to
// goroutines at once rather than let messages pile up. Unsubscribe or Drain
// the returned subscription to stop; Close ends them all.
func (b *Bus) Subscribe(subject, queue string, h nats.MsgHandler) (*nats.Subscription, error) {
	var sub *nats.Subscription
	var err error
	if queue != "" {
		sub, err = b.nc.QueueSubscribe(subject, queue, h)
	} else {
		sub, err = b.nc.Subscribe(subject, h)
	}
	if err != nil {
		return nil, err
	}
	_ = sub.SetPendingLimits(-1, -1)
	return sub, nil
}

// ChanSubscribe sends the messages on subject to ch, from NATS's reader
// itself (no goroutine of the subscription's own in between). A message
// that finds ch full is dropped and reported to the bus's error log as a
// slow consumer: size ch for the worst backlog.
func (b *Bus) ChanSubscribe(subject string, ch chan *nats.Msg) (*nats.Subscription, error) {
	return b.nc.ChanSubscribe(subject, ch)
}

// ChanQueueSubscribe is ChanSubscribe in the queue group queue ("" for
// none): each message goes to one member of the group.
func (b *Bus) ChanQueueSubscribe(subject, queue string, ch chan *nats.Msg) (*nats.Subscription, error) {
	if queue == "" {
		return b.nc.ChanSubscribe(subject, ch)
	}
	return b.nc.ChanQueueSubscribe(subject, queue, ch)
}

// Flush waits, up to timeout, until the server has processed everything
// sent so far (subscriptions included): after it, a subscription made
// before is live on the server.
func (b *Bus) Flush(timeout time.Duration) error {
	return b.nc.FlushTimeout(timeout)
}

// ConnectedURL is the URL of the NATS server the bus is connected to, with
// any credentials redacted; "" when not connected.
func (b *Bus) ConnectedURL() string {
	if b.nc == nil {
		return ""
	}
	return b.nc.ConnectedUrlRedacted()
}

// Closing reports whether the connection is closed or draining (Close has
// started): it is gone for good, unlike a disconnection, after which it
// reconnects on its own (see Connected).
func (b *Bus) Closing() bool {
	return b.nc == nil || b.nc.IsClosed() || b.nc.IsDraining()
}

// JetStream is the bus's JetStream context, for the packages that keep
// their state in JetStream (discovery, bindings, groups, reliable) and for
// tests. Create streams and buckets with Bus.Stream and Bus.KV, which
// provision them and re-provision them when they go missing; publish to
// streams elsewhere with StreamPublish and StreamPublishAsync.
func (b *Bus) JetStream() jetstream.JetStream { return b.js }

// StreamPublish publishes m to the stream that holds its subject and waits
// for the stream's ack (until ctx ends). When no stream holds the subject
// it fails: see RecoverMissing and RetryMissing.
func (b *Bus) StreamPublish(ctx context.Context, m *nats.Msg) (*jetstream.PubAck, error) {
	return b.js.PublishMsg(ctx, m)
}

// StreamPublishAsync publishes m to the stream that holds its subject
// without waiting for the ack, which the returned future brings.
func (b *Bus) StreamPublishAsync(m *nats.Msg) (jetstream.PubAckFuture, error) {
	return b.js.PublishMsgAsync(m)
}

// Abort closes the connection at once, without draining: subscriptions
// stop, messages in flight and unacknowledged work are left to the others,
// as when the process is killed. Tests use it to play a crash. Close must
// still be called to stop the rest (re-provisioning, an embedded server).
func (b *Bus) Abort() {
	if b.nc != nil {
		b.nc.Close()
	}
}

// MaxPayload is the largest message, in bytes, that the server accepts.
func (b *Bus) MaxPayload() int64 { return b.nc.MaxPayload() }
