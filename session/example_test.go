package session_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/nopal-dev/nopal/session"
)

// printConn stands in for a frontend's connection: it prints what the
// session sends. A real frontend calls Pool.Closed once the connection is
// gone; printConn does it when kicked.
type printConn struct {
	name string
	gone func()
}

func (c *printConn) Push(route string, v any) error {
	fmt.Printf("%s <- push %s %v\n", c.name, route, v)
	return nil
}

func (c *printConn) Kick(context.Context) error {
	fmt.Printf("%s <- kick\n", c.name)
	if c.gone != nil {
		c.gone()
	}
	return nil
}

func (c *printConn) Close() error         { return nil }
func (c *printConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

func Example() {
	ctx := context.Background()
	pool := session.NewPool(slog.New(slog.DiscardHandler))
	pool.OnAfterSessionBind(func(_ context.Context, s *session.Session) {
		fmt.Println("bound:", s.UID())
	})
	pool.OnSessionClose(func(s *session.Session) {
		fmt.Println("gone:", s.UID())
	})

	s := pool.New(&printConn{name: "phone"})
	if err := s.Bind(ctx, "alice"); err != nil {
		fmt.Println(err)
	}
	s.Set("room", "lobby")
	_ = s.Push("chat.onMessage", "welcome")

	room, _ := session.Get[string](s, "room")
	fmt.Println("room:", room, "sessions:", pool.Count(), "alice found:", pool.ByUID("alice") == s)

	pool.Closed(s) // the frontend calls this when the connection ends
	fmt.Println("sessions:", pool.Count(), "alice found:", pool.ByUID("alice") != nil)
	// Output:
	// bound: alice
	// phone <- push chat.onMessage welcome
	// room: lobby sessions: 1 alice found: true
	// gone: alice
	// sessions: 0 alice found: false
}

// A uid has one session per pool: binding it again kicks the older
// session, and the older session's end leaves the newer one bound.
func ExampleSession_Bind_unique() {
	ctx := context.Background()
	pool := session.NewPool(slog.New(slog.DiscardHandler))

	phoneConn := &printConn{name: "phone"}
	phone := pool.New(phoneConn)
	phoneConn.gone = func() { pool.Closed(phone) }
	laptop := pool.New(&printConn{name: "laptop"})

	_ = phone.Bind(ctx, "alice")
	_ = laptop.Bind(ctx, "alice")

	fmt.Println("phone closed:", phone.Closed())
	fmt.Println("alice is on the laptop:", pool.ByUID("alice") == laptop)
	fmt.Println("sessions:", pool.Count())
	// Output:
	// phone <- kick
	// phone closed: true
	// alice is on the laptop: true
	// sessions: 1
}

func ExamplePool_OnSessionBind() {
	errBanned := errors.New("banned")
	pool := session.NewPool(slog.New(slog.DiscardHandler))
	pool.OnSessionBind(func(_ context.Context, _ *session.Session, uid string) error {
		if uid == "mallory" {
			return errBanned
		}
		return nil
	})

	s := pool.New(&printConn{name: "client"})
	err := s.Bind(context.Background(), "mallory")
	fmt.Println(err)
	fmt.Println("banned:", errors.Is(err, errBanned), "uid:", s.UID() == "")
	// Output:
	// session: bind of "mallory" vetoed: banned
	// banned: true uid: true
}

func ExampleSession_OnClose() {
	pool := session.NewPool(slog.New(slog.DiscardHandler))
	pool.OnSessionClose(func(*session.Session) { fmt.Println("pool hook") })

	s := pool.New(&printConn{name: "client"})
	s.OnClose(func() { fmt.Println("leave the room") })
	pool.Closed(s)
	pool.Closed(s) // a second call does nothing

	s.OnClose(func() { fmt.Println("late callback runs at once") })
	// Output:
	// leave the room
	// pool hook
	// late callback runs at once
}

func ExampleGet() {
	pool := session.NewPool(slog.New(slog.DiscardHandler))
	s := pool.New(&printConn{name: "client"})
	s.Set("level", 7)

	level, ok := session.Get[int](s, "level")
	fmt.Println(level, ok)
	name, ok := session.Get[string](s, "level") // wrong type
	fmt.Printf("%q %v\n", name, ok)
	// Output:
	// 7 true
	// "" false
}

func ExampleSession_Data() {
	pool := session.NewPool(slog.New(slog.DiscardHandler))
	s := pool.New(&printConn{name: "client"})
	s.SetData(map[string]any{"level": 7})

	data := s.Data() // a copy: changing it does not change the session
	data["level"] = 99
	fmt.Println(s.Get("level"))
	// Output:
	// 7 true
}

func ExampleFromContext() {
	pool := session.NewPool(slog.New(slog.DiscardHandler))
	s := pool.New(&printConn{name: "client"})

	// The frontend puts the session in the context of each handler call.
	handler := func(ctx context.Context) {
		_ = session.FromContext(ctx).Push("chat.onJoin", "hello")
	}
	handler(session.NewContext(context.Background(), s))
	fmt.Println(session.FromContext(context.Background()) == nil)
	// Output:
	// client <- push chat.onJoin hello
	// true
}
