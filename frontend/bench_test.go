package frontend_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/nopal-dev/nopal"
	"github.com/nopal-dev/nopal/backend"
	"github.com/nopal-dev/nopal/client"
	"github.com/nopal-dev/nopal/frontend"
)

// Benchmarks of the frontend's hot paths over real loopback sockets, the
// client in the same process: a request and its response, a push to one
// user, a push to 50 users (a room's broadcast). Run with -benchmem, and
// -cpuprofile/-memprofile to see where the server's time and allocations go.

func benchServer(b *testing.B, resume bool) (*nopal.App, string) {
	b.Helper()
	app, err := nopal.New(nopal.Config{
		ServerType: serverType, Logger: discardLogger(),
		Resume: frontend.ResumeConfig{Off: !resume},
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := app.Register(newTestComp(), backend.WithName("t")); err != nil {
		b.Fatal(err)
	}
	tcp := frontend.NewTCPAcceptor("127.0.0.1:0")
	app.AddAcceptor(tcp)
	if err := app.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = app.Shutdown(context.Background()) })
	return app, tcp.Addr().String()
}

func benchClient(b *testing.B, addr, uid string) *client.Client {
	b.Helper()
	c, err := client.Dial(context.Background(), addr, client.WithPushBuffer(4096))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	if uid != "" {
		if err := c.Request(context.Background(), "t.bind", &BindReq{UID: uid}, nil); err != nil {
			b.Fatal(err)
		}
	}
	return c
}

func BenchmarkRequest(b *testing.B) {
	for _, resume := range []bool{false, true} {
		b.Run(fmt.Sprintf("resume=%v", resume), func(b *testing.B) {
			_, addr := benchServer(b, resume)
			c := benchClient(b, addr, "")
			ctx := context.Background()
			data := []byte(`{"hello":"world"}`)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.RequestRaw(ctx, "t.echo", data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPush pushes to n bound users and waits until each got it.
func BenchmarkPush(b *testing.B) {
	for _, n := range []int{1, 50} {
		for _, resume := range []bool{false, true} {
			b.Run(fmt.Sprintf("users=%d/resume=%v", n, resume), func(b *testing.B) {
				app, addr := benchServer(b, resume)
				uids := make([]string, n)
				cls := make([]*client.Client, n)
				for i := range uids {
					uids[i] = fmt.Sprint("u", i)
					cls[i] = benchClient(b, addr, uids[i])
				}
				ctx := context.Background()
				payload := []byte(`{"chat":"a line of a chat room"}`)
				b.ReportAllocs()
				for b.Loop() {
					if failed, err := app.PushToUsers(ctx, "onChat", payload, uids); err != nil || len(failed) > 0 {
						b.Fatal(failed, err)
					}
					for _, c := range cls {
						<-c.Pushes()
					}
				}
			})
		}
	}
}
