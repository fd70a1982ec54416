package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/nopal-dev/nopal/console"
	"github.com/nopal-dev/nopal/stream"
)

// consoleCmd is `node console`: the web console of a running cluster.
func consoleCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("console", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var bf busFlags
	bf.register(fs, false)
	addr := fs.String("addr", "127.0.0.1:3280", "HTTP address of the console (a non-loopback address needs -console-token)")
	token := fs.String("console-token", os.Getenv("NOPAL_CONSOLE_TOKEN"), "token the console asks for: on every request off loopback, and for kicks, retries and cancels everywhere (default $NOPAL_CONSOLE_TOKEN; empty: a random one for the actions, printed in the URL)")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("console: unexpected arguments %q", fs.Args())
	}
	log, err := newLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	bus, err := connectBus(ctx, bf, "console")
	if err != nil {
		return err
	}
	defer bus.Close()
	c, err := console.New(bus, console.Config{Token: *token, Logger: log})
	if err != nil {
		return err
	}
	ln, err := c.Listen(*addr)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, "console:", consoleURL(ln.Addr(), c.Token(), *token != ""))
	log.Info("ready", "addr", ln.Addr().String())
	return c.ServeListener(ctx, ln)
}

// consoleURL is the page's address; it carries the token when the console
// made it (an operator's own token is not printed).
func consoleURL(a net.Addr, token string, given bool) string {
	host := a.String()
	if ta, ok := a.(*net.TCPAddr); ok && ta.IP.IsUnspecified() {
		host = net.JoinHostPort("127.0.0.1", fmt.Sprint(ta.Port))
	}
	u := "http://" + host + "/"
	if !given {
		u += "#token=" + token
	}
	return u
}

// serveConsole starts the console of `node serve -console-addr` on bus
// (the process's first server's): it listens at once, so a bad address
// fails the start, and serves until ctx ends.
func serveConsole(ctx context.Context, bus *stream.Bus, addr, token string, log *slog.Logger) error {
	c, err := console.New(bus, console.Config{Token: token, Logger: log})
	if err != nil {
		return err
	}
	ln, err := c.Listen(addr)
	if err != nil {
		return err
	}
	log.Info("console listening", "url", consoleURL(ln.Addr(), c.Token(), token != ""))
	go func() {
		if err := c.ServeListener(ctx, ln); err != nil {
			log.Error("console stopped", "err", err)
		}
	}()
	return nil
}
