package testproxy_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/nopal-dev/nopal/internal/testproxy"
)

// echoServer answers every line with the same line, on a real socket.
func echoServer(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// dial connects through p; the connection is closed when the test ends.
func dial(t *testing.T, p *testproxy.Proxy) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, bufio.NewReader(c)
}

func roundTrip(t *testing.T, c net.Conn, r *bufio.Reader, line string) {
	t.Helper()
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		t.Fatal(err)
	}
	got, err := r.ReadString('\n')
	if err != nil || got != line+"\n" {
		t.Fatalf("read %q, %v; want %q", got, err, line)
	}
}

func TestForwards(t *testing.T) {
	p := testproxy.Start(t, echoServer(t))
	c, r := dial(t, p)
	for _, line := range []string{"one", "two"} {
		roundTrip(t, c, r, line)
	}
}

// The reply with the marker is held until release; replies before it
// pass.
func TestHoldNext(t *testing.T) {
	p := testproxy.Start(t, echoServer(t))
	c, r := dial(t, p)
	held, release := p.HoldNext("held")
	roundTrip(t, c, r, "passes")
	if _, err := io.WriteString(c, "held\n"); err != nil {
		t.Fatal(err)
	}
	<-held // the server answered; the client has not read it
	if r.Buffered() != 0 {
		t.Fatalf("%d bytes reached the client before the release", r.Buffered())
	}
	release()
	release() // again: a no-op
	if got, err := r.ReadString('\n'); err != nil || got != "held\n" {
		t.Fatalf("after the release: %q, %v", got, err)
	}
	roundTrip(t, c, r, "disarmed")
}

// Cut ends the connections but not the proxy; Close ends the proxy, and
// a gate still held does not keep it from closing.
func TestCutAndClose(t *testing.T) {
	p := testproxy.Start(t, echoServer(t))
	c, r := dial(t, p)
	roundTrip(t, c, r, "before")
	p.Cut()
	if _, err := r.ReadString('\n'); !errors.Is(err, io.EOF) {
		t.Fatalf("read after Cut: %v, want EOF", err)
	}
	c2, r2 := dial(t, p)
	roundTrip(t, c2, r2, "after the cut")

	held, _ := p.HoldNext("stuck")
	if _, err := io.WriteString(c2, "stuck\n"); err != nil {
		t.Fatal(err)
	}
	<-held
	p.Close()
	p.Close() // again: a no-op
	if c3, err := net.Dial("tcp", p.Addr()); err == nil {
		_ = c3.Close()
		t.Fatal("the proxy still accepts connections after Close")
	}
}
