package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/nopal-dev/nopal/client"
)

const replHelp = `commands:
  request <route> [json]   send a request and print the response (alias: r)
  notify <route> [json]    send a notify (alias: n)
  drop                     cut the connection as a network failure would: the
                           client resumes its session (see -resume)
  help                     this text
  quit                     disconnect (also: end of input)
pushes from the server are printed as they arrive, and so is what happens to
the connection, at once:
  connection lost: resuming…  the connection dropped; the session is resuming
  resumed the session on ...  on the same frontend, or another (-resume-addrs)
  kicked by the server        a kick; a server that drains or shuts down kicks
                              every client
  resume failed: ...          no frontend resumed the session (-resume)
  connection closed: ...      the connection ended for another reason
then "disconnected": from there on commands fail; quit or end the input`

// connState is what the REPL knows of its connection, from the client's
// state events.
type connState struct {
	mu      sync.Mutex
	changed chan struct{} // closed and replaced at each event
	resumed int           // resumes reported
	final   error         // why the client ended, once reported
	ended   chan struct{} // closed once the final event is reported
}

func newConnState() *connState {
	return &connState{changed: make(chan struct{}), ended: make(chan struct{})}
}

// record notes an event, once it is reported.
func (s *connState) record(e client.StateEvent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case e.Kind == client.StateResumed:
		s.resumed++
	case e.Kind.Final():
		s.final = e.Err
		if s.final == nil { // the client always gives a reason; to be safe
			s.final = errors.New("the connection ended")
		}
		close(s.ended)
	}
	close(s.changed)
	s.changed = make(chan struct{})
}

// snapshot returns the resumes reported and why the client ended (nil
// while it has not).
func (s *connState) snapshot() (resumed int, final error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.resumed, s.final
}

// wait waits until done holds for the reported resumes and end.
func (s *connState) wait(ctx context.Context, done func(resumed int, final error) bool) error {
	for {
		s.mu.Lock()
		ok, changed := done(s.resumed, s.final), s.changed
		s.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("waiting for the connection: %w", ctx.Err())
		}
	}
}

// describe is the line the REPL prints for a state event ("" for none);
// at is the address the client was connected to.
func describe(e client.StateEvent, at string) string {
	switch e.Kind {
	case client.StateResuming:
		return fmt.Sprintf("connection lost: resuming… (%v)", e.Err)
	case client.StateResumed:
		if e.Addr == at {
			return fmt.Sprintf("resumed the session on %s (the same frontend)", e.Addr)
		}
		return fmt.Sprintf("resumed the session on %s (another frontend; was %s)", e.Addr, at)
	case client.StateKicked:
		return "kicked by the server (a server that drains or shuts down kicks every client)"
	case client.StateLost:
		return fmt.Sprintf("resume failed: %v", e.Err)
	case client.StateClosed:
		if errors.Is(e.Err, client.ErrClosed) {
			return "" // the REPL closed it: quit or end of input
		}
		return fmt.Sprintf("connection closed: %v", e.Err)
	}
	return ""
}

// repl is an interactive client: it reads commands from stdin and prints
// responses, pushes and what happens to the connection to stdout.
func repl(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("client", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:3250", `server address: host:port for TCP, ws://host:port/ for WebSocket`)
	timeout := fs.Duration("timeout", 5*time.Second, "request timeout")
	resume := fs.Duration("resume", client.DefaultResumeWithin, "when the connection drops, resume the session within this long (0: end instead)")
	also := fs.String("resume-addrs", "", "comma-separated addresses of other frontends to resume on")
	if err := fs.Parse(args); err != nil {
		return err
	}

	var out sync.Mutex
	say := func(format string, a ...any) {
		out.Lock()
		defer out.Unlock()
		fmt.Fprintf(stdout, format+"\n", a...)
	}

	// The client's state events are printed as they come, on a goroutine
	// of the client's: the REPL may be waiting for input meanwhile.
	st := newConnState()
	pushesDone := make(chan struct{})
	at := *addr // only the state function uses it
	onState := func(e client.StateEvent) {
		if e.Kind.Final() {
			<-pushesDone // the pushes that came before the end go first
		}
		if line := describe(e, at); line != "" {
			say("%s", line)
			if e.Kind.Final() {
				say("disconnected")
			}
		}
		if e.Kind == client.StateResumed {
			at = e.Addr
		}
		st.record(e)
	}

	opts := []client.Option{client.WithOnState(onState)}
	if *resume > 0 {
		var others []string
		if *also != "" {
			others = strings.Split(*also, ",")
		}
		opts = append(opts, client.WithAutoResume(*resume, others...))
	}
	c, err := client.Dial(ctx, *addr, opts...)
	if err != nil {
		return err
	}
	say("connected to %s (serializer %s, heartbeat %ds); type help", *addr, c.Handshake().Sys.Serializer, c.Handshake().Sys.Heartbeat)

	defer func() {
		_ = c.Close()
		<-st.ended // nothing prints after repl returns
	}()
	go func() {
		defer close(pushesDone)
		for p := range c.Pushes() {
			say("push %s %s", p.Route, p.Data)
		}
	}()

	lines := bufio.NewScanner(stdin)
	lines.Buffer(make([]byte, 64<<10), 1<<20)
	for lines.Scan() {
		cmd, rest, _ := strings.Cut(strings.TrimSpace(lines.Text()), " ")
		route, data, _ := strings.Cut(strings.TrimSpace(rest), " ")
		data = strings.TrimSpace(data)
		if data == "" {
			data = "{}"
		}
		switch cmd {
		case "request", "r", "notify", "n", "drop":
			if c.Err() != nil { // the client has ended
				select {
				case <-st.ended: // the end is printed first
				case <-ctx.Done():
					return ctx.Err()
				}
				_, final := st.snapshot()
				say("error: disconnected (%v); type quit or end the input", final)
				continue
			}
		}
		switch cmd {
		case "":
		case "help", "?":
			say("%s", replHelp)
		case "drop":
			if *resume <= 0 {
				say("dropping the connection (no -resume: the client ends)")
				c.Drop()
				if err := st.wait(ctx, func(_ int, final error) bool { return final != nil }); err != nil {
					return err
				}
				continue
			}
			before, _ := st.snapshot()
			c.Drop()
			// Wait for the resume (or the end) before the next command.
			if err := st.wait(ctx, func(resumed int, final error) bool { return resumed > before || final != nil }); err != nil {
				return err
			}
			if _, final := st.snapshot(); final == nil {
				say("dropped and resumed (%d pushes received in this session)", c.PushesReceived())
			}
		case "quit", "exit":
			return nil
		case "request", "r":
			if route == "" {
				say("usage: request <route> [json]")
				continue
			}
			rctx, cancel := context.WithTimeout(ctx, *timeout)
			resp, err := c.RequestRaw(rctx, route, []byte(data))
			cancel()
			if err != nil {
				say("error %v", err)
				continue
			}
			say("response %s", resp)
		case "notify", "n":
			if route == "" {
				say("usage: notify <route> [json]")
				continue
			}
			if err := c.Notify(ctx, route, []byte(data)); err != nil {
				say("error %v", err)
			}
		default:
			say("unknown command %q; type help", cmd)
		}
	}
	if err := lines.Err(); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}
