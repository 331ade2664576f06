package api

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/limitgraph/limit/internal/bytebudget"
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
// than it); one that cannot within wait, or before its client leaves, is refused. A share
// is held from before the body is read until its request is answered, so a client that
// sends its body slowly holds it until api.read_timeout ends the read: the declared
// length, or max_body_bytes for a chunked body.
type bodyBudget struct {
	*bytebudget.Budget
	wait time.Duration
}

func newBodyBudget(max int64) *bodyBudget {
	return &bodyBudget{Budget: bytebudget.New(max), wait: bodyWait}
}

// collectors are the budget's gauges: how much of it is held, how many requests wait for
// their share, and its size.
func (b *bodyBudget) collectors() []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "limit_http_body_bytes_in_flight", Help: "Bytes of api.max_body_bytes_in_flight held by the large request bodies (64 KiB and more) being handled.",
		}, func() float64 { return float64(b.Held()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "limit_http_bodies_waiting", Help: "Requests whose large body waits, unread, for its share of api.max_body_bytes_in_flight.",
		}, func() float64 { return float64(b.Waiting()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "limit_http_body_bytes_in_flight_max", Help: "api.max_body_bytes_in_flight.",
		}, func() float64 { return float64(b.Max()) }),
	}
}

// declaredTooLarge says why r's body is refused before a byte of it is read ("" when it
// is not): its Content-Length exceeds api.max_body_bytes. So no 100 Continue is sent
// (net/http sends it at the first read), and no share of max_body_bytes_in_flight is held
// for a body that would be refused at its limit anyway.
func (s *Server) declaredTooLarge(r *http.Request) string {
	if r.ContentLength <= s.opts.MaxBodyBytes {
		return ""
	}
	return fmt.Sprintf("request body of %d bytes (its Content-Length) exceeds the limit of %d bytes (api.max_body_bytes)", r.ContentLength, s.opts.MaxBodyBytes)
}

// admit waits until r's body fits and returns what gives its share back; when it does not
// fit in time it returns why instead (the request is then refused, 503, its body unread).
func (s *Server) admit(r *http.Request) (release func(), why string) {
	n := r.ContentLength
	if r.Body == nil || r.Body == http.NoBody || n == 0 {
		return func() {}, ""
	}
	known := n > 0
	if n < 0 {
		// Of unknown length (chunked): no more than max_body_bytes is read (413 past it).
		// A Content-Length above it was refused before admit.
		n = s.opts.MaxBodyBytes
	}
	if n < largeBody {
		return func() {}, ""
	}
	b := s.bodies
	ctx, cancel := context.WithTimeout(r.Context(), b.wait)
	defer cancel()
	release, err := b.Acquire(ctx, n)
	if err != nil {
		what := fmt.Sprintf("a body of %d bytes", r.ContentLength)
		if !known {
			what = fmt.Sprintf("a body of unknown length (counted as api.max_body_bytes, %d)", n)
		}
		return nil, fmt.Sprintf("%s waited %v for other large bodies being handled (api.max_body_bytes_in_flight %d) and was not read; retry",
			what, b.wait, b.Max())
	}
	return release, ""
}
