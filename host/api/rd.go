package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"time"

	"gonum.org/v1/gonum/mat"

	"github.com/limitgraph/limit/host/rd"
	"github.com/limitgraph/limit/host/session"
	"github.com/limitgraph/limit/host/trace"
	"github.com/limitgraph/limit/sdk/storage"
)

// MaxGraphNodes bounds the graphs of an FGW request and of a session's trace graph.
const MaxGraphNodes = 2000

// registerRD adds the RD routes. They answer JSON without indentation
// (writeCompactJSON): an FGW plan is n×m numbers, up to MaxGraphNodes² of them, and
// indented each would take a line of its own, most of the answer's bytes.
func (s *Server) registerRD() {
	s.handle(route{Method: "POST", Path: "/rd/fgw", Summary: "Fused Gromov-Wasserstein distance between two attributed graphs", Tag: "rd", Request: fgwRequest{}, Response: fgwResponse{}, Errors: []int{422, 503}, Legacy: true}, s.rdFGW)
	s.handle(route{Method: "POST", Path: "/rd/points", Summary: "Add a refinement point (distortion, variance) to a session's rate-distortion curve", Tag: "rd", Request: pointRequest{}, Response: rd.Point{}, Status: 201, Errors: []int{404, 409}, Legacy: true}, s.rdAddPoint)
	s.handle(route{Method: "GET", Path: "/rd/knee", Summary: "The knee of a session's rate-distortion curve (when no session_id, of all the sessions the token reaches, or the owner's)", Tag: "rd", Response: rd.RDKnee{}, Query: []string{"session_id", "method", "owner"}, Errors: []int{403, 404, 422}, Legacy: true}, s.rdSessionKnee)
	s.handle(route{Method: "POST", Path: "/rd/knee", Summary: "The knee of any curve", Tag: "rd", Request: kneeRequest{}, Response: rd.Knee{}, Errors: []int{422}, Legacy: true}, s.rdKnee)
	s.handle(route{Method: "POST", Path: "/rd/curve", Summary: "Rate-distortion curve of a discrete source by Blahut-Arimoto, with its knee", Tag: "rd", Request: curveRequest{}, Response: rd.RDCurve{}, Errors: []int{422, 503}, Legacy: true}, s.rdCurve)
	s.handle(route{Method: "GET", Path: "/rd/fgw/sessions", Summary: "FGW distortion between two sessions' trace graphs", Tag: "rd", Response: sessionFGWResponse{}, Query: []string{"a", "b", "method"}, Errors: []int{404, 422, 503}, Legacy: true}, s.rdSessionFGW)
}

// rdContext bounds an RD computation by rd.timeout, the request (its client leaving) and
// the server (stopping).
func (s *Server) rdContext(r *http.Request) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(r.Context(), s.opts.RD.Timeout)
	stop := context.AfterFunc(s.stopping, cancel)
	return ctx, func() { stop(); cancel() }
}

// rdSlots bounds the RD computations that run at once: one per CPU the process may use
// (GOMAXPROCS when the package was loaded). An RD computation is CPU-bound from start to
// end, so more of them than CPUs only slows every one (and the rest of the host) down.
// It is the process's, not a Server's, as the CPUs are; the rd config block has no
// setting for it.
var rdSlots = make(chan struct{}, runtime.GOMAXPROCS(0))

// rdStart bounds an RD computation (rdContext) and waits for a slot of rdSlots. A
// request still waiting when its context ends (rd.timeout, its client leaving, the host
// stopping) is answered 503 with Retry-After, and ok is false. Otherwise the caller runs
// the computation with ctx and calls done at its end.
func (s *Server) rdStart(w http.ResponseWriter, r *http.Request) (ctx context.Context, done func(), ok bool) {
	ctx, cancel := s.rdContext(r)
	select {
	case rdSlots <- struct{}{}:
		return ctx, func() { <-rdSlots; cancel() }, true
	case <-ctx.Done():
		cancel()
		w.Header().Set("Retry-After", "1")
		writeProblem(w, r, http.StatusServiceUnavailable, fmt.Sprintf(
			"all %d RD computation slots stayed busy for rd.timeout (%s): try again later", cap(rdSlots), s.opts.RD.Timeout), nil)
		return nil, nil, false
	}
}

