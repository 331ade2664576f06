package api

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/limitgraph/limit/host/config"
	"github.com/limitgraph/limit/host/governance"
	"github.com/limitgraph/limit/host/session"
	"github.com/limitgraph/limit/host/trace"
	"github.com/limitgraph/limit/sdk/storage/memstore"
)

// rdServer is an API server with the RD routes (which need sessions) and rd as its config.
func rdServer(t *testing.T, rd config.RD) *Server {
	st := memstore.New()
	sessions := session.NewManager(session.Options{Store: st, DataDir: t.TempDir(), Policies: governance.PolicyNames(), DefaultPolicy: "default"})
	return New(Options{Sessions: sessions, Store: st, RD: rd})
}

func post(t *testing.T, h http.Handler, path, body string) (int, map[string]any) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", path, strings.NewReader(body)))
	var out map[string]any
	if err := json.NewDecoder(rec.Result().Body).Decode(&out); err != nil {
		t.Fatalf("%s: body is not JSON: %v", path, err)
	}
	return rec.Code, out
}

// matrix is an n×n matrix as JSON whose entries are f(i, j).
func matrix(n int, f func(i, j int) float64) string {
	rows := make([][]float64, n)
	for i := range rows {
		rows[i] = make([]float64, n)
		for j := range rows[i] {
			rows[i][j] = f(i, j)
		}
	}
	b, _ := json.Marshal(rows)
	return string(b)
}

// ring is an n-node ring's hop distances.
func ring(n int) string {
	return matrix(n, func(i, j int) float64 { d := (i - j + n) % n; return float64(min(d, n-d)) })
}

// TestRDTimeout: an RD computation that would run for hours ends at rd.timeout with a
// 422 saying what to change; stopping the server ends one at once with 503.
func TestRDTimeout(t *testing.T) {
	s := rdServer(t, config.RD{Alpha: 0.5, Epsilon: 0.01, Tol: 1e-9, MaxIter: 200, Timeout: 200 * time.Millisecond})
	n := 40
	// Two unlike graphs with uneven feature costs: the entropic solver never reaches a
	// tolerance of 1e-300.
	c2 := matrix(n, func(i, j int) float64 { return math.Abs(math.Sin(float64(i+j))) + math.Abs(float64(i-j))/3 })
	m := matrix(n, func(i, j int) float64 { return float64((i*7+j*3)%5) / 4 })
	endless := fmt.Sprintf(`{"c1": %s, "c2": %s, "m": %s, "method": "entropic", "tol": 1e-300, "max_iter": 1000000000}`, ring(n), c2, m)
	code, body := post(t, s, "/v1/rd/fgw", endless)
	if code != 422 || !strings.Contains(fmt.Sprint(body["detail"]), "rd.timeout (200ms)") {
		t.Fatalf("past rd.timeout: %d %v", code, body)
	}
	// A curve of a billion iterations per slope towards a tolerance it never reaches.
	curve := `{"p": [0.2, 0.3, 0.5], "distortion": [[0, 1, 3], [2, 0, 1], [1, 4, 0]], "max_iter": 1000000000, "tol": 1e-300}`
	if code, body := post(t, s, "/v1/rd/curve", curve); code != 422 {
		t.Fatalf("curve past rd.timeout: %d %v", code, body)
	}
	// Stopped: the computation in flight ends with 503.
	s = rdServer(t, config.RD{Alpha: 0.5, Timeout: time.Hour})
	go func() { time.Sleep(100 * time.Millisecond); s.Stop() }()
	if code, body := post(t, s, "/v1/rd/fgw", endless); code != 503 {
		t.Fatalf("stopped: %d %v", code, body)
	}
	// An unknown method is refused by name.
	if code, body := post(t, rdServer(t, config.RD{Alpha: 0.5}), "/v1/rd/fgw", fmt.Sprintf(`{"c1": %s, "c2": %s, "m": %s, "method": "bogus"}`, ring(3), ring(3), "[[0,0,0],[0,0,0],[0,0,0]]")); code != 400 || !strings.Contains(fmt.Sprint(body["detail"]), `unknown method "bogus"`) {
		t.Fatalf("unknown method: %d %v", code, body)
	}
}

