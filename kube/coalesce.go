package kube

import (
	"context"
	"net"
	"syscall"
	"time"
)

// The Events watch is a stream of small messages that the API server
// writes (and flushes) one at a time: at 1,000 Events/s, read as they
// come, that is a thousand socket reads, TLS records opened one by one, and
// as many wake-ups of an otherwise idle process (netpoll, the HTTP/2 read
// loop, the watch decoder, the bridge's worker). In the load test that was
// about a third of the bridge's CPU time. A coalescing connection waits,
// before a read that follows a short one (a read that emptied the socket),
// until delay has passed since that short read, so that what arrived
// meanwhile is read in one go and handled in one burst: at most 1/delay
// wake-ups a second whatever the event rate, for at most delay more lag.
//
// Bulk transfers are not slowed: a read that filled the caller's buffer is
// followed at once (more is waiting), and no read waits while the
// connection has been carrying more than bulkRate since the last wait (a
// relist, or the initial events of a watch-list, drain the socket now and
// then; waiting each time would cap them at what the socket buffer holds
// per delay, ~50 MB/s with 50ms on loopback).

// Waiting is not enough by itself: the Go runtime's network poller is
// registered for the socket's readiness, so while the reader waits every
// event the API server sends (its own TCP segment) wakes the idle process's
// thread out of epoll_wait for nothing, about one context switch per event,
// which on a virtual machine costs more than handling the event. So for the
// wait the socket's SO_RCVLOWAT is raised to waitLowat: the kernel signals
// readiness only once that much has arrived (or on EOF and errors), and the
// wait ends on the clock alone. It is set back to 1 before the read, so a
// read that finds the socket empty blocks until the first byte, as usual.

// waitLowat is the socket's receive low-water mark during a wait: enough
// that a trickle of events never reaches it, no more than fits the default
// receive buffer (Linux grows the buffer for a larger mark).
const waitLowat = 64 << 10

// bulkRate is the read rate above which a connection is taken to be moving
// bulk data rather than a trickle of watch events (1 KB Events at 16,000/s).
const bulkRate = 16 << 20 // bytes per second

// eventsKeepAlive are the TCP keep-alives of the Events connection. It
// speaks HTTP/1.1 (see Client), so the HTTP/2 health check client-go sets
// up (a PING after 30s without frames, 15s to answer) does not watch it:
// probes after 15s of silence, every 5s, 6 unanswered, find a dead peer in
// about the same 45s, instead of the five minutes of 30s keep-alives.
var eventsKeepAlive = net.KeepAliveConfig{Enable: true, Idle: 15 * time.Second, Interval: 5 * time.Second, Count: 6}

// coalescingDial wraps dial (nil: a net.Dialer with client-go's timeouts)
// so that its connections coalesce reads.
func coalescingDial(dial func(ctx context.Context, network, addr string) (net.Conn, error), delay time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if dial == nil {
		dial = (&net.Dialer{Timeout: 30 * time.Second, KeepAliveConfig: eventsKeepAlive}).DialContext
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		cc := &coalescingConn{Conn: c, delay: delay, sleep: time.Sleep, now: time.Now}
		if sc, ok := c.(syscall.Conn); ok {
			if raw, err := sc.SyscallConn(); err == nil && setLowat(raw, 1) == nil {
				cc.lowat = func(n int) error { return setLowat(raw, n) }
			}
		}
		return cc, nil
	}
}

// coalescingConn is a net.Conn whose reads are coalesced. Like any
// net.Conn it may be read and written concurrently, but its reads must
// come from one goroutine at a time (as the HTTP/1 and HTTP/2 transports'
// read loops do).
type coalescingConn struct {
	net.Conn
	delay     time.Duration
	sleep     func(time.Duration) // time.Sleep; tests replace it
	now       func() time.Time    // time.Now; tests replace it
	drainedAt time.Time           // when the last read came back short; zero if it was full
	// since, read: the end of the last wait (or the first read) and the
	// bytes read from then on, for the bulk rate.
	since time.Time
	read  int64
	// lowat sets the socket's SO_RCVLOWAT; nil where that cannot be done
	// (not a TCP socket, not Linux).
	lowat func(int) error
}

func (c *coalescingConn) Read(p []byte) (int, error) {
	now := c.now()
	if c.since.IsZero() {
		c.since = now
	}
	if !c.drainedAt.IsZero() {
		wait := c.delay - now.Sub(c.drainedAt)
		if wait > 0 && !c.bulk(now) {
			// Failing to set the mark only costs the wake-ups it saves.
			raised := c.lowat != nil && c.lowat(waitLowat) == nil
			c.sleep(wait)
			if raised {
				_ = c.lowat(1)
			}
			c.since, c.read = c.now(), 0
		}
	}
	n, err := c.Conn.Read(p)
	c.read += int64(n)
	if n < len(p) {
		c.drainedAt = c.now()
	} else {
		c.drainedAt = time.Time{}
	}
	return n, err
}

// bulk reports whether the connection carried more than bulkRate since the
// last wait.
func (c *coalescingConn) bulk(now time.Time) bool {
	el := now.Sub(c.since)
	return el > 0 && float64(c.read) > bulkRate*el.Seconds()
}
