package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/nopal-dev/nopal"
	"github.com/nopal-dev/nopal/backend"
	"github.com/nopal-dev/nopal/backend/protos"
	"github.com/nopal-dev/nopal/discovery"
	"github.com/nopal-dev/nopal/examples/chat"
	"github.com/nopal-dev/nopal/examples/cluster"
	rewards "github.com/nopal-dev/nopal/examples/reliable"
	"github.com/nopal-dev/nopal/stream"
)

// routeDocs is the documentation of one server type's routes.
type routeDocs struct {
	Type   string         `json:"type"`
	Server string         `json:"server,omitempty"` // the server that answered ("" for the examples)
	Docs   map[string]any `json:"docs"`             // nopal.App.Documentation(true)
}

// routesCmd prints the routes of a running cluster's server types, with
// their input and output types: it asks one server of each type (the
// smallest id, or -server) for its documentation on the bus, calling the
// built-in remote <type>.sys.docs. Without -nats it prints the routes of the
// examples' server types (the types 'node serve' runs) without starting
// anything.
func routesCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("routes", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var bf busFlags
	bf.register(fs, false)
	fs.Lookup("nats").Usage = "NATS URL of a running cluster, e.g. nats://127.0.0.1:4222 for 'make run' (default $NATS_URL; empty: the routes of the examples' types, nothing running)"
	types := fs.String("type", "", "only these server types, comma-separated (default: every type; without -nats: connector, room, rewards and chat)")
	server := fs.String("server", "", "ask this server for its type's routes (default: the type's server with the smallest id)")
	asJSON := fs.Bool("json", false, "print one JSON line per server type: its documentation as the docs route answers it")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for each server's answer")
	builtin := fs.Bool("builtin", false, "list the built-in routes too, which every type serves: <type>.sys.docs (the docs route of Pitaya's protobuf client, pitaya-cli -docs) and <type>.sys.descriptors")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("routes: unexpected arguments %q", fs.Args())
	}
	only := splitList(*types)
	var (
		list []routeDocs
		err  error
	)
	if bf.url == "" {
		if *server != "" {
			return errors.New("routes: -server needs -nats")
		}
		list, err = exampleDocs(only)
	} else {
		list, err = clusterDocs(ctx, bf, only, *server, *timeout, stderr)
	}
	if len(list) == 0 && err == nil {
		err = errors.New("routes: no server type to document")
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, d := range list {
			if werr := enc.Encode(d); werr != nil {
				return werr
			}
		}
		return err
	}
	if werr := printRoutes(stdout, list, *builtin); werr != nil {
		return werr
	}
	return err
}

// clusterDocs asks one server of each type for its documentation. A type
// whose server does not answer is reported on stderr and in the error, and
// the others are still listed.
func clusterDocs(ctx context.Context, bf busFlags, only []string, serverID string, timeout time.Duration, stderr io.Writer) ([]routeDocs, error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	bus, err := connectBus(cctx, bf, "routes")
	if err != nil {
		return nil, err
	}
	defer bus.Close()
	servers, err := discovery.List(cctx, bus)
	if err != nil {
		return nil, err
	}
	// One server per type: the smallest id, or the one asked for.
	pick := map[string]discovery.Server{}
	for _, s := range servers {
		if serverID != "" && s.ID != serverID {
			continue
		}
		if len(only) > 0 && !slices.Contains(only, s.Type) {
			continue
		}
		if p, ok := pick[s.Type]; !ok || s.ID < p.ID {
			pick[s.Type] = s
		}
	}
	if serverID != "" && len(pick) == 0 {
		return nil, fmt.Errorf("routes: no server %q in the cluster", serverID)
	}
	types := make([]string, 0, len(pick))
	for t := range pick {
		types = append(types, t)
	}
	sort.Strings(types)
	var out []routeDocs
	var errs []error
	for _, t := range types {
		s := pick[t]
		docs, err := askDocs(ctx, bus, s, timeout)
		if err != nil {
			fmt.Fprintf(stderr, "routes: %s (%s): %v\n", t, s.ID, err)
			errs = append(errs, fmt.Errorf("%s: %w", s.ID, err))
			continue
		}
		out = append(out, routeDocs{Type: t, Server: s.ID, Docs: docs})
	}
	return out, errors.Join(errs...)
}

