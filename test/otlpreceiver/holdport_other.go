//go:build !linux

package otlpreceiver

import (
	"errors"
	"io"
)

// holdPort is only done on Linux; elsewhere the port is let go while the
// receiver is stopped.
func holdPort(string) (io.Closer, error) { return nil, errors.New("not supported") }
