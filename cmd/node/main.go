package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

func main() {
	os.Exit(exitCode(run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr), os.Stderr))
}

// exitCode is the process's exit code for run's error, which it prints:
// 0 for none and for -h (the flags were printed), 1 otherwise.
func exitCode(err error, stderr io.Writer) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	}
	fmt.Fprintln(stderr, "node:", err)
	return 1
}

const usage = `usage: node <command> [flags]

commands:
  serve    run servers: the chat example's connector and room on an embedded
           NATS by default (-type chat: the standalone chat server)
  client   interactive client for a Pitaya-protocol server
  servers  list the servers of a cluster
  replay   print the traffic a cluster recorded (-follow to tail it live)
  jobs     reliable RPC jobs: enqueue, get, wait, list, retry, cancel
  nats     a NATS server with JetStream alone, for servers in processes of
           their own (stopping any of them leaves the bus up)
  console  the web console of a cluster: servers, users, groups, jobs,
           live traffic (http://127.0.0.1:3280)
  routes   the routes of a cluster's servers (or of the examples), with their types
  presence the users online in a cluster (-follow for who comes and goes)

run 'node <command> -h' for the flags of a command`

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return errors.New("no command")
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], stderr)
	case "client":
		return repl(ctx, args[1:], stdin, stdout, stderr)
	case "servers":
		return servers(ctx, args[1:], stdout, stderr)
	case "replay":
		return replay(ctx, args[1:], stdout, stderr)
	case "jobs":
		return jobs(ctx, args[1:], stdout, stderr)
	case "nats":
		return natsServer(ctx, args[1:], stderr)
	case "console":
		return consoleCmd(ctx, args[1:], stdout, stderr)
	case "routes":
		return routesCmd(ctx, args[1:], stdout, stderr)
	case "presence":
		return presenceCmd(ctx, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, usage)
		return nil
	}
	fmt.Fprintln(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

// newLogger builds the process logger from the --log-format and
// --log-level flags. Durations print as Go durations ("10s", "1.5ms") in
// both formats: slog's JSON handler alone would print nanoseconds
// ("timeout":10000000000).
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv, ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Value.Kind() == slog.KindDuration {
			a.Value = slog.StringValue(a.Value.Duration().String())
		}
		return a
	}}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format must be text or json, not %q", format)
}
