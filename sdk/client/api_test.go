package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/limitgraph/limit/host/api"
	"github.com/limitgraph/limit/host/governance"
	"github.com/limitgraph/limit/host/session"
	"github.com/limitgraph/limit/host/trace"
	"github.com/limitgraph/limit/host/trace/tracetest"
	"github.com/limitgraph/limit/sdk/client"
	"github.com/limitgraph/limit/sdk/storage/memstore"
)

// apiServer runs the host's API without plugins (and without tokens: every request is an
// operator's) over memory storage, and returns a client of it.
func apiServer(t *testing.T) *client.Client {
	t.Helper()
	st := memstore.New()
	traces, _ := tracetest.New(t, st)
	rules, err := governance.NewEvaluator(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	sessions := session.NewManager(session.Options{Store: st, DataDir: t.TempDir(), Policies: governance.PolicyNames(), DefaultPolicy: "default"})
	stats := &governance.StatsStore{Store: st, Namespace: func(id string) string { return trace.SessionNamespace(trace.DefaultTenant, id) }}
	srv := httptest.NewServer(api.New(api.Options{Sessions: sessions, Traces: traces, Rules: rules, Stats: stats, Store: st, DefaultPolicy: "default"}))
	t.Cleanup(srv.Close)
	return client.New(srv.URL)
}

// TestStatelessRoutes: the RD computations that need no session, the policy presets and
// the OpenAPI document, against the host's own handlers.
func TestStatelessRoutes(t *testing.T) {
	c := apiServer(t)
	ctx := context.Background()

	fgw, err := c.FGW(ctx, client.FGWRequest{C1: [][]float64{{0, 1}, {1, 0}}, C2: [][]float64{{0, 1}, {1, 0}},
		FeaturesA: [][]float64{{0}, {1}}, FeaturesB: [][]float64{{1}, {0}}, ReturnPlan: true})
	if err != nil || fgw.Method != "cg" || fgw.Distance > 1e-9 || len(fgw.Plan) != 2 || len(fgw.Plan[0]) != 2 || fgw.Plan[0][1] < 0.49 {
		t.Errorf("FGW: %+v, %v", fgw, err)
	}
	eps := 0.01
	if _, err := c.FGW(ctx, client.FGWRequest{C1: [][]float64{{0}}, C2: [][]float64{{0}}, M: [][]float64{{0}}, Epsilon: &eps}); client.StatusOf(err) != 400 {
		t.Errorf("FGW with epsilon and cg: %v, want a 400", err)
	}

	k, err := c.Knee(ctx, client.KneeRequest{Points: [][2]float64{{1, 10}, {2, 3}, {3, 2}, {4, 1.5}, {5, 1.2}}})
	if err != nil || k.Index != 1 || k.X != 2 || k.Method != "menger" || k.Curve != "convex" || k.Direction != "decreasing" {
		t.Errorf("Knee: %+v, %v", k, err)
	}
	if k, err := c.Knee(ctx, client.KneeRequest{Points: [][2]float64{{1, 10}, {2, 3}, {3, 2}, {4, 1.5}, {5, 1.2}}, Method: "kneedle"}); err != nil || k.Method != "kneedle" {
		t.Errorf("Knee by kneedle: %+v, %v", k, err)
	}

	curve, err := c.Curve(ctx, client.CurveRequest{P: []float64{0.5, 0.5}, Distortion: [][]float64{{0, 1}, {1, 0}}, Betas: []float64{0.5, 1, 2, 4, 8}})
	if err != nil || len(curve.Points) != 5 || curve.Points[0].Beta != 0.5 || !curve.Points[4].Converged || (curve.Knee == nil) == (curve.KneeError == "") {
		t.Errorf("Curve: %+v, %v", curve, err)
	}

	pols, err := c.Policies(ctx)
	if err != nil || !slices.Equal(slices.Sorted(maps.Keys(pols)), slices.Sorted(maps.Keys(governance.Presets))) {
		t.Fatalf("Policies: %+v, %v", pols, err)
	}
	for name, want := range governance.Presets {
		got := pols[name]
		if got.Name != want.Name || !maps.Equal(got.Block, want.Block) || got.AutoQuarantine != want.QuarantineSeverity ||
			!slices.Equal(got.MergeBlock, want.MergeBlock) || got.AllowUnverifiedMerge != want.AllowUnverifiedMerge || got.FailOpen != want.FailOpen {
			t.Errorf("policy %s: %+v, want %+v", name, got, want)
		}
	}

	doc, err := c.OpenAPI(ctx)
	var d struct {
		OpenAPI string         `json:"openapi"`
		Paths   map[string]any `json:"paths"`
	}
	if err != nil || json.Unmarshal(doc, &d) != nil || d.OpenAPI == "" || d.Paths["/v1/rd/fgw/sessions"] == nil {
		t.Errorf("OpenAPI: %.200s, %v", doc, err)
	}
}

// TestSessionRoutes: refinement points and their knees, the FGW distortion of two
// sessions' traces, a flag's rule id, governance counts of one session or one owner's, and
// listings with deleted sessions, against the host's own handlers.
func TestSessionRoutes(t *testing.T) {
	c := apiServer(t)
	ctx := context.Background()
	a, err := c.CreateSession(ctx, client.CreateSessionRequest{Name: "a", Owner: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.CreateSession(ctx, client.CreateSessionRequest{Name: "b", Owner: "bob"})
	if err != nil {
		t.Fatal(err)
	}

	for i, d := range []float64{0.9, 0.5, 0.2, 0.1, 0.05} {
		p, err := c.AddRDPoint(ctx, a.ID, d, 1)
		if err != nil || p.Index != i || p.Distortion != d || p.Variance != 1 || p.Rate <= 0 {
			t.Fatalf("AddRDPoint %d: %+v, %v", i, p, err)
		}
	}
	for _, q := range []client.RDKneeQuery{{SessionID: a.ID}, {Owner: "alice"}, {}, {SessionID: a.ID, Method: "kneedle"}} {
		want := q.Method
		if want == "" {
			want = "menger"
		}
		k, err := c.RDKnee(ctx, q)
		if err != nil || k.Rate <= 0 || k.Distortion <= 0 || k.Method != want || (want == "kneedle") != (k.Difference > 0) {
			t.Errorf("RDKnee %+v: %+v, %v", q, k, err)
		}
	}
	_, err = c.RDKnee(ctx, client.RDKneeQuery{Owner: "bob"})
	var e *client.Error
	if !errors.As(err, &e) || e.Status != 422 || string(e.Extra["points"]) != "0" {
		t.Errorf("RDKnee of bob's sessions, which have no points: %v (%+v)", err, e)
	}

	ta, err := c.CreateTrace(ctx, a.ID, map[string]any{"prompt": "hi"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.AppendProvenance(ctx, ta.ID, "note", "test", map[string]any{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateTrace(ctx, b.ID, nil); err != nil {
		t.Fatal(err)
	}
	sf, err := c.SessionFGW(ctx, a.ID, b.ID, "entropic")
	if err != nil || sf.A != a.ID || sf.B != b.ID || sf.NodesA != 2 || sf.NodesB != 1 || !slices.Equal(sf.Kinds, []string{"created", "note"}) || sf.Result.Method != "entropic" {
		t.Errorf("SessionFGW: %+v, %v", sf, err)
	}

	flagged, err := c.Flag(ctx, client.FlagRequest{TraceID: ta.ID, Flag: "unsafe", Severity: 3, Reason: "review", RuleID: "review-7"})
	if err != nil || len(flagged.Flags) != 1 || flagged.Flags[0].RuleID != "review-7" {
		t.Fatalf("Flag: %+v, %v", flagged, err)
	}
	for _, tc := range []struct {
		q     client.StatsQuery
		id    string
		flags int
	}{{client.StatsQuery{SessionID: a.ID}, a.ID, 1}, {client.StatsQuery{Owner: "alice"}, a.ID, 1}, {client.StatsQuery{Owner: "bob"}, b.ID, 0}} {
		st, err := c.GovernanceStatsOf(ctx, tc.q)
		if err != nil || len(st.Sessions) != 1 || st.Overall.Flags != tc.flags || st.Sessions[tc.id].Flags != tc.flags {
			t.Errorf("GovernanceStatsOf %+v: %+v, %v", tc.q, st, err)
		}
	}

	if _, err := c.DeleteSession(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		q    client.SessionQuery
		want []string
	}{
		{client.SessionQuery{}, []string{a.ID}},
		{client.SessionQuery{IncludeDeleted: true}, []string{a.ID, b.ID}},
		{client.SessionQuery{IncludeDeleted: true, Owner: "bob"}, []string{b.ID}},
		{client.SessionQuery{Owner: "bob"}, nil},
	} {
		l, err := c.ListSessionsWith(ctx, tc.q)
		var ids []string
		if l != nil {
			for _, s := range l.Sessions {
				ids = append(ids, s.ID)
			}
		}
		slices.Sort(ids)
		if err != nil || !slices.Equal(ids, slices.Sorted(slices.Values(tc.want))) {
			t.Errorf("ListSessionsWith %+v: %v, %v; want %v", tc.q, ids, err, tc.want)
		}
	}
}
