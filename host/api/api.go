// Package api serves the host's REST API: canonical routes under /v1/, the seed system's
// unversioned routes for compatibility, JSON in and out, errors as RFC 9457 problem+json,
// an X-Request-Id on every response, and an OpenAPI 3.1 document generated from the
// route table.
package api

import (
	"context"
	"errors"
	"net/http"
	"path"
	"runtime/debug"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/limitgraph/limit/host/backup"
	"github.com/limitgraph/limit/host/config"
	"github.com/limitgraph/limit/host/diskspace"
	"github.com/limitgraph/limit/host/execution"
	"github.com/limitgraph/limit/host/governance"
	"github.com/limitgraph/limit/host/plugins"
	"github.com/limitgraph/limit/host/session"
	"github.com/limitgraph/limit/host/trace"
	"github.com/limitgraph/limit/internal/keyed"
	"github.com/limitgraph/limit/sdk/storage"
)

// Options configure the API server. Only Version and Plugins are needed for health; the
// rest enable their routes' features.
type Options struct {
	// Version of the host, reported by /v1/health.
	Version string
	// Plugins reports every plugin process's state.
	Plugins func() []plugins.Status
	// Disk, when set, reports the free space of the data_dir's disk against
	// host.min_free_disk: below it the health answer is degraded.
	Disk func() *diskspace.Status
	// PluginRestarts counts, by plugin and reason, the plugin processes restarted or
	// replaced since the host started (limit_plugin_restarts_total); nil counts none.
	PluginRestarts func() []plugins.RestartCount
	// Collectors are further metrics served at GET /metrics (the storage's calls).
	Collectors []prometheus.Collector
	// MaxBodyBytes bounds request bodies.
	MaxBodyBytes int64
	// MaxBodyBytesInFlight bounds the large request bodies handled at once (see
	// bodyBudget); config.DefaultMaxBodyBytesInFlight when 0.
	MaxBodyBytesInFlight int64
	Logger               hclog.Logger

	Sessions      *session.Manager
	Engine        *execution.Engine
	Traces        *trace.Store
	Rules         *governance.Evaluator
	Stats         *governance.StatsStore
	DefaultPolicy string
	// Store is the storage backend (RD points live in each session's namespace).
	Store storage.Storage
	// RD holds the configured FGW defaults.
	RD config.RD
	// RefusePeer, if set, says why the request's connection may not use the API ("" when
	// it may): the daemon refuses code it sandboxes, which a session allowed the network
	// could otherwise point at the API.
	RefusePeer func(r *http.Request) string
	// Tokens, when not empty, are the bearer tokens the API accepts (their SHA-256
	// digests), each an operator's or a user's: every request but GET /health and
	// /v1/health must carry one, and reaches what its principal does (see principal).
	// Without tokens every request is an operator's.
	Tokens []config.Token
	// CheckHosts refuses requests whose Host names a host other than an IP address,
	// localhost or one of AllowedHosts (config API.AllowedHosts; "*" for any), or whose
	// Origin names one other than a loopback address, localhost, the API's own origin or
	// one of AllowedHosts: see foreignHost. The daemon always sets it.
	CheckHosts   bool
	AllowedHosts []string
	// Backup, when set, makes an online backup (GET /v1/backup); the caller closes it.
	Backup func(ctx context.Context) (*backup.Backup, error)
}

// Server is the HTTP API.
type Server struct {
	// tokens are the accepted tokens: Options.Tokens, then those SetTokens gave.
	tokens atomic.Pointer[[]config.Token]
	opts   Options
	mux    *http.ServeMux
	routes []route
	doc    map[string]any
	// stopping is cancelled by Stop: long computations (RD) end with it.
	stopping context.Context
	stop     context.CancelFunc
	metrics  *metrics
	// merging is, by trace id, the lock the merges of the trace on this host take in turn.
	merging keyed.Mutex
	// refused writes the warn lines of refused requests, at a bounded rate.
	refused *refusedLog
	// bodies bounds the large request bodies being handled at once.
	bodies *bodyBudget
	// backingUp is set while a backup is made: one at a time.
	backingUp atomic.Bool
}

