package otlpreceiver

import (
	"fmt"
	"io"
	"net/netip"
	"syscall"
)

// holdPort binds a TCP socket to addr (an IP and port) without listening
// on it. The kernel then refuses connections to the port, and skips it
// when it picks a free port for a listener (bind to port 0), which is how
// every test's receiver gets its port. SO_REUSEADDR lets the bind succeed
// while connections of the listener just closed linger in TIME_WAIT (for
// 60 s, during which the kernel does not hand the port out either: the
// outage that lost its port was 60 s long). A listener asking for this
// very port with SO_REUSEADDR could still take it; none does.
func holdPort(addr string) (io.Closer, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, err
	}
	ip := ap.Addr().Unmap()
	family, sa := syscall.AF_INET, syscall.Sockaddr(&syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ip.As4()})
	if ip.Is6() {
		family, sa = syscall.AF_INET6, &syscall.SockaddrInet6{Port: int(ap.Port()), Addr: ip.As16()}
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("hold %s: %w", addr, err)
	}
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
		_ = syscall.Close(fd)
		return nil, fmt.Errorf("hold %s: %w", addr, err)
	}
	if err := syscall.Bind(fd, sa); err != nil {
		_ = syscall.Close(fd)
		return nil, fmt.Errorf("hold %s: %w", addr, err)
	}
	return heldPort(fd), nil
}

type heldPort int

func (h heldPort) Close() error { return syscall.Close(int(h)) }
