package api

import (
	"net/http"

	"github.com/limitgraph/limit/host/governance"
	"github.com/limitgraph/limit/sdk/base"
)

// probeResponse is the body of GET /v1/health/live and GET /v1/health/ready.
type probeResponse struct {
	// Status is "ok", or for readiness "unavailable".
	Status string `json:"status"`
	// Reasons say why the host is not ready: a plugin it needs (by its id, such as
	// storage.bolt or governance.jailbreak) is down.
	Reasons []string `json:"reasons,omitempty"`
}

// live answers 200 while the process serves requests at all, during a shutdown's drain
// too: a liveness probe that failed would have the host restarted, every session's
// interpreter with it, for what a restart does not cure (a plugin down is restarted by
// the host itself).
func (s *Server) live(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, probeResponse{Status: "ok"})
}

// ready answers 200 when the host can serve executions: its storage is up, the disk of
// its data_dir above its reserve (host.min_free_disk), and so is
// every governance rule, unless the default policy runs executions without them
// (fail_open, permissive); 503 otherwise, and from the start of a shutdown (answered
// before any route, see ServeHTTP). A session's own runner process, or a runner's pool,
// does not count: it is that session's or runner's trouble, and the host replaces it.
func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	failOpen := false
	if p, err := governance.Lookup(s.opts.DefaultPolicy); err == nil {
		failOpen = p.FailOpen
	}
	resp := probeResponse{Status: "ok"}
	for _, p := range s.opts.Plugins() {
		if p.Healthy || p.Session != "" {
			continue
		}
		switch {
		case p.Kind == base.KindStorage:
			resp.Reasons = append(resp.Reasons, p.Kind+"."+p.Name+" is unavailable: executions cannot be recorded")
		case p.Kind == base.KindGovernance && !failOpen:
			resp.Reasons = append(resp.Reasons, p.Kind+"."+p.Name+" is unavailable: policy "+s.opts.DefaultPolicy+" does not run unchecked inputs")
		}
	}
	if s.opts.Disk != nil {
		if d := s.opts.Disk(); d != nil && !d.Healthy {
			resp.Reasons = append(resp.Reasons, "the host's disk is nearly full: executions are refused until space is freed (host.min_free_disk)")
		}
	}
	code := http.StatusOK
	if len(resp.Reasons) > 0 {
		resp.Status, code = "unavailable", http.StatusServiceUnavailable
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, code, resp)
}
