package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/nopal-dev/nopal"
	"github.com/nopal-dev/nopal/backend"
	"github.com/nopal-dev/nopal/frontend"
)

// echoRoute is the route of the Nopal echo handler.
const echoRoute = "echo.echo"

// echoComponent is the benchmark's only component: route echo.echo returns
// its input, untouched (a raw handler, so no serializer work).
type echoComponent struct{}

// Echo returns in.
func (echoComponent) Echo(_ context.Context, in []byte) ([]byte, error) { return in, nil }

// nopalServerConfig configures the Nopal echo server.
type nopalServerConfig struct {
	Addr      string
	Compress  bool
	Heartbeat time.Duration
	Logger    *slog.Logger
	// Metrics turns on the metric set (Prometheus registry, no scraper).
	Metrics bool
}

func metricsConfig(on bool) *nopal.MetricsConfig {
	if !on {
		return nil
	}
	return &nopal.MetricsConfig{}
}

// startNopal starts a Nopal App of server type "bench" with the echo
// component and one TCP acceptor. It returns the app and its bound address.
func startNopal(ctx context.Context, cfg nopalServerConfig) (*nopal.App, net.Addr, error) {
	app, err := nopal.New(nopal.Config{
		ServerType:      "bench",
		Heartbeat:       cfg.Heartbeat,
		Compress:        cfg.Compress,
		ShutdownTimeout: 5 * time.Second,
		Logger:          cfg.Logger,
		Metrics:         metricsConfig(cfg.Metrics),
	})
	if err != nil {
		return nil, nil, err
	}
	if err := app.Register(&echoComponent{}, backend.WithName("echo")); err != nil {
		return nil, nil, err
	}
	tcp := frontend.NewTCPAcceptor(cfg.Addr)
	app.AddAcceptor(tcp)
	if err := app.Start(ctx); err != nil {
		return nil, nil, err
	}
	return app, tcp.Addr(), nil
}

// echoServer is the floor: a plain TCP echo server, one goroutine per
// connection reading into a 4 KiB buffer and writing back what it read.
type echoServer struct {
	ln net.Listener
	wg sync.WaitGroup

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// echoBufferSize is the floor's per-connection read buffer (bufio's default).
const echoBufferSize = 4096

// startEcho listens on addr and serves until Close.
func startEcho(addr string) (*echoServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &echoServer{ln: ln, conns: make(map[net.Conn]struct{})}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// Addr is the bound address.
func (s *echoServer) Addr() net.Addr { return s.ln.Addr() }

func (s *echoServer) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return // closed
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.echo(c)
	}
}

func (s *echoServer) echo(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		_ = c.Close()
	}()
	buf := make([]byte, echoBufferSize)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Close stops listening, closes every connection and waits for their
// goroutines.
func (s *echoServer) Close() error {
	s.mu.Lock()
	s.closed = true
	err := s.ln.Close()
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

// untilStopped returns a context that ends when stdin reaches EOF (the
// parent closed its end or died) or on SIGTERM/SIGINT.
func untilStopped(stdin io.Reader) (context.Context, context.CancelFunc) {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	if stdin != nil {
		go func() {
			_, _ = io.Copy(io.Discard, stdin)
			cancel()
		}()
	}
	return ctx, cancel
}

func cmdServer(args []string, stdin io.Reader, stdout, stderr io.Writer) (err error) {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:0", "TCP address to listen on")
	compress := fs.Bool("compress", false, "zlib-compress payloads above the threshold (128 bytes)")
	heartbeat := fs.Duration("heartbeat", 60*time.Second, "heartbeat interval")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile to this file until the server exits")
	withMetrics := fs.Bool("metrics", false, "turn on the metric set (Config.Metrics)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	stopProfile, err := startCPUProfile(*cpuprofile)
	if err != nil {
		return err
	}
	defer func() {
		if perr := stopProfile(); err == nil {
			err = perr
		}
	}()
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, cancel := untilStopped(stdin)
	defer cancel()
	app, bound, err := startNopal(context.Background(), nopalServerConfig{
		Addr: *addr, Compress: *compress, Heartbeat: *heartbeat, Logger: log, Metrics: *withMetrics,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "ADDR %s\n", bound)
	<-ctx.Done()
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	if err := app.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

func cmdEchoServer(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("echo-server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:0", "TCP address to listen on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := untilStopped(stdin)
	defer cancel()
	s, err := startEcho(*addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "ADDR %s\n", s.Addr())
	<-ctx.Done()
	return s.Close()
}
