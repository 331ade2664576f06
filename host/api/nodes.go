package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/limitgraph/limit/host/execution"
)

// registerNodes registers the routes about the hosts (nodes) sharing the storage.
func (s *Server) registerNodes() {
	if s.opts.Engine == nil {
		return
	}
	s.handle(route{Method: "POST", Path: "/nodes/{node}/settle", Summary: "Settle the executions another host (node) left running as interrupted, as its own restart would: for a host gone for good (operators only)",
		Tag: "host", Response: settleResponse{}, Errors: []int{409}, Operator: true}, s.settleNode)
}

// settleResponse is the body of POST /v1/nodes/{node}/settle.
type settleResponse struct {
	// Node is the node settled.
	Node string `json:"node"`
	// Settled is how many traces got an executed entry with status "interrupted" (the
	// node's markers of executions whose outcome was stored are only removed).
	Settled int `json:"settled"`
}

func (s *Server) settleNode(w http.ResponseWriter, r *http.Request) {
	node := r.PathValue("node")
	n, err := s.opts.Engine.SettleNode(r.Context(), node)
	if errors.Is(err, execution.ErrOwnNode) {
		writeProblem(w, r, http.StatusConflict, "node "+node+" is this host: its executions are running, and those a run before left are settled when it starts; settle a node from another host, once that node is gone", map[string]any{"node": node})
		return
	}
	var unknown *execution.UnknownNodeError
	if errors.As(err, &unknown) {
		writeProblem(w, r, http.StatusNotFound, unknown.Error(), map[string]any{"node": node})
		return
	}
	if n > 0 {
		s.opts.Logger.Warn("an operator settled another node's running executions as interrupted", append(requestIDs(w.Header().Get(requestIDHeader), r), "node", node, "traces", n)...)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, settleResponse{Node: node, Settled: n})
}

// writeRunning answers the merge of execution trace id, which has not ended (run): 409
// naming the node that runs it and since when, and what to do if that host is gone.
func (s *Server) writeRunning(w http.ResponseWriter, r *http.Request, id string, run *execution.Run) {
	extra := map[string]any{"trace_id": id, "running": true, "node": run.Node}
	where := "on this host"
	if run.Node != "" {
		where = "on node " + run.Node
		if run.Node == s.opts.Engine.Node {
			where += " (this host)"
		}
	}
	if !run.Since.IsZero() {
		extra["since"] = run.Since.UTC()
		where += " (since " + run.Since.UTC().Format(time.RFC3339) + ")"
	}
	detail := "the execution is still running " + where + "; merge it once it has ended"
	switch {
	case run.Pending:
		detail = "the execution has ended " + where + ", but its outcome waits for the storage to take it; merge it once it is stored"
		extra["record_pending"] = true
	case run.Node != s.opts.Engine.Node:
		detail += "; if that host is gone for good, an operator settles its executions as interrupted with POST /v1/nodes/" + run.Node + "/settle on another host"
	}
	writeProblem(w, r, http.StatusConflict, detail, extra)
}
