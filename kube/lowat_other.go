//go:build !linux

package kube

import (
	"errors"
	"syscall"
)

// setLowat is not used outside Linux, whose epoll honours SO_RCVLOWAT.
func setLowat(syscall.RawConn, int) error { return errors.ErrUnsupported }