// TestRefusePeer: a request the daemon says comes from sandboxed code gets 403 and
// reaches no handler.
func TestRefusePeer(t *testing.T) {
	s := New(Options{RefusePeer: func(r *http.Request) string {
		if r.Header.Get("X-Test-Sandboxed") != "" {
			return "requests from code sandboxed on this machine (uid 200001) are refused"
		}
		return ""
	}})
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/v1/health", nil)
	req.Header.Set("X-Test-Sandboxed", "1")
	s.ServeHTTP(rec, req)
	if rec.Code != 403 || rec.Header().Get("Content-Type") != "application/problem+json" || !strings.Contains(rec.Body.String(), "uid 200001") || rec.Header().Get("X-Request-Id") == "" {
		t.Fatalf("sandboxed: %d %v %s", rec.Code, rec.Header(), rec.Body)
	}
	if res, _ := do(t, s, "GET", "/v1/health"); res.StatusCode != 200 {
		t.Fatalf("not sandboxed: %d", res.StatusCode)
	}
}

// TestKneeInput: each point is exactly two numbers; a curve with too few points, or a
// host with too few refinement points, says what is missing.
func TestKneeInput(t *testing.T) {
	s := rdServer(t, config.RD{Alpha: 0.5})
	for _, bad := range []string{
		`{"points": [[0, 1], [1], [2, 0.2]]}`,
		`{"points": [[0, 1, 2], [1, 0.5], [2, 0.2]]}`,
		`{"points": [[null, 1], [1, 0.5], [2, 0.2]]}`,
	} {
		if code, body := post(t, s, "/v1/rd/knee", bad); code != 400 || !strings.Contains(fmt.Sprint(body["detail"]), "a point is two numbers [x, y]") {
			t.Errorf("%s: %d %v", bad, code, body)
		}
	}
	if code, body := post(t, s, "/v1/rd/knee", `{"points": [[0, 1], [1, 0.4], [2, 0.3], [3, 0.25]]}`); code != 200 {
		t.Errorf("good curve: %d %v", code, body)
	}
	res, body := do(t, s, "GET", "/v1/rd/knee")
	if res.StatusCode != 422 || !strings.Contains(fmt.Sprint(body["detail"]), "0 refinement point(s); a knee needs at least 3") {
		t.Errorf("no points yet: %d %v", res.StatusCode, body)
	}
}

// TestKneeWithinRounding: a curve whose points differ only in their last bits has no knee,
// in both endpoints: POST /v1/rd/knee answers as for equal x values (400 on points), and
// POST /v1/rd/curve of a source whose every distortion is 5 has no knee but a knee_error.
func TestKneeWithinRounding(t *testing.T) {
	s := rdServer(t, config.RD{Alpha: 0.5})
	code, body := post(t, s, "/v1/rd/knee", `{"points":[[4.999999999999999,0],[5,1e-17],[5.000000000000001,0]]}`)
	if code != 400 || body["field"] != "points" || !strings.Contains(fmt.Sprint(body["detail"]), "same x up to rounding") {
		t.Errorf("x = 5 ± 1 ulp: %d %v", code, body)
	}
	code, body = post(t, s, "/v1/rd/knee", `{"points":[[0,1000],[1,1000.0000000000001],[2,1000]]}`)
	if code != 422 || !strings.Contains(fmt.Sprint(body["detail"]), "no knee") {
		t.Errorf("y = 1000 ± 1 ulp: %d %v", code, body)
	}
	code, body = post(t, s, "/v1/rd/curve", `{"p":[0.5,0.5],"distortion":[[5,5],[5,5]]}`)
	if code != 200 || body["knee"] != nil || !strings.Contains(fmt.Sprint(body["knee_error"]), "same x up to rounding") {
		t.Errorf("distortions all 5: %d knee %v, knee_error %v", code, body["knee"], body["knee_error"])
	}
}

