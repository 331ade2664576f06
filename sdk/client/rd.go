package client

import (
	"context"
	"net/url"
)

// FGWRequest is the body of POST /v1/rd/fgw: two attributed graphs, each given by its
// structure (C1, C2: n×n and m×m, e.g. hop distances) and either a feature cost M (n×m)
// or the nodes' features (FeaturesA, n rows, and FeaturesB, m rows, of the same width),
// not both. A matrix has at most 2000 rows and columns. Fields left nil or zero take the
// host's defaults (rd in its config).
type FGWRequest struct {
	C1        [][]float64 `json:"c1"`
	C2        [][]float64 `json:"c2"`
	M         [][]float64 `json:"m,omitempty"`
	FeaturesA [][]float64 `json:"features_a,omitempty"`
	FeaturesB [][]float64 `json:"features_b,omitempty"`
	// P and Q are the nodes' weights; uniform when nil.
	P []float64 `json:"p,omitempty"`
	Q []float64 `json:"q,omitempty"`
	// Alpha in [0, 1] weighs structure against features.
	Alpha *float64 `json:"alpha,omitempty"`
	// Method is "cg" (the default) or "entropic".
	Method string `json:"method,omitempty"`
	// Epsilon (> 0) is the entropic regularisation: with method entropic only (the host
	// refuses it with cg).
	Epsilon *float64 `json:"epsilon,omitempty"`
	// MaxIter (at least 1) and Tol (above 0), when given, bound the solver.
	MaxIter *int     `json:"max_iter,omitempty"`
	Tol     *float64 `json:"tol,omitempty"`
	// ReturnPlan asks for the transport plan in FGWResult.Plan.
	ReturnPlan bool `json:"return_plan,omitempty"`
}

// FGWResult is an FGW distance: the FGW loss of the transport plan found (the least over
// several starts), with how the solver ran.
type FGWResult struct {
	Distance   float64 `json:"distance"`
	Iterations int     `json:"iterations"`
	// Converged is false when max_iter stopped the solver before its tolerance was met.
	Converged bool `json:"converged"`
	// Method is the solver that ran, "cg" or "entropic".
	Method string `json:"method"`
	// Plan is the n×m transport plan, when the request asked for it.
	Plan [][]float64 `json:"plan,omitempty"`
}

// FGW computes the Fused Gromov-Wasserstein distance between two attributed graphs
// (POST /v1/rd/fgw). A computation that does not finish within the host's rd.timeout is
// an *Error with status 422; one that waited that long for a free slot, 503 with
// RetryAfter.
func (c *Client) FGW(ctx context.Context, req FGWRequest) (*FGWResult, error) {
	var r FGWResult
	return orNil(&r, c.do(ctx, "POST", "/v1/rd/fgw", req, &r))
}

// RDPoint is a refinement point of a session: a measured distortion, the source variance
// it refers to, and the Gaussian rate R(D) that follows; Index is its place in the order
// the session's points were added.
type RDPoint struct {
	Index      int     `json:"index"`
	Distortion float64 `json:"distortion"`
	Variance   float64 `json:"variance"`
	Rate       float64 `json:"rate"`
}

// AddRDPoint adds a refinement point to a session's rate-distortion curve (POST
// /v1/rd/points) and returns it with its rate. The session must not be deleted.
func (c *Client) AddRDPoint(ctx context.Context, sessionID string, distortion, variance float64) (*RDPoint, error) {
	if err := needID("AddRDPoint", "sessionID", sessionID); err != nil {
		return nil, err
	}
	var p RDPoint
	body := map[string]any{"session_id": sessionID, "distortion": distortion, "variance": variance}
	return orNil(&p, c.do(ctx, "POST", "/v1/rd/points", body, &p))
}

// RDKneeQuery selects the refinement points whose knee RDKnee finds: a session's, or with
// SessionID "" those of every session the token reaches (Owner's alone, when given; with
// a user's token, Owner must be that user's or "").
type RDKneeQuery struct {
	SessionID string
	Owner     string
	// Method is the knee detector, "menger" (the default) or "kneedle".
	Method string
}

// RDKnee is the operating point of sessions' refinement points: the knee of their
// rate-distortion curve; Index is the RDPoint.Index of the knee.
type RDKnee struct {
	Rate       float64 `json:"rate"`
	Distortion float64 `json:"distortion"`
	Index      int     `json:"index"`
	Curvature  float64 `json:"curvature"`
	// Difference is Kneedle's difference-curve value at the knee (method kneedle only).
	Difference float64 `json:"difference,omitempty"`
	Method     string  `json:"method"`
}

// RDKnee returns the knee of the refinement points q selects (GET /v1/rd/knee). Fewer than
// 3 points of different distortions is an *Error with status 422 whose Extra["points"]
// counts them.
func (c *Client) RDKnee(ctx context.Context, q RDKneeQuery) (*RDKnee, error) {
	v := url.Values{}
	for k, s := range map[string]string{"session_id": q.SessionID, "owner": q.Owner, "method": q.Method} {
		if s != "" {
			v.Set(k, s)
		}
	}
	var k RDKnee
	return orNil(&k, c.do(ctx, "GET", "/v1/rd/knee?"+v.Encode(), nil, &k))
}

