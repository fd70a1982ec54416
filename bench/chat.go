package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"github.com/nopal-dev/nopal"
	"github.com/nopal-dev/nopal/backend"
	"github.com/nopal-dev/nopal/codec"
	"github.com/nopal-dev/nopal/frontend"
	"github.com/nopal-dev/nopal/groups"
	"github.com/nopal-dev/nopal/session"
)

// The chat scenario's servers: `bench chat-server`, a Nopal App with a room
// component behind a TCP and a WebSocket acceptor, and `bench chat-floor`,
// the same rooms served by a plain goroutine-per-connection relay with no
// framework (the floor). Both speak the same packets on the wire.

const (
	chatJoinRoute    = "room.join"    // request, data: the room's name; answers chatJoinOK
	chatMessageRoute = "room.message" // request or notify, data: relayed to the room
	chatPushRoute    = "onMessage"    // the push every member of the room gets
	chatRoomKey      = "room"         // the session key holding the room's name
)

var chatJoinOK = []byte("ok")

// chatRoom is the chat component: rooms are groups of the app's group
// service, a session's room is kept in its data.
type chatRoom struct {
	groups groups.Service
}

// Join binds the session to a uid (its id), adds it to the room named by
// the payload (creating the room) and keeps the room in the session.
func (r *chatRoom) Join(ctx context.Context, in []byte) ([]byte, error) {
	s := session.FromContext(ctx)
	if s == nil {
		return nil, errors.New("chat: no session")
	}
	uid := strconv.FormatInt(s.ID(), 10)
	if err := s.Bind(ctx, uid); err != nil {
		return nil, fmt.Errorf("chat: bind: %w", err)
	}
	room := string(in)
	if err := r.groups.Create(ctx, room); err != nil && !errors.Is(err, groups.ErrGroupAlreadyExists) {
		return nil, fmt.Errorf("chat: room %q: %w", room, err)
	}
	if err := r.groups.Add(ctx, room, uid); err != nil {
		return nil, fmt.Errorf("chat: join %q: %w", room, err)
	}
	s.Set(chatRoomKey, room)
	s.OnClose(func() { _ = r.groups.Remove(context.WithoutCancel(ctx), room, uid) })
	return chatJoinOK, nil
}

// Message broadcasts the payload, untouched, to every member of the
// session's room (the sender included) on route onMessage.
func (r *chatRoom) Message(ctx context.Context, in []byte) ([]byte, error) {
	s := session.FromContext(ctx)
	if s == nil {
		return nil, errors.New("chat: no session")
	}
	v, ok := s.Get(chatRoomKey)
	if !ok {
		return nil, errors.New("chat: not in a room")
	}
	if _, err := r.groups.Broadcast(ctx, v.(string), chatPushRoute, in); err != nil {
		return nil, fmt.Errorf("chat: broadcast: %w", err)
	}
	return nil, nil
}

// ensureNofile makes RLIMIT_NOFILE at least need: the soft limit goes up
// to the hard one, and the hard one too if need is above it and the
// process may raise it (CAP_SYS_RESOURCE, e.g. root). It returns the soft
// limit now in force and whether the hard limit was raised.
func ensureNofile(need uint64) (limit uint64, raisedHard bool, err error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, false, fmt.Errorf("getrlimit: %w", err)
	}
	if rl.Max < need {
		up := syscall.Rlimit{Cur: need, Max: need}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &up); err == nil {
			return need, true, nil
		}
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			return 0, false, fmt.Errorf("setrlimit: %w", err)
		}
	}
	return rl.Cur, false, nil
}