// New returns the API server.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 10 << 20
	}
	if opts.MaxBodyBytesInFlight <= 0 {
		opts.MaxBodyBytesInFlight = config.DefaultMaxBodyBytesInFlight
	}
	if opts.Plugins == nil {
		opts.Plugins = func() []plugins.Status { return nil }
	}
	if opts.DefaultPolicy == "" {
		opts.DefaultPolicy = "default"
	}
	if opts.RD.Timeout <= 0 {
		opts.RD.Timeout = config.DefaultRDTimeout
	}
	s := &Server{opts: opts, mux: http.NewServeMux(), metrics: newMetrics(opts), refused: newRefusedLog(opts.Logger),
		bodies: newBodyBudget(opts.MaxBodyBytesInFlight)}
	s.metrics.reg.MustRegister(s.bodies.collectors()...)
	s.stopping, s.stop = context.WithCancel(context.Background())
	s.register()
	s.doc = openAPI(opts.Version, s.routes, len(opts.Tokens) > 0)
	tokens := slices.Clone(opts.Tokens)
	s.tokens.Store(&tokens)
	return s
}

// CountPurged adds what a retention sweep purged to the metrics
// (limit_sessions_purged_total, limit_traces_purged_total).
func (s *Server) CountPurged(p session.Purged) {
	s.metrics.purgedSessions.Add(float64(p.Sessions))
	s.metrics.purgedTraces.Add(float64(p.Traces))
}

// Stop begins a shutdown: new requests are answered 503 (a load balancer's health check
// included), and the computations in progress (RD) end instead of letting a graceful
// shutdown wait for them, their requests answered 503. Other running requests go on.
func (s *Server) Stop() { s.stop() }

// handle registers a route under /v1 and, when legacy, also the seed's unversioned path.
func (s *Server) handle(rt route, h http.HandlerFunc) {
	s.routes = append(s.routes, rt)
	if rt.Request == nil && rt.Method != "GET" {
		h = noBody(s, h)
	}
	if rt.Operator {
		h = operatorOnly(s, rt, h)
	}
	if strings.Contains(rt.Path, "{id}") {
		next := h
		h = func(w http.ResponseWriter, r *http.Request) {
			r.SetPathValue("id", upperULID(r.PathValue("id")))
			next(w, r)
		}
	}
	// Every route refuses the query parameters it does not read (see checkQuery).
	inner := h
	h = func(w http.ResponseWriter, r *http.Request) {
		if err := checkQuery(r, rt); err != nil {
			s.fail(w, r, err)
			return
		}
		inner(w, r)
	}
	s.mux.HandleFunc(rt.Method+" /v1"+rt.Path, h)
	if rt.Legacy {
		s.mux.HandleFunc(rt.Method+" "+rt.Path, h)
	}
}

