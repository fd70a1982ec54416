//go:build !linux

package frontend

import "net"

// iovScratch is unused here.
type iovScratch = struct{}

// writevNB writes nothing: without a non-blocking writev here, a writer
// goroutine of the connection's own writes every packet.
func writevNB(uintptr, net.Buffers, *iovScratch) (int, error) { return 0, nil }
