package api

import (
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
)

// countingWriter counts the bytes of an answer's body, for the access log. It sits under
// statusWriter; http.ResponseController reaches the connection through Unwrap.
type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (w *countingWriter) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}

func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// quietRoutes are the routes whose access lines go to DEBUG: probes and scrapers call
// them every few seconds, and would bury the other lines at INFO.
func quietRoute(pattern string) bool {
	_, p, _ := strings.Cut(pattern, " ")
	p = strings.TrimPrefix(p, "/v1")
	return p == "/metrics" || isHealthPath(p)
}

// isHealthPath reports whether p (a route's path, without /v1) is one of the health
// checks, which take no token and no query parameter.
func isHealthPath(p string) bool {
	return p == "/health" || p == "/health/live" || p == "/health/ready"
}

// accessLog writes the one line of a request: at INFO, or DEBUG for the health checks and
// the metrics. It names the route's pattern, not the path (whose ids are in the lines the
// handlers write) nor the query string, and never the bodies. route is the matched pattern
// ("refused" for a request refused before routing, "unmatched" for a 404 or 405).
func accessLog(log hclog.Logger, args []any, r *http.Request, route string, status int, took time.Duration, bytes int64, principal string) {
	level := hclog.Info
	if quietRoute(route) {
		level = hclog.Debug
	}
	if log.GetLevel() > level {
		return // spares building the line's arguments
	}
	if status == 0 {
		status = http.StatusOK // nothing written: net/http answers 200
	}
	args = append(args, "method", r.Method, "route", route, "status", status, "duration", took, "bytes", bytes)
	if principal != "" {
		args = append(args, "principal", principal)
	}
	log.Log(level, "request", args...)
}
