package main

import (
	"context"
	"flag"
	"io"
	"time"

	"github.com/nopal-dev/nopal"
	"github.com/nopal-dev/nopal/examples/chat"
	"github.com/nopal-dev/nopal/frontend"
)

func serve(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	tcp := fs.String("tcp", "127.0.0.1:3250", "TCP address for clients (empty: none)")
	ws := fs.String("ws", "127.0.0.1:3251", "HTTP address: the chat page at / and WebSocket upgrades on any path (empty: none)")
	heartbeat := fs.Duration("heartbeat", 30*time.Second, "heartbeat interval")
	compress := fs.Bool("compress", false, "zlib-compress large payloads")
	anyOrigin := fs.Bool("ws-any-origin", false, "accept WebSocket upgrades from any browser origin")
	rate := fs.Int("rate-limit", 0, "requests per --rate-interval per connection (0: no limit)")
	rateInterval := fs.Duration("rate-interval", time.Second, "rate limit interval")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log, err := newLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		return err
	}
	app, err := nopal.New(nopal.Config{
		ServerType: chat.ServerType,
		Heartbeat:  *heartbeat,
		Compress:   *compress,
		Logger:     log,
	})
	if err != nil {
		return err
	}
	if err := chat.Setup(ctx, app); err != nil {
		return err
	}
	var wrappers []frontend.Wrapper
	if *rate > 0 {
		rl, err := frontend.NewRateLimiter(*rate, *rateInterval, false)
		if err != nil {
			return err
		}
		wrappers = append(wrappers, rl)
	}
	if *tcp != "" {
		app.AddAcceptor(frontend.WithWrappers(frontend.NewTCPAcceptor(*tcp), wrappers...))
	}
	if *ws != "" {
		opts := []frontend.WSOption{frontend.WithHTTPHandler(chat.Page())}
		if *anyOrigin {
			opts = append(opts, frontend.WithCheckOrigin(frontend.AnyOrigin))
		}
		app.AddAcceptor(frontend.WithWrappers(frontend.NewWSAcceptor(*ws, opts...), wrappers...))
	}
	return app.Run(ctx)
}