// rdFail maps the RD core's errors: bad input is 400 (422 would also do; 400 is what the
// rest of the API answers for invalid bodies); a well-formed FGW problem whose feature
// cost float64 cannot resolve beside its structures is 422, with the scale ratio. A body
// that lacks a required field is a 400 with that field, as the core's own 400s.
func (s *Server) rdFail(w http.ResponseWriter, r *http.Request, err error) {
	var ie *rd.InputError
	var pe *rd.PrecisionError
	var mf *errMissingField
	switch {
	case errors.As(err, &mf):
		writeProblem(w, r, http.StatusBadRequest, mf.Error(), map[string]any{"field": mf.field})
	case errors.Is(err, context.DeadlineExceeded):
		writeProblem(w, r, http.StatusUnprocessableEntity, fmt.Sprintf(
			"the computation did not finish within rd.timeout (%s): make the problem smaller, lower max_iter or raise tol, or raise rd.timeout in the host's config", s.opts.RD.Timeout), nil)
	case errors.Is(err, context.Canceled):
		// The client went away or the host is stopping: nobody reads an answer.
		writeProblem(w, r, http.StatusServiceUnavailable, "the computation was stopped: the host is shutting down or the client left", nil)
	case errors.As(err, &ie):
		writeProblem(w, r, http.StatusBadRequest, err.Error(), map[string]any{"field": ie.Field})
	case errors.As(err, &pe):
		writeProblem(w, r, http.StatusUnprocessableEntity, err.Error(), map[string]any{"field": "m", "scale_ratio": pe.Ratio, "min_scale_ratio": pe.MinRatio})
	case errors.Is(err, rd.ErrNoKnee):
		writeProblem(w, r, http.StatusUnprocessableEntity, err.Error(), nil)
	default:
		s.fail(w, r, err)
	}
}

func dense(field string, rows [][]float64) (*mat.Dense, error) {
	if len(rows) == 0 || len(rows[0]) == 0 {
		return nil, &rd.InputError{Field: field, Msg: "must be a non-empty matrix"}
	}
	if len(rows) > MaxGraphNodes || len(rows[0]) > MaxGraphNodes {
		return nil, &rd.InputError{Field: field, Msg: fmt.Sprintf("is %d×%d, the limit is %d per side", len(rows), len(rows[0]), MaxGraphNodes)}
	}
	c := len(rows[0])
	data := make([]float64, 0, len(rows)*c)
	for i, row := range rows {
		if len(row) != c {
			return nil, &rd.InputError{Field: field, Msg: fmt.Sprintf("row %d has %d columns, row 0 has %d", i, len(row), c)}
		}
		data = append(data, row...)
	}
	return mat.NewDense(len(rows), c, data), nil
}

type fgwRequest struct {
	C1         [][]float64 `json:"c1" api:"required"`
	C2         [][]float64 `json:"c2" api:"required"`
	M          [][]float64 `json:"m,omitempty"`
	FeaturesA  [][]float64 `json:"features_a,omitempty"`
	FeaturesB  [][]float64 `json:"features_b,omitempty"`
	P          []float64   `json:"p,omitempty"`
	Q          []float64   `json:"q,omitempty"`
	Alpha      *float64    `json:"alpha,omitempty"`
	Method     rd.Method   `json:"method,omitempty"`
	Epsilon    *float64    `json:"epsilon,omitempty"`
	MaxIter    *int        `json:"max_iter,omitempty"` // nil: the default; 0 is refused, not read as it
	Tol        *float64    `json:"tol,omitempty"`      // nil: the default; 0 is refused, not read as it
	ReturnPlan bool        `json:"return_plan,omitempty"`
}

// openAPIExtra: an FGW request needs m, or features_a and features_b, not both; its
// matrices are bounded by MaxGraphNodes.
func (*fgwRequest) openAPIExtra() map[string]any {
	return map[string]any{
		"description": fmt.Sprintf("c1 and c2 are at most %d×%d; m, features_a and features_b have at most %d rows and %d columns. "+
			"A larger matrix is a 400 naming it.", MaxGraphNodes, MaxGraphNodes, MaxGraphNodes, MaxGraphNodes),
		"oneOf": []any{
			map[string]any{"required": []string{"m"}, "not": map[string]any{"anyOf": []any{
				map[string]any{"required": []string{"features_a"}}, map[string]any{"required": []string{"features_b"}},
			}}},
			map[string]any{"required": []string{"features_a", "features_b"}, "not": map[string]any{"required": []string{"m"}}},
		},
	}
}

