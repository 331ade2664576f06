package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/limitgraph/limit/sdk/client"
)

// TestInputBeyondRuleLimits: an input a rule says is beyond what it can check (the keyword
// rule's "toolarge", wrapping governance.ErrBeyondLimits) is refused under default with
// 422 problem+json in the rule's own words, no Retry-After, and a trace recording the
// error; a rule that cannot answer ("rulefault") stays a 503 to retry; under permissive
// both inputs run.
func TestInputBeyondRuleLimits(t *testing.T) {
	ctx := context.Background()
	for _, policy := range []string{"default", "permissive"} {
		t.Run(policy, func(t *testing.T) {
			d := start(t, config(t, filepath.Join(t.TempDir(), "data"), policy))
			s, err := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: "limits"})
			if err != nil {
				t.Fatal(err)
			}
			for _, tc := range []struct {
				input, detail string
				status        int
				retry         bool
			}{
				{"toolarge", `governance rule "keyword": governance evaluate: content holds "toolarge": content beyond the rule's limits`, 422, false},
				{"rulefault", `governance rule "keyword": governance evaluate: content holds "rulefault"`, 503, true},
			} {
				status, h, body := d.raw("POST", "/v1/sessions/"+s.ID+"/executions", "application/json",
					[]byte(`{"runner": "echo", "input": "`+tc.input+`"}`))
				if policy == "permissive" {
					if status != 200 || body["status"] != "ok" {
						t.Fatalf("%s under permissive: %d %v, want it run", tc.input, status, body)
					}
					continue
				}
				detail, _ := body["detail"].(string)
				if status != tc.status || h.Get("Content-Type") != "application/problem+json" ||
					!strings.Contains(detail, tc.detail) || (h.Get("Retry-After") != "") != tc.retry {
					t.Fatalf("%s: %d %v (Retry-After %q), want %d with %q", tc.input, status, body, h.Get("Retry-After"), tc.status, tc.detail)
				}
			}
			if policy == "permissive" {
				return
			}
			// Each refusal left a trace saying why, and nothing ran.
			list, err := d.c.ListTraces(ctx, s.ID, 100, "")
			if err != nil {
				t.Fatal(err)
			}
			if len(list.Traces) != 2 {
				t.Fatalf("%d traces, want the 2 refusals", len(list.Traces))
			}
			for _, tr := range list.Traces {
				v, err := d.c.GetTrace(ctx, tr.ID)
				if err != nil {
					t.Fatal(err)
				}
				var kinds []string
				for _, e := range v.Provenance {
					kinds = append(kinds, e.Kind)
				}
				if strings.Join(kinds, ",") != "created,governance_error" {
					t.Fatalf("trace %s: entries %v, want created,governance_error", tr.ID, kinds)
				}
			}
		})
	}
}
