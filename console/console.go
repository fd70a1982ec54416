package console

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nopal-dev/nopal/reliable"
	"github.com/nopal-dev/nopal/stream"
)

//go:embed web
var webFS embed.FS

// Config tunes a Console.
type Config struct {
	// Token is required by every API request on a non-loopback address,
	// and by actions (kick, retry, cancel) everywhere. Empty: a random
	// token is made for the actions (Console.Token), and Serve listens on
	// loopback addresses only.
	Token string
	// TrafficLines is how many recent traffic lines the console keeps for
	// a page that opens (default 500).
	TrafficLines int
	// Logger (default slog.Default()).
	Logger *slog.Logger
}

// Console serves the web console of the cluster on a bus.
type Console struct {
	bus   *stream.Bus
	cfg   Config
	token string
	log   *slog.Logger
	jobs  *reliable.Client
	st    *state
	hub   *hub

	startOnce sync.Once
	startErr  error
	life      context.Context
	stop      context.CancelFunc
	wg        sync.WaitGroup
}

// ErrConfig is wrapped by the errors of New and Serve for a bad
// configuration.
var ErrConfig = errors.New("console: bad configuration")

// New returns a console of the cluster on bus. It starts nothing: Serve
// (or Start, for Handler) does.
func New(bus *stream.Bus, cfg Config) (*Console, error) {
	if bus == nil || bus.JetStream() == nil {
		return nil, fmt.Errorf("%w: nil bus", ErrConfig)
	}
	if cfg.TrafficLines <= 0 {
		cfg.TrafficLines = 500
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	token := cfg.Token
	if token == "" {
		var b [16]byte
		_, _ = rand.Read(b[:])
		token = hex.EncodeToString(b[:])
	}
	c := &Console{bus: bus, cfg: cfg, token: token, log: cfg.Logger.With("component", "console")}
	c.hub = newHub()
	c.st = newState(c, cfg.TrafficLines)
	return c, nil
}

// Token is the token actions need: Config.Token, or the random one New
// made.
func (c *Console) Token() string { return c.token }

// Start provisions what the console reads (the buckets and streams of
// bindings, groups and jobs, as their servers do) and starts the watchers
// and the traffic tail; they run until Close. Serve calls it; call it
// before using Handler on a server of your own. It is safe to call more
// than once.
func (c *Console) Start(ctx context.Context) error {
	c.startOnce.Do(func() {
		c.life, c.stop = context.WithCancel(context.Background())
		jobs, err := reliable.NewClient(ctx, c.bus, reliable.WithLogger(c.log))
		if err != nil {
			c.startErr = err
			return
		}
		c.jobs = jobs
		c.startErr = c.st.start(ctx)
	})
	return c.startErr
}

// Close stops the watchers and ends the event streams of open pages.
func (c *Console) Close() {
	c.startOnce.Do(func() {
		c.life, c.stop = context.WithCancel(context.Background())
		c.startErr = errors.New("console: closed")
	})
	c.stop()
	c.hub.close()
	c.wg.Wait()
}

// Serve starts the console and serves it on addr until ctx ends. addr must
// be a loopback address (127.0.0.1:3280, localhost:3280, [::1]:3280)
// unless Config.Token is set.
func (c *Console) Serve(ctx context.Context, addr string) error {
	ln, err := c.Listen(addr)
	if err != nil {
		return err
	}
	return c.ServeListener(ctx, ln)
}

// Listen checks addr against the access rule and listens on it.
func (c *Console) Listen(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("%w: address %q: %v", ErrConfig, addr, err)
	}
	if !loopbackHost(host) && c.cfg.Token == "" {
		return nil, fmt.Errorf("%w: %q is not a loopback address: set a token (-console-token or $NOPAL_CONSOLE_TOKEN) to serve the console there", ErrConfig, addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	return ln, nil
}

// ServeListener starts the console and serves it on ln until ctx ends.
func (c *Console) ServeListener(ctx context.Context, ln net.Listener) error {
	if err := c.Start(ctx); err != nil {
		_ = ln.Close()
		return err
	}
	srv := &http.Server{Handler: c.Handler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(c.log.Handler(), slog.LevelWarn)}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		c.Close()
		return err
	case <-ctx.Done():
	}
	c.hub.close() // event streams end, so Shutdown does not wait for them
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	c.Close()
	if err != nil {
		return err
	}
	return nil
}

// loopbackHost reports whether host (no port) names a loopback address.
func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// Handler is the console: the page at /, the API under /api/. Call Start
// first (Serve does).
func (c *Console) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(webFS, "web")
	files := http.FileServer(http.FS(static))
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			writeError(w, http.StatusMethodNotAllowed, "the page is read with GET")
			return
		}
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "no-referrer")
		files.ServeHTTP(w, r)
	}))
	c.routes(mux)
	return c.guard(mux)
}

// guard applies the access rules to /api/ and turns panics into 500s.
func (c *Console) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				c.log.Error("console: handler panicked", "path", r.URL.Path, "panic", v)
				writeError(w, http.StatusInternalServerError, "internal error")
			}
		}()
		if !strings.HasPrefix(r.URL.Path, "/api/") {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		action := r.Method != http.MethodGet && r.Method != http.MethodHead
		tok, fromHeader := requestToken(r)
		valid := tok != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(c.token)) == 1
		switch {
		case action && (!valid || !fromHeader):
			writeError(w, http.StatusUnauthorized, "this action needs the console's token (header Authorization: Bearer <token>); `node console` prints the URL that carries it")
			return
		case !action && !valid && !c.localRequest(r):
			writeError(w, http.StatusUnauthorized, "the console needs its token here (header Authorization: Bearer <token>, or ?token=)")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// requestToken returns the request's token, and whether it came in a
// header.
func requestToken(r *http.Request) (string, bool) {
	if h := r.Header.Get("Authorization"); h != "" {
		if t, ok := strings.CutPrefix(h, "Bearer "); ok {
			return strings.TrimSpace(t), true
		}
	}
	if h := r.Header.Get("X-Console-Token"); h != "" {
		return h, true
	}
	if r.Method == http.MethodGet {
		return r.URL.Query().Get("token"), false
	}
	return "", false
}

// localRequest reports whether r came to a loopback address, naming a
// loopback host (a page of another site that resolves its name to
// 127.0.0.1 does not).
func (c *Console) localRequest(r *http.Request) bool {
	la, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if la == nil {
		return false
	}
	host, _, err := net.SplitHostPort(la.String())
	if err != nil || !loopbackHost(host) {
		return false
	}
	h := r.Host
	if hh, _, err := net.SplitHostPort(h); err == nil {
		h = hh
	}
	return loopbackHost(h)
}

// apiError is the body of every 4xx and 5xx answer of the API.
type apiError struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, apiError{Error: msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