// Routes lists the registered operations as "METHOD /v1/path".
func (s *Server) Routes() []string {
	out := make([]string, len(s.routes))
	for i, rt := range s.routes {
		out[i] = rt.Method + " /v1" + rt.Path
	}
	return out
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	id := newRequestID() // never the client's: see requestIDHeader
	w.Header().Set(requestIDHeader, id)
	// The engine's lines about the request carry its id too.
	r = r.WithContext(execution.WithRequestID(r.Context(), id))
	cw := &countingWriter{ResponseWriter: w}
	sw := &statusWriter{ResponseWriter: cw}
	if srv, ok := r.Context().Value(http.ServerContextKey).(*http.Server); ok {
		sw.writeTimeout = srv.WriteTimeout
	}
	w = sw
	route := "refused"
	who := "" // the principal, once authenticated
	defer func() { accessLog(s.opts.Logger, requestIDs(id, r), r, route, sw.code, time.Since(start), cw.n, who) }()
	defer func() { s.metrics.request(route, sw.code, time.Since(start)) }()
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.opts.Logger.Error("panic in API handler", append(requestIDs(id, r), "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))...)
			writeProblem(w, r, http.StatusInternalServerError, "internal error (request "+id+")", nil)
		}
	}()
	if s.stopping.Err() != nil && strings.TrimPrefix(r.URL.Path, "/v1") != "/health/live" {
		// The listener closes soon; until then a new request is told to go elsewhere
		// (readiness and the health check answer 503), but the host is still alive.
		w.Header().Set("Connection", "close")
		w.Header().Set("Retry-After", "1")
		writeProblem(w, r, http.StatusServiceUnavailable, "limitd is shutting down", nil)
		return
	}
	if s.opts.RefusePeer != nil {
		if why := s.opts.RefusePeer(r); why != "" {
			s.refused.warn("API request refused", append(requestIDs(id, r), "remote", r.RemoteAddr, "path", r.URL.Path, "reason", why)...)
			writeProblem(w, r, http.StatusForbidden, why, nil)
			return
		}
	}
	if s.opts.CheckHosts {
		if why := foreignHost(r, s.opts.AllowedHosts); why != "" {
			s.refused.warn("API request refused", append(requestIDs(id, r), "remote", r.RemoteAddr, "path", r.URL.Path, "reason", why)...)
			writeProblem(w, r, http.StatusForbidden, why, nil)
			return
		}
	}
	if why := repeatedAuthorization(r); why != "" {
		s.refused.warn("API request refused", append(requestIDs(id, r), "remote", r.RemoteAddr, "path", r.URL.Path, "reason", why)...)
		writeProblem(w, r, http.StatusBadRequest, why, nil)
		return
	}
	p, ok := s.authenticate(r)
	if !ok {
		s.refused.warn("API request without a valid token", append(requestIDs(id, r), "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path)...)
		w.Header().Set("WWW-Authenticate", `Bearer realm="limitd"`)
		writeProblem(w, r, http.StatusUnauthorized, "this API needs \"Authorization: Bearer <token>\" with a token from the host's api.token_file", nil)
		return
	}
	if p.scraper && !scraperMay(r) {
		// Whatever the route: a scraper's token reaches no session, trace or code.
		s.refused.warn("API request refused", append(requestIDs(id, r), "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path, "reason", "a metrics token")...)
		writeProblem(w, r, http.StatusForbidden, "this token (a "+config.MetricsRole+" line of api.token_file) reads GET /metrics alone", nil)
		return
	}
	r = withPrincipal(r, p)
	who = p.String()
	h, pattern := s.mux.Handler(r)
	if why := s.declaredTooLarge(r); pattern != "" && why != "" {
		route = pattern
		w.Header().Set("Connection", "close")
		writeProblem(w, r, http.StatusRequestEntityTooLarge, why, nil)
		return
	}
	if pattern != "" {
		release, why := s.admit(r)
		if release == nil {
			route = pattern
			s.refused.warn("API request refused", append(requestIDs(id, r), "remote", r.RemoteAddr, "path", r.URL.Path, "reason", why)...)
			w.Header().Set("Retry-After", "1")
			writeProblem(w, r, http.StatusServiceUnavailable, why, nil)
			return
		}
		defer release()
	}
	r.Body = http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes)
	route = pattern
	if pattern == "" || uncleanPath(r) {
		route = "unmatched"
		// ServeMux's own 404 or 405: keep its status and Allow header, answer as a problem.
		rec := &statusRecorder{header: http.Header{}}
		h.ServeHTTP(rec, r)
		if allow := rec.header.Get("Allow"); allow != "" {
			w.Header().Set("Allow", allow)
		}
		status := rec.status
		if status == 0 || (status >= 300 && status < 400) {
			// A redirect to a cleaned path: an API client gets a plain 404.
			status = http.StatusNotFound
		}
		detail := "no such route: " + r.Method + " " + shownPath(r)
		if status == http.StatusMethodNotAllowed {
			detail = "method " + r.Method + " is not allowed on " + shownPath(r)
		}
		writeProblem(w, r, status, detail, nil)
		return
	}
	// ServeMux.ServeHTTP (not h) sets the path values the handlers read.
	s.mux.ServeHTTP(w, r)
}

// uncleanPath reports whether ServeMux would redirect r to its cleaned path (a double
// slash, a "." or ".." segment): it names the route its cleaned path matches, but the
// API answers such a path 404, as it does one whose cleaned path matches nothing.
func uncleanPath(r *http.Request) bool {
	if r.Method == http.MethodConnect {
		return false // ServeMux does not clean CONNECT paths
	}
	p := r.URL.EscapedPath()
	if p == "" || p[0] != '/' {
		return true
	}
	np := path.Clean(p)
	if strings.HasSuffix(p, "/") && np != "/" {
		np += "/"
	}
	return np != p
}

// healthResponse is the body of GET /v1/health.
type healthResponse struct {
	Status  string `json:"status"`
	Version string `json:"version"`
	// Node is the host's node id (data_dir/node_id), which tells apart hosts sharing a
	// storage (a session's owner_node names it too); given to a caller with a valid token,
	// not to a health check without one.
	Node    string           `json:"node,omitempty"`
	Plugins []plugins.Status `json:"plugins"`
	// Disk is the free space of the disk holding the host's data_dir (its database and the
	// sessions' disk images), against the reserve host.min_free_disk: below it executions
	// are refused and the host is degraded.
	Disk *diskspace.Status `json:"disk,omitempty"`
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	ps := s.opts.Plugins()
	if ps == nil {
		ps = []plugins.Status{}
	}
	resp := healthResponse{Status: "ok", Version: s.opts.Version, Plugins: ps}
	code := http.StatusOK
	for _, p := range ps {
		// A session's own runner process that died is that session's trouble, reported
		// in its execution's result and replaced at its next one; it does not make the
		// host unhealthy (an orchestrator would restart every session for it).
		if !p.Healthy && p.Session == "" {
			resp.Status = "degraded"
			code = http.StatusServiceUnavailable
		}
	}
	if s.opts.Disk != nil {
		if resp.Disk = s.opts.Disk(); resp.Disk != nil && !resp.Disk.Healthy {
			resp.Status = "degraded"
			code = http.StatusServiceUnavailable
		}
	}
	if resp.Disk != nil && !principalOf(r).operator() {
		// How full the host's disk is, and how large, is the operators' to know (it moves
		// with every user's writes); others get whether executions are refused for it.
		d := diskspace.Status{Healthy: resp.Disk.Healthy}
		if !d.Healthy {
			d.Detail = "the host's disk is nearly full; an operator's token shows how full"
		}
		resp.Disk = &d
	}
	resp.Plugins = s.visiblePlugins(r, ps)
	if !principalOf(r).anonymous && s.opts.Sessions != nil {
		resp.Node = s.opts.Sessions.Node()
	}
	writeJSON(w, code, resp)
}

// visiblePlugins is what of ps the request's principal sees: an operator every process;
// a user the host's plugins and the runner processes of its own sessions; the health check
// without a token the host's plugins alone. A session's runner process names the session
// and where its files are, which are its owner's to know. What is host-wide is the
// operators' too: a backend's metrics (its checkpoints, its log's pending bytes) and the
// pool's pre-started processes, whose pids change whenever any user creates a session;
// others see a pool entry only when it is unhealthy (why the host is degraded).
func (s *Server) visiblePlugins(r *http.Request, ps []plugins.Status) []plugins.Status {
	p := principalOf(r)
	if p.operator() {
		return ps
	}
	owned := map[string]bool{}
	// What a backend or a failed start says of itself (a database's address and user, a
	// file's path) is the operators' to know; others get that something is wrong.
	generic := func(st plugins.Status) plugins.Status {
		if st.Detail != "" {
			st.Detail = "the backend reports itself unhealthy; an operator's token shows why"
			if st.Healthy {
				st.Detail = "the backend reports a condition; an operator's token shows it"
			}
		}
		if st.LastError != "" {
			// Whatever it was: the process lost (a crash) or a start that failed.
			st.LastError = "the plugin failed (its process was lost, or a start failed); an operator's token shows why"
		}
		st.Metrics = nil
		return st
	}
	out := make([]plugins.Status, 0, len(ps))
	for _, st := range ps {
		if st.Kind == plugins.KindPool && st.Healthy {
			continue
		}
		if st.Session != "" {
			mine, seen := owned[st.Session]
			if !seen {
				if p.user != "" && s.opts.Sessions != nil {
					if sess, err := s.opts.Sessions.Get(r.Context(), st.Session); err == nil {
						mine = p.owns(sess.Owner)
					}
				}
				owned[st.Session] = mine
			}
			if !mine {
				continue
			}
		}
		out = append(out, generic(st))
	}
	return out
}

func (s *Server) openapi(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.doc)
}

var _ http.Handler = (*Server)(nil)

// SetTokens replaces the tokens the API accepts (a reload of api.token_file): requests
// that arrive from then on are authenticated with them, one already authenticated goes
// on. An API started without tokens stays open, and one with tokens never becomes open:
// tokens must not be empty.
func (s *Server) SetTokens(tokens []config.Token) error {
	if len(*s.tokens.Load()) == 0 {
		return errors.New("the API was started without api.token_file: it takes no tokens until a restart with one")
	}
	if len(tokens) == 0 {
		return errors.New("no tokens: the API would refuse every request")
	}
	tokens = slices.Clone(tokens)
	s.tokens.Store(&tokens)
	return nil
}