// TestKneeNoKneeReasons: POST /v1/rd/knee says why a curve has no knee (an exactly flat
// curve is flat; Kneedle at sensitivity 100 asks for a lower one), refuses a direction
// the points contradict with a 400 on direction, for Menger as for Kneedle, and GET
// /v1/rd/knee with Kneedle answers the difference POST answers for the same curve.
func TestKneeNoKneeReasons(t *testing.T) {
	s := rdServer(t, config.RD{Alpha: 0.5})
	for _, method := range []string{"menger", "kneedle"} {
		code, body := post(t, s, "/v1/rd/knee", `{"points":[[0,1],[1,1],[2,1]],"method":"`+method+`"}`)
		if d := fmt.Sprint(body["detail"]); code != 422 || !strings.Contains(d, "flat curve") || strings.Contains(d, "bend") {
			t.Errorf("%s, exactly flat: %d %v", method, code, body)
		}
		code, body = post(t, s, "/v1/rd/knee", `{"points":[[0,1],[1,0.4],[2,0.3],[3,0.25]],"direction":"increasing","method":"`+method+`"}`)
		if code != 400 || body["field"] != "direction" || !strings.Contains(fmt.Sprint(body["detail"]), "the points decrease") {
			t.Errorf("%s, increasing on a decreasing curve: %d %v", method, code, body)
		}
	}
	code, body := post(t, s, "/v1/rd/knee", `{"points":[[0,1],[1,0.4],[2,0.3],[3,0.25]],"method":"kneedle","sensitivity":100}`)
	if d := fmt.Sprint(body["detail"]); code != 422 || !strings.Contains(d, "sensitivity 100") || !strings.Contains(d, "lower sensitivity") {
		t.Errorf("kneedle at sensitivity 100: %d %v", code, body)
	}

	id := rdSession(t, s, nil, "0.05", "0.1", "0.2", "0.4", "0.8", "0.9")
	res, got := do(t, s, "GET", "/v1/rd/knee?session_id="+id+"&method=kneedle")
	if res.StatusCode != 200 {
		t.Fatalf("session kneedle knee: %d %v", res.StatusCode, got)
	}
	pts := make([]string, 0, 6)
	for _, d := range []float64{0.05, 0.1, 0.2, 0.4, 0.8, 0.9} {
		pts = append(pts, fmt.Sprintf("[%v,%v]", d, math.Max(0, 0.5*(math.Log2(1)-math.Log2(d))) /* as rd.Rate computes it */))
	}
	code, want := post(t, s, "/v1/rd/knee", `{"points":[`+strings.Join(pts, ",")+`],"method":"kneedle","curve":"convex","direction":"decreasing"}`)
	if code != 200 || want["difference"] == nil || got["difference"] != want["difference"] || got["distortion"] != want["x"] {
		t.Errorf("GET kneedle knee %v, POST %d %v: want the same knee and difference", got, code, want)
	}
}

// TestRDMissingFieldNamed: a required field left out of an RD body is a 400 with field,
// as the RD routes' other 400s (variance 0 given is one on the core's check).
func TestRDMissingFieldNamed(t *testing.T) {
	s := rdServer(t, config.RD{Alpha: 0.5})
	id := rdSession(t, s, nil)
	for _, tc := range []struct{ path, body, field string }{
		{"/v1/rd/points", `{"session_id": "` + id + `", "distortion": 0.5}`, "variance"},
		{"/v1/rd/points", `{"session_id": "` + id + `", "variance": 1}`, "distortion"},
		{"/v1/rd/points", `{"session_id": "` + id + `", "distortion": 0.5, "variance": 0}`, "variance"},
		{"/v1/rd/knee", `{"method": "kneedle"}`, "points"},
		{"/v1/rd/curve", `{"p": [1]}`, "distortion"},
		{"/v1/rd/fgw", `{"c1": [[0]]}`, "c2"},
	} {
		if code, body := post(t, s, tc.path, tc.body); code != 400 || body["field"] != tc.field || !strings.Contains(fmt.Sprint(body["detail"]), tc.field) {
			t.Errorf("%s %s: %d %v, want 400 with field %q", tc.path, tc.body, code, body, tc.field)
		}
	}
}