// KneeRequest is the body of POST /v1/rd/knee: a curve of at least 3 points [x, y] and how
// to find its knee. Empty fields take the detector's defaults (Curve and Direction are
// then inferred from the points).
type KneeRequest struct {
	Points [][2]float64 `json:"points"`
	// Method is "menger" (the default) or "kneedle".
	Method string `json:"method,omitempty"`
	// Curve is "convex" or "concave"; Direction "increasing" or "decreasing".
	Curve     string `json:"curve,omitempty"`
	Direction string `json:"direction,omitempty"`
	// Sensitivity is Kneedle's S ≥ 0 (default 1).
	Sensitivity float64 `json:"sensitivity,omitempty"`
	// Online makes Kneedle return the last knee it confirms rather than the first.
	Online bool `json:"online,omitempty"`
	// DuplicateTol is the distance on normalised axes below which a point counts as a
	// duplicate of the one before (default 1e-9).
	DuplicateTol float64 `json:"duplicate_tol,omitempty"`
}

// Knee is the knee of a curve: its coordinates as given, its position in the points, and
// how it was found (inferred Curve and Direction filled in).
type Knee struct {
	X         float64 `json:"x"`
	Y         float64 `json:"y"`
	Index     int     `json:"index"`
	Curvature float64 `json:"curvature"`
	// Difference is Kneedle's difference-curve value at the knee (Kneedle only).
	Difference float64 `json:"difference,omitempty"`
	Method     string  `json:"method"`
	Curve      string  `json:"curve"`
	Direction  string  `json:"direction"`
}

// Knee finds the knee of any curve (POST /v1/rd/knee). A curve with no knee (straight or
// flat) is an *Error with status 422; fewer than 3 points, 400.
func (c *Client) Knee(ctx context.Context, req KneeRequest) (*Knee, error) {
	var k Knee
	return orNil(&k, c.do(ctx, "POST", "/v1/rd/knee", req, &k))
}

// CurveRequest is the body of POST /v1/rd/curve: a discrete source's symbol probabilities
// P and its distortion matrix (source symbols × reproduction symbols, at most 2000×2000).
type CurveRequest struct {
	P          []float64   `json:"p"`
	Distortion [][]float64 `json:"distortion"`
	// Betas are the slopes (> 0) to sweep; nil for the host's default sweep.
	Betas []float64 `json:"betas,omitempty"`
	// MaxIter (at least 1) bounds the iterations per slope, and Tol (above 0) stops a
	// slope's iteration, when given.
	MaxIter *int     `json:"max_iter,omitempty"`
	Tol     *float64 `json:"tol,omitempty"`
}

// CurvePoint is one point of a rate-distortion curve; Rate is in bits.
type CurvePoint struct {
	Beta       float64 `json:"beta"`
	Distortion float64 `json:"distortion"`
	Rate       float64 `json:"rate"`
	Iterations int     `json:"iterations"`
	Converged  bool    `json:"converged"`
}

// Curve is a rate-distortion curve, its points in increasing slope (decreasing
// distortion), with its knee, or, when it has none, KneeError saying why.
type Curve struct {
	Points    []CurvePoint `json:"points"`
	Knee      *Knee        `json:"knee,omitempty"`
	KneeError string       `json:"knee_error,omitempty"`
}

// Curve computes the rate-distortion curve of a discrete source by Blahut-Arimoto, with
// its knee (POST /v1/rd/curve).
func (c *Client) Curve(ctx context.Context, req CurveRequest) (*Curve, error) {
	var r Curve
	return orNil(&r, c.do(ctx, "POST", "/v1/rd/curve", req, &r))
}

// SessionFGW is the FGW distortion between two sessions' trace graphs: one node per
// provenance entry (at most 2000 per session), Kinds the entry kinds that are the nodes'
// features.
type SessionFGW struct {
	A      string    `json:"a"`
	B      string    `json:"b"`
	NodesA int       `json:"nodes_a"`
	NodesB int       `json:"nodes_b"`
	Kinds  []string  `json:"kinds"`
	Result FGWResult `json:"result"`
}

// SessionFGW computes the FGW distortion between the trace graphs of sessions a and b
// (GET /v1/rd/fgw/sessions), with method "cg" or "entropic" ("" for the default). A
// session with no traces yet is an *Error with status 422.
func (c *Client) SessionFGW(ctx context.Context, a, b, method string) (*SessionFGW, error) {
	if err := needID("SessionFGW", "a", a); err != nil {
		return nil, err
	}
	if err := needID("SessionFGW", "b", b); err != nil {
		return nil, err
	}
	q := url.Values{"a": {a}, "b": {b}}
	if method != "" {
		q.Set("method", method)
	}
	var r SessionFGW
	return orNil(&r, c.do(ctx, "GET", "/v1/rd/fgw/sessions?"+q.Encode(), nil, &r))
}
