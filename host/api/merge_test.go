package api

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/limitgraph/limit/host/governance"
	"github.com/limitgraph/limit/host/session"
	"github.com/limitgraph/limit/host/trace"
	"github.com/limitgraph/limit/sdk/storage/memstore"
)

// TestMergeRefusesExecutionWithoutOutcome: an execution trace whose chain verifies but has
// no "executed" entry (the host died mid-execution) is flagged unverified and its merge
// refused under the default policy.
func TestMergeRefusesExecutionWithoutOutcome(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	key, err := trace.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	traces, err := trace.New(st, key, trace.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sessions := session.NewManager(session.Options{Store: st, DataDir: t.TempDir(), Policies: governance.PolicyNames(), DefaultPolicy: "default"})
	rules, _ := governance.NewEvaluator(ctx, nil)
	stats := &governance.StatsStore{Store: st, Namespace: func(id string) string { return trace.SessionNamespace(trace.DefaultTenant, id) }}
	srv := New(Options{Sessions: sessions, Traces: traces, Rules: rules, Stats: stats, Store: st})

	s, err := sessions.Create(ctx, session.CreateRequest{Name: "x"})
	if err != nil {
		t.Fatal(err)
	}
	half, err := traces.Create(ctx, s.ID, trace.TraceExecution, json.RawMessage(`{"runner":"python"}`), "limitd")
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/traces/"+half.ID+"/merge", nil))
	if rec.Code != 409 || !strings.Contains(rec.Body.String(), "lacks the provenance entries executed") {
		t.Fatalf("merge of a half-recorded execution: %d %s", rec.Code, rec.Body.String())
	}
	got, err := traces.Get(ctx, half.ID)
	if err != nil || len(got.Flags) != 1 || got.Flags[0].Flag != "unverified" {
		t.Fatalf("trace after the refused merge: %+v %v", got, err)
	}
	// A custom trace has what it needs and merges.
	ok, _ := traces.Create(ctx, s.ID, trace.TraceCustom, json.RawMessage(`{}`), "api")
	rec = httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/traces/"+ok.ID+"/merge", nil))
	if rec.Code != 200 {
		t.Fatalf("merge of a custom trace: %d %s", rec.Code, rec.Body.String())
	}
}