// fgwResponse documents POST /rd/fgw's answer, an rd.FGWResult: its MarshalJSON adds the
// plan (rows of numbers) when return_plan asked for it, which its fields do not show.
type fgwResponse struct {
	rd.FGWResult
	Plan [][]float64 `json:"plan,omitempty"`
}

func uniform(n int) []float64 {
	p := make([]float64, n)
	for i := range p {
		p[i] = 1 / float64(n)
	}
	return p
}

// fgwConfig merges a request's settings over the configured defaults.
func (s *Server) fgwConfig(method rd.Method, alpha, epsilon *float64, maxIter *int, tol *float64) rd.FGWConfig {
	if method == "" {
		method = rd.MethodCG
	}
	cfg := rd.DefaultFGWConfig(method)
	// An unknown method stays as given, for the solver to refuse by name.
	cfg.Method = method
	cfg.Alpha = s.opts.RD.Alpha
	if method == rd.MethodEntropic && s.opts.RD.Epsilon > 0 {
		cfg.Epsilon = s.opts.RD.Epsilon
	}
	if method == rd.MethodCG {
		if s.opts.RD.MaxIter > 0 {
			cfg.MaxIter = s.opts.RD.MaxIter
		}
		if s.opts.RD.Tol > 0 {
			cfg.Tol = s.opts.RD.Tol
		}
	}
	if alpha != nil {
		cfg.Alpha = *alpha
	}
	if epsilon != nil {
		cfg.Epsilon = *epsilon
	}
	if maxIter != nil {
		cfg.MaxIter = *maxIter
	}
	if tol != nil {
		cfg.Tol = *tol
	}
	return cfg
}

// check refuses the settings of req that would otherwise be taken without a word and not
// do what the client meant: an epsilon that is not positive (with any method), any
// epsilon with method cg, which has no regularisation and would ignore it, and a max_iter
// below 1 (0 would run the default), and a tol not above 0 (0 would be the default).
func (req *fgwRequest) check() error {
	if err := checkMaxIter(req.MaxIter); err != nil {
		return err
	}
	if err := checkTol(req.Tol); err != nil {
		return err
	}
	if req.Epsilon != nil {
		if !(*req.Epsilon > 0) {
			return &rd.InputError{Field: "epsilon", Msg: fmt.Sprintf("%v: must be > 0", *req.Epsilon)}
		}
		if req.Method == "" || req.Method == rd.MethodCG {
			return &rd.InputError{Field: "epsilon", Msg: `applies to method entropic only: leave it out, or send "method": "entropic"`}
		}
	}
	return nil
}

// checkTol refuses a tol given that is not a positive number: the RD core reads 0 as its
// default tolerance and would stop there instead.
func checkTol(tol *float64) error {
	if tol != nil && !(*tol > 0) {
		return &rd.InputError{Field: "tol", Msg: fmt.Sprintf("%v: must be > 0 (leave it out for the default)", *tol)}
	}
	return nil
}

// checkMaxIter refuses a max_iter given below 1: the RD core reads 0 as its default and
// would run that many iterations instead.
func checkMaxIter(maxIter *int) error {
	if maxIter != nil && *maxIter < 1 {
		return &rd.InputError{Field: "max_iter", Msg: fmt.Sprintf("%d: must be at least 1 (leave it out for the default)", *maxIter)}
	}
	return nil
}