// askDocs calls the built-in remote <type>.sys.docs on server s.
func askDocs(ctx context.Context, bus *stream.Bus, s discovery.Server, timeout time.Duration) (map[string]any, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	route := s.Type + "." + nopal.DocsRoute
	dl, _ := ctx.Deadline()
	call, err := proto.Marshal(&stream.Call{
		Kind:             stream.CallKind_CALL_KIND_USER,
		Route:            route,
		DeadlineUnixNano: dl.UnixNano(),
		SentUnixNano:     time.Now().UnixNano(),
		SourceId:         "node-routes",
	})
	if err != nil {
		return nil, err
	}
	msg, err := bus.Request(ctx, bus.ServerRPC(s.ID), call, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", route, err)
	}
	var reply stream.Reply
	if err := proto.Unmarshal(msg.Data, &reply); err != nil {
		return nil, fmt.Errorf("%s: malformed reply: %w", route, err)
	}
	if e := reply.GetError(); e != nil {
		return nil, fmt.Errorf("%s: %s %s (a server older than the docs route?)", route, e.GetCode(), e.GetMsg())
	}
	var doc protos.Doc
	if err := proto.Unmarshal(reply.GetPayload(), &doc); err != nil {
		return nil, fmt.Errorf("%s: not a protos.Doc: %w", route, err)
	}
	var docs map[string]any
	if err := json.Unmarshal([]byte(doc.GetDoc()), &docs); err != nil {
		return nil, fmt.Errorf("%s: the documentation is not JSON: %w", route, err)
	}
	return docs, nil
}

// exampleDocs documents the examples' server types: their apps are built
// and their components registered, as 'node serve' does, but not started.
func exampleDocs(only []string) ([]routeDocs, error) {
	types := only
	if len(types) == 0 {
		types = []string{cluster.ConnectorType, cluster.RoomType, rewards.RewardsType, chat.ServerType}
	}
	var out []routeDocs
	for _, t := range types {
		app, err := nopal.New(nopal.Config{ServerType: t, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			return out, err
		}
		switch t {
		case cluster.ConnectorType:
			cluster.SetupConnector(app)
			err = rewards.SetupClaims(app)
		case cluster.RoomType:
			err = cluster.SetupRoom(app)
		case rewards.RewardsType:
			_, err = rewards.SetupRewards(app)
		case chat.ServerType:
			err = chat.Setup(context.Background(), app)
		default:
			return out, fmt.Errorf("routes: unknown example type %q (connector, room, rewards or chat; -nats asks a running cluster)", t)
		}
		if err != nil {
			return out, fmt.Errorf("routes: %s: %w", t, err)
		}
		docs, err := app.Documentation(true)
		if err != nil {
			return out, err
		}
		out = append(out, routeDocs{Type: t, Docs: docs})
	}
	return out, nil
}

// printRoutes prints one line per route: its kind (handler, notify for a
// handler that answers nothing, remote), its input and its output types;
// the built-in routes only with builtin.
func printRoutes(w io.Writer, list []routeDocs, builtin bool) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROUTE\tKIND\tSERVER\tINPUT\tOUTPUT")
	for _, d := range list {
		server := d.Server
		if server == "" {
			server = "-"
		}
		for _, section := range []string{"handlers", "remotes"} {
			routes, _ := d.Docs[section].(map[string]any)
			names := make([]string, 0, len(routes))
			for r := range routes {
				if builtin || !isBuiltin(r) {
					names = append(names, r)
				}
			}
			sort.Strings(names)
			for _, r := range names {
				doc, _ := routes[r].(map[string]any)
				outs, _ := doc["output"].([]any)
				kind := "handler"
				switch {
				case section == "remotes":
					kind = "remote"
				case len(outs) == 0:
					kind = "notify"
				}
				out := "-"
				if len(outs) > 0 {
					out = typeSummary(outs[0])
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r, kind, server, typeSummary(doc["input"]), out)
			}
		}
	}
	return tw.Flush()
}

// isBuiltin reports whether route (svtype.component.method) is one of the
// built-in routes every server serves.
func isBuiltin(route string) bool {
	parts := strings.Split(route, ".")
	return len(parts) == 3 && parts[1] == backend.SysComponent
}

// typeSummary names a documented type: a struct by its type name (the one
// key of its named form), "-" for none, anything else as compact JSON.
func typeSummary(v any) string {
	switch v := v.(type) {
	case nil:
		return "-"
	case string:
		return v
	case map[string]any:
		if len(v) == 1 {
			for k := range v {
				if strings.HasPrefix(k, "*") || strings.Contains(k, ".") {
					return k
				}
			}
		}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
