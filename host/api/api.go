// Package api serves the host's REST API: canonical routes under /v1/, the seed system's
// unversioned routes for compatibility, JSON in and out, errors as RFC 9457 problem+json.
package api

import (
	"net/http"
	"runtime/debug"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/limitgraph/limit/host/plugins"
)

// Options configure the API server.
type Options struct {
	// Version of the host, reported by /v1/health.
	Version string
	// Plugins reports every plugin process's state.
	Plugins func() []plugins.Status
	// MaxBodyBytes bounds request bodies.
	MaxBodyBytes int64
	Logger       hclog.Logger
}

// Server is the HTTP API.
type Server struct {
	opts Options
	mux  *http.ServeMux
}

// New returns the API server.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 10 << 20
	}
	if opts.Plugins == nil {
		opts.Plugins = func() []plugins.Status { return nil }
	}
	s := &Server{opts: opts, mux: http.NewServeMux()}
	s.routes()
	return s
}

func (s *Server) routes() {
	// Each route is served under /v1/ and, for the seed's clients, without the prefix.
	s.handle("GET /health", s.health)
}

func (s *Server) handle(pattern string, h http.HandlerFunc) {
	method, path, _ := cutPattern(pattern)
	s.mux.HandleFunc(method+" /v1"+path, h)
	s.mux.HandleFunc(method+" "+path, h)
}

func cutPattern(p string) (method, path string, ok bool) {
	for i := 0; i < len(p); i++ {
		if p[i] == ' ' {
			return p[:i], p[i+1:], true
		}
	}
	return "", p, false
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	defer func() {
		if v := recover(); v != nil {
			s.opts.Logger.Error("panic in API handler", "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
			writeProblem(w, r, http.StatusInternalServerError, "internal error", nil)
		}
	}()
	r.Body = http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes)
	h, pattern := s.mux.Handler(r)
	if pattern == "" {
		// ServeMux's own 404 or 405: keep its status and Allow header, answer as a problem.
		rec := &statusRecorder{header: http.Header{}}
		h.ServeHTTP(rec, r)
		if allow := rec.header.Get("Allow"); allow != "" {
			w.Header().Set("Allow", allow)
		}
		status := rec.status
		if status == 0 {
			status = http.StatusNotFound
		}
		detail := "no such route: " + r.Method + " " + r.URL.Path
		if status == http.StatusMethodNotAllowed {
			detail = "method " + r.Method + " is not allowed on " + r.URL.Path
		}
		writeProblem(w, r, status, detail, nil)
		return
	}
	h.ServeHTTP(w, r)
	s.opts.Logger.Trace("request", "method", r.Method, "path", r.URL.Path, "duration", time.Since(start))
}

// healthResponse is the body of GET /v1/health.
type healthResponse struct {
	Status  string           `json:"status"`
	Version string           `json:"version"`
	Plugins []plugins.Status `json:"plugins"`
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	ps := s.opts.Plugins()
	if ps == nil {
		ps = []plugins.Status{}
	}
	resp := healthResponse{Status: "ok", Version: s.opts.Version, Plugins: ps}
	code := http.StatusOK
	for _, p := range ps {
		if !p.Healthy {
			resp.Status = "degraded"
			code = http.StatusServiceUnavailable
		}
	}
	writeJSON(w, code, resp)
}

var _ http.Handler = (*Server)(nil)
