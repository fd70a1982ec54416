package frontend

import (
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// flakyListener fails its first accepts as a process out of file
// descriptors does, then accepts on the real listener.
type flakyListener struct {
	net.Listener
	fails atomic.Int32
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.fails.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// An acceptor that runs out of file descriptors keeps serving once they
// are back, instead of stopping for good.
func TestTCPAcceptorSurvivesEMFILE(t *testing.T) {
	a := NewTCPAcceptor("127.0.0.1:0")
	if err := a.Listen(); err != nil {
		t.Fatal(err)
	}
	fl := &flakyListener{Listener: a.ln}
	fl.fails.Store(4)
	served := make(chan error, 1)
	go func() { served <- a.serve(fl) }()
	c, err := net.Dial("tcp", a.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case pc := <-a.Conns():
		_ = pc.Close()
	case err := <-served:
		t.Fatalf("the acceptor stopped: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no connection after the descriptors came back")
	}
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != ErrAcceptorStopped {
		t.Fatalf("serve after Stop: %v", err)
	}
}
