package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/mtibben/confusables"
	"golang.org/x/text/unicode/norm"

	"github.com/limitgraph/limit/host/diskspace"
	"github.com/limitgraph/limit/host/execution"
	"github.com/limitgraph/limit/host/governance"
	"github.com/limitgraph/limit/host/plugins"
	"github.com/limitgraph/limit/host/session"
	"github.com/limitgraph/limit/host/trace"
	"github.com/limitgraph/limit/sdk/base"
	sdkgov "github.com/limitgraph/limit/sdk/governance"
	"github.com/limitgraph/limit/sdk/storage"
)

func (s *Server) register() {
	s.handle(route{Method: "GET", Path: "/health", Summary: "Health of the host and its plugins", Tag: "host", Response: healthResponse{}, Legacy: true}, s.health)
	s.handle(route{Method: "GET", Path: "/health/live", Summary: "Liveness: 200 while the host serves requests at all (for a probe that restarts the host)", Tag: "host", Response: probeResponse{}, Legacy: true}, s.live)
	s.handle(route{Method: "GET", Path: "/health/ready", Summary: "Readiness: 200 when the host can serve executions (storage, and the rules the default policy needs, are up; not shutting down), else 503 (for a load balancer)", Tag: "host", Response: probeResponse{}, Legacy: true}, s.ready)
	s.handle(route{Method: "GET", Path: "/openapi.json", Summary: "This OpenAPI document", Tag: "host", Response: map[string]any{}}, s.openapi)
	s.handle(route{Method: "GET", Path: "/metrics", Summary: "Prometheus metrics: requests, executions, flags, plugin processes, the Go runtime (operators' tokens, and api.token_file's :metrics tokens)", Tag: "host", Binary: "text/plain; version=0.0.4", Legacy: true, Operator: true, Scraper: true}, s.metrics.handler().ServeHTTP)
	s.registerBackup()
	if s.opts.Sessions == nil {
		return
	}
	s.handle(route{Method: "POST", Path: "/sessions", Summary: "Create a session (owned by the user whose token creates it; an operator may name the owner)", Tag: "sessions", Request: session.CreateRequest{}, Response: session.Session{}, Status: 201, Errors: []int{403}, Legacy: true}, s.createSession)
	s.handle(route{Method: "GET", Path: "/sessions", Summary: "List sessions (a user token's own; an operator's all, or the owner's)", Tag: "sessions", Response: sessionList{}, Query: []string{"per_page", "next_token", "include_deleted", "owner"}, Errors: []int{403}, Legacy: true}, s.listSessions)
	s.handle(route{Method: "GET", Path: "/sessions/{id}", Summary: "Get a session", Tag: "sessions", Response: session.Session{}, Legacy: true}, s.getSession)
	s.handle(route{Method: "DELETE", Path: "/sessions/{id}", Summary: "Delete a session: stop its runner processes, keep its traces", Tag: "sessions", Response: session.Session{}, Query: []string{"owner_gone"}, Errors: []int{403, 409}, Legacy: true}, s.deleteSession)
	s.handle(route{Method: "POST", Path: "/sessions/{id}/executions", Summary: "Run an execution in the session (Accept: text/event-stream streams output)", Tag: "executions", Request: execution.Request{}, Response: execution.Result{}, Stream: true, Errors: []int{403, 409, 422, 429, 500, 503, 507}, Legacy: true}, s.execute)
	s.handle(route{Method: "GET", Path: "/sessions/{id}/traces", Summary: "List a session's traces", Tag: "traces", Response: traceList{}, Query: []string{"per_page", "next_token"}, Legacy: true}, s.listSessionTraces)
	s.handle(route{Method: "POST", Path: "/traces", Summary: "Create a trace", Tag: "traces", Request: createTraceRequest{}, Response: trace.Record{}, Status: 201, Errors: []int{404, 409, 507}, Legacy: true}, s.createTrace)
	s.handle(route{Method: "GET", Path: "/traces/{id}", Summary: "Get a trace with its provenance chain", Tag: "traces", Response: traceView{}, Errors: []int{409}, Legacy: true}, s.getTrace)
	s.handle(route{Method: "POST", Path: "/traces/{id}/provenance", Summary: "Append a provenance entry", Tag: "traces", Request: appendRequest{}, Response: trace.Entry{}, Status: 201, Errors: []int{409, 507}, Legacy: true}, s.appendProvenance)
	s.handle(route{Method: "GET", Path: "/traces/{id}/provenance/verify", Summary: "Verify a trace's provenance chain", Tag: "traces", Response: trace.VerifyResult{}, Legacy: true}, s.verifyProvenance)
	s.handle(route{Method: "POST", Path: "/traces/{id}/merge", Summary: "Merge a trace into the shared record (409 with reasons when refused)", Tag: "governance", Response: mergeResponse{}, Errors: []int{409, 503}, Legacy: true}, s.merge)
	s.handle(route{Method: "GET", Path: "/merged", Summary: "List merged traces", Tag: "governance", Response: traceList{}, Query: []string{"per_page", "next_token"}, Legacy: true}, s.listMerged)
	s.handle(route{Method: "POST", Path: "/artifacts/export", Summary: "Export traces and provenance as a verifiable bundle", Tag: "traces", Request: exportRequest{}, Binary: "application/gzip", Errors: []int{404, 409}, Legacy: true}, s.export)
	s.handle(route{Method: "POST", Path: "/governance/flag", Summary: "Flag a trace", Tag: "governance", Request: flagRequest{}, Response: trace.Record{}, Status: 201, Errors: []int{404, 409, 507}, Legacy: true}, s.flag)
	s.handle(route{Method: "GET", Path: "/governance/stats", Summary: "Governance statistics per session (a page of the sessions the token reaches, or the owner's, or session_id's) and their sum", Tag: "governance", Response: statsResponse{}, Query: []string{"session_id", "per_page", "next_token", "owner"}, Errors: []int{403, 404}, Legacy: true}, s.stats)
	s.handle(route{Method: "POST", Path: "/governance/evaluate", Summary: "Evaluate a text with every configured rule, without running it", Tag: "governance", Request: evaluateRequest{}, Response: evaluateResponse{}, Legacy: true}, s.evaluate)
	s.handle(route{Method: "GET", Path: "/provenance/key", Summary: "The host's provenance signing key (public half, PEM) and its fingerprint", Tag: "traces", Response: keyResponse{}}, s.provenanceKey)
	s.registerRD()
	s.registerNodes()
	s.handle(route{Method: "GET", Path: "/governance/policies", Summary: "The policy presets", Tag: "governance", Response: map[string]governance.Policy{}, Legacy: true}, s.policies)
}

// problemEvent is the problem fail answers for err, as the error event of a stream that
// has begun (whose own status was 200): its status says what the answer's would have
// (a 503 to retry, a 507, a 500), and a Retry-After becomes retry_after, in seconds. The
// log line of an unexpected error names the stream's request id, read from w.
func (s *Server) problemEvent(w http.ResponseWriter, r *http.Request, err error) map[string]any {
	rec := &statusRecorder{header: http.Header{requestIDHeader: {w.Header().Get(requestIDHeader)}}}
	s.fail(rec, r, err)
	var p map[string]any
	if json.Unmarshal(rec.body.Bytes(), &p) != nil {
		p = map[string]any{"type": "about:blank", "title": http.StatusText(http.StatusInternalServerError), "status": http.StatusInternalServerError, "detail": err.Error()}
	}
	if n, err := strconv.Atoi(rec.header.Get("Retry-After")); err == nil {
		p["retry_after"] = n
	}
	return p
}