func (s *Server) rdFGW(w http.ResponseWriter, r *http.Request) {
	var req fgwRequest
	if err := decodeJSON(r, &req); err != nil {
		s.rdFail(w, r, err)
		return
	}
	if err := req.check(); err != nil {
		s.rdFail(w, r, err)
		return
	}
	c1, err := dense("c1", req.C1)
	if err != nil {
		s.rdFail(w, r, err)
		return
	}
	c2, err := dense("c2", req.C2)
	if err != nil {
		s.rdFail(w, r, err)
		return
	}
	var m *mat.Dense
	switch {
	case req.M != nil && (req.FeaturesA != nil || req.FeaturesB != nil):
		s.rdFail(w, r, &rd.InputError{Field: "m", Msg: "give either m or features_a and features_b, not both"})
		return
	case req.M != nil:
		if m, err = dense("m", req.M); err != nil {
			s.rdFail(w, r, err)
			return
		}
	case req.FeaturesA != nil && req.FeaturesB != nil:
		fa, err := dense("features_a", req.FeaturesA)
		if err != nil {
			s.rdFail(w, r, err)
			return
		}
		fb, err := dense("features_b", req.FeaturesB)
		if err != nil {
			s.rdFail(w, r, err)
			return
		}
		// Named here: the solver would only see the m they make, which the client did
		// not send.
		for _, x := range []struct {
			field, graph string
			rows, nodes  int
		}{{"features_a", "c1", len(req.FeaturesA), len(req.C1)}, {"features_b", "c2", len(req.FeaturesB), len(req.C2)}} {
			if x.rows != x.nodes {
				s.rdFail(w, r, &rd.InputError{Field: x.field, Msg: fmt.Sprintf("has %d rows, want one per node of %s (%d)", x.rows, x.graph, x.nodes)})
				return
			}
		}
		if m, err = rd.FeatureCost(fa, fb); err != nil {
			s.rdFail(w, r, err)
			return
		}
	default:
		s.rdFail(w, r, &rd.InputError{Field: "m", Msg: "is required (or features_a and features_b)"})
		return
	}
	p, q := req.P, req.Q
	if p == nil {
		p = uniform(len(req.C1))
	}
	if q == nil {
		q = uniform(len(req.C2))
	}
	cfg := s.fgwConfig(req.Method, req.Alpha, req.Epsilon, req.MaxIter, req.Tol)
	ctx, done, ok := s.rdStart(w, r)
	if !ok {
		return
	}
	defer done()
	// From several starts: from POT's p·qᵀ alone a graph is not always at 0 from itself.
	opts := []rd.FGWOption{rd.WithContext(ctx), rd.WithStarts()}
	if req.ReturnPlan {
		opts = append(opts, rd.WithPlan())
	}
	res, err := rd.FGW(c1, c2, m, p, q, cfg, opts...)
	if err != nil {
		s.rdFail(w, r, err)
		return
	}
	writeCompactJSON(w, http.StatusOK, res)
}

type pointRequest struct {
	SessionID  string  `json:"session_id" api:"required"`
	Distortion float64 `json:"distortion" api:"required"`
	Variance   float64 `json:"variance" api:"required"`
}

// storedPoint is a refinement point in a session's namespace.
type storedPoint struct {
	Distortion float64   `json:"distortion"`
	Variance   float64   `json:"variance"`
	CreatedAt  time.Time `json:"created_at"`
}

const rdPointPrefix = "rd/point/"

func (s *Server) rdAddPoint(w http.ResponseWriter, r *http.Request) {
	var req pointRequest
	if err := decodeJSON(r, &req); err != nil {
		s.rdFail(w, r, err)
		return
	}
	req.SessionID = upperULID(req.SessionID)
	if _, err := s.activeSessionFor(r, req.SessionID); err != nil {
		s.fail(w, r, err)
		return
	}
	// Validate (and compute the rate) before storing.
	t := rd.NewTracker()
	if _, err := t.AddPoint(req.Distortion, req.Variance); err != nil {
		s.rdFail(w, r, err)
		return
	}
	b, _ := json.Marshal(storedPoint{Distortion: req.Distortion, Variance: req.Variance, CreatedAt: time.Now().UTC()})
	key := []byte(rdPointPrefix + session.NewID())
	if err := s.opts.Store.Put(r.Context(), trace.SessionNamespace(trace.DefaultTenant, req.SessionID), key, b); err != nil {
		s.fail(w, r, err)
		return
	}
	tr, err := s.tracker(r.Context(), req.SessionID, "")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	curve := tr.Curve()
	for _, p := range curve {
		if p.Index == tr.Len()-1 {
			writeCompactJSON(w, http.StatusCreated, p)
			return
		}
	}
	writeCompactJSON(w, http.StatusCreated, curve[len(curve)-1])
}

