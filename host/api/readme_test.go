package api

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/limitgraph/limit/host/execution"
	"github.com/limitgraph/limit/host/trace"
)

// readmeLine returns the README's line holding s (the test fails without one).
func readmeLine(t *testing.T, s string) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	t.Fatalf("README has no line with %q", s)
	return ""
}

// TestReadmeRoutesFacts: README names every route that has no unversioned path (those of
// a host with executions included), and its verify example answers every member the API
// answers (error is there when empty, as the API documents it).
func TestReadmeRoutesFacts(t *testing.T) {
	s := New(Options{Engine: &execution.Engine{}})
	line := readmeLine(t, "have no unversioned path")
	for _, rt := range s.routes {
		if !rt.Legacy && !strings.Contains(line, "`/v1"+rt.Path+"`") {
			t.Errorf("README does not say that /v1%s has no unversioned path: %q", rt.Path, line)
		}
	}
	b, err := json.Marshal(trace.VerifyResult{Valid: true})
	if err != nil {
		t.Fatal(err)
	}
	var members map[string]any
	if err := json.Unmarshal(b, &members); err != nil {
		t.Fatal(err)
	}
	line = readmeLine(t, "/provenance/verify   ")
	for name := range members {
		if !strings.Contains(line, `"`+name+`"`) {
			t.Errorf("README's verify example lacks %q: %q", name, line)
		}
	}
}