// serveControl reads stdin line by line until EOF, then cancels: the
// servers of the chat scenario stop when the suite closes their stdin, like
// the others, and take "profile-start" / "profile-stop" lines to profile
// exactly the measured window, "heap-profile" to write a heap profile
// (after a GC) to memprofile, and "gc" to collect garbage and return the
// freed memory to the OS (bench idle). SIGTERM and SIGINT cancel too.
func serveControl(stdin io.Reader, cpuprofile, memprofile string, log *slog.Logger, stderr io.Writer) (context.Context, func() error) {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	var mu sync.Mutex
	stop := func() error { return nil }
	profiling := false
	stopProfile := func() error {
		mu.Lock()
		defer mu.Unlock()
		if !profiling {
			return nil
		}
		profiling = false
		return stop()
	}
	go func() {
		defer cancel()
		if stdin == nil {
			<-ctx.Done()
			return
		}
		sc := bufio.NewScanner(stdin)
		for sc.Scan() {
			switch sc.Text() {
			case "profile-start":
				if cpuprofile == "" {
					continue
				}
				mu.Lock()
				if !profiling {
					s, err := startCPUProfile(cpuprofile)
					if err != nil {
						log.Error("cpu profile", "err", err)
					} else {
						stop, profiling = s, true
					}
				}
				mu.Unlock()
			case "profile-stop":
				if err := stopProfile(); err != nil {
					log.Error("cpu profile", "err", err)
				}
			case "gc":
				// The steady state of idle connections: garbage collected
				// and freed memory returned to the OS (bench idle).
				debug.FreeOSMemory()
				printMemStats(stderr, "after a GC and returning freed memory")
			case "heap-profile":
				if memprofile == "" {
					continue
				}
				if err := writeHeapProfile(memprofile, stderr); err != nil {
					log.Error("heap profile", "err", err)
				}
			}
		}
	}()
	return ctx, func() error {
		cancel()
		return stopProfile()
	}
}

// writeHeapProfile collects garbage, writes the live heap to path and
// prints where the process's memory is on w: the heap in use, goroutine
// stacks, and what the runtime holds but has not returned to the OS.
func writeHeapProfile(path string, w io.Writer) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	runtime.GC()
	printMemStats(w, "heap profile after a GC")
	if err := pprof.WriteHeapProfile(f); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// printMemStats prints where the process's memory is: the heap in use,
// goroutine stacks, and what the runtime holds but has not returned to
// the OS.
func printMemStats(w io.Writer, when string) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Fprintf(w, "%s: heap in use %d KB (live objects %d KB), goroutine stacks %d KB in %d goroutines, heap idle not returned to the OS %d KB, runtime total from the OS %d KB\n",
		when, ms.HeapInuse>>10, ms.HeapAlloc>>10, ms.StackInuse>>10, runtime.NumGoroutine(), (ms.HeapIdle-ms.HeapReleased)>>10, ms.Sys>>10)
}

// chatServerFlags are the flags both chat servers take.
type chatServerFlags struct {
	tcp, ws    string
	nofile     uint64
	heartbeat  time.Duration
	cpuprofile string
	memprofile string
	sendBudget int64
}

