package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/nopal-dev/nopal/bindings"
)

// presenceCmd is `node presence`: the users online in a cluster (bound to a
// session on some frontend), from the bindings bucket; -follow then prints
// every change until interrupted.
func presenceCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("presence", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var bf busFlags
	bf.register(fs, false)
	follow := fs.Bool("follow", false, "then print every change (online, offline, moved) until interrupted")
	count := fs.Bool("count", false, "print only the number of users online")
	asJSON := fs.Bool("json", false, "print JSON lines")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("presence: unexpected arguments %q", fs.Args())
	}
	if *count && *follow {
		return fmt.Errorf("presence: -count goes without -follow")
	}
	// -follow runs until interrupted: end it cleanly, leaving the bus.
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	bus, err := connectBus(cctx, bf, "presence")
	if err != nil {
		return err
	}
	defer bus.Close()
	p := bindings.NewClusterPresence(bus, nil)
	defer p.Stop()
	if err := p.Ready(cctx); err != nil {
		return fmt.Errorf("presence: reading the bindings: %w", err)
	}
	enc := json.NewEncoder(stdout)
	if !*follow {
		users, err := p.List(cctx)
		if err != nil {
			return err
		}
		switch {
		case *count && *asJSON:
			return enc.Encode(map[string]int{"online": len(users)})
		case *count:
			_, err := fmt.Fprintln(stdout, len(users))
			return err
		case *asJSON:
			for _, uid := range slices.Sorted(maps.Keys(users)) {
				if err := enc.Encode(bindings.PresenceEvent{Kind: bindings.PresenceOnline, UID: uid, Frontend: users[uid], Initial: true}); err != nil {
					return err
				}
			}
			return nil
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "UID\tFRONTEND")
		for _, uid := range slices.Sorted(maps.Keys(users)) {
			fmt.Fprintf(tw, "%s\t%s\n", uid, users[uid])
		}
		fmt.Fprintf(tw, "%d online\n", len(users))
		return tw.Flush()
	}
	events, err := p.Watch(ctx)
	if err != nil {
		return err
	}
	for ev := range events {
		if *asJSON {
			if err := enc.Encode(ev); err != nil {
				return err
			}
			continue
		}
		if _, err := fmt.Fprintf(stdout, "%s %s\n", time.Now().Format("15:04:05.000"), ev); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil // interrupted: the normal end of -follow
	}
	return fmt.Errorf("presence: the watch ended: %w", bindings.ErrPresenceStopped)
}
