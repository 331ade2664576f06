package execution

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/limitgraph/limit/host/governance"
	"github.com/limitgraph/limit/host/plugins"
	"github.com/limitgraph/limit/host/session"
	"github.com/limitgraph/limit/internal/testbin"
	"github.com/limitgraph/limit/sdk/base"
)

// TestAnomalySessionGraphPerOwner is the isolation audit's case, with the real anomaly
// rule: alice's sessions are not the reference set bob's session is judged against, and
// no flag on bob's executions names one of them or their number. The host sends each
// execution's session owner (EvaluateRequest.Owner), which the rule keeps its reference
// sets apart by. The config only shrinks the defaults (which need 16 executions).
func TestAnomalySessionGraphPerOwner(t *testing.T) {
	ctx := context.Background()
	e, _ := echoEngine(t)
	rule, err := plugins.StartManaged(ctx, plugins.Spec{
		Kind: base.KindGovernance, Name: "anomaly", Path: testbin.Plugin(t, "governance-anomaly"), StartTimeout: 30 * time.Second,
		Config: []byte(`{"min_samples": 3, "graph_nodes": 4, "graph_neighbours": 1, "graph_every": 1, "graph_threshold": 0.01}`),
	}, hclog.NewNullLogger(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rule.Close)
	if e.Rules, err = governance.NewEvaluator(ctx, []*plugins.Managed{rule}); err != nil {
		t.Fatal(err)
	}
	// Sessions of the permissive policy: the flags are what is looked at, nothing is
	// refused or quarantined for them.
	newSession := func(owner string) *session.Session {
		s, err := e.Sessions.Create(ctx, session.CreateRequest{Owner: owner, Runners: []string{"echo"}, Policy: "permissive"})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	run := func(s *session.Session, input string) *Result {
		res, err := e.Execute(ctx, s.ID, Request{Runner: "echo", Input: input, TimeoutMS: 30_000}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	var alices []string
	for i := 0; i < 7; i++ {
		s := newSession("alice")
		alices = append(alices, s.ID)
		for j := 0; j < 4; j++ {
			run(s, fmt.Sprint("print ", j))
		}
	}
	graphFlags := func(res *Result) []string {
		var out []string
		for _, f := range res.Flags {
			if f.RuleID == "anomaly.session_graph" {
				out = append(out, f.Reason)
			}
		}
		return out
	}
	// Bob's session, unlike alice's: his first, so there is nothing of his to compare.
	bob := newSession("bob")
	for j := 0; j < 5; j++ {
		res := run(bob, "big:20000")
		for _, reason := range graphFlags(res) {
			t.Errorf("bob's execution %d flagged against other sessions: %s", j, reason)
		}
		for _, f := range res.Flags {
			for _, id := range alices {
				if strings.Contains(f.Reason, id) {
					t.Errorf("bob's flag names alice's session %s: %s", id, f.Reason)
				}
			}
		}
	}
	// Alice's own session unlike her earlier ones is judged against them (the rule works
	// through the host), naming her sessions only.
	odd := newSession("alice")
	var found bool
	for j := 0; j < 5; j++ {
		for _, reason := range graphFlags(run(odd, "big:20000")) {
			found = true
			if strings.Contains(reason, bob.ID) || !strings.Contains(reason, "of 7 earlier sessions") {
				t.Errorf("alice's flag: %s; want her 7 earlier sessions alone", reason)
			}
		}
	}
	if !found {
		t.Error("alice's session unlike her earlier ones: no session-graph flag")
	}
}
