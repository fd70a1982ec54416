package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/nopal-dev/nopal/reliable"
)

const jobsUsage = `usage: node jobs <command> [flags] [args]

commands:
  enqueue ROUTE JSON   enqueue a reliable RPC (route svtype.component.method); prints the jid
  get JID              show a job
  wait JID             wait until a job ends, then show it
  list                 list jobs (-state, -route, -since, -limit)
  retry JID            run a dead or failed job again
  cancel JID           cancel a queued job

every command takes -nats URL (default $NATS_URL) and -json;
run 'node jobs <command> -h' for its flags`

// jobs is `node jobs`: reliable RPC jobs from the command line.
func jobs(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, jobsUsage)
		return errors.New("jobs: no command")
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, jobsUsage)
		return nil
	}
	fs := flag.NewFlagSet("jobs "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var bf busFlags
	bf.register(fs, false)
	asJSON := fs.Bool("json", false, "print JSON")
	jid := fs.String("jid", "", "enqueue: the job id (an idempotency key; default a new ULID)")
	attempts := fs.Int("attempts", 0, "enqueue: max attempts (default 5)")
	delay := fs.Duration("delay", 0, "enqueue: run no sooner than this from now")
	state := fs.String("state", "", "list: comma-separated states (queued, running, retrying, succeeded, failed, dead, cancelled)")
	route := fs.String("route", "", "list: a route, or a prefix ending in '.'")
	since := fs.String("since", "", "list: jobs created since a duration ago (1h) or an RFC 3339 time")
	limit := fs.Int("limit", 100, "list: jobs per page")
	timeout := fs.Duration("timeout", 0, "wait: give up after this long (0: never)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	bus, err := connectBus(ctx, bf, "jobs")
	if err != nil {
		return err
	}
	defer bus.Close()
	c, err := reliable.NewClient(ctx, bus)
	if err != nil {
		return err
	}
	show := func(j reliable.Job) error {
		if *asJSON {
			return json.NewEncoder(stdout).Encode(j)
		}
		printJob(stdout, j)
		return nil
	}
	arg := func(i int, name string) (string, error) {
		if fs.NArg() <= i {
			return "", fmt.Errorf("jobs %s: missing %s", cmd, name)
		}
		return fs.Arg(i), nil
	}
	switch cmd {
	case "enqueue":
		r, err := arg(0, "ROUTE")
		if err != nil {
			return err
		}
		payload := "{}"
		if fs.NArg() > 1 {
			payload = fs.Arg(1)
		}
		if !json.Valid([]byte(payload)) {
			return fmt.Errorf("jobs enqueue: the argument is not JSON: %s", payload)
		}
		var opts []reliable.Option
		if *jid != "" {
			opts = append(opts, reliable.WithJID(*jid))
		}
		if *attempts > 0 {
			opts = append(opts, reliable.WithMaxAttempts(*attempts))
		}
		if *delay > 0 {
			opts = append(opts, reliable.WithDelay(*delay))
		}
		id, err := c.Enqueue(ctx, r, json.RawMessage(payload), opts...)
		if err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(stdout).Encode(map[string]string{"jid": id})
		}
		fmt.Fprintln(stdout, id)
		return nil
	case "get", "wait":
		id, err := arg(0, "JID")
		if err != nil {
			return err
		}
		var j reliable.Job
		if cmd == "get" {
			j, err = c.Get(ctx, id)
		} else {
			wctx := ctx
			if *timeout > 0 {
				var cancel context.CancelFunc
				wctx, cancel = context.WithTimeout(ctx, *timeout)
				defer cancel()
			}
			j, err = c.Wait(wctx, id)
		}
		if err != nil {
			return err
		}
		return show(j)
	case "list":
		f := reliable.Filter{Route: *route, Limit: *limit}
		for _, s := range splitList(*state) {
			f.States = append(f.States, reliable.State(s))
		}
		if f.Since, err = parseWhen(*since); err != nil {
			return fmt.Errorf("-since: %w", err)
		}
		page, err := c.List(ctx, f)
		if err != nil {
			return err
		}
		if *asJSON {
			enc := json.NewEncoder(stdout)
			for _, j := range page.Jobs {
				if err := enc.Encode(j); err != nil {
					return err
				}
			}
			return nil
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "JID\tROUTE\tSTATE\tATTEMPTS\tCREATED\tLAST ERROR")
		for _, j := range page.Jobs {
			last := ""
			if j.LastError != nil {
				last = j.LastError.Code + " " + j.LastError.Message
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%s\t%s\n", j.JID, j.Route, j.State, j.Tries(), j.MaxAttempts, j.Created.Format(time.RFC3339), last)
		}
		if page.Next != "" {
			fmt.Fprintf(tw, "(more: the next page starts after %s)\n", page.Next)
		}
		return tw.Flush()
	case "retry", "cancel":
		id, err := arg(0, "JID")
		if err != nil {
			return err
		}
		if cmd == "retry" {
			err = c.Retry(ctx, id)
		} else {
			err = c.Cancel(ctx, id)
		}
		if err != nil {
			return err
		}
		j, err := c.Get(ctx, id)
		if err != nil {
			return err
		}
		return show(j)
	}
	fmt.Fprintln(stderr, jobsUsage)
	return fmt.Errorf("jobs: unknown command %q", cmd)
}

func printJob(w io.Writer, j reliable.Job) {
	fmt.Fprintf(w, "jid       %s\nroute     %s\nstate     %s\nattempts  %d of %d\ncreated   %s\nupdated   %s\n",
		j.JID, j.Route, j.State, j.Tries(), j.MaxAttempts, j.Created.Format(time.RFC3339Nano), j.Updated.Format(time.RFC3339Nano))
	if len(j.Arg) > 0 {
		fmt.Fprintf(w, "arg       %s\n", printable(j.Arg))
	}
	if len(j.Result) > 0 {
		fmt.Fprintf(w, "result    %s\n", printable(j.Result))
	}
	for _, a := range j.Attempts {
		line := fmt.Sprintf("attempt %d on %s at %s", a.N, a.Server, a.Started.Format(time.RFC3339Nano))
		if a.Error != nil {
			line += fmt.Sprintf(": %s %s", a.Error.Code, a.Error.Message)
		}
		if a.Skipped {
			line += " (skipped: not counted)"
		}
		fmt.Fprintln(w, line)
	}
}

func printable(b []byte) string {
	if json.Valid(b) {
		return string(b)
	}
	return fmt.Sprintf("%d bytes", len(b))
}
