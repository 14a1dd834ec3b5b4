package kube

import "syscall"

// setLowat sets the socket's receive low-water mark (SO_RCVLOWAT): epoll
// reports it readable, and its data wakes a poller, only once n bytes are
// there (or on EOF and errors); a non-blocking read still returns what
// there is.
func setLowat(raw syscall.RawConn, n int) error {
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVLOWAT, n)
	}); err != nil {
		return err
	}
	return serr
}
