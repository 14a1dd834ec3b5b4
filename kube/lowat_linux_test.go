package kube

import (
	"context"
	"net"
	"syscall"
	"testing"
	"time"
)

// The kernel behaviour the coalescing wait relies on, on a real loopback
// TCP connection dialled like the Events connection: with the low-water
// mark raised, data below it does not make the socket readable for epoll
// (no wake-up); lowered again, the same data does, and the read gets it.
func TestLowatSuppressesReadiness(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(peer)
			return
		}
		peer <- c
	}()
	c, err := coalescingDial(nil, 50*time.Millisecond)(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	server := <-peer
	if server == nil {
		t.Fatal("accept failed")
	}
	defer server.Close()
	cc := c.(*coalescingConn)
	if raw, err := cc.Conn.(syscall.Conn).SyscallConn(); err != nil {
		t.Fatal(err)
	} else {
		for opt, want := range map[int]int{syscall.TCP_KEEPIDLE: 15, syscall.TCP_KEEPINTVL: 5, syscall.TCP_KEEPCNT: 6} {
			var got int
			var gerr error
			_ = raw.Control(func(fd uintptr) { got, gerr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, opt) })
			if gerr != nil || got != want {
				t.Errorf("TCP option %d: %d (%v), want %d", opt, got, gerr, want)
			}
		}
	}
	if cc.lowat == nil {
		t.Fatal("a TCP connection on Linux got no low-water mark control")
	}
	raw, err := cc.Conn.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	// Our own epoll instance watching the socket, level-triggered.
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(ep)
	var ctlErr error
	if err := raw.Control(func(fd uintptr) {
		ctlErr = syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, int(fd), &syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)})
	}); err != nil || ctlErr != nil {
		t.Fatal(err, ctlErr)
	}
	readable := func() bool {
		t.Helper()
		evs := make([]syscall.EpollEvent, 1)
		for {
			n, err := syscall.EpollWait(ep, evs, 100)
			if err == syscall.EINTR {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			return n > 0
		}
	}
	mark := func() int {
		t.Helper()
		var v int
		var gerr error
		if err := raw.Control(func(fd uintptr) {
			v, gerr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVLOWAT)
		}); err != nil || gerr != nil {
			t.Fatal(err, gerr)
		}
		return v
	}

	if err := cc.lowat(waitLowat); err != nil {
		t.Fatal(err)
	}
	if got := mark(); got != waitLowat {
		t.Fatalf("SO_RCVLOWAT %d, want %d", got, waitLowat)
	}
	if _, err := server.Write(make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	if readable() {
		t.Fatal("1000 bytes below the mark made the socket readable")
	}
	if err := cc.lowat(1); err != nil {
		t.Fatal(err)
	}
	if !readable() {
		t.Fatal("with the mark at 1 the socket holding 1000 bytes is not readable")
	}
	buf := make([]byte, 4096)
	if n, err := c.Read(buf); err != nil || n != 1000 {
		t.Fatalf("read %d bytes, %v; want 1000", n, err)
	}
	// EOF makes the socket readable whatever the mark.
	if err := cc.lowat(waitLowat); err != nil {
		t.Fatal(err)
	}
	server.Close()
	if !readable() {
		t.Fatal("EOF with the mark raised did not make the socket readable")
	}
}
