package frontend

import (
	"net"
	"syscall"
	"unsafe"
)

// iovScratch is a pool writer's iovec array, reused.
type iovScratch = []syscall.Iovec

// iovMax is the most buffers one writev takes (IOV_MAX).
const iovMax = 1024

// writevNB writes bufs to the non-blocking socket fd, as far as it takes
// them now: a full socket buffer is not an error, it stops the write.
func writevNB(fd uintptr, bufs net.Buffers, scratch *iovScratch) (int, error) {
	total := 0
	defer clear(*scratch) // no packet kept alive by the scratch array
	for len(bufs) > 0 {
		iov := (*scratch)[:0]
		k, want := 0, 0
		for _, b := range bufs {
			if k == iovMax {
				break
			}
			k++
			if len(b) == 0 {
				continue
			}
			v := syscall.Iovec{Base: &b[0]}
			v.SetLen(len(b))
			iov = append(iov, v)
			want += len(b)
		}
		*scratch = iov
		bufs = bufs[k:]
		if len(iov) == 0 {
			continue
		}
		for {
			n, _, errno := syscall.Syscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
			switch errno {
			case 0:
				total += int(n)
				if int(n) < want {
					return total, nil // the socket is full
				}
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return total, nil
			default:
				return total, errno
			}
			break
		}
	}
	return total, nil
}
