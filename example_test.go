package nopal_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nopal-dev/nopal"
	"github.com/nopal-dev/nopal/backend"
	"github.com/nopal-dev/nopal/client"
	"github.com/nopal-dev/nopal/frontend"
	"github.com/nopal-dev/nopal/session"
)

type HelloReq struct {
	Name string `json:"name"`
}

type HelloRes struct {
	Greeting string `json:"greeting"`
}

// Greeter is a component: each exported method of handler shape is a route,
// "greeter.<method>" (or "hello.greeter.<method>" with the server type).
type Greeter struct{}

// Hello is a request handler. It binds the session to the name and pushes a
// welcome before answering.
func (Greeter) Hello(ctx context.Context, in *HelloReq) (*HelloRes, error) {
	s := session.FromContext(ctx)
	if err := s.Bind(ctx, in.Name); err != nil {
		return nil, err
	}
	if err := s.Push("onWelcome", map[string]string{"to": in.Name}); err != nil {
		return nil, err
	}
	return &HelloRes{Greeting: "hello, " + in.Name}, nil
}

// Build an app, serve it on a TCP port and talk to it with the Go client.
func Example() {
	ctx := context.Background()
	app, err := nopal.New(nopal.Config{
		ServerType: "hello",
		Logger:     slog.New(slog.DiscardHandler), // quiet for the example
	})
	if err != nil {
		panic(err)
	}
	if err := app.Register(Greeter{}, backend.WithName("greeter")); err != nil {
		panic(err)
	}
	tcp := frontend.NewTCPAcceptor("127.0.0.1:0") // port 0: any free port
	app.AddAcceptor(tcp)
	// A server would call app.Run(ctx): it serves until SIGINT or SIGTERM,
	// then drains.
	if err := app.Start(ctx); err != nil {
		panic(err)
	}

	c, err := client.Dial(ctx, tcp.Addr().String())
	if err != nil {
		panic(err)
	}
	defer c.Close()
	var res HelloRes
	if err := c.Request(ctx, "greeter.hello", HelloReq{Name: "ann"}, &res); err != nil {
		panic(err)
	}
	push := <-c.Pushes() // pushed before the response, so already here
	fmt.Println(push.Route, string(push.Data))
	fmt.Println(res.Greeting)
	fmt.Println("bound:", app.Sessions().ByUID("ann") != nil)

	// Shutdown drains: every client gets a Kick.
	if err := app.Shutdown(ctx); err != nil {
		panic(err)
	}
	<-c.Done()
	fmt.Println("kicked:", errors.Is(c.Err(), client.ErrKicked))
	// Output:
	// onWelcome {"to":"ann"}
	// hello, ann
	// bound: true
	// kicked: true
}

// A client's connection drops; it resumes its session and gets the push it
// missed meanwhile, then the live ones.
func Example_resume() {
	ctx := context.Background()
	app, err := nopal.New(nopal.Config{
		ServerType: "hello",
		Logger:     slog.New(slog.DiscardHandler),
		// Resume is on by default; the grace is how long a dropped
		// session waits for its client.
		Resume: frontend.ResumeConfig{Grace: 30 * time.Second},
	})
	if err != nil {
		panic(err)
	}
	if err := app.Register(Greeter{}, backend.WithName("greeter")); err != nil {
		panic(err)
	}
	resumed := make(chan string, 1)
	app.OnSessionResume(func(_ context.Context, s *session.Session) { resumed <- s.UID() })
	tcp := frontend.NewTCPAcceptor("127.0.0.1:0")
	app.AddAcceptor(tcp)
	if err := app.Start(ctx); err != nil {
		panic(err)
	}
	defer app.Shutdown(ctx)

	c, err := client.Dial(ctx, tcp.Addr().String(), client.WithAutoResume(10*time.Second))
	if err != nil {
		panic(err)
	}
	defer c.Close()
	if err := c.Request(ctx, "greeter.hello", &HelloReq{Name: "ann"}, nil); err != nil {
		panic(err)
	}
	fmt.Println("push", (<-c.Pushes()).Route)

	c.Drop() // as a network failure would
	if _, err := app.PushToUsers(ctx, "onNews", map[string]string{"news": "while away"}, []string{"ann"}); err != nil {
		panic(err)
	}
	p := <-c.Pushes() // the client resumed by itself
	fmt.Println("resumed", <-resumed)
	fmt.Printf("push %s %s\n", p.Route, p.Data)
	// Output:
	// push onWelcome
	// resumed ann
	// push onNews {"news":"while away"}
}
