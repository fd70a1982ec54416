package reliable_test

import (
	"errors"
	"testing"

	"github.com/nopal-dev/nopal/codec"
	"github.com/nopal-dev/nopal/reliable"
)

// TestEnqueueInvalidRoute: a job's route is a three-part route that
// codec.ParseFullRoute accepts; anything else fails before any I/O with an
// error matching both reliable.ErrInvalidRoute and codec.ErrInvalidRoute.
func TestEnqueueInvalidRoute(t *testing.T) {
	c := newClient(t, newBus(t, "a"))
	ctx := testCtx(t)
	for _, r := range []string{
		"", "mailer.send", "mail.mailer.send.now", "mail..send", ".mailer.send",
		"mail.mailer.*", "mail.mailer.>", "mail.mail er.send", "mail/x.mailer.send",
		"mail.mailer.send\t", "mail.mailer.send\x00", "mail.mailer.send\u00a0", "mail.mailer.send\xff",
	} {
		jid, err := c.Enqueue(ctx, r, nil)
		if !errors.Is(err, reliable.ErrInvalidRoute) || !errors.Is(err, codec.ErrInvalidRoute) || jid != "" {
			t.Errorf("Enqueue(%q) = %q, %v; want both ErrInvalidRoute", r, jid, err)
		}
	}
}
