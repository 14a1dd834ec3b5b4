package causality

// chunks hands out values of T carved from chunks: one allocation for many
// values, and a value never moves (pointers to it stay valid), unlike the
// elements of a growing slice. Chunks double with the count handed out so
// far, from one (an episode of a single object wastes nothing) up to
// maxChunk; at most about half of a chunk is ever unused.
type chunks[T any] struct {
	free []T
	n    int
}

const maxChunk = 64

func (c *chunks[T]) new(v T) *T {
	if len(c.free) == 0 {
		c.free = make([]T, min(max(c.n, 1), maxChunk))
	}
	p := &c.free[0]
	*p = v
	c.free = c.free[1:]
	c.n++
	return p
}
