package testproxy_test

import (
	"bufio"
	"fmt"
	"io"
	"net"

	"github.com/nopal-dev/nopal/internal/testproxy"
)

// The proxy holds a server's answer until the test lets it through: the
// server has served the request, the client has not seen the reply. (In a
// test, Start(t, addr) does the same as New, and closes the proxy at the
// test's end.)
func ExampleProxy_HoldNext() {
	ln, err := net.Listen("tcp", "127.0.0.1:0") // an echo server
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c) }()
		}
	}()

	p, err := testproxy.New(ln.Addr().String())
	if err != nil {
		panic(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		panic(err)
	}
	defer c.Close()

	held, release := p.HoldNext("hello")
	_, _ = io.WriteString(c, "hello\n")
	<-held
	fmt.Println("the server has answered; the client waits")
	release()
	line, _ := bufio.NewReader(c).ReadString('\n')
	fmt.Print("the client reads: ", line)
	// Output:
	// the server has answered; the client waits
	// the client reads: hello
}
