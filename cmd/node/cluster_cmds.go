package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nopal-dev/nopal/discovery"
	"github.com/nopal-dev/nopal/stream"
)

// connectBus connects a command to the bus: these commands never start an
// embedded server of their own, they need the cluster's.
func connectBus(ctx context.Context, b busFlags, role string) (*stream.Bus, error) {
	if b.url == "" {
		return nil, errors.New("-nats is required (or $NATS_URL): the URL of the cluster's NATS; 'node serve -nats-listen ADDR' and 'node nats' open one")
	}
	var r [4]byte
	_, _ = rand.Read(r[:])
	return stream.Connect(ctx, b.config(role+"-"+hex.EncodeToString(r[:])))
}

// servers lists the servers of a cluster as discovery sees them.
func servers(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("servers", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var bf busFlags
	bf.register(fs, false)
	asJSON := fs.Bool("json", false, "print JSON lines")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	bus, err := connectBus(ctx, bf, "servers")
	if err != nil {
		return err
	}
	defer bus.Close()
	list, err := discovery.List(ctx, bus)
	if err != nil {
		return err
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Type+list[i].ID < list[j].Type+list[j].ID })
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, s := range list {
			if err := enc.Encode(s); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTYPE\tFRONTEND\tHOST\tVERSION\tMETADATA")
	for _, s := range list {
		var md []string
		for k, v := range s.Metadata {
			md = append(md, k+"="+v)
		}
		sort.Strings(md)
		fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\t%s\n", s.ID, s.Type, s.Frontend, s.Hostname, s.Version, strings.Join(md, ","))
	}
	return tw.Flush()
}

// replay prints the traffic the cluster recorded.
func replay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var bf busFlags
	bf.register(fs, false)
	since := fs.String("since", "", "start: a duration ago (10m) or an RFC 3339 time (default: the beginning)")
	until := fs.String("until", "", "end: a duration ago or an RFC 3339 time (default: now)")
	route := fs.String("route", "", "only this route (or routes under it: room.room)")
	uid := fs.String("uid", "", "only this user")
	server := fs.String("server", "", "only this server (recording it, or named in the subject)")
	follow := fs.Bool("follow", false, "keep printing live traffic")
	asJSON := fs.Bool("json", false, "print JSON lines")
	if err := fs.Parse(args); err != nil {
		return err
	}
	f := stream.Filter{Route: *route, UID: *uid, Server: *server, Follow: *follow}
	var err error
	if f.Since, err = parseWhen(*since); err != nil {
		return fmt.Errorf("-since: %w", err)
	}
	if f.Until, err = parseWhen(*until); err != nil {
		return fmt.Errorf("-until: %w", err)
	}
	bus, err := connectBus(ctx, bf, "replay")
	if err != nil {
		return err
	}
	defer bus.Close()
	enc := json.NewEncoder(stdout)
	return stream.Replay(ctx, bus, f, func(e stream.Entry) error {
		if *asJSON {
			return enc.Encode(e)
		}
		_, err := fmt.Fprintln(stdout, formatEntry(e))
		return err
	})
}

func formatEntry(e stream.Entry) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %-7s", e.Time.Format("15:04:05.000000"), e.Kind)
	if e.Route != "" {
		fmt.Fprintf(&b, " %s", e.Route)
	}
	if e.CallKind != "" {
		fmt.Fprintf(&b, " (%s)", e.CallKind)
	}
	if e.UID != "" {
		fmt.Fprintf(&b, " uid=%s", e.UID)
	}
	if len(e.UIDs) > 0 {
		fmt.Fprintf(&b, " uids=%s", strings.Join(e.UIDs, ","))
	}
	if e.Session != 0 {
		fmt.Fprintf(&b, " session=%d", e.Session)
	}
	if e.Frontend != "" {
		fmt.Fprintf(&b, " frontend=%s", e.Frontend)
	}
	if e.Source != "" && e.Source != e.Frontend {
		fmt.Fprintf(&b, " from=%s", e.Source)
	}
	fmt.Fprintf(&b, " by=%s", e.Recorder)
	if e.Error != nil {
		fmt.Fprintf(&b, " error=%s %q", e.Error.Code, e.Error.Msg)
	}
	if len(e.Payload) > 0 {
		fmt.Fprintf(&b, " %s", e.Payload)
	}
	return b.String()
}

func parseWhen(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return time.Now().Add(-d), nil
	}
	return time.Parse(time.RFC3339, s)
}