// tracker loads a session's refinement points (in the order they were added) into a
// tracker; with sessionID "" it loads those of every session of owner (of every session
// when owner is "").
func (s *Server) tracker(ctx context.Context, sessionID, owner string) (*rd.Tracker, error) {
	t := rd.NewTracker()
	ids := []string{sessionID}
	if sessionID == "" {
		ids = nil
		token := ""
		for {
			list, next, err := s.opts.Sessions.List(ctx, storage.MaxScanLimit, token, session.Filter{WithDeleted: true, Owner: owner})
			if err != nil {
				return nil, err
			}
			for _, x := range list {
				ids = append(ids, x.ID)
			}
			if next == "" {
				break
			}
			token = next
		}
	}
	for _, id := range ids {
		ns := trace.SessionNamespace(trace.DefaultTenant, id)
		var after []byte
		for {
			res, err := s.opts.Store.Scan(ctx, storage.ScanRequest{Namespace: ns, Prefix: []byte(rdPointPrefix), StartAfter: after, Limit: storage.MaxScanLimit})
			if err != nil {
				return nil, err
			}
			for _, kv := range res.Items {
				after = kv.Key
				var p storedPoint
				if err := json.Unmarshal(kv.Value, &p); err != nil {
					return nil, fmt.Errorf("rd point %s of session %s: corrupt: %w", kv.Key, id, err)
				}
				if _, err := t.AddPoint(p.Distortion, p.Variance); err != nil {
					// A point an older host stored beyond today's bounds (a distortion
					// over 1e100) can be on no curve: it is left out, not a 500 forever.
					s.opts.Logger.Warn("rd point left out of the knee", "session", id, "key", string(kv.Key), "error", err)
				}
			}
			if !res.More {
				break
			}
		}
	}
	return t, nil
}

