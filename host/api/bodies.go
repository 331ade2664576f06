package api

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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
	// held is the budget's bytes held by bodies being handled, waiting the requests
	// waiting for their share (metrics).
	held, waiting atomic.Int64
}

func newBodyBudget(max int64) *bodyBudget {
	return &bodyBudget{sem: semaphore.NewWeighted(max), max: max, wait: bodyWait}
}

// collectors are the budget's gauges: how much of it is held, how many requests wait for
// their share, and its size.
func (b *bodyBudget) collectors() []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "limit_http_body_bytes_in_flight", Help: "Bytes of api.max_body_bytes_in_flight held by the large request bodies (64 KiB and more) being handled.",
		}, func() float64 { return float64(b.held.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "limit_http_bodies_waiting", Help: "Requests whose large body waits, unread, for its share of api.max_body_bytes_in_flight.",
		}, func() float64 { return float64(b.waiting.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "limit_http_body_bytes_in_flight_max", Help: "api.max_body_bytes_in_flight.",
		}, func() float64 { return float64(b.max) }),
	}
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
	b.waiting.Add(1)
	err := b.sem.Acquire(ctx, share)
	b.waiting.Add(-1)
	if err != nil {
		what := fmt.Sprintf("a body of %d bytes", r.ContentLength)
		if !known {
			what = fmt.Sprintf("a body of unknown length (counted as api.max_body_bytes, %d)", n)
		}
		return nil, fmt.Sprintf("%s waited %v for other large bodies being handled (api.max_body_bytes_in_flight %d) and was not read; retry",
			what, b.wait, b.max)
	}
	b.held.Add(share)
	return func() {
		b.held.Add(-share)
		b.sem.Release(share)
	}, ""
}