// fail maps an error to its problem response.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var (
		bad     *errBadRequest
		denied  *errForbidden
		mbe     *http.MaxBytesError
		blocked *execution.BlockedError
		media   *errUnsupportedMedia
		slow    *errBodyTimeout
		pending *execution.RecordPendingError
		lost    *execution.RecordLostError
		other   *session.OtherNodeError
		limit   *session.UserLimitError
		damaged *trace.DamagedError
	)
	switch {
	case errors.As(err, &limit):
		ext := map[string]any{"field": limit.Field, "runner": limit.Runner}
		if limit.Field != "allow_network" {
			ext["asked"] = limit.Asked
			if !limit.Unreported {
				ext["ceiling"] = limit.Ceiling
			}
		}
		writeProblem(w, r, http.StatusForbidden, limit.Error(), ext)
	case errors.As(err, &other):
		writeProblem(w, r, http.StatusConflict, other.Error(), map[string]any{"owner_node": other.Node})
	case errors.As(err, &pending):
		// The code ran: no Retry-After, which would invite running it twice. What the
		// storage said (a file's path, a database's address) is for the log, as for any
		// storage failure.
		s.opts.Logger.Warn("an execution ran but its trace waits for the storage", append(requestIDs(w.Header().Get(requestIDHeader), r),
			"trace", pending.TraceID, "error", pending.Err)...)
		detail := fmt.Sprintf("the execution ran (status %s) but its trace could not be stored yet; it will be recorded when storage is back: do not run it again (the cause is in the daemon's log)", pending.Status)
		writeProblem(w, r, http.StatusServiceUnavailable, detail, pendingMembers(pending))
	case errors.As(err, &lost):
		// The code ran and its record is lost. Not a 503 or a 507, which say the request
		// was not served for now and invite running it again once storage is back: a 500,
		// the host's own failure, with no Retry-After, what ran and record_lost. What the
		// storage and the journal said (a path, a database's address) is for the log.
		s.opts.Logger.Error("an execution ran but its record is lost", "request_id", w.Header().Get(requestIDHeader),
			"path", r.URL.Path, "trace", lost.TraceID, "error", err)
		detail := fmt.Sprintf("the execution ran (status %s) but its trace could not be stored, nor its outcome kept to store it later: "+
			"its record is lost, and this answer is all that is left of what it did (the cause is in the daemon's log); do not run it again", lost.Status)
		writeProblem(w, r, http.StatusInternalServerError, detail, resultMembers(lost.TraceID, lost.Status, lost.Result, "record_lost"))
	case errors.As(err, &media):
		if media.encoding != "" {
			w.Header().Set("Accept-Encoding", "identity") // RFC 9110 §15.5.16
		}
		writeProblem(w, r, http.StatusUnsupportedMediaType, media.Error(), nil)
	case errors.As(err, &slow):
		// The connection's read deadline has passed: it cannot carry another request.
		w.Header().Set("Connection", "close")
		writeProblem(w, r, http.StatusRequestTimeout, slow.Error(), nil)
	case errors.As(err, &bad):
		writeProblem(w, r, http.StatusBadRequest, bad.msg, nil)
	case errors.As(err, &denied):
		writeProblem(w, r, http.StatusForbidden, denied.msg, nil)
	case errors.As(err, &mbe):
		writeProblem(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body exceeds the limit of %d bytes", mbe.Limit), nil)
	case errors.As(err, &blocked):
		writeProblem(w, r, http.StatusForbidden, blocked.Error(), map[string]any{
			"trace_id": blocked.TraceID, "policy": blocked.Policy, "flags": blocked.Flags, "flag_names": blocked.FlagNames(),
		})
	case errors.Is(err, execution.ErrTooLarge):
		writeProblem(w, r, http.StatusRequestEntityTooLarge, err.Error(), nil)
	case errors.Is(err, session.ErrNotFound), errors.Is(err, trace.ErrNotFound):
		writeProblem(w, r, http.StatusNotFound, err.Error(), nil)
	case errors.Is(err, session.ErrInvalid), errors.Is(err, execution.ErrInvalid), errors.Is(err, trace.ErrInvalid):
		writeProblem(w, r, http.StatusBadRequest, err.Error(), nil)
	case errors.Is(err, session.ErrDeleted), errors.Is(err, trace.ErrFinal):
		writeProblem(w, r, http.StatusConflict, err.Error(), nil)
	case errors.As(err, &damaged):
		// An export whose scope holds traces that do not verify: none is left out silently,
		// and every one is named.
		s.opts.Logger.Warn("export refused: traces do not verify", append(requestIDs(w.Header().Get(requestIDHeader), r), "method", r.Method, "path", r.URL.Path, "traces", damaged.TraceIDs, "error", err)...)
		writeProblem(w, r, http.StatusConflict, err.Error(), map[string]any{"damaged": damaged.TraceIDs})
	case errors.Is(err, trace.ErrForeignKey):
		// The chain is intact, but signed by a key the host neither holds nor trusts
		// (another host's, or a lost or replaced key file): the trace's state, not the
		// request or the server, is in the way, and the detail names both keys.
		writeProblem(w, r, http.StatusConflict, err.Error(), nil)
	case errors.Is(err, session.ErrBusy):
		w.Header().Set("Retry-After", "1")
		writeProblem(w, r, http.StatusTooManyRequests, err.Error(), nil)
	case errors.Is(err, execution.ErrUncheckable):
		writeProblem(w, r, http.StatusUnprocessableEntity, err.Error(), nil)
	case errors.Is(err, storage.ErrUnavailable), errors.Is(err, storage.ErrNoSpace):
		// What the backend said (a database's address and user, a file's path) is for the
		// operators: the log has it, the client the plugin and the kind of failure.
		code, name := http.StatusServiceUnavailable, "the storage plugin"
		if p, ok := s.opts.Store.(interface{ PluginInfo() base.Info }); ok {
			name = base.KindStorage + "." + p.PluginInfo().Name // its id, as in the log
		}
		var (
			ue     *plugins.UnavailableError
			detail string
			msg    = err.Error()
		)
		switch {
		case errors.Is(err, storage.ErrNoSpace):
			code, detail = http.StatusInsufficientStorage, name+" is out of space: the write was refused"
		case errors.As(err, &ue):
			detail = ue.ID + " is unavailable: " + ue.Reason // the host's own words
		case errors.Is(err, context.DeadlineExceeded), strings.Contains(msg, "did not answer within"),
			strings.Contains(msg, "did not finish"), strings.Contains(msg, "timed out"):
			detail = name + " did not answer in time"
		case strings.Contains(msg, " is full"), strings.Contains(msg, "no space"), strings.Contains(msg, "out of space"):
			detail = name + " is unavailable: its backend is out of space"
		default:
			detail = name + " cannot reach its backend"
		}
		// The host's own words before the backend's (what was not done, "not run, as it
		// could not be recorded") stay.
		sentinel := storage.ErrUnavailable
		if code == http.StatusInsufficientStorage {
			sentinel = storage.ErrNoSpace
		}
		if i := strings.Index(msg, sentinel.Error()); i > 0 {
			detail = msg[:i] + detail
		}
		s.opts.Logger.Warn("storage failed", append(requestIDs(w.Header().Get(requestIDHeader), r), "method", r.Method, "path", r.URL.Path, "status", code, "error", err)...)
		if code == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "5")
		}
		if ue == nil {
			detail += "; the cause is in the daemon's log"
		}
		writeProblem(w, r, code, detail, nil)
	case errors.Is(err, diskspace.ErrLow):
		// Nothing ran: retry once an operator has freed space (the log says where).
		w.Header().Set("Retry-After", "30")
		writeProblem(w, r, http.StatusServiceUnavailable, err.Error(), nil)
	case errors.Is(err, execution.ErrGovernanceUnavailable), errors.Is(err, execution.ErrStopping),
		errors.Is(err, plugins.ErrRunnerBusy):
		// A runner at its max_processes with every process running an execution is a
		// plugin that cannot take the request now, as a rule plugin that cannot answer.
		w.Header().Set("Retry-After", "5")
		writeProblem(w, r, http.StatusServiceUnavailable, err.Error(), nil)
	case errors.Is(err, trace.ErrCorrupt):
		// What storage holds of the trace does not verify (changed or removed behind the
		// host's back): the trace's state, not the request or the server, is in the way,
		// and the detail names the trace and what is wrong. Logged for the operators, who
		// may want to look at the storage, but not as a failure of the host.
		s.opts.Logger.Warn("trace does not verify", append(requestIDs(w.Header().Get(requestIDHeader), r), "method", r.Method, "path", r.URL.Path, "error", err)...)
		writeProblem(w, r, http.StatusConflict, err.Error(), nil)
	case errors.Is(err, context.Canceled):
		// The client went away; nothing useful to answer.
		writeProblem(w, r, 499, "request cancelled", nil)
	default:
		s.opts.Logger.Error("request failed", append(requestIDs(w.Header().Get(requestIDHeader), r), "method", r.Method, "path", r.URL.Path, "error", err)...)
		writeProblem(w, r, http.StatusInternalServerError, err.Error(), nil)
	}
}

