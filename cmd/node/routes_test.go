package main

import (
	"context"
	"encoding/json"
	"io"
	"regexp"
	"strings"
	"testing"
)

// routeLine matches a line of 'node routes' for route with these columns.
func routeLine(route, kind, server, in, out string) *regexp.Regexp {
	return regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(route) + ` +` + kind + ` +` + regexp.QuoteMeta(server) +
		` +` + regexp.QuoteMeta(in) + ` +` + regexp.QuoteMeta(out) + `\s*$`)
}

func TestRoutesOfTheExamples(t *testing.T) {
	var out, errOut strings.Builder
	if err := routesCmd(context.Background(), []string{"-nats", ""}, &out, &errOut); err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	if strings.Contains(out.String(), ".sys.") {
		t.Errorf("the built-in routes are listed without -builtin:\n%s", out.String())
	}
	out.Reset()
	if err := routesCmd(context.Background(), []string{"-nats", "", "-builtin"}, &out, &errOut); err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	for _, re := range []*regexp.Regexp{
		routeLine("room.room.join", "handler", "-", "[]byte", "*chat.JoinResponse"),
		routeLine("room.room.message", "notify", "-", "*chat.UserMessage", "-"),
		routeLine("room.room.leave", "remote", "-", "*cluster.LeaveArg", "*cluster.Left"),
		routeLine("connector.claims.claim", "handler", "-", "*reliable.ClaimReq", "*reliable.ClaimRes"),
		routeLine("rewards.rewards.grant", "remote", "-", "*reliable.GrantArg", "*reliable.Granted"),
		routeLine("chat.room.join", "handler", "-", "[]byte", "*chat.JoinResponse"),
		// The built-in routes of every type, as Pitaya's protobuf client
		// finds them.
		routeLine("connector.sys.docs", "handler", "-", "-", "*protos.Doc"),
		routeLine("room.sys.descriptors", "handler", "-", "*protos.ProtoNames", "*protos.ProtoDescriptors"),
		routeLine("room.sys.docs", "remote", "-", "-", "*protos.Doc"),
	} {
		if !re.MatchString(out.String()) {
			t.Errorf("no line matching %s in:\n%s", re, out.String())
		}
	}

	out.Reset()
	if err := routesCmd(context.Background(), []string{"-nats", "", "-type", "room", "-json"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var d routeDocs
	if err := json.Unmarshal([]byte(out.String()), &d); err != nil || d.Type != "room" {
		t.Fatalf("-json: %v %+v\n%s", err, d, out.String())
	}
	handlers, _ := d.Docs["handlers"].(map[string]any)
	join, _ := handlers["room.room.join"].(map[string]any)
	if join["input"] != "[]byte" {
		t.Errorf("room.room.join in -json: %v", handlers["room.room.join"])
	}

	for _, args := range [][]string{
		{"-nats", "", "-type", "nowhere"},
		{"-nats", "", "-server", "room-1"},
		{"-nats", "", "extra"},
	} {
		if err := routesCmd(context.Background(), args, io.Discard, io.Discard); err == nil {
			t.Errorf("routes %q: no error", args)
		}
	}
}

// node routes asks the servers of a running cluster for their routes over
// the bus.
func TestRoutesOfACluster(t *testing.T) {
	n := startServe(t, "-nats-listen", "127.0.0.1:0")
	if n.nats == "" {
		t.Fatal("serve did not say where its embedded NATS listens")
	}
	var out, errOut strings.Builder
	if err := routesCmd(context.Background(), []string{"-nats", n.nats, "-builtin"}, &out, &errOut); err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	server := regexp.MustCompile(`(?m)^room\.room\.join +handler +(room-\S+) `).FindStringSubmatch(out.String())
	if server == nil {
		t.Fatalf("no room.room.join line naming its room server:\n%s", out.String())
	}
	for _, re := range []*regexp.Regexp{
		routeLine("room.room.message", "notify", server[1], "*chat.UserMessage", "-"),
		routeLine("room.room.leave", "remote", server[1], "*cluster.LeaveArg", "*cluster.Left"),
		routeLine("room.sys.descriptors", "handler", server[1], "*protos.ProtoNames", "*protos.ProtoDescriptors"),
		regexp.MustCompile(`(?m)^connector\.claims\.claim +handler +connector-\S+ +\*reliable\.ClaimReq +\*reliable\.ClaimRes`),
	} {
		if !re.MatchString(out.String()) {
			t.Errorf("no line matching %s in:\n%s", re, out.String())
		}
	}

	out.Reset()
	if err := routesCmd(context.Background(), []string{"-nats", n.nats, "-type", "room", "-json"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var d routeDocs
	if len(lines) != 1 || json.Unmarshal([]byte(lines[0]), &d) != nil || d.Type != "room" || d.Server != server[1] {
		t.Fatalf("-type room -json:\n%s", out.String())
	}
	if _, ok := d.Docs["remotes"].(map[string]any)["room.room.leave"]; !ok {
		t.Errorf("the room's remotes lack room.room.leave: %v", d.Docs["remotes"])
	}

	if err := routesCmd(context.Background(), []string{"-nats", n.nats, "-server", "nobody"}, io.Discard, io.Discard); err == nil {
		t.Error("-server nobody: no error")
	}
}