// TestFGWFeatureRows: features with a row count other than their graph's node count are
// refused on the field the client sent (features_a or features_b), not on m, which it
// did not send.
func TestFGWFeatureRows(t *testing.T) {
	s := rdServer(t, config.RD{Alpha: 0.5})
	for _, tc := range []struct{ body, field string }{
		{fmt.Sprintf(`{"c1": %s, "c2": %s, "features_a": [[0], [1]], "features_b": [[0], [1], [2]]}`, ring(3), ring(3)), "features_a"},
		{fmt.Sprintf(`{"c1": %s, "c2": %s, "features_a": [[0], [1], [2]], "features_b": [[0], [1], [2], [3]]}`, ring(3), ring(3)), "features_b"},
	} {
		code, body := post(t, s, "/v1/rd/fgw", tc.body)
		if code != 400 || body["field"] != tc.field || !strings.Contains(fmt.Sprint(body["detail"]), "one per node") {
			t.Errorf("%s: %d %v, want 400 on %s", tc.body, code, body, tc.field)
		}
	}
	if code, body := post(t, s, "/v1/rd/fgw", fmt.Sprintf(`{"c1": %s, "c2": %s, "features_a": [[0], [1], [2]], "features_b": [[0], [1], [2]]}`, ring(3), ring(3))); code != 200 || body["distance"] != 0.0 {
		t.Errorf("same graph, same features: %d %v", code, body)
	}
}

// TestFGWPrecisionLost: structures of 1e8 against a feature cost of 1 are a 422 naming m
// and the scale ratio, not a plan that ignores m reported as converged; at 1e6 the
// features still decide the plan.
func TestFGWPrecisionLost(t *testing.T) {
	s := rdServer(t, config.RD{Alpha: 0.5})
	for _, method := range []string{"cg", "entropic"} {
		code, body := post(t, s, "/v1/rd/fgw", `{"c1":[[0,1e8],[1e8,0]],"c2":[[0,1e8],[1e8,0]],"m":[[0,1],[1,0]],"return_plan":true,"method":"`+method+`"}`)
		if code != 422 || body["field"] != "m" || body["scale_ratio"] != 1e-16 || !strings.Contains(fmt.Sprint(body["detail"]), "ratio of 1e-16") {
			t.Errorf("%s: %d %v, want 422 on m with the scale ratio", method, code, body)
		}
	}
	code, body := post(t, s, "/v1/rd/fgw", `{"c1":[[0,1e6],[1e6,0]],"c2":[[0,1e6],[1e6,0]],"m":[[0,1],[1,0]],"return_plan":true}`)
	if code != 200 || body["distance"] != 0.0 || fmt.Sprint(body["plan"]) != "[[0.5 0] [0 0.5]]" {
		t.Errorf("entries 1e6: %d %v, want the diagonal plan at distance 0", code, body)
	}
}

// TestSessionKneeTooFewDistinct: a session whose refinement points are all the same is
// one with fewer than 3 points on its curve: 422, like one with fewer than 3 points, not a
// 400 about a "points" field the client never sent.
func TestSessionKneeTooFewDistinct(t *testing.T) {
	s := rdServer(t, config.RD{Alpha: 0.5})
	id := rdSession(t, s, nil, "0.5", "0.5", "0.5")
	res, body := do(t, s, "GET", "/v1/rd/knee?session_id="+id)
	if res.StatusCode != 422 || body["field"] != nil || !strings.Contains(fmt.Sprint(body["detail"]), "session "+id) {
		t.Errorf("three equal points: %d %v", res.StatusCode, body)
	}
	if res, body := do(t, s, "GET", "/v1/rd/knee?session_id="+id+"&method=bogus"); res.StatusCode != 400 || body["field"] != "method" {
		t.Errorf("unknown method: %d %v", res.StatusCode, body)
	}
}

