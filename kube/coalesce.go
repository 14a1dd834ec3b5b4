package kube

import (
	"context"
	"net"
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

// bulkRate is the read rate above which a connection is taken to be moving
// bulk data rather than a trickle of watch events (1 KB Events at 16,000/s).
const bulkRate = 16 << 20 // bytes per second

// coalescingDial wraps dial (nil: a net.Dialer with client-go's timeouts)
// so that its connections coalesce reads.
func coalescingDial(dial func(ctx context.Context, network, addr string) (net.Conn, error), delay time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if dial == nil {
		dial = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &coalescingConn{Conn: c, delay: delay, sleep: time.Sleep, now: time.Now}, nil
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
}

func (c *coalescingConn) Read(p []byte) (int, error) {
	now := c.now()
	if c.since.IsZero() {
		c.since = now
	}
	if !c.drainedAt.IsZero() {
		wait := c.delay - now.Sub(c.drainedAt)
		if wait > 0 && !c.bulk(now) {
			c.sleep(wait)
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
