package e2e

import (
	"encoding/json"
	"fmt"
	"math"
	"testing"

	"github.com/limitgraph/limit/sdk/client"
)

func postJSON(t *testing.T, d *daemon, path string, body any) (int, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(body)
	status, _, m := d.raw("POST", path, "application/json", b)
	return status, m
}

func TestRDRoutes(t *testing.T) {
	d := start(t, config(t, t.TempDir(), "default"))
	s, _ := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: "rd"})

	// Refinement points with variance 1: R(D) = max(0, ½ log2(1/D)).
	for _, dist := range []float64{0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.7, 0.9} {
		status, p := postJSON(t, d, "/v1/rd/points", map[string]any{"session_id": s.ID, "distortion": dist, "variance": 1})
		want := math.Max(0, 0.5*math.Log2(1/dist))
		if status != 201 || math.Abs(p["rate"].(float64)-want) > 1e-12 {
			t.Fatalf("point %v: %d %v (want rate %v)", dist, status, p, want)
		}
	}
	for _, path := range []string{"/v1/rd/knee?session_id=" + s.ID, "/rd/knee"} {
		status, _, k := d.raw("GET", path, "", nil)
		if status != 200 || k["method"] != "menger" || k["rate"] == nil || k["distortion"] == nil || k["curvature"] == nil {
			t.Fatalf("GET %s: %d %v", path, status, k)
		}
	}
	// The knee of any curve.
	status, k := postJSON(t, d, "/v1/rd/knee", map[string]any{
		"points": [][2]float64{{0, 0}, {1, 0.1}, {2, 0.2}, {3, 0.3}, {4, 3}, {5, 6}, {6, 9}}, "method": "kneedle",
	})
	if status != 200 || k["index"] != 3.0 {
		t.Fatalf("POST /v1/rd/knee: %d %v", status, k)
	}
	status, k = postJSON(t, d, "/v1/rd/knee", map[string]any{"points": [][2]float64{{0, 0}, {1, 1}}})
	if status != 400 || k["field"] != "points" {
		t.Fatalf("knee of 2 points: %d %v", status, k)
	}
	// FGW of a graph with itself is 0 at alpha 1, and bad input names the field.
	c := [][]float64{{0, 1, 2}, {1, 0, 1}, {2, 1, 0}}
	status, f := postJSON(t, d, "/v1/rd/fgw", map[string]any{"c1": c, "c2": c, "features_a": [][]float64{{0}, {1}, {2}}, "features_b": [][]float64{{0}, {1}, {2}}, "return_plan": true})
	if status != 200 || math.Abs(f["distance"].(float64)) > 1e-12 || f["converged"] != true || f["plan"] == nil {
		t.Fatalf("fgw: %d %v", status, f)
	}
	status, f = postJSON(t, d, "/v1/rd/fgw", map[string]any{"c1": c, "c2": c, "m": c, "alpha": 1.5})
	if status != 400 || f["field"] != "alpha" {
		t.Fatalf("fgw alpha 1.5: %d %v", status, f)
	}
	status, f = postJSON(t, d, "/v1/rd/fgw", map[string]any{"c1": [][]float64{{0, 1}, {1}}, "c2": c, "m": c})
	if status != 400 || f["field"] != "c1" {
		t.Fatalf("fgw ragged c1: %d %v", status, f)
	}
	// Blahut-Arimoto on a binary source with Hamming distortion.
	status, cv := postJSON(t, d, "/v1/rd/curve", map[string]any{"p": []float64{0.5, 0.5}, "distortion": [][]float64{{0, 1}, {1, 0}}})
	if status != 200 || len(cv["points"].([]any)) < 3 {
		t.Fatalf("curve: %d %v", status, cv)
	}
	// FGW between two sessions' trace graphs.
	s2, _ := d.c.CreateSession(ctx, client.CreateSessionRequest{})
	for i, sess := range []string{s.ID, s2.ID} {
		for j := 0; j <= i; j++ {
			if _, err := d.c.Execute(ctx, sess, client.ExecuteRequest{Runner: "echo", Input: fmt.Sprint("x", j)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	status, _, g := d.raw("GET", "/v1/rd/fgw/sessions?a="+s.ID+"&b="+s2.ID, "", nil)
	if status != 200 || g["nodes_a"].(float64) < 2 || g["nodes_b"].(float64) <= g["nodes_a"].(float64) {
		t.Fatalf("session fgw: %d %v", status, g)
	}
	status, _, g = d.raw("GET", "/v1/rd/fgw/sessions?a="+s.ID+"&b="+s.ID, "", nil)
	if status != 200 || math.Abs(g["result"].(map[string]any)["distance"].(float64)) > 1e-9 {
		t.Fatalf("session fgw with itself: %d %v", status, g)
	}
}
