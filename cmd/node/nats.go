package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/nopal-dev/nopal/stream"
)

// natsServer is `node nats`: a NATS server with JetStream and nothing else,
// for a cluster whose servers each run in a process of their own, so that
// stopping any of them leaves the bus up.
func natsServer(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("nats", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:4222", "client address the nodes connect to")
	store := fs.String("store", "", "JetStream folder (default: a temporary folder, removed at exit)")
	name := fs.String("name", "", "server name (default: nats and a random suffix; each server of a NATS cluster needs its own)")
	clusterName := fs.String("cluster", "nopal", "NATS cluster name")
	clusterListen := fs.String("cluster-listen", "", "cluster route address (empty: no NATS cluster)")
	routes := fs.String("routes", "", "comma-separated routes to the other servers of the NATS cluster (nats://host:port)")
	user := fs.String("user", "", "a user every client must give (with -password)")
	password := fs.String("password", "", "the password of -user")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log, err := newLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		return err
	}
	id := *name
	if id == "" {
		var b [5]byte
		_, _ = rand.Read(b[:])
		id = "nats-" + hex.EncodeToString(b[:])
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	bus, err := stream.Connect(ctx, stream.Config{ServerID: id, Logger: log, Embedded: stream.Embedded{
		StoreDir: *store, Listen: *listen, ServerName: id,
		ClusterName: *clusterName, ClusterListen: *clusterListen, Routes: splitList(*routes),
		User: *user, Password: *password,
	}})
	if err != nil {
		return err
	}
	defer bus.Close()
	log.Info("embedded NATS listening", "url", bus.ClientURL())
	log.Info("ready")
	<-ctx.Done()
	log.Info("shutting down")
	return nil
}