// pendingMembers are the extension members of the problem of an execution whose outcome
// is not stored yet: its trace id and status, and what its result would have carried
// (stdout, stderr, output, exit code...; bounded as there). The trace keeps only digests of
// the outputs, and the client is told not to run the code again, so this answer is the
// only place it gets what the code printed. The execution's status is execution_status:
// status is the problem's own.
func pendingMembers(pending *execution.RecordPendingError) map[string]any {
	return resultMembers(pending.TraceID, pending.Status, pending.Result, "record_pending")
}

// resultMembers are the extension members of the problem of an execution that ran but
// whose outcome is not stored (record_pending, or record_lost; flag names which, set to
// true): its trace id, its status as execution_status, and the members of res.
func resultMembers(traceID, status string, res *execution.Result, flag string) map[string]any {
	m := map[string]any{}
	if res != nil {
		var fields map[string]json.RawMessage
		if b, err := json.Marshal(res); err == nil && json.Unmarshal(b, &fields) == nil {
			for k, v := range fields {
				m[k] = v
			}
		}
		delete(m, "status")
	}
	m["trace_id"], m["execution_status"], m[flag] = traceID, status, true
	return m
}

func (s *Server) createSession(w http.ResponseWriter, r *http.Request) {
	var req session.CreateRequest
	if err := decodeJSON(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if p := principalOf(r); !p.operator() {
		if req.Owner != "" && req.Owner != p.user {
			s.fail(w, r, forbidden("a user token creates sessions only for its own user (%s): leave owner out, or use an operator's token", p.user))
			return
		}
		req.Owner, req.ByUser = p.user, true
	}
	sess, err := s.opts.Sessions.Create(r.Context(), req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Location", "/v1/sessions/"+sess.ID)
	writeJSON(w, http.StatusCreated, sess)
}

type sessionList struct {
	Sessions  []*session.Session `json:"sessions"`
	NextToken string             `json:"next_token,omitempty"`
}

func (s *Server) listSessions(w http.ResponseWriter, r *http.Request) {
	per, err := queryInt(r, "per_page", 50, 1, storage.MaxScanLimit)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	all, err := queryBool(r, "include_deleted")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	owner, err := s.ownerFilter(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	token, err := storeToken(r, "sessions")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	list, next, err := s.opts.Sessions.List(r.Context(), per, token, session.Filter{WithDeleted: all, Owner: owner})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if list == nil {
		list = []*session.Session{}
	}
	writeJSON(w, http.StatusOK, sessionList{Sessions: list, NextToken: pageToken("sessions", next)})
}

func (s *Server) getSession(w http.ResponseWriter, r *http.Request) {
	sess, err := s.sessionFor(r, r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, sess)
}

func (s *Server) deleteSession(w http.ResponseWriter, r *http.Request) {
	if err := s.reachSession(r, r.PathValue("id")); err != nil {
		s.fail(w, r, err)
		return
	}
	ownerGone, err := queryBool(r, "owner_gone")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	del := s.opts.Sessions.Delete
	if ownerGone {
		// Another host's session, that host gone for good: only an operator may say so.
		if !principalOf(r).operator() {
			s.fail(w, r, forbidden("owner_gone is for operators: it deletes a session whose host is gone for good"))
			return
		}
		del = s.opts.Sessions.DeleteOwnerGone
	}
	sess, err := del(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, sess)
}

// wantsStream reports whether the client asked for server-sent events: its Accept names
// text/event-stream with a weight above 0 (q=0 means "not acceptable", RFC 9110 §12.4.2),
// and no range that JSON matches (application/json, application/*, */*) with a higher one.
func wantsStream(r *http.Request) bool {
	var stream, json float64
	for _, v := range r.Header.Values("Accept") {
		for _, part := range strings.Split(v, ",") {
			mt, params, _ := strings.Cut(part, ";")
			switch strings.ToLower(strings.TrimSpace(mt)) {
			case "text/event-stream":
				stream = max(stream, acceptWeight(params))
			case "application/json", "application/*", "*/*":
				json = max(json, acceptWeight(params))
			}
		}
	}
	return stream > 0 && stream >= json
}

// acceptWeight is the weight (q) among the parameters of an Accept element, 1 when it has
// none or one that does not parse.
func acceptWeight(params string) float64 {
	for _, p := range strings.Split(params, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(strings.TrimSpace(k), "q") {
			if q, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil && q >= 0 && q <= 1 {
				return q
			}
		}
	}
	return 1
}

// sseWriter writes server-sent events, starting the stream at the first event so that
// errors before any output still get a proper status. Events are written by a goroutine
// of their own, which writes all that are waiting before it flushes once: a runner
// producing tokens faster than one write and flush each is not slowed to that pace, and
// an event that comes alone is still sent at once.
//
// A client that takes nothing for sseStall while events wait (one that stopped reading
// but keeps its connection) counts as gone: cancel is called, which ends the execution
// and frees its slot, and the rest of the stream is dropped.
type sseWriter struct {
	w       http.ResponseWriter
	bw      *bufio.Writer
	rc      *http.ResponseController
	cancel  context.CancelFunc
	started bool // set by the goroutine that queues events
	failed  atomic.Bool
	ch      chan sseEvent
	done    chan struct{}
}

// sseStall is how long a stream may take nothing before its client counts as gone.
var sseStall = 5 * time.Second

// sseKeepAlive is how often a stream with nothing to say sends a comment, so that the
// client, and any proxy between, sees the execution is alive (a model's first token may
// take a minute).
var sseKeepAlive = 15 * time.Second

type sseEvent struct {
	name string
	v    any
}

// sseQueue is how many events may wait for the writer before event blocks.
const sseQueue = 256

func newSSEWriter(w http.ResponseWriter, cancel context.CancelFunc) *sseWriter {
	return &sseWriter{w: w, bw: bufio.NewWriterSize(w, 32<<10), rc: http.NewResponseController(w), cancel: cancel,
		ch: make(chan sseEvent, sseQueue), done: make(chan struct{})}
}

// fail gives the stream up: the client is not taking it.
func (e *sseWriter) fail() {
	if e.failed.CompareAndSwap(false, true) {
		e.cancel()
	}
}

// comment queues an SSE comment (": text"), which clients skip: it starts the stream
// before the first event.
func (e *sseWriter) comment(text string) { e.event("", text) }

// event queues an event, starting the stream (and its writer) at the first; an empty
// name makes v, a string, a comment.
func (e *sseWriter) event(name string, v any) {
	if !e.started {
		e.started = true
		h := e.w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Accel-Buffering", "no")
		e.w.WriteHeader(http.StatusOK)
		go e.loop()
	}
	if e.failed.Load() {
		return
	}
	select {
	case e.ch <- sseEvent{name, v}:
		return
	default:
	}
	t := time.NewTimer(sseStall)
	defer t.Stop()
	select {
	case e.ch <- sseEvent{name, v}:
	case <-t.C:
		e.fail()
	}
}

// close sends what is queued and waits for it to be written; the caller may then use
// the ResponseWriter again.
func (e *sseWriter) close() {
	if e.started {
		close(e.ch)
		<-e.done
	}
}

func (e *sseWriter) loop() {
	defer close(e.done)
	// Whatever the server's write timeout, a write to a client that stopped reading ends
	// after sseStall; the last one leaves as long for the end of the response.
	defer writeWithin(e.rc, sseStall)
	keepAlive := time.NewTicker(sseKeepAlive)
	defer keepAlive.Stop()
	for {
		var ev sseEvent
		select {
		case next, ok := <-e.ch:
			if !ok {
				return
			}
			ev = next
			keepAlive.Reset(sseKeepAlive)
		case <-keepAlive.C:
			ev = sseEvent{v: "keep-alive"}
		}
		if e.failed.Load() {
			continue // dropped: the client is gone
		}
		writeWithin(e.rc, sseStall)
		e.write(ev)
	drain:
		for {
			select {
			case ev, ok := <-e.ch:
				if !ok {
					break drain
				}
				e.write(ev)
			default:
				break drain
			}
		}
		err := e.bw.Flush()
		if err == nil {
			err = e.rc.Flush()
		}
		if err != nil {
			e.fail()
		}
	}
}

func (e *sseWriter) write(ev sseEvent) {
	if ev.name == "" {
		fmt.Fprintf(e.bw, ": %s\n\n", ev.v)
		return
	}
	b, _ := json.Marshal(ev.v)
	fmt.Fprintf(e.bw, "event: %s\ndata: %s\n\n", ev.name, b)
}

func (s *Server) execute(w http.ResponseWriter, r *http.Request) {
	var req execution.Request
	if err := decodeBounded(r, &req, map[string]int{"params": execution.MaxParamValues}); err != nil {
		s.fail(w, r, err)
		return
	}
	// The engine checks the session is active; whose it is, is the API's to check.
	if err := s.reachSession(r, r.PathValue("id")); err != nil {
		s.fail(w, r, err)
		return
	}
	req.RequestedBy = principalOf(r).agent()
	if !principalOf(r).operator() {
		if err := s.opts.Sessions.CheckUserTimeout(req.Runner, req.TimeoutMS); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	if !wantsStream(r) {
		res, err := s.opts.Engine.Execute(r.Context(), r.PathValue("id"), req, nil)
		s.metrics.execution(req.Runner, res, err)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		w.Header().Set("Server-Timing", serverTiming(res.Timings))
		writeJSON(w, http.StatusOK, res)
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	sse := newSSEWriter(w, cancel)
	defer sse.close()
	res, err := s.opts.Engine.Execute(ctx, r.PathValue("id"), req, func(ev execution.Event) {
		if ev.Kind == execution.EventStarted {
			// Checked and running: the stream begins now, not at the first output.
			sse.comment("running")
			return
		}
		sse.event(ev.Kind, ev)
	})
	s.metrics.execution(req.Runner, res, err)
	if err != nil {
		if !sse.started {
			s.fail(w, r, err)
			return
		}
		sse.event("error", s.problemEvent(w, r, err))
		return
	}
	sse.event("result", res)
}

type traceList struct {
	Traces []trace.Record `json:"traces"`
	// Damaged are the ids of the page's traces left out of traces: their stored record
	// does not decode, or (in the shared record) does not match the chain copied with it.
	// Reading one answers 409 saying what is wrong; its verify, valid false.
	Damaged   []string `json:"damaged,omitempty"`
	NextToken string   `json:"next_token,omitempty"`
}

func (s *Server) listSessionTraces(w http.ResponseWriter, r *http.Request) {
	if _, err := s.sessionFor(r, r.PathValue("id")); err != nil {
		s.fail(w, r, err)
		return
	}
	per, err := queryInt(r, "per_page", 50, 1, storage.MaxScanLimit)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	listing := "traces/" + r.PathValue("id")
	token, err := storeToken(r, listing)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	page, err := s.opts.Traces.SessionPage(r.Context(), r.PathValue("id"), per, token)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.traceList(w, r, listing, page))
}

// traceList answers page of listing, logging the damaged traces it leaves out.
func (s *Server) traceList(w http.ResponseWriter, r *http.Request, listing string, page trace.Page) traceList {
	if len(page.Damaged) > 0 {
		s.opts.Logger.Warn("listed traces left out as damaged", append(requestIDs(w.Header().Get(requestIDHeader), r), "path", r.URL.Path, "traces", page.Damaged)...)
	}
	if page.Records == nil {
		page.Records = []trace.Record{}
	}
	return traceList{Traces: page.Records, Damaged: page.Damaged, NextToken: pageToken(listing, page.Next)}
}

type createTraceRequest struct {
	SessionID string          `json:"session_id" api:"required"`
	Data      json.RawMessage `json:"data"`
	Agent     string          `json:"agent,omitempty"`
}

func (s *Server) createTrace(w http.ResponseWriter, r *http.Request) {
	var req createTraceRequest
	if err := decodeCreateTrace(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	req.SessionID = upperULID(req.SessionID)
	data := req.Data
	if len(data) == 0 || string(data) == "null" {
		data = json.RawMessage("{}")
	}
	// The request decoded, so data is valid JSON; the store checks it further.
	if d := bytes.TrimSpace(data); len(d) == 0 || d[0] != '{' {
		s.fail(w, r, badRequest("data must be a JSON object"))
		return
	}
	if err := checkClientAgent(req.Agent, principalOf(r)); err != nil {
		s.fail(w, r, err)
		return
	}
	if _, err := s.activeSessionFor(r, req.SessionID); err != nil {
		s.fail(w, r, err)
		return
	}
	// A trace created without an agent is recorded under the caller's principal, as an
	// entry appended without one is.
	agent := req.Agent
	if agent == "" {
		agent = principalOf(r).agent()
	}
	rec, err := s.opts.Traces.Create(r.Context(), req.SessionID, trace.TraceCustom, data, agent)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Location", "/v1/traces/"+rec.ID)
	writeRecord(w, http.StatusCreated, &rec)
}

type traceView struct {
	trace.Record
	Provenance []trace.Entry `json:"provenance"`
}

func (s *Server) getTrace(w http.ResponseWriter, r *http.Request) {
	rec, err := s.traceFor(r, r.PathValue("id"), true)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	entries, err := s.opts.Traces.Chain(r.Context(), rec.ID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, traceView{Record: rec, Provenance: entries})
}

// hostKinds are provenance kinds only the host appends: a client may not forge them.
var hostKinds = map[string]bool{
	trace.KindExecuted: true, "blocked": true, "governance_error": true, "merge_refused": true,
}

// ignorable reports whether r is unseen in an agent as read: a space or an invisible
// (format) character.
func ignorable(r rune) bool { return unicode.IsSpace(r) || unicode.Is(unicode.Cf, r) }

// readsAs reports whether agent (NFKC) begins with word as it reads, each character read
// as the confusable skeleton (Unicode TS #39) of itself, its lower or its upper case,
// lower-cased (a capital I reads as i or l, Cyrillic "Ӏ" and "ӏ" as l, "і" as i, "е" as e,
// "1" as l, "0" as o, "m" as "rn"), spaces and invisible characters skipped, and then(rest)
// holds for what follows it.
func readsAs(agent, word string, then func(rest string) bool) bool {
	var match func(rest, want string) bool
	match = func(rest, want string) bool {
		if want == "" {
			return then(rest)
		}
		rest = strings.TrimLeftFunc(rest, ignorable)
		if rest == "" {
			return false
		}
		r, size := utf8.DecodeRuneInString(rest)
		readings := []string{
			confusables.Skeleton(string(unicode.ToLower(r))),
			strings.ToLower(confusables.Skeleton(string(r))),
			strings.ToLower(confusables.Skeleton(string(unicode.ToUpper(r)))),
		}
		for i, reading := range readings {
			if slices.Contains(readings[:i], reading) {
				continue
			}
			if next, ok := strings.CutPrefix(want, reading); ok && match(rest[size:], next) {
				return true
			}
		}
		return false
	}
	return match(agent, strings.ToLower(confusables.Skeleton(word)))
}

// separated reports whether rest, what follows a word in an agent, begins with a
// separator: a space, or after any invisible characters a character that is neither a
// letter nor a digit (":", "：", ";", ".", "-", …).
func separated(rest string) bool {
	if rest != "" && unicode.IsSpace([]rune(rest)[0]) {
		return true
	}
	rest = strings.TrimLeftFunc(rest, func(r rune) bool { return unicode.Is(unicode.Cf, r) })
	r, _ := utf8.DecodeRuneInString(rest)
	return rest != "" && !unicode.IsLetter(r) && !unicode.IsDigit(r)
}

// ended reports whether rest, what follows a word in an agent, ends it or is separated
// from it: the word stands alone.
func ended(rest string) bool {
	return strings.TrimFunc(rest, ignorable) == "" || separated(rest)
}

// checkClientAgent refuses an agent a client names that an auditor would read as the host
// itself: execution.Agent in any case or width (NFKC), with spaces or invisible characters
// anywhere, spelled with look-alike letters of other scripts (its Unicode confusable
// skeleton: Cyrillic "і", "1" for "l", "rn" for "m"), or followed by a separator
// ("limitd.governance"). Only the host's own entries carry that name. It refuses likewise
// an agent that reads as a principal's (see principal.agent), which the host records for an
// entry that names none: "operator" alone or followed by a separator, and "user" followed
// by a separator ("user:alice", "usеr:alice" with a Cyrillic "е", "user;alice", "user
// alice", "user：alice"), unless it is the caller's own agent exactly: p may name only its
// own principal, and only as the host spells it.
func checkClientAgent(agent string, p principal) error {
	if agent == "" {
		return nil
	}
	nfkc := norm.NFKC.String(agent)
	lower := strings.Map(unicode.ToLower, nfkc) // "İ" lowers to two runes, "K" (Kelvin) to "k"
	reads := func(word string, then func(string) bool) bool {
		return readsAs(nfkc, word, then) || readsAs(lower, word, then)
	}
	if reads(execution.Agent, ended) {
		return badRequest("agent %q names the host, whose own entries alone carry %q; choose another agent", agent, execution.Agent)
	}
	for _, name := range hostAgents {
		if reads(name, ended) {
			return badRequest("agent %q reads as %q, a name of the host's own (the agent of what it writes on a client's behalf, or a principal it logs); choose another agent", agent, name)
		}
	}
	if agent != p.agent() && (reads("operator", ended) || reads("user", separated)) {
		return badRequest("agent %q reads as a principal's (\"operator\", \"user:NAME\"), which the host records for an entry that names no agent; this token is recorded as %q: leave agent out, or choose another", agent, p.agent())
	}
	return nil
}

// hostAgents are the names, besides execution.Agent, the host records or logs for itself,
// which a client's agent may not read as (alone, or followed by a separator): "api", the
// agent of what the host writes on a client's behalf (a posted flag), and the principals
// "anonymous" (a health check without a token) and "metrics" (a scraper's token).
var hostAgents = []string{"api", "anonymous", "metrics"}

type appendRequest struct {
	Kind  string          `json:"kind" api:"required"`
	Agent string          `json:"agent"`
	Data  json.RawMessage `json:"data"`
}

func (s *Server) appendProvenance(w http.ResponseWriter, r *http.Request) {
	var req appendRequest
	if err := decodeJSON(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if strings.TrimSpace(req.Kind) == "" {
		s.fail(w, r, badRequest("kind is required"))
		return
	}
	if hostKinds[req.Kind] || trace.ReservedKind(req.Kind) {
		s.fail(w, r, badRequest("kind %q is written only by the host; choose another kind", req.Kind))
		return
	}
	if err := checkClientAgent(req.Agent, principalOf(r)); err != nil {
		s.fail(w, r, err)
		return
	}
	if req.Agent == "" {
		// Not "api", the agent of the host's own entries on a client's behalf (a trace's
		// "created" entry, a flag), so that an auditor tells the client's entries apart.
		req.Agent = principalOf(r).agent()
	}
	if _, err := s.traceFor(r, r.PathValue("id"), false); err != nil {
		s.fail(w, r, err)
		return
	}
	e, err := s.opts.Traces.Append(r.Context(), r.PathValue("id"), trace.Entry{Kind: req.Kind, Agent: req.Agent, Data: req.Data})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, e)
}

func (s *Server) verifyProvenance(w http.ResponseWriter, r *http.Request) {
	// A damaged trace (traceFor answers ErrCorrupt to whom may read it) is what verify is
	// for: it answers valid false, saying what is wrong.
	if _, err := s.traceFor(r, r.PathValue("id"), true); err != nil && !errors.Is(err, trace.ErrCorrupt) {
		s.fail(w, r, err)
		return
	}
	v, err := s.opts.Traces.Verify(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

type mergeResponse struct {
	Merged  bool         `json:"merged"`
	TraceID string       `json:"trace_id"`
	Record  trace.Record `json:"trace"`
}

func (s *Server) policyOf(ctx context.Context, sessionID string) (governance.Policy, error) {
	name := s.opts.DefaultPolicy
	if sess, err := s.opts.Sessions.Get(ctx, sessionID); err == nil && sess.Policy != "" {
		name = sess.Policy
	}
	return governance.Lookup(name)
}

// errMergeRefused stops a merge's status change when the record it would extend is one
// the policy refuses to merge.
var errMergeRefused = errors.New("merge refused")

func (s *Server) merge(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	// What was written is counted even if the client went away meanwhile.
	sctx := context.WithoutCancel(ctx)
	// Merges of one trace on this host run one at a time: one that finds the trace merged
	// but not copied knows no other is still copying it.
	unlock, err := s.merging.LockContext(ctx, r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer unlock()
	rec, err := s.traceFor(r, r.PathValue("id"), false)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// A merged trace whose session was purged is read from its copy in the shared record,
	// which is read-only: like any write to it, its merge is a 404, as its session is gone.
	if _, err := s.opts.Traces.SessionOf(ctx, rec.ID); err != nil {
		s.fail(w, r, err)
		return
	}
	pol, err := s.policyOf(ctx, rec.SessionID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if rec.Status == trace.StatusMerged {
		if !s.completeCutShort(w, r, rec) {
			writeAlreadyMerged(w, r, rec.ID)
		}
		return
	}
	// An execution that has not ended (on this host, or on another sharing the storage)
	// is still to get its outcome: its chain is not final yet. Read before the chain, so
	// that one read as not running has its outcome in the chain read below.
	var running *execution.Run
	if rec.Kind == trace.TraceExecution && s.opts.Engine != nil {
		if running, err = s.opts.Engine.RunningAt(ctx, rec.ID); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	v, err := s.opts.Traces.Verify(ctx, rec.ID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// A chain that does not verify (an entry changed, removed or not covered by a
	// checkpoint the host signed) is never merged, whatever the policy: the shared record
	// is only worth its provenance. Nothing is written to it either, not even the flag or
	// the refusal: each would extend the chain, and sign a checkpoint over entries the
	// host cannot vouch for. The flag is counted and answered. A chain that verifies but
	// lacks what its kind requires (an execution that never recorded its outcome, e.g.
	// after a crash) is flagged unverified, and merges only where the policy allows it.
	if !v.Valid && v.ForeignKey != "" {
		// Not known to be broken: signed by a key this host neither holds nor trusts
		// (another host's sharing the storage, or its own before its key file was replaced). That host
		// can verify and merge it; nothing is flagged, counted or written here.
		writeForeignKey(w, r, rec.ID, v)
		return
	}
	if !v.Valid {
		f := governance.Flag{Flag: sdkgov.FlagUnverified, Severity: 9, Reason: "provenance does not verify: " + v.Error, RuleID: "host.provenance", AutoDetected: true, Timestamp: time.Now().UTC()}
		// The refusal counts each time; the flag, which nothing records in the chain, once
		// per broken chain (its trace and head), however often its merge is retried.
		d := governance.Delta{MergeRefused: true}
		if s.firstUnverified(sctx, rec, v.Head) {
			d.Flags = []governance.Flag{f}
		}
		_ = s.opts.Stats.Record(sctx, rec.SessionID, d)
		s.metrics.merge("refused")
		reasons := pol.MergeRefusals(string(rec.Status), rec.Flags, true, "")
		reasons = append(reasons, f.Reason+" (a broken chain is never merged, under any policy, and nothing more is written to it)")
		writeRefusal(w, r, pol, rec.ID, reasons, []governance.Flag{f})
		return
	}
	complete, gap := true, ""
	if missing, err := s.missingEntries(ctx, rec); err != nil {
		s.fail(w, r, err)
		return
	} else if missing != "" && running != nil {
		// Nothing is wrong with it: refused without a flag or an entry, to be merged
		// once it has ended.
		s.writeRunning(w, r, rec.ID, running)
		return
	} else if missing != "" {
		complete, gap = false, missing
		if rec, err = s.flagUnverified(ctx, rec, pol, 6, missing); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	refuse := func(reasons []string) {
		note, _ := json.Marshal(map[string]any{"policy": pol.Name, "reasons": reasons})
		_, _ = s.opts.Traces.Append(ctx, rec.ID, trace.Entry{Kind: "merge_refused", Agent: execution.Agent, Data: note})
		_ = s.opts.Stats.Record(sctx, rec.SessionID, governance.Delta{MergeRefused: true})
		s.metrics.merge("refused")
		writeRefusal(w, r, pol, rec.ID, reasons, nil)
	}
	reasons := pol.MergeRefusals(string(rec.Status), rec.Flags, complete, gap)
	if len(reasons) > 0 {
		refuse(reasons)
		return
	}
	// The decision is taken again on the record the status change extends: a flag or
	// another merge may have landed since the read above (here or on another host).
	var refused []string
	var seen trace.Status
	check := func(cur trace.Record) error {
		seen = cur.Status
		if refused = pol.MergeRefusals(string(cur.Status), cur.Flags, complete, gap); len(refused) > 0 {
			return errMergeRefused
		}
		return nil
	}
	if _, _, err := s.opts.Traces.Apply(ctx, rec.ID, execution.Agent, trace.Update{
		Status: trace.StatusMerged, Reason: "merge allowed under policy " + pol.Name, By: principalOf(r).agent(), Check: check,
	}); err != nil {
		if errors.Is(err, errMergeRefused) {
			// Merged since the read above: by a merge whose copy was cut short (storage
			// lost after the status change was written but before it was acknowledged, so
			// the read above may not have seen it), completed here.
			if seen == trace.StatusMerged {
				// Not a refusal under the policy: another merge won (here, or on
				// another host).
				if !s.completeCutShort(w, r, rec) {
					writeAlreadyMerged(w, r, rec.ID)
				}
				return
			}
			refuse(refused)
			return
		}
		s.fail(w, r, err)
		return
	}
	// Once the status is written the copy is the host's to finish, whether or not the
	// client waits for it.
	merged, err := s.opts.Traces.CopyToMerged(sctx, rec.ID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	_ = s.opts.Stats.Record(sctx, rec.SessionID, governance.Delta{MergeAllowed: true})
	s.metrics.merge("allowed")
	writeJSON(w, http.StatusOK, mergeResponse{Merged: true, TraceID: rec.ID, Record: merged})
}

// unverifiedPrefix is the key prefix, in a session's namespace, of the marks of broken
// chains whose unverified flag was counted: unverified-counted/<trace id> → the chain's head.
const unverifiedPrefix = "unverified-counted/"

// firstUnverified reports whether the unverified flag a merge of rec raises, its chain
// broken with head head, is to be counted: not when one was counted for the same trace and
// head already (a retried merge), as nothing is written to the chain to tell. A failure to
// read or write the mark counts it.
func (s *Server) firstUnverified(ctx context.Context, rec trace.Record, head string) bool {
	if s.opts.Store == nil {
		return true
	}
	req := storage.CASRequest{
		Namespace: trace.SessionNamespace(s.opts.Traces.Tenant(), rec.SessionID),
		Key:       []byte(unverifiedPrefix + rec.ID),
		Value:     []byte(head),
	}
	for range 3 {
		res, err := s.opts.Store.CompareAndSwap(ctx, req)
		switch {
		case err != nil:
			return true
		case res.Swapped:
			return true
		case res.Present && string(res.Current) == head:
			return false
		}
		req.ExpectPresent, req.Expected = res.Present, res.Current
	}
	return true
}

// completeCutShort completes the merge of rec, a trace whose status is merged, if it was
// cut short between the status change and the copy into the shared record (a crash,
// storage lost in between, a copy that failed), and answers; it returns false, answering
// nothing, when the copy is there and up to date (a finished merge, for the caller to
// refuse). A copy older than the trace (a flag written since whose copy failed, answered
// with Limit-Shared-Copy: stale) is replaced, answered as a merge with
// Limit-Shared-Copy: refreshed, and not counted again.
func (s *Server) completeCutShort(w http.ResponseWriter, r *http.Request, rec trace.Record) bool {
	ctx, sctx := r.Context(), context.WithoutCancel(r.Context())
	n, in, err := s.opts.Traces.MergedLength(ctx, rec.ID)
	if err != nil {
		s.fail(w, r, err)
		return true
	}
	if in && n >= rec.Length {
		return false
	}
	merged, err := s.opts.Traces.CopyToMerged(sctx, rec.ID)
	if err != nil {
		s.fail(w, r, err)
		return true
	}
	if in {
		s.opts.Logger.Info("replaced a stale copy of a merged trace in the shared record", "trace", rec.ID, "session", rec.SessionID, "copy_length", n, "length", merged.Length)
		w.Header().Set(sharedCopyHeader, "refreshed")
		writeJSON(w, http.StatusOK, mergeResponse{Merged: true, TraceID: rec.ID, Record: merged})
		return true
	}
	s.opts.Logger.Info("completed a merge that was cut short", "trace", rec.ID, "session", rec.SessionID)
	_ = s.opts.Stats.Record(sctx, rec.SessionID, governance.Delta{MergeAllowed: true})
	s.metrics.merge("allowed")
	writeJSON(w, http.StatusOK, mergeResponse{Merged: true, TraceID: rec.ID, Record: merged})
	return true
}

// writeAlreadyMerged answers the merge of a trace that is merged and in the shared record
// already: 409, as the merge cannot be made again, but no refusal under the policy, and
// none is counted.
func writeAlreadyMerged(w http.ResponseWriter, r *http.Request, traceID string) {
	writeProblem(w, r, http.StatusConflict, "trace "+traceID+" is already merged: it is in the shared record (GET /v1/merged)",
		map[string]any{"trace_id": traceID, "trace_status": trace.StatusMerged})
}

// writeForeignKey answers the merge of a trace whose checkpoints are signed by another key
// than the host's and those it trusts (v.ForeignKey): 409 naming the key, and its node when storage knows it.
func writeForeignKey(w http.ResponseWriter, r *http.Request, traceID string, v trace.VerifyResult) {
	who, extra := "a host holding that key", map[string]any{"trace_id": traceID, "key": v.ForeignKey}
	if v.ForeignNode != "" {
		who, extra["node"] = "node "+v.ForeignNode, v.ForeignNode
	}
	writeProblem(w, r, http.StatusConflict, "trace "+traceID+" cannot be merged through this host: "+v.Error+"; merge it through "+who+", which can verify it, or list that key in this host's host.trusted_keys", extra)
}

// writeRefusal answers a refused merge: 409 with each reason, and the flags the refusal
// raised without writing them, if any.
func writeRefusal(w http.ResponseWriter, r *http.Request, pol governance.Policy, traceID string, reasons []string, flags []governance.Flag) {
	extra := map[string]any{"trace_id": traceID, "policy": pol.Name, "reasons": reasons}
	if flags != nil {
		extra["flags"] = flags
	}
	writeProblem(w, r, http.StatusConflict, "merge refused under policy "+pol.Name+": "+strings.Join(reasons, "; "), extra)
}

// flagUnverified flags rec unverified (rule host.provenance) at severity sev, unless the
// host flagged it so already, quarantining it as the policy says for a flag that severe,
// and returns the record as it now is. A merged trace is left as it is: its merge is
// refused anyway.
func (s *Server) flagUnverified(ctx context.Context, rec trace.Record, pol governance.Policy, sev int, reason string) (trace.Record, error) {
	if rec.Status == trace.StatusMerged {
		return rec, nil
	}
	for _, f := range rec.Flags {
		if f.Flag == sdkgov.FlagUnverified && f.RuleID == "host.provenance" && f.Severity >= sev {
			return rec, nil
		}
	}
	f := governance.Flag{Flag: sdkgov.FlagUnverified, Severity: sev, Reason: reason, RuleID: "host.provenance", AutoDetected: true, Timestamp: time.Now().UTC()}
	out, err := s.flagUnmerged(ctx, rec, f, pol, execution.Agent)
	if errors.Is(err, trace.ErrFinal) {
		return rec, nil // merged meanwhile: the refusal says so
	}
	return out, err
}

// flagUnmerged adds f to rec, a trace read as not merged, with the quarantine the policy
// calls for in the same write, and counts both; it returns the updated record, or
// trace.ErrFinal if the trace was merged meanwhile (nothing written).
func (s *Server) flagUnmerged(ctx context.Context, rec trace.Record, f governance.Flag, pol governance.Policy, agent string) (trace.Record, error) {
	u := trace.Update{Flags: []governance.Flag{f}, UnlessMerged: true}
	if pol.Quarantines([]governance.Flag{f}) && rec.Status == trace.StatusActive {
		u.Status, u.Reason = trace.StatusQuarantined, "auto-quarantine under policy "+pol.Name
	}
	out, entries, err := s.opts.Traces.Apply(ctx, rec.ID, agent, u)
	if err != nil {
		return rec, err
	}
	// Counted as quarantined only if this write did it: a flag that met the trace
	// quarantined meanwhile appended no status entry.
	q := u.Status != "" && len(entries) > 0 && entries[len(entries)-1].Kind == trace.KindQuarantined
	// What was written is counted even if the client went away meanwhile.
	_ = s.opts.Stats.Record(context.WithoutCancel(ctx), rec.SessionID, governance.Delta{Flags: []governance.Flag{f}, Quarantined: q})
	return out, nil
}

func (s *Server) listMerged(w http.ResponseWriter, r *http.Request) {
	per, err := queryInt(r, "per_page", 50, 1, storage.MaxScanLimit)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	token, err := storeToken(r, "merged")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	page, err := s.opts.Traces.MergedPage(r.Context(), per, token)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.traceList(w, r, "merged", page))
}

type exportRequest struct {
	SessionID string   `json:"session_id,omitempty"`
	TraceIDs  []string `json:"trace_ids,omitempty"`
}

func (s *Server) export(w http.ResponseWriter, r *http.Request) {
	var req exportRequest
	if err := decodeJSON(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	req.SessionID = upperULID(req.SessionID)
	for i, id := range req.TraceIDs {
		req.TraceIDs[i] = upperULID(id)
	}
	if (req.SessionID == "") == (len(req.TraceIDs) == 0) {
		s.fail(w, r, badRequest("give exactly one of session_id or trace_ids"))
		return
	}
	if req.SessionID != "" {
		if _, err := s.sessionFor(r, req.SessionID); err != nil {
			s.fail(w, r, err)
			return
		}
	} else if err := s.tracesFor(r, req.TraceIDs, true); err != nil {
		s.fail(w, r, err)
		return
	}
	// Build the bundle first so an error is still a proper problem response.
	var buf bytes.Buffer
	if _, err := s.opts.Traces.WriteBundle(r.Context(), &buf, trace.BundleScope{SessionID: req.SessionID, TraceIDs: req.TraceIDs}); err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/gzip")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="limit-bundle-%s.tar.gz"`, time.Now().UTC().Format("20060102T150405Z")))
	w.WriteHeader(http.StatusOK)
	_, _ = buf.WriteTo(w)
}

type flagRequest struct {
	TraceID  string `json:"trace_id" api:"required"`
	Flag     string `json:"flag" api:"required"`
	Reason   string `json:"reason"`
	Severity int    `json:"severity" api:"required"`
	RuleID   string `json:"rule_id,omitempty"`
	// Location optionally points at what the reviewer flags in the trace's content (a
	// line, a byte span or both). A hand-set flag has no stage or score: those say how a
	// rule judged the content.
	Location *trace.Location `json:"location,omitempty"`
}

func (s *Server) flag(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var req flagRequest
	if err := decodeJSON(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	req.TraceID = upperULID(req.TraceID)
	name, ok := governance.NormalizeFlag(req.Flag)
	if !ok {
		s.fail(w, r, badRequest("flag %q is not one of %s", req.Flag, strings.Join(sdkgov.Flags, ", ")))
		return
	}
	if req.Severity < 1 || req.Severity > 10 {
		s.fail(w, r, badRequest("severity must be between 1 and 10, got %d", req.Severity))
		return
	}
	if req.Location != nil {
		if err := req.Location.Validate(); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	rec, err := s.traceFor(r, req.TraceID, false)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if req.RuleID == "" {
		req.RuleID = "manual"
	}
	f := governance.Flag{Flag: name, Severity: req.Severity, Reason: req.Reason, RuleID: req.RuleID, AutoDetected: false, Timestamp: time.Now().UTC(), Location: req.Location,
		SetBy: principalOf(r).agent()}
	pol, err := s.policyOf(ctx, rec.SessionID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// A merge or a withdrawal may land between the read above and the write: the flag of
	// a trace read as not merged is refused if it meets a merged one (ErrFinal), and
	// flagMerged reads the trace again under its lock. Either way the flag then takes the
	// path of the status it meets; each turn follows another merge or withdrawal.
	for {
		if rec.Status == trace.StatusMerged {
			out, merged, stale, err := s.flagMerged(ctx, rec.ID, f, pol)
			if err != nil {
				s.fail(w, r, err)
				return
			}
			if merged {
				if stale {
					w.Header().Set(sharedCopyHeader, "stale")
				}
				writeJSON(w, http.StatusCreated, out)
				return
			}
			rec = out // withdrawn meanwhile: flagged as any other trace
		}
		_, err := s.flagUnmerged(ctx, rec, f, pol, "api")
		if errors.Is(err, trace.ErrFinal) {
			if rec, err = s.opts.Traces.Get(ctx, rec.ID); err != nil {
				s.fail(w, r, err)
				return
			}
			continue
		}
		if err != nil {
			s.fail(w, r, err)
			return
		}
		break
	}
	rec, err = s.opts.Traces.Get(ctx, rec.ID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, rec)
}

// sharedCopyHeader is set to "stale" on the answer to a flag of a merged trace that was
// written, but whose copy in the shared record could not be replaced: GET /v1/merged
// shows the trace without it until the trace's next flag, or a merge of it, replaces the
// copy; and to "refreshed" on the answer to such a merge.
const sharedCopyHeader = "Limit-Shared-Copy"

// flagMerged flags a trace read as merged, and reports whether it still was: if not (a
// concurrent flag, here or on another host, withdrew it), it returns the trace as it is
// now, unflagged, for the caller to flag as any other. The shared record must not hold
// what its policy would now refuse: if the flag (with the trace's others) would have
// refused the merge, the trace leaves the shared record and, in the same write as its
// flag, goes back to active, or to quarantined if the flag's severity calls for it.
// Otherwise the shared copy is replaced by one that shows the flag. Both writes are made
// only while the trace is merged (trace.Update.OnlyIfMerged), so of two withdrawals the
// second neither moves the trace again (reactivating one the first quarantined) nor counts
// a second withdrawal. The copy is removed before the trace's status changes, so a crash in
// between leaves a merged trace missing from the shared record (flagging it again finishes
// the job), never a withdrawn one listed there; and removed again after, as a copy made in
// between (a refresh, or a merge completing what looked cut short) from a snapshot of the
// still merged trace would put it back. It reports stale when the flag was written but
// the shared copy could not be replaced (it lacks the flag until the trace's next flag).
func (s *Server) flagMerged(ctx context.Context, id string, f governance.Flag, pol governance.Policy) (trace.Record, bool, bool, error) {
	rec, err := s.opts.Traces.Get(ctx, id)
	if err != nil {
		return trace.Record{}, false, false, err
	}
	// notMerged is the answer once a write met the trace withdrawn meanwhile.
	notMerged := func() (trace.Record, bool, bool, error) {
		rec, err := s.opts.Traces.Get(ctx, id)
		return rec, false, false, err
	}
	if rec.Status != trace.StatusMerged {
		return rec, false, false, nil
	}
	// What was written is counted even if the client went away meanwhile.
	sctx := context.WithoutCancel(ctx)
	flags := append(slices.Clone(rec.Flags), f)
	reasons := pol.MergeRefusals(string(trace.StatusActive), flags, true, "")
	if len(reasons) == 0 {
		flagged, _, err := s.opts.Traces.Apply(ctx, rec.ID, "api", trace.Update{Flags: []governance.Flag{f}, OnlyIfMerged: true})
		if errors.Is(err, trace.ErrNotMerged) {
			return notMerged()
		}
		if err != nil {
			return trace.Record{}, false, false, err
		}
		_ = s.opts.Stats.Record(sctx, rec.SessionID, governance.Delta{Flags: []governance.Flag{f}})
		// The flag is written and counted: it is answered as such, even if the shared copy
		// could not be replaced (an error would have the client flag the trace twice).
		// The old copy stays until the trace's next flag replaces it.
		out, err := s.opts.Traces.CopyToMerged(sctx, rec.ID)
		if err != nil {
			s.opts.Logger.Warn("a merged trace was flagged, but its copy in the shared record could not be replaced and lacks the flag until the trace is flagged again", "trace", rec.ID, "session", rec.SessionID, "flag", f.Flag, "error", err)
			return flagged, true, true, nil
		}
		return out, true, false, nil
	}
	if err := s.opts.Traces.RemoveFromMerged(ctx, rec.ID); err != nil {
		return trace.Record{}, false, false, err
	}
	status, q := trace.StatusActive, pol.Quarantines([]governance.Flag{f})
	if q {
		status = trace.StatusQuarantined
	}
	out, _, err := s.opts.Traces.Apply(ctx, rec.ID, "api", trace.Update{
		Flags: []governance.Flag{f}, Status: status, OnlyIfMerged: true,
		Reason: "withdrawn from the shared record under policy " + pol.Name + ": " + strings.Join(reasons, "; "),
	})
	if errors.Is(err, trace.ErrNotMerged) {
		// Withdrawn meanwhile: the copy is rightly gone.
		return notMerged()
	}
	if err != nil {
		// Put the copy back: the trace is still merged.
		if _, cerr := s.opts.Traces.CopyToMerged(sctx, rec.ID); cerr != nil {
			s.opts.Logger.Error("a merged trace left the shared record but its withdrawal failed; flag it again", "trace", rec.ID, "error", err, "restore_error", cerr)
		}
		return trace.Record{}, false, false, err
	}
	// A copy written from here on is refused (the trace is no longer merged, or, for a
	// snapshot taken before, its chain has grown since, where the backend can tell); one
	// written before is removed now.
	if err := s.opts.Traces.RemoveFromMerged(sctx, rec.ID); err != nil {
		s.opts.Logger.Error("a trace withdrawn from the shared record may still be listed there", "trace", rec.ID, "error", err)
	}
	s.opts.Logger.Info("merged trace withdrawn from the shared record", "trace", rec.ID, "session", rec.SessionID, "flag", f.Flag, "severity", f.Severity, "status", status)
	_ = s.opts.Stats.Record(sctx, rec.SessionID, governance.Delta{Flags: []governance.Flag{f}, Quarantined: q, MergeWithdrawn: true})
	s.metrics.merge("withdrawn")
	return out, true, false, nil
}

// statsResponse is the answer of GET /v1/governance/stats: the counts of the sessions it
// lists (a page of them, or the one session_id names), and their sum.
type statsResponse struct {
	// Overall adds up the counts of Sessions: of the page, not of the host, when there is
	// a next page (a client adds the pages up, as limitctl governance stats does).
	Overall  governance.Stats            `json:"overall"`
	Sessions map[string]governance.Stats `json:"sessions"`
	// NextToken continues the listing ("" after its last page).
	NextToken string `json:"next_token,omitempty"`
}

// stats answers a page of the sessions' governance counts (deleted sessions included:
// what happened in them still counts), or one session's. It reads one storage record per
// session listed, so a page, not every session the host ever had, bounds its cost.
func (s *Server) stats(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	resp := statsResponse{Overall: governance.NewStats(), Sessions: map[string]governance.Stats{}}
	per, err := queryInt(r, "per_page", 50, 1, storage.MaxScanLimit)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	id, err := queryOnce(r, "session_id")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	id = upperULID(id)
	owner, err := s.ownerFilter(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	token, err := storeToken(r, "stats")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var ids []string
	if id != "" {
		if token != "" {
			s.fail(w, r, badRequest("next_token continues a listing of sessions; session_id answers one session, with no pages"))
			return
		}
		sess, err := s.sessionFor(r, id)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		ids = []string{sess.ID}
	} else {
		list, next, err := s.opts.Sessions.List(ctx, per, token, session.Filter{WithDeleted: true, Owner: owner})
		if err != nil {
			s.fail(w, r, err)
			return
		}
		for _, sess := range list {
			ids = append(ids, sess.ID)
		}
		resp.NextToken = pageToken("stats", next)
	}
	for _, id := range ids {
		st, err := s.opts.Stats.Get(ctx, id)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		resp.Sessions[id] = st
		resp.Overall.Add(st)
	}
	writeJSON(w, http.StatusOK, resp)
}

type evaluateRequest struct {
	Kind string `json:"kind" api:"required"`
	Text string `json:"text"`
	// Preset, when given, has the rules judge at that preset's sensitivity instead of
	// their configured one (for measuring them: limitctl governance eval).
	Preset string `json:"preset,omitempty"`
}

type evaluateResponse struct {
	Findings []governance.Flag `json:"findings"`
	// Scores are what the rules' models made of the text, flagged or not, by configured
	// rule and rule id.
	Scores map[string]map[string]float64 `json:"scores,omitempty"`
	// Rules are the rule plugins that evaluated the text: those with a rule at its stage
	// that reads its kind of content.
	Rules  []governance.RuleInfo `json:"rules"`
	Errors []string              `json:"errors,omitempty"`
}

func (s *Server) evaluate(w http.ResponseWriter, r *http.Request) {
	var req evaluateRequest
	if err := decodeJSON(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	stage, ctype := sdkgov.StagePre, ""
	switch req.Kind {
	case "prompt":
		ctype = "text/prompt"
	case "code":
		ctype = "code/python"
	case "output":
		stage, ctype = sdkgov.StagePost, "text/output"
	default:
		s.fail(w, r, badRequest(`kind must be "prompt", "code" or "output", got %q`, req.Kind))
		return
	}
	ereq := sdkgov.EvaluateRequest{Stage: stage, ContentType: ctype, Content: req.Text}
	if req.Preset != "" {
		if _, ok := governance.Presets[req.Preset]; !ok {
			s.fail(w, r, badRequest("preset must be one of %s, got %q", strings.Join(governance.PolicyNames(), ", "), req.Preset))
			return
		}
		ereq.Metadata = map[string]string{sdkgov.MetaPreset: req.Preset}
	}
	flags, scores, errs := s.opts.Rules.EvaluateScores(r.Context(), ereq)
	resp := evaluateResponse{Findings: flags, Scores: scores, Rules: s.opts.Rules.RulesFor(ereq)}
	if resp.Findings == nil {
		resp.Findings = []governance.Flag{}
	}
	for _, e := range errs {
		resp.Errors = append(resp.Errors, e.Error())
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) policies(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, governance.Presets)
}

type keyResponse struct {
	PublicKeyPEM string `json:"public_key_pem"`
	Fingerprint  string `json:"fingerprint"`
}

func (s *Server) provenanceKey(w http.ResponseWriter, r *http.Request) {
	pub := s.opts.Traces.PublicKey()
	writeJSON(w, http.StatusOK, keyResponse{PublicKeyPEM: string(trace.MarshalPublicKey(pub)), Fingerprint: trace.Fingerprint(pub)})
}

// requiredEntries lists the provenance entries each trace kind must have.
var requiredEntries = map[string][]string{
	trace.TraceExecution: {trace.KindCreated, trace.KindExecuted},
	trace.TraceCustom:    {trace.KindCreated},
}

// missingEntries says which required entries rec's chain lacks ("" when none). A blocked
// execution never ran and needs no executed entry.
func (s *Server) missingEntries(ctx context.Context, rec trace.Record) (string, error) {
	need := requiredEntries[rec.Kind]
	if len(need) == 0 {
		return "", nil
	}
	chain, err := s.opts.Traces.Chain(ctx, rec.ID)
	if err != nil {
		return "", err
	}
	have := map[string]bool{}
	for _, e := range chain {
		have[e.Kind] = true
	}
	var missing []string
	for _, k := range need {
		if !have[k] && !(k == trace.KindExecuted && (have["blocked"] || have["governance_error"])) {
			missing = append(missing, k)
		}
	}
	if len(missing) == 0 {
		return "", nil
	}
	return fmt.Sprintf("%s trace lacks the provenance entries %s", rec.Kind, strings.Join(missing, ", ")), nil
}

// serverTiming renders an execution's phases as a Server-Timing header (W3C Server Timing:
// name;dur=milliseconds), which browsers' developer tools and `curl -i` show.
func serverTiming(ts []execution.Timing) string {
	var b strings.Builder
	for i, t := range ts {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(t.Name)
		b.WriteString(";dur=")
		b.WriteString(strconv.FormatFloat(float64(t.Dur.Microseconds())/1000, 'f', 3, 64))
	}
	return b.String()
}