// TestFGWPlanDocumented: the OpenAPI document lists the "plan" that POST /v1/rd/fgw
// answers with return_plan (rd.FGWResult writes it from its own MarshalJSON, which the
// schema of its fields does not show).
func TestFGWPlanDocumented(t *testing.T) {
	s := rdServer(t, config.RD{Alpha: 0.5})
	_, doc := do(t, s, "GET", "/v1/openapi.json")
	op := doc["paths"].(map[string]any)["/v1/rd/fgw"].(map[string]any)["post"].(map[string]any)
	ref := op["responses"].(map[string]any)["200"].(map[string]any)["content"].(map[string]any)["application/json"].(map[string]any)["schema"].(map[string]any)["$ref"].(string)
	schema := doc["components"].(map[string]any)["schemas"].(map[string]any)[strings.TrimPrefix(ref, "#/components/schemas/")].(map[string]any)
	props := schema["properties"].(map[string]any)
	for _, f := range []string{"distance", "iterations", "converged", "method", "plan"} {
		if props[f] == nil {
			t.Errorf("%s: no %q in %v", ref, f, props)
		}
	}
	if code, body := post(t, s, "/v1/rd/fgw", fmt.Sprintf(`{"c1": %s, "c2": %s, "m": [[0,1],[1,0]], "return_plan": true}`, ring(2), ring(2))); code != 200 || body["plan"] == nil {
		t.Errorf("return_plan: %d %v", code, body)
	}
}

// TestSessionKneeSkipsPointsOutOfBounds: a point stored by an older host beyond today's
// bounds (distortion 1e300) is left out of the session's knee rather than failing every
// knee of the session with a 500.
func TestSessionKneeSkipsPointsOutOfBounds(t *testing.T) {
	s := rdServer(t, config.RD{Alpha: 0.5})
	id := rdSession(t, s, func(id string) {
		old, _ := json.Marshal(storedPoint{Distortion: 1e300, Variance: 1})
		if err := s.opts.Store.Put(context.Background(), trace.SessionNamespace(trace.DefaultTenant, id), []byte(rdPointPrefix+"0000-old"), old); err != nil {
			t.Fatal(err)
		}
	}, "0.1", "0.3", "0.5", "0.7", "0.9")
	res, body := do(t, s, "GET", "/v1/rd/knee?session_id="+id)
	if d, ok := body["distortion"].(float64); res.StatusCode != 200 || !ok || d > 1 {
		t.Fatalf("knee with an old out-of-bounds point: %d %v, want 200 with a knee among the session's own points", res.StatusCode, body)
	}
}

// rdSession creates a session, runs before (if any) with its id, then adds a refinement
// point of each distortion (variance 1), and returns the id.
func rdSession(t *testing.T, s *Server, before func(id string), distortions ...string) string {
	t.Helper()
	code, body := post(t, s, "/v1/sessions", `{"name": "rd"}`)
	if code != 201 {
		t.Fatalf("session: %d %v", code, body)
	}
	id := fmt.Sprint(body["id"])
	if before != nil {
		before(id)
	}
	for _, d := range distortions {
		if code, body := post(t, s, "/v1/rd/points", `{"session_id": "`+id+`", "distortion": `+d+`, "variance": 1}`); code != 201 {
			t.Fatalf("point %s: %d %v", d, code, body)
		}
	}
	return id
}

// TestRDConcurrencyLimit: RD computations run at most cap(rdSlots) at once; a request
// that finds every slot busy until its rd.timeout is answered 503 with Retry-After, and
// runs once a slot is free.
func TestRDConcurrencyLimit(t *testing.T) {
	saved := rdSlots
	rdSlots = make(chan struct{}, 1)
	t.Cleanup(func() { rdSlots = saved })
	s := rdServer(t, config.RD{Alpha: 0.5, Timeout: 50 * time.Millisecond})
	body := fmt.Sprintf(`{"c1": %s, "c2": %s, "m": [[0,0,0],[0,0,0],[0,0,0]]}`, ring(3), ring(3))
	rdSlots <- struct{}{} // a computation in flight
	for _, x := range []struct{ method, path, body string }{
		{"POST", "/v1/rd/fgw", body},
		{"POST", "/v1/rd/curve", `{"p": [0.5, 0.5], "distortion": [[0, 1], [1, 0]]}`},
	} {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(x.method, x.path, strings.NewReader(x.body)))
		if rec.Code != 503 || rec.Header().Get("Retry-After") != "1" || !strings.Contains(rec.Body.String(), "slots stayed busy") {
			t.Fatalf("%s, every slot busy: %d %q %s", x.path, rec.Code, rec.Header().Get("Retry-After"), rec.Body)
		}
	}
	<-rdSlots
	if code, out := post(t, s, "/v1/rd/fgw", body); code != 200 {
		t.Fatalf("a slot free: %d %v", code, out)
	}
	if len(rdSlots) != 0 {
		t.Errorf("the slot was not given back: %d taken", len(rdSlots))
	}
}

