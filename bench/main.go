package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

const usage = `usage: bench <command> [flags]

commands:
  server       run the Nopal echo server (route echo.echo) and print "ADDR host:port"
  echo-server  run the plain TCP echo server (the floor) and print "ADDR host:port"
  cluster-server
               run cluster apps (a backend "echo", frontends "front") or a NATS
               server; print "ADDR host:port" per frontend, "NATS url", "READY"
  jobs-server  run an embedded NATS server (file storage) and a reliable.Worker
               of server type "bench"; print "NATS url", "READY"
  suite        run every scenario against both servers and print one table
  resume       session resume: its cost when nobody drops, and the time to
               resume a session that missed pushes, beside the TCP-echo floor
  resume-server
               the server of the resume benchmark
  durable      the cost of durable pushes (every push also kept in the bus)
  storm        a reconnect storm: clients on two frontends drop at once and
               resume; counts lost and repeated pushes and stale bindings
  chat         hold -conns (20,000) TCP and WebSocket connections in rooms of
               50 sending 1 message/s each to one chat-server, next to the
               relay floor, and print one table (not part of the suite)
  chat-server  run the Nopal chat app of the chat command; print "ADDR" for
               its TCP then its WebSocket acceptor, then "READY"
  chat-floor   run the chat command's floor, a plain relay; same output

Servers serve until stdin is closed or they get SIGTERM/SIGINT.
Run 'bench <command> -h' for the flags of a command.`

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "bench:", err)
		}
		os.Exit(1)
	}
}

// run dispatches a subcommand. The test binary calls it too when it is
// re-executed as a server subprocess (see bench_test.go).
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return errors.New("no command")
	}
	switch args[0] {
	case "server":
		return cmdServer(args[1:], stdin, stdout, stderr)
	case "echo-server":
		return cmdEchoServer(args[1:], stdin, stdout, stderr)
	case "cluster-server":
		return cmdClusterServer(args[1:], stdin, stdout, stderr)
	case "jobs-server":
		return cmdJobsServer(args[1:], stdin, stdout, stderr)
	case "suite":
		return cmdSuite(args[1:], stdout, stderr)
	case "resume":
		return cmdResume(args[1:], stdout, stderr)
	case "durable":
		return cmdDurable(args[1:], stdout, stderr)
	case "storm":
		return cmdStorm(args[1:], stdout, stderr)
	case "resume-server":
		return cmdResumeServer(args[1:], stdin, stdout, stderr)
	case "chat":
		return cmdChat(args[1:], stdout, stderr)
	case "chat-server":
		return cmdChatServer(args[1:], stdin, stdout, stderr)
	case "chat-floor":
		return cmdChatFloor(args[1:], stdin, stdout, stderr)
	case "idle":
		return cmdIdleConns(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, usage)
		return nil
	}
	fmt.Fprintln(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}
