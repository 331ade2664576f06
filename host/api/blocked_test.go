package api

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/limitgraph/limit/host/execution"
	"github.com/limitgraph/limit/host/governance"
	"github.com/limitgraph/limit/host/plugins"
	"github.com/limitgraph/limit/host/session"
	"github.com/limitgraph/limit/host/trace"
	"github.com/limitgraph/limit/host/trace/tracetest"
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/storage/memstore"
)

// TestBlockedCountedWhenClientLeaves: an execution governance blocked, whose trace was
// written, is counted in the governance stats (its flags, the block) even if its client
// went away right after the write. The count used the request's context and was lost.
func TestBlockedCountedWhenClientLeaves(t *testing.T) {
	ctx := context.Background()
	st := &hookStore{Storage: memstore.New()}
	traces, _ := tracetest.New(t, st)
	rule, err := plugins.StartManaged(ctx, pluginSpec(t, base.KindGovernance, "keyword"), hclog.NewNullLogger(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rule.Close)
	rules, err := governance.NewEvaluator(ctx, []*plugins.Managed{rule})
	if err != nil {
		t.Fatal(err)
	}
	runners := plugins.NewRunners(map[string]plugins.Spec{"echo": pluginSpec(t, base.KindRunner, "echo")}, hclog.NewNullLogger())
	t.Cleanup(func() { runners.Close(context.Background()) })
	sessions := session.NewManager(session.Options{Store: st, Runners: runners, DataDir: t.TempDir(), Policies: governance.PolicyNames(), DefaultPolicy: "default"})
	stats := &governance.StatsStore{Store: st, Namespace: func(id string) string { return trace.SessionNamespace(trace.DefaultTenant, id) }}
	engine := &execution.Engine{Sessions: sessions, Traces: traces, Rules: rules, Stats: stats, Logger: hclog.NewNullLogger()}
	srv := New(Options{Sessions: sessions, Engine: engine, Traces: traces, Rules: rules, Stats: stats, Store: st, DefaultPolicy: "default"})
	s, err := sessions.Create(ctx, session.CreateRequest{Runners: []string{"echo"}})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The client goes away once the blocked trace is written.
	ns := trace.SessionNamespace(trace.DefaultTenant, s.ID)
	st.at(func(after bool, op, n string, _ []byte) bool { return after && op == "batch" && n == ns }, cancel)
	req := httptest.NewRequest("POST", "/v1/sessions/"+s.ID+"/executions", strings.NewReader(`{"runner":"echo","input":"forbidden"}`)).WithContext(rctx)
	srv.ServeHTTP(httptest.NewRecorder(), req)
	list, _, err := traces.ListBySession(ctx, s.ID, 10, "")
	if err != nil || len(list) != 1 {
		t.Fatalf("traces: %v %v", list, err)
	}
	got, err := stats.Get(ctx, s.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.ExecutionsBlocked != 1 || got.ByFlag["jailbreak"] != 1 {
		t.Fatalf("stats of a blocked execution whose client left: %+v", got)
	}
}