// TestRDLimitDocumented: the OpenAPI document tells the bound on the RD request bodies'
// matrices (MaxGraphNodes), which a client otherwise learns only from a 400; a matrix
// over it is refused on its field.
func TestRDLimitDocumented(t *testing.T) {
	s := rdServer(t, config.RD{Alpha: 0.5})
	_, doc := do(t, s, "GET", "/v1/openapi.json")
	schemas := doc["components"].(map[string]any)["schemas"].(map[string]any)
	limit := fmt.Sprintf("%d×%d", MaxGraphNodes, MaxGraphNodes)
	for _, name := range []string{"FgwRequest", "CurveRequest"} {
		schema, _ := schemas[name].(map[string]any)
		if d := fmt.Sprint(schema["description"]); !strings.Contains(d, limit) {
			t.Errorf("%s: description %q does not give the limit %s", name, d, limit)
		}
	}
	wide := "[[" + strings.Repeat("0,", MaxGraphNodes) + "0]]"
	if code, body := post(t, s, "/v1/rd/curve", `{"p": [1], "distortion": `+wide+`}`); code != 400 || body["field"] != "distortion" {
		t.Errorf("distortion of %d columns: %d %v", MaxGraphNodes+1, code, body)
	}
}

// TestFGWEpsilon: epsilon is refused on its field when it is not positive (any method)
// and when it is given with method cg (named or the default), which would ignore it.
func TestFGWEpsilon(t *testing.T) {
	s := rdServer(t, config.RD{Alpha: 0.5})
	graphs := fmt.Sprintf(`"c1": %s, "c2": %s, "m": [[0,1,1],[1,0,1],[1,1,0]]`, ring(3), ring(3))
	for _, tc := range []struct{ settings, detail string }{
		{`"method": "cg", "epsilon": -1`, "must be > 0"},
		{`"method": "cg", "epsilon": 0`, "must be > 0"},
		{`"method": "entropic", "epsilon": 0`, "must be > 0"},
		{`"method": "entropic", "epsilon": -0.5`, "must be > 0"},
		{`"method": "cg", "epsilon": 0.1`, "applies to method entropic only"},
		{`"epsilon": 0.1`, "applies to method entropic only"},
	} {
		code, body := post(t, s, "/v1/rd/fgw", "{"+graphs+", "+tc.settings+"}")
		if code != 400 || body["field"] != "epsilon" || !strings.Contains(fmt.Sprint(body["detail"]), tc.detail) {
			t.Errorf("%s: %d %v, want 400 on epsilon: %s", tc.settings, code, body, tc.detail)
		}
	}
	for _, settings := range []string{`"method": "entropic", "epsilon": 0.1`, `"method": "cg"`, `"alpha": 0.5`} {
		if code, body := post(t, s, "/v1/rd/fgw", "{"+graphs+", "+settings+"}"); code != 200 {
			t.Errorf("%s: %d %v", settings, code, body)
		}
	}
}

