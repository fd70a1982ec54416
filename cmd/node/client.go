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
pushes from the server are printed as they arrive`

// repl is an interactive client: it reads commands from stdin and prints
// responses and pushes to stdout.
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
	var opts []client.Option
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

	var out sync.Mutex
	say := func(format string, a ...any) {
		out.Lock()
		defer out.Unlock()
		fmt.Fprintf(stdout, format+"\n", a...)
	}
	say("connected to %s (serializer %s, heartbeat %ds); type help", *addr, c.Handshake().Sys.Serializer, c.Handshake().Sys.Heartbeat)

	pushesDone := make(chan struct{})
	defer func() {
		_ = c.Close()
		<-pushesDone // nothing prints after repl returns
	}()
	go func() {
		defer close(pushesDone)
		for {
			select {
			case p, ok := <-c.Pushes():
				if !ok {
					return
				}
				say("push %s %s", p.Route, p.Data)
			case <-c.Done():
				return
			}
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
		case "":
		case "help", "?":
			say("%s", replHelp)
		case "drop":
			before := c.Resumes()
			c.Drop()
			if *resume <= 0 {
				say("dropped")
				continue
			}
			// Wait for the resume (or the end) before the next command.
			for c.Resumes() == before && c.Err() == nil {
				select {
				case <-c.Done():
				case <-time.After(10 * time.Millisecond):
				}
			}
			if err := c.Err(); err != nil {
				say("dropped; the session is lost: %v", err)
				return nil
			}
			say("dropped and resumed (%d pushes received in this session)", c.PushesReceived())
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
		select {
		case <-c.Done():
			say("disconnected: %v", c.Err())
			return nil
		default:
		}
	}
	if err := lines.Err(); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}
