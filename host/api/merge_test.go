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
	"github.com/limitgraph/limit/host/trace/tracetest"
	"github.com/limitgraph/limit/sdk/storage"
	"github.com/limitgraph/limit/sdk/storage/memstore"
)

// mergeServer returns an API server on in-memory storage, with its trace store, sessions
// and governance stats.
func mergeServer(t *testing.T) (*Server, *trace.Store, *session.Manager, *governance.StatsStore) {
	t.Helper()
	return serverOn(t, memstore.New())
}

// serverOn returns an API server on st, with its trace store, sessions and governance
// stats.
func serverOn(t *testing.T, st storage.Storage) (*Server, *trace.Store, *session.Manager, *governance.StatsStore) {
	t.Helper()
	traces, _ := tracetest.New(t, st)
	sessions := session.NewManager(session.Options{Store: st, DataDir: t.TempDir(), Policies: governance.PolicyNames(), DefaultPolicy: "default"})
	rules, _ := governance.NewEvaluator(context.Background(), nil)
	stats := &governance.StatsStore{Store: st, Namespace: func(id string) string { return trace.SessionNamespace(trace.DefaultTenant, id) }}
	return New(Options{Sessions: sessions, Traces: traces, Rules: rules, Stats: stats, Store: st}), traces, sessions, stats
}

// TestMergeRefusesExecutionWithoutOutcome: an execution trace whose chain verifies but has
// no "executed" entry (the host died mid-execution) is flagged unverified and its merge
// refused under the default policy.
func TestMergeRefusesExecutionWithoutOutcome(t *testing.T) {
	ctx := context.Background()
	srv, traces, sessions, _ := mergeServer(t)

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

// TestMergedTraceIsFinal: a merged trace's chain takes no more entries (409), a flag that
// its policy lets through refreshes the shared copy, and a flag that would have refused the
// merge withdraws the trace from the shared record (reactivated, or quarantined if severe).
func TestMergedTraceIsFinal(t *testing.T) {
	ctx := context.Background()
	srv, traces, sessions, stats := mergeServer(t)
	call := func(method, path, body string) (int, map[string]any) {
		t.Helper()
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
		var out map[string]any
		_ = json.Unmarshal(rec.Body.Bytes(), &out)
		return rec.Code, out
	}
	merged := func() map[string]map[string]any {
		t.Helper()
		code, out := call("GET", "/v1/merged", "")
		if code != 200 {
			t.Fatalf("GET /v1/merged: %d %v", code, out)
		}
		m := map[string]map[string]any{}
		for _, x := range out["traces"].([]any) {
			r := x.(map[string]any)
			m[r["id"].(string)] = r
		}
		return m
	}
	s, err := sessions.Create(ctx, session.CreateRequest{Name: "x"})
	if err != nil {
		t.Fatal(err)
	}
	mergeOne := func() string {
		t.Helper()
		tr, _ := traces.Create(ctx, s.ID, trace.TraceCustom, json.RawMessage(`{"n":1}`), "api")
		if code, out := call("POST", "/v1/traces/"+tr.ID+"/merge", ""); code != 200 {
			t.Fatalf("merge: %d %v", code, out)
		}
		return tr.ID
	}

	a := mergeOne()
	code, out := call("POST", "/v1/traces/"+a+"/provenance", `{"kind":"note","data":{"x":1}}`)
	if code != 409 || !strings.Contains(out["detail"].(string), "final") {
		t.Fatalf("append to a merged trace: %d %v", code, out)
	}
	if chain, _ := traces.Chain(ctx, a); len(chain) != 2 {
		t.Fatalf("merged chain grew to %d entries", len(chain))
	}
	// Anomaly does not refuse a merge under default: the trace stays merged and the shared
	// copy shows the flag.
	if code, out := call("POST", "/v1/governance/flag", `{"trace_id":"`+a+`","flag":"anomaly","severity":3,"reason":"odd"}`); code != 201 || out["status"] != "merged" {
		t.Fatalf("anomaly flag on a merged trace: %d %v", code, out)
	}
	if m := merged()[a]; m == nil || len(m["flags"].([]any)) != 1 {
		t.Fatalf("shared copy after an allowed flag: %v", m)
	}
	if v, err := traces.Verify(ctx, a); err != nil || !v.Valid {
		t.Fatalf("verify after the flag: %+v %v", v, err)
	}
	// unsafe refuses a merge under default: the trace is withdrawn and reactivated.
	if code, out := call("POST", "/v1/governance/flag", `{"trace_id":"`+a+`","flag":"unsafe","severity":4,"reason":"found later"}`); code != 201 || out["status"] != "active" {
		t.Fatalf("unsafe flag on a merged trace: %d %v", code, out)
	}
	if _, ok := merged()[a]; ok {
		t.Fatal("a withdrawn trace is still in the shared record")
	}
	chain, _ := traces.Chain(ctx, a)
	if last := chain[len(chain)-1]; last.Kind != trace.KindReactivated || !strings.Contains(string(last.Data), "withdrawn from the shared record under policy default") {
		t.Fatalf("last entry after a withdrawal: %s %s", last.Kind, last.Data)
	}
	if code, out := call("POST", "/v1/traces/"+a+"/merge", ""); code != 409 || !strings.Contains(out["detail"].(string), "flagged unsafe") {
		t.Fatalf("merge again after the withdrawal: %d %v", code, out)
	}
	// A severe flag withdraws and quarantines.
	b := mergeOne()
	if code, out := call("POST", "/v1/governance/flag", `{"trace_id":"`+b+`","flag":"malicious","severity":9,"reason":"exfiltration"}`); code != 201 || out["status"] != "quarantined" {
		t.Fatalf("malicious flag on a merged trace: %d %v", code, out)
	}
	if _, ok := merged()[b]; ok {
		t.Fatal("a quarantined trace is still in the shared record")
	}
	if st, err := stats.Get(ctx, s.ID); err != nil || st.MergesWithdrawn != 2 || st.MergesAllowed != 2 || st.Quarantined != 1 {
		t.Fatalf("stats: %+v %v", st, err)
	}
	// A merge cut short after the status change (a crash before the copy) is completed by
	// merging again; a finished one is refused.
	c, _ := traces.Create(ctx, s.ID, trace.TraceCustom, json.RawMessage(`{}`), "api")
	if _, err := traces.SetStatus(ctx, c.ID, trace.StatusMerged, "limitd", "merge allowed under policy default"); err != nil {
		t.Fatal(err)
	}
	if code, out := call("POST", "/v1/traces/"+c.ID+"/merge", ""); code != 200 || merged()[c.ID] == nil {
		t.Fatalf("completing a cut-short merge: %d %v", code, out)
	}
	if code, out := call("POST", "/v1/traces/"+c.ID+"/merge", ""); code != 409 || !strings.Contains(out["detail"].(string), "already merged") {
		t.Fatalf("merging a merged trace again: %d %v", code, out)
	}
	for _, id := range []string{a, b} {
		if v, err := traces.Verify(ctx, id); err != nil || !v.Valid {
			t.Fatalf("verify %s: %+v %v", id, v, err)
		}
	}
}