// TestRDMaxIter: a max_iter given below 1 is refused on its field by both routes that take
// one (the RD core reads 0 as its default, which would run in its place); left out, the
// default runs; given, it bounds the iterations.
func TestRDMaxIter(t *testing.T) {
	s := rdServer(t, config.RD{Alpha: 0.5})
	fgw := fmt.Sprintf(`{"c1": %s, "c2": %s, "m": [[0,1,1],[1,0,1],[1,1,0]]`, ring(3), ring(3))
	curve := `{"p": [0.5, 0.5], "distortion": [[0, 1], [1, 0]], "betas": [1]`
	for _, tc := range []struct{ path, body string }{
		{"/v1/rd/fgw", fgw + `, "max_iter": 0}`},
		{"/v1/rd/fgw", fgw + `, "max_iter": -3}`},
		{"/v1/rd/fgw", fgw + `, "method": "entropic", "max_iter": 0}`},
		{"/v1/rd/curve", curve + `, "max_iter": 0}`},
		{"/v1/rd/curve", curve + `, "max_iter": 0.0}`},
	} {
		code, body := post(t, s, tc.path, tc.body)
		if code != 400 || body["field"] != "max_iter" || !strings.Contains(fmt.Sprint(body["detail"]), "must be at least 1") {
			t.Errorf("%s %s: %d %v, want 400 on max_iter", tc.path, tc.body, code, body)
		}
	}
	if code, body := post(t, s, "/v1/rd/fgw", fgw+`}`); code != 200 {
		t.Errorf("fgw without max_iter: %d %v", code, body)
	}
	if code, body := post(t, s, "/v1/rd/fgw", fgw+`, "max_iter": 1}`); code != 200 || body["iterations"] != 1.0 {
		t.Errorf("fgw with max_iter 1: %d %v, want 1 iteration", code, body)
	}
	code, body := post(t, s, "/v1/rd/curve", curve+`, "max_iter": 1, "tol": 1e-300}`)
	points, _ := body["points"].([]any)
	if code != 200 || len(points) != 1 || points[0].(map[string]any)["iterations"] != 1.0 {
		t.Errorf("curve with max_iter 1: %d %v, want one point of 1 iteration", code, body)
	}
	if code, body := post(t, s, "/v1/rd/curve", curve+`}`); code != 200 {
		t.Errorf("curve without max_iter: %d %v", code, body)
	}
	// tol likewise: 0 (or below) is refused rather than read as the default.
	for _, tc := range []struct{ path, body string }{
		{"/v1/rd/fgw", fgw + `, "tol": 0}`},
		{"/v1/rd/fgw", fgw + `, "tol": -1e-9}`},
		{"/v1/rd/curve", curve + `, "tol": 0}`},
	} {
		code, body := post(t, s, tc.path, tc.body)
		if code != 400 || body["field"] != "tol" || !strings.Contains(fmt.Sprint(body["detail"]), "must be > 0") {
			t.Errorf("%s %s: %d %v, want 400 on tol", tc.path, tc.body, code, body)
		}
	}
	if code, body := post(t, s, "/v1/rd/fgw", fgw+`, "tol": 1e-6}`); code != 200 {
		t.Errorf("fgw with tol 1e-6: %d %v", code, body)
	}
}

// TestRDCompactJSON: the RD routes answer JSON without indentation, so a plan's numbers
// are not one a line (a 1600×1600 plan was 23 MB indented).
func TestRDCompactJSON(t *testing.T) {
	s := rdServer(t, config.RD{Alpha: 0.5})
	for _, x := range []struct{ path, body string }{
		{"/v1/rd/fgw", fmt.Sprintf(`{"c1": %s, "c2": %s, "m": [[0,1,1],[1,0,1],[1,1,0]], "return_plan": true}`, ring(3), ring(3))},
		{"/v1/rd/curve", `{"p": [0.5, 0.5], "distortion": [[0, 1], [1, 0]]}`},
		{"/v1/rd/knee", `{"points": [[0, 1], [1, 0.4], [2, 0.3], [3, 0.25]]}`},
	} {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest("POST", x.path, strings.NewReader(x.body)))
		b := rec.Body.Bytes()
		if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/json" || !json.Valid(b) {
			t.Fatalf("%s: %d %s", x.path, rec.Code, b)
		}
		if lines := strings.Count(string(b), "\n"); lines != 1 || !strings.HasSuffix(string(b), "\n") {
			t.Errorf("%s: %d lines, want the answer on one:\n%s", x.path, lines, b)
		}
	}
}