func (s *Server) rdSessionKnee(w http.ResponseWriter, r *http.Request) {
	id := upperULID(r.URL.Query().Get("session_id"))
	owner, err := s.ownerFilter(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if id != "" {
		if _, err := s.sessionFor(r, id); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	t, err := s.tracker(r.Context(), id, owner)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// The direction is inferred: the points of several sessions of different variances
	// need not decrease, and a direction the client never sent must not be refused.
	opts := rd.KneeOptions{Method: rd.KneeMenger, Curve: rd.CurveConvex}
	if m := r.URL.Query().Get("method"); m != "" {
		opts.Method = rd.KneeMethod(m)
	}
	if n := t.Len(); n < 3 {
		whose := "the host's sessions have"
		if owner != "" {
			whose = owner + "'s sessions have"
		}
		if id != "" {
			whose = "session " + id + " has"
		}
		writeProblem(w, r, http.StatusUnprocessableEntity, fmt.Sprintf(
			"%s %d refinement point(s); a knee needs at least 3: add them with POST /v1/rd/points, or send a curve to POST /v1/rd/knee", whose, n),
			map[string]any{"points": n})
		return
	}
	k, err := t.Knee(opts)
	var ie *rd.InputError
	if errors.As(err, &ie) && ie.Field == "points" {
		// The points are the session's, not the request's: too few distinct ones is the
		// 422 of too few points, not a 400 on a field the client did not send.
		whose := "the host's sessions' refinement points"
		if owner != "" {
			whose = owner + "'s sessions' refinement points"
		}
		if id != "" {
			whose = "session " + id + "'s refinement points"
		}
		writeProblem(w, r, http.StatusUnprocessableEntity, fmt.Sprintf(
			"%s: %s (add points of other distortions with POST /v1/rd/points)", whose, ie.Msg),
			map[string]any{"points": t.Len()})
		return
	}
	if err != nil {
		s.rdFail(w, r, err)
		return
	}
	writeCompactJSON(w, http.StatusOK, k)
}

type kneeRequest struct {
	Points []kneePoint `json:"points" api:"required"`
	rd.KneeOptions
}

// kneePoint is one point of a curve: exactly two numbers, [x, y] (a plain [2]float64
// would take [1] or [1, 2, 3] or [null, 1] without a word).
type kneePoint [2]float64

func (p *kneePoint) UnmarshalJSON(b []byte) error {
	var xs []*float64
	if err := json.Unmarshal(b, &xs); err != nil || len(xs) != 2 || xs[0] == nil || xs[1] == nil {
		return fmt.Errorf("a point is two numbers [x, y], got %s", clipJSON(b))
	}
	*p = kneePoint{*xs[0], *xs[1]}
	return nil
}

// clipJSON shortens a JSON value for an error message.
func clipJSON(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "…"
	}
	return string(b)
}

func (s *Server) rdKnee(w http.ResponseWriter, r *http.Request) {
	var req kneeRequest
	if err := decodeJSON(r, &req); err != nil {
		s.rdFail(w, r, err)
		return
	}
	points := make([][2]float64, len(req.Points))
	for i, p := range req.Points {
		points[i] = p
	}
	k, err := rd.FindKnee(points, req.KneeOptions)
	if err != nil {
		s.rdFail(w, r, err)
		return
	}
	writeCompactJSON(w, http.StatusOK, k)
}

type curveRequest struct {
	P          []float64   `json:"p" api:"required"`
	Distortion [][]float64 `json:"distortion" api:"required"`
	rd.BAConfig
	// MaxIter and Tol take BAConfig's max_iter and tol, to tell them absent (nil: the
	// default) from 0, which is refused.
	MaxIter *int     `json:"max_iter,omitempty"`
	Tol     *float64 `json:"tol,omitempty"`
}

// openAPIExtra: a curve's distortion matrix is bounded by MaxGraphNodes.
func (*curveRequest) openAPIExtra() map[string]any {
	return map[string]any{"description": fmt.Sprintf(
		"distortion (source symbols × reproduction symbols) is at most %d×%d; a larger one is a 400 naming it.",
		MaxGraphNodes, MaxGraphNodes)}
}

func (s *Server) rdCurve(w http.ResponseWriter, r *http.Request) {
	var req curveRequest
	if err := decodeJSON(r, &req); err != nil {
		s.rdFail(w, r, err)
		return
	}
	if err := checkMaxIter(req.MaxIter); err != nil {
		s.rdFail(w, r, err)
		return
	}
	if req.MaxIter != nil {
		req.BAConfig.MaxIter = *req.MaxIter
	}
	if err := checkTol(req.Tol); err != nil {
		s.rdFail(w, r, err)
		return
	}
	if req.Tol != nil {
		req.BAConfig.Tol = *req.Tol
	}
	d, err := dense("distortion", req.Distortion)
	if err != nil {
		s.rdFail(w, r, err)
		return
	}
	ctx, done, ok := s.rdStart(w, r)
	if !ok {
		return
	}
	defer done()
	c, err := rd.BlahutArimotoContext(ctx, req.P, d, req.BAConfig)
	if err != nil {
		s.rdFail(w, r, err)
		return
	}
	writeCompactJSON(w, http.StatusOK, c)
}

type sessionFGWResponse struct {
	A      string       `json:"a"`
	B      string       `json:"b"`
	NodesA int          `json:"nodes_a"`
	NodesB int          `json:"nodes_b"`
	Kinds  []string     `json:"kinds"`
	Result rd.FGWResult `json:"result"`
	// Damaged are the ids of the traces left out of the graphs: their stored record or
	// chain does not decode (GET /v1/traces/{id}/provenance/verify says what is wrong).
	Damaged []string `json:"damaged,omitempty"`
}

// traceGraph is a session's trace graph: one node per provenance entry (at most
// MaxGraphNodes: the entries of its traces in creation order, those past it left out),
// structure = hop distance along a trace's chain (entries of different traces are one
// hop further than the longest chain), features = one-hot entry kinds.
type traceGraph struct {
	kinds []string // per node
	chain []int    // per node: trace number
	pos   []int    // per node: index in its chain
	// damaged are the traces left out: their record or chain does not decode.
	damaged []string
}

func (s *Server) traceGraph(ctx context.Context, sessionID string) (*traceGraph, error) {
	g := &traceGraph{}
	token := ""
	tn := 0
	for {
		page, err := s.opts.Traces.SessionPage(ctx, sessionID, trace.MaxPageSize, token)
		if err != nil {
			return nil, err
		}
		g.damaged = append(g.damaged, page.Damaged...)
		for _, rec := range page.Records {
			entries, err := s.opts.Traces.Chain(ctx, rec.ID)
			if errors.Is(err, trace.ErrCorrupt) {
				g.damaged = append(g.damaged, rec.ID)
				continue
			}
			if err != nil {
				return nil, err
			}
			for _, e := range entries {
				if len(g.kinds) == MaxGraphNodes {
					return g, nil
				}
				g.kinds = append(g.kinds, e.Kind)
				g.chain = append(g.chain, tn)
				g.pos = append(g.pos, int(e.Index))
			}
			tn++
		}
		if page.Next == "" {
			return g, nil
		}
		token = page.Next
	}
}

func (g *traceGraph) structure() *mat.Dense {
	n := len(g.kinds)
	longest := 0
	for _, p := range g.pos {
		longest = max(longest, p)
	}
	c := mat.NewDense(n, n, nil)
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			d := float64(longest + 1)
			if g.chain[i] == g.chain[j] {
				d = math.Abs(float64(g.pos[i] - g.pos[j]))
			}
			c.Set(i, j, d)
		}
	}
	return c
}

