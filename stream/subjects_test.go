package stream_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nopal-dev/nopal/stream"
)

func TestSubjects(t *testing.T) {
	b := connect(t, stream.Config{ServerID: "fe-1", Prefix: "game.one"})
	tests := []struct{ got, want string }{
		{b.RPCSubject("room.room.join"), "game.one.rpc.room.room.join"},
		{b.RPCTypeWildcard("room"), "game.one.rpc.room.>"},
		{b.ServerRPC("room-1"), "game.one.srv.room-1.rpc"},
		{b.ServerPush("fe-2"), "game.one.srv.fe-2.push"},
		{b.ServerKick("fe-2"), "game.one.srv.fe-2.kick"},
		{b.ServerSessionOp("fe-2"), "game.one.srv.fe-2.sess"},
		{b.ServerResume("fe-2"), "game.one.srv.fe-2.resume"},
		{b.ServerForward("fe-2"), "game.one.srv.fe-2.fwd"},
		{b.ReplyPrefix(), "game.one.reply.fe-1"},
		{b.JobSubject("mail", "01J"), "game.one.job.mail.01J"},
		{b.JobTargetSubject("mail", "mail-1", "01J"), "game.one.job.mail.srv.mail-1.01J"},
		{b.JobFilter("mail"), "game.one.job.mail.*"},
		{b.JobTargetFilter("mail", "mail-1"), "game.one.job.mail.srv.mail-1.*"},
		{b.JobsWildcard(), "game.one.job.>"},
		{b.DLQSubject("mail", "01J"), "game.one.jobdlq.mail.01J"},
		{b.DLQWildcard(), "game.one.jobdlq.>"},
		{b.MailboxSubject("u1"), "game.one.mbox.u1"},
		{b.MailboxWildcard(), "game.one.mbox.>"},
		{b.TrafficSubject("fe-1"), "game.one.traffic.fe-1"},
		{b.TrafficWildcard(), "game.one.traffic.>"},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

// TestSubjectFilters checks on a real server which subjects each filter
// and wildcard receives: the shared job consumer does not see targeted
// jobs, a server's consumer sees only its own.
func TestSubjectFilters(t *testing.T) {
	b := connect(t, stream.Config{ServerID: "a"})
	var mu sync.Mutex
	got := map[string][]string{}
	filters := map[string]string{
		"JobFilter":       b.JobFilter("mail"),
		"JobTargetFilter": b.JobTargetFilter("mail", "m1"),
		"JobsWildcard":    b.JobsWildcard(),
		"DLQWildcard":     b.DLQWildcard(),
		"MailboxWildcard": b.MailboxWildcard(),
		"TrafficWildcard": b.TrafficWildcard(),
		"RPCTypeWildcard": b.RPCTypeWildcard("mail"),
	}
	for name, f := range filters {
		sub, err := b.Subscribe(f, "", func(m *nats.Msg) {
			mu.Lock()
			got[name] = append(got[name], m.Subject)
			mu.Unlock()
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	if err := b.Flush(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	subjects := []string{
		b.JobSubject("mail", "j1"),
		b.JobTargetSubject("mail", "m1", "j2"),
		b.JobTargetSubject("mail", "m2", "j3"),
		b.JobSubject("chat", "j4"),
		b.DLQSubject("mail", "j1"),
		b.MailboxSubject("u1"),
		b.TrafficSubject("a"),
		b.RPCSubject("mail.mailer.send"),
		b.ServerRPC("m1"),
	}
	for _, s := range subjects {
		if err := b.Publish(s, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Flush(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"JobFilter":       {b.JobSubject("mail", "j1")},
		"JobTargetFilter": {b.JobTargetSubject("mail", "m1", "j2")},
		"JobsWildcard":    subjects[:4],
		"DLQWildcard":     {b.DLQSubject("mail", "j1")},
		"MailboxWildcard": {b.MailboxSubject("u1")},
		"TrafficWildcard": {b.TrafficSubject("a")},
		"RPCTypeWildcard": {b.RPCSubject("mail.mailer.send")},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		mu.Lock()
		done := true
		for name, w := range want {
			if !slices.Equal(got[name], w) {
				done = false
				if ctx.Err() != nil {
					t.Errorf("%s (%s) got %q, want %q", name, filters[name], got[name], w)
				}
			}
		}
		mu.Unlock()
		if done || ctx.Err() != nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}