func parseChatServerFlags(name string, args []string, stderr io.Writer) (*chatServerFlags, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	f := &chatServerFlags{}
	fs.StringVar(&f.tcp, "tcp", "127.0.0.1:0", "TCP address to listen on")
	fs.StringVar(&f.ws, "ws", "127.0.0.1:0", "WebSocket address to listen on")
	fs.Uint64Var(&f.nofile, "nofile", 0, "make RLIMIT_NOFILE at least this (raising the hard limit if allowed)")
	fs.DurationVar(&f.heartbeat, "heartbeat", 60*time.Second, "heartbeat interval (Nopal only)")
	fs.StringVar(&f.cpuprofile, "cpuprofile", "", `CPU profile file, written between the "profile-start" and "profile-stop" lines on stdin`)
	fs.StringVar(&f.memprofile, "memprofile", "", `heap profile file, written (after a GC) on a "heap-profile" line on stdin`)
	fs.Int64Var(&f.sendBudget, "send-budget", 0, "bytes all send queues may hold (Config.SendBudget; 0: none; Nopal only)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("%s: unexpected arguments %q", name, fs.Args())
	}
	if f.nofile > 0 {
		if _, _, err := ensureNofile(f.nofile); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	return f, nil
}

// cmdChatServer runs the Nopal chat app: server type "chat", the room
// component (room.join, room.message), a TCP and a WebSocket acceptor. It
// prints "ADDR tcp", "ADDR ws", then "READY".
func cmdChatServer(args []string, stdin io.Reader, stdout, stderr io.Writer) (err error) {
	f, err := parseChatServerFlags("chat-server", args, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, stop := serveControl(stdin, f.cpuprofile, f.memprofile, log, stderr)
	defer func() {
		if perr := stop(); err == nil && perr != nil {
			err = fmt.Errorf("cpu profile: %w", perr)
		}
	}()
	app, err := nopal.New(nopal.Config{
		ServerType: "chat", Heartbeat: f.heartbeat, ShutdownTimeout: 5 * time.Second, Logger: log,
		SendBudget: f.sendBudget,
	})
	if err != nil {
		return err
	}
	if err := app.Register(&chatRoom{groups: app.Groups()}, backend.WithName("room")); err != nil {
		return err
	}
	tcp := frontend.NewTCPAcceptor(f.tcp)
	ws := frontend.NewWSAcceptor(f.ws)
	app.AddAcceptor(tcp)
	app.AddAcceptor(ws)
	if err := app.Start(context.Background()); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "ADDR %s\nADDR %s\nREADY\n", tcp.Addr(), ws.Addr())
	<-ctx.Done()
	sctx, scancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer scancel()
	if err := app.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// cmdChatFloor runs the floor of the chat scenario: the same rooms and
// packets as chat-server, relayed by a plain goroutine-per-connection
// server. It prints "ADDR tcp", "ADDR ws", then "READY".
func cmdChatFloor(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	f, err := parseChatServerFlags("chat-floor", args, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, stop := serveControl(stdin, "", "", log, stderr)
	defer func() { _ = stop() }()
	s, err := startRelay(f.tcp, f.ws)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "ADDR %s\nADDR %s\nREADY\n", s.tcp.Addr(), s.ws.Addr())
	<-ctx.Done()
	return s.Close()
}

// relay is the floor: no handshake, no sessions, no framework. Each
// connection's goroutine reads packets; the first request on room.join
// puts it in a room; each room.message is written, as an onMessage push,
// straight to every member's socket by the sender's goroutine (a WebSocket
// member under its write lock), then answered if it is a request.
type relay struct {
	tcp, ws  net.Listener
	srv      *http.Server
	upgrader websocket.Upgrader
	wg       sync.WaitGroup

	mu     sync.Mutex
	rooms  map[string]*relayRoom
	conns  map[*relayConn]struct{}
	closed bool
}

type relayRoom struct {
	mu      sync.RWMutex
	members []*relayConn
}

type relayConn struct {
	c   net.Conn        // TCP, or the WebSocket's
	ws  *websocket.Conn // nil for TCP
	wmu sync.Mutex      // WebSocket writes
	fb  frameBuf        // TCP reads
	out []byte          // the push and the response being written
}

func (c *relayConn) write(p []byte) error {
	if c.ws == nil {
		_, err := c.c.Write(p)
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.ws.WriteMessage(websocket.BinaryMessage, p)
}

// relayBufferSize is the floor's per-connection read buffer, the echo
// floor's (bufio's default).
const relayBufferSize = echoBufferSize

func startRelay(tcpAddr, wsAddr string) (*relay, error) {
	tl, err := net.Listen("tcp", tcpAddr)
	if err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	wl, err := net.Listen("tcp", wsAddr)
	if err != nil {
		_ = tl.Close()
		return nil, fmt.Errorf("relay: %w", err)
	}
	s := &relay{tcp: tl, ws: wl, rooms: make(map[string]*relayRoom), conns: make(map[*relayConn]struct{})}
	// As the Nopal WebSocket acceptor: 1 KiB buffers, pooled write buffers.
	s.upgrader.ReadBufferSize, s.upgrader.WriteBufferSize = 1024, 1024
	s.upgrader.WriteBufferPool = &sync.Pool{}
	s.srv = &http.Server{Handler: http.HandlerFunc(s.upgrade), ReadHeaderTimeout: 10 * time.Second}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		for {
			c, err := tl.Accept()
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					continue
				}
				if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				return
			}
			rc := &relayConn{c: c, fb: frameBuf{buf: make([]byte, relayBufferSize)}}
			if s.add(rc) {
				go s.serve(rc)
			}
		}
	}()
	go func() {
		defer s.wg.Done()
		_ = s.srv.Serve(wl)
	}()
	return s, nil
}

func (s *relay) upgrade(w http.ResponseWriter, r *http.Request) {
	ws, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	rc := &relayConn{c: ws.NetConn(), ws: ws, fb: frameBuf{buf: make([]byte, relayBufferSize)}}
	if s.add(rc) {
		go s.serve(rc)
	}
}