func (g *traceGraph) features(kinds map[string]int) *mat.Dense {
	f := mat.NewDense(len(g.kinds), len(kinds), nil)
	for i, k := range g.kinds {
		f.Set(i, kinds[k], 1)
	}
	return f
}

func (s *Server) rdSessionFGW(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	a, b := r.URL.Query().Get("a"), r.URL.Query().Get("b")
	if a == "" || b == "" {
		s.fail(w, r, badRequest("query parameters a and b (session ids) are required"))
		return
	}
	a, b = upperULID(a), upperULID(b)
	// The query is checked before any session is read.
	cfg := s.fgwConfig(rd.Method(r.URL.Query().Get("method")), nil, nil, nil, nil)
	if cfg.Method != rd.MethodCG && cfg.Method != rd.MethodEntropic {
		s.rdFail(w, r, &rd.InputError{Field: "method", Msg: fmt.Sprintf("unknown method %q: use \"cg\" or \"entropic\"", cfg.Method)})
		return
	}
	var graphs [2]*traceGraph
	for i, id := range []string{a, b} {
		if _, err := s.sessionFor(r, id); err != nil {
			s.fail(w, r, err)
			return
		}
		g, err := s.traceGraph(ctx, id)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if len(g.kinds) == 0 {
			// The request is right; the session is not ready for it (as a knee over too
			// few points).
			msg := fmt.Sprintf("session %s has no traces yet: an FGW distance needs a trace in each session", id)
			if len(g.damaged) > 0 {
				msg = fmt.Sprintf("session %s has no intact traces: an FGW distance needs a trace in each session, and its traces %s are damaged (their verify says what is wrong)", id, strings.Join(g.damaged, ", "))
			}
			writeProblem(w, r, http.StatusUnprocessableEntity, msg, nil)
			return
		}
		graphs[i] = g
	}
	kinds := map[string]int{}
	var names []string
	for _, g := range graphs {
		for _, k := range g.kinds {
			if _, ok := kinds[k]; !ok {
				kinds[k] = len(kinds)
				names = append(names, k)
			}
		}
	}
	m, err := rd.FeatureCost(graphs[0].features(kinds), graphs[1].features(kinds))
	if err != nil {
		s.rdFail(w, r, err)
		return
	}
	rctx, done, ok := s.rdStart(w, r)
	if !ok {
		return
	}
	defer done()
	res, err := rd.FGW(graphs[0].structure(), graphs[1].structure(), m, uniform(len(graphs[0].kinds)), uniform(len(graphs[1].kinds)), cfg, rd.WithContext(rctx), rd.WithStarts())
	if err != nil {
		s.rdFail(w, r, err)
		return
	}
	damaged := slices.Compact(slices.Sorted(slices.Values(append(graphs[0].damaged, graphs[1].damaged...))))
	if len(damaged) > 0 {
		s.opts.Logger.Warn("traces left out of a session graph as damaged", append(requestIDs(w.Header().Get(requestIDHeader), r), "path", r.URL.Path, "traces", damaged)...)
	}
	writeCompactJSON(w, http.StatusOK, sessionFGWResponse{A: a, B: b, NodesA: len(graphs[0].kinds), NodesB: len(graphs[1].kinds), Kinds: names, Result: res, Damaged: damaged})
}
