package kube

import (
	"fmt"
	"net"
	"testing"
	"time"
)

// scriptConn returns reads of the scripted sizes; step is the reader's time
// from one read to the next (the tests move the fake clock).
type scriptConn struct {
	net.Conn
	sizes []int
	step  time.Duration
}

func (c *scriptConn) Read(p []byte) (int, error) {
	n := min(c.sizes[0], len(p))
	c.sizes = c.sizes[1:]
	return n, nil
}

func TestCoalescingConn(t *testing.T) {
	const delay = 50 * time.Millisecond
	cases := []struct {
		name  string
		sizes []int         // what each read returns (buffer: 16 KiB)
		step  time.Duration // from a read to the next
		want  []time.Duration
	}{
		// A trickle: every read empties the socket, so each next one
		// waits out the rest of the delay.
		{"trickle", []int{100, 200, 300}, time.Millisecond, []time.Duration{0, delay - time.Millisecond, delay - time.Millisecond}},
		// A full read means more is waiting: no wait after it.
		{"full then short", []int{16 << 10, 16 << 10, 10, 10}, time.Millisecond, []time.Duration{0, 0, 0, delay - time.Millisecond}},
		// A read that took longer than the delay already coalesced.
		{"slow reads", []int{10, 10, 10}, 2 * delay, []time.Duration{0, 0, 0}},
		// Bulk: 16 KiB reads every 100µs (160 MB/s), draining now and
		// then, never wait.
		{"bulk", []int{16 << 10, 16 << 10, 1000, 16 << 10, 16 << 10, 500, 16 << 10}, 100 * time.Microsecond, []time.Duration{0, 0, 0, 0, 0, 0, 0}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clock := time.Unix(1000, 0)
			var waits []time.Duration
			conn := &coalescingConn{
				Conn:  &scriptConn{sizes: c.sizes, step: c.step},
				delay: delay,
				now:   func() time.Time { return clock },
			}
			conn.sleep = func(d time.Duration) { waits = append(waits, d); clock = clock.Add(d) }
			buf := make([]byte, 16<<10)
			for i := range c.sizes {
				before := len(waits)
				if _, err := conn.Read(buf); err != nil {
					t.Fatal(err)
				}
				clock = clock.Add(c.step)
				var got time.Duration
				if len(waits) > before {
					got = waits[before]
				}
				if got != c.want[i] {
					t.Fatalf("read %d waited %s, want %s", i, got, c.want[i])
				}
			}
		})
	}
}

// After bulk, a trickle is coalesced again once a wait happened.
func TestCoalescingConnBulkThenTrickle(t *testing.T) {
	clock := time.Unix(1000, 0)
	sizes := []int{}
	for range 100 {
		sizes = append(sizes, 16<<10) // 1.6 MB in 10 ms
	}
	sizes = append(sizes, 100)
	for range 200 {
		sizes = append(sizes, 100) // then a trickle, a read per ms
	}
	sc := &scriptConn{sizes: sizes, step: 100 * time.Microsecond}
	waits := 0
	conn := &coalescingConn{Conn: sc, delay: 50 * time.Millisecond, now: func() time.Time { return clock }}
	conn.sleep = func(d time.Duration) { waits++; clock = clock.Add(d) }
	buf := make([]byte, 16<<10)
	for range 100 {
		if _, err := conn.Read(buf); err != nil {
			t.Fatal(err)
		}
		clock = clock.Add(sc.step)
	}
	if waits != 0 {
		t.Fatalf("bulk reads waited %d times", waits)
	}
	sc.step = time.Millisecond
	for range 201 {
		if _, err := conn.Read(buf); err != nil {
			t.Fatal(err)
		}
		clock = clock.Add(sc.step)
	}
	// 1.6 MB since the start: bulk (above bulkRate) until the average
	// drops below it, about 0.1 s after the start; from then on every read
	// waits.
	if waits < 100 || waits > 120 {
		t.Fatalf("the trickle after the bulk waited %d times in 201 reads, want 100-120", waits)
	}
}

// The wait raises the socket's low-water mark and the read after it lowers
// it again; reads that do not wait leave it alone.
func TestCoalescingConnLowat(t *testing.T) {
	clock := time.Unix(1000, 0)
	var marks []int
	conn := &coalescingConn{
		Conn:  &scriptConn{sizes: []int{16 << 10, 100, 100, 16 << 10, 100}},
		delay: 50 * time.Millisecond,
		now:   func() time.Time { return clock },
		lowat: func(n int) error { marks = append(marks, n); return nil },
	}
	conn.sleep = func(d time.Duration) {
		if len(marks) == 0 || marks[len(marks)-1] != waitLowat {
			t.Errorf("waiting with the marks %v, want %d last", marks, waitLowat)
		}
		marks = append(marks, -1) // the wait
		clock = clock.Add(d)
	}
	buf := make([]byte, 16<<10)
	for range 5 {
		if _, err := conn.Read(buf); err != nil {
			t.Fatal(err)
		}
		clock = clock.Add(time.Millisecond)
	}
	// Reads 1 (full) and 2 (after a full one) do not wait; 3 waits; 4
	// waits (after the short read 3); 5 follows the full read 4.
	want := []int{waitLowat, -1, 1, waitLowat, -1, 1}
	if fmt.Sprint(marks) != fmt.Sprint(want) {
		t.Fatalf("marks and waits %v, want %v", marks, want)
	}
}