func (s *relay) add(c *relayConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		_ = c.c.Close()
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

// next returns the connection's next packet, valid until the next call.
func (c *relayConn) next() ([]byte, error) {
	if c.ws == nil {
		return c.fb.nextPacket(c.c, false)
	}
	mt, r, err := c.ws.NextReader()
	if err != nil {
		return nil, err
	}
	if mt != websocket.BinaryMessage {
		return nil, errors.New("relay: text frame")
	}
	n := 0
	for {
		if n == len(c.fb.buf) {
			c.fb.buf = append(c.fb.buf, make([]byte, len(c.fb.buf))...)
		}
		m, err := r.Read(c.fb.buf[n:])
		n += m
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if n < codec.HeaderLength {
		return nil, fmt.Errorf("relay: frame of %d bytes", n)
	}
	return c.fb.buf[:n], nil
}

func (s *relay) serve(c *relayConn) {
	defer s.wg.Done()
	var room *relayRoom
	defer func() {
		if room != nil {
			room.mu.Lock()
			for i, m := range room.members {
				if m == c {
					room.members = append(room.members[:i], room.members[i+1:]...)
					break
				}
			}
			room.mu.Unlock()
		}
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		_ = c.c.Close()
	}()
	for {
		pkt, err := c.next()
		if err != nil {
			return
		}
		if len(pkt) < codec.HeaderLength+2 || codec.PacketType(pkt[0]) != codec.Data {
			continue // heartbeats and the like
		}
		req, id, route, data, ok := parseClientMessage(pkt[codec.HeaderLength:])
		if !ok {
			return
		}
		switch string(route) {
		case chatJoinRoute:
			if room != nil {
				return
			}
			room = s.room(string(data))
			room.mu.Lock()
			room.members = append(room.members, c)
			room.mu.Unlock()
			c.out = appendResponse(c.out[:0], id, chatJoinOK)
			if c.write(c.out) != nil {
				return
			}
		case chatMessageRoute:
			if room == nil {
				return
			}
			c.out = appendPush(c.out[:0], chatPushRoute, data)
			room.mu.RLock()
			for _, m := range room.members {
				_ = m.write(c.out) // a failed member ends on its own read
			}
			room.mu.RUnlock()
			if req {
				c.out = appendResponse(c.out[:0], id, nil)
				if c.write(c.out) != nil {
					return
				}
			}
		default:
			return
		}
	}
}

func (s *relay) room(name string) *relayRoom {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rooms[name]
	if r == nil {
		r = &relayRoom{}
		s.rooms[name] = r
	}
	return r
}

// Close stops listening, closes every connection and waits for their
// goroutines.
func (s *relay) Close() error {
	s.mu.Lock()
	s.closed = true
	err := errors.Join(s.tcp.Close(), s.srv.Close())
	for c := range s.conns {
		_ = c.c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

// parseClientMessage splits the body of a client's Data packet: a Request
// (with a one-byte id, as the load generator sends) or a Notify, with an
// uncompressed route.
func parseClientMessage(body []byte) (req bool, id byte, route, data []byte, ok bool) {
	i := 1
	switch body[0] {
	case byte(codec.Request) << 1:
		req, id, i = true, body[1], 2
		if id >= 0x80 {
			return false, 0, nil, nil, false
		}
	case byte(codec.Notify) << 1:
	default:
		return false, 0, nil, nil, false
	}
	if len(body) <= i {
		return false, 0, nil, nil, false
	}
	n := int(body[i])
	if len(body) < i+1+n {
		return false, 0, nil, nil, false
	}
	return req, id, body[i+1 : i+1+n], body[i+1+n:], true
}

// appendResponse appends a Data packet holding the Response to request id.
func appendResponse(dst []byte, id byte, data []byte) []byte {
	n := 2 + len(data)
	dst = append(dst, byte(codec.Data), byte(n>>16), byte(n>>8), byte(n), flagResponse, id)
	return append(dst, data...)
}

// appendPush appends a Data packet holding a Push on route.
func appendPush(dst []byte, route string, data []byte) []byte {
	n := 2 + len(route) + len(data)
	dst = append(dst, byte(codec.Data), byte(n>>16), byte(n>>8), byte(n), flagPush, byte(len(route)))
	dst = append(dst, route...)
	return append(dst, data...)
}
