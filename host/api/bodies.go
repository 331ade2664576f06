package api

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"golang.org/x/sync/semaphore"
)

// largeBody is the size from which a request's body counts against
// api.max_body_bytes_in_flight: smaller bodies never wait.
const largeBody = 64 << 10

// bodyWait bounds how long a large body waits for its turn before its request is refused
// with 503 and Retry-After.
const bodyWait = 10 * time.Second

// bodyBudget bounds the large request bodies being handled at once. A body is held in
// memory while its request is handled, and more than once (read, decoded, sent to each
// rule plugin): eight concurrent evaluations of 10 MB prompts took limitd to 562 MB. So a
// request whose body is large (by its Content-Length, or max_body_bytes when it has none)
// waits, before its body is read, until its size fits (the whole budget for a body larger
// than it); one that cannot within bodyWait, or before its client leaves, is refused.
type bodyBudget struct {
	sem  *semaphore.Weighted
	max  int64
	wait time.Duration
}

func newBodyBudget(max int64) *bodyBudget {
	return &bodyBudget{sem: semaphore.NewWeighted(max), max: max, wait: bodyWait}
}

// admit waits until r's body fits and returns what gives its share back; when it does not
// fit in time it returns why instead (the request is then refused, 503, its body unread).
func (s *Server) admit(r *http.Request) (release func(), why string) {
	n := r.ContentLength
	if r.Body == nil || r.Body == http.NoBody || n == 0 {
		return func() {}, ""
	}
	known := n > 0
	if n < 0 || n > s.opts.MaxBodyBytes {
		n = s.opts.MaxBodyBytes // no more is read (413 past it)
	}
	if n < largeBody {
		return func() {}, ""
	}
	b := s.bodies
	share := min(n, b.max)
	ctx, cancel := context.WithTimeout(r.Context(), b.wait)
	defer cancel()
	if err := b.sem.Acquire(ctx, share); err != nil {
		what := fmt.Sprintf("a body of %d bytes", r.ContentLength)
		if !known {
			what = fmt.Sprintf("a body of unknown length (counted as api.max_body_bytes, %d)", n)
		}
		return nil, fmt.Sprintf("%s waited %v for other large bodies being handled (api.max_body_bytes_in_flight %d) and was not read; retry",
			what, b.wait, b.max)
	}
	return func() { b.sem.Release(share) }, ""
}
