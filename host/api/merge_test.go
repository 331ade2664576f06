package api

import (
	"context"
	"encoding/json"
	"fmt"
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
	srv, sessions, stats := serverWith(t, st, traces)
	return srv, traces, sessions, stats
}

// serverWith returns an API server on st and traces, with its sessions and governance
// stats (kept in st, so a second server on the same st sees the same ones).
func serverWith(t *testing.T, st storage.Storage, traces *trace.Store) (*Server, *session.Manager, *governance.StatsStore) {
	t.Helper()
	sessions := session.NewManager(session.Options{Store: st, DataDir: t.TempDir(), Policies: governance.PolicyNames(), DefaultPolicy: "default"})
	rules, _ := governance.NewEvaluator(context.Background(), nil)
	stats := &governance.StatsStore{Store: st, Namespace: func(id string) string { return trace.SessionNamespace(trace.DefaultTenant, id) }}
	return New(Options{Sessions: sessions, Traces: traces, Rules: rules, Stats: stats, Store: st}), sessions, stats
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
	// The chain verifies: the refusal says it is incomplete, not that it does not verify.
	if rec.Code != 409 || !strings.Contains(rec.Body.String(), "provenance is incomplete: execution trace lacks the provenance entries executed") ||
		strings.Contains(rec.Body.String(), "does not verify") {
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
	if code, out := call("POST", "/v1/traces/"+c.ID+"/merge", ""); code != 409 || !strings.Contains(out["detail"].(string), "already merged") ||
		strings.Contains(out["detail"].(string), "policy") || out["trace_status"] != "merged" || out["status"] != float64(409) {
		t.Fatalf("merging a merged trace again: %d %v", code, out)
	}
	// Not a refusal under the policy: only the merge refused after the withdrawal counts.
	if st, err := stats.Get(ctx, s.ID); err != nil || st.MergesRefused != 1 || st.MergesAllowed != 3 {
		t.Fatalf("stats: %+v %v", st, err)
	}
	for _, id := range []string{a, b} {
		if v, err := traces.Verify(ctx, id); err != nil || !v.Valid {
			t.Fatalf("verify %s: %+v %v", id, v, err)
		}
	}
}

// TestMergeRefusesBrokenChainUnderEveryPolicy: a trace one of whose stored entries was
// changed, or whose latest checkpoint was removed, behind the host's back, is refused a
// merge with 409 under every policy (permissive too, which lets an intact chain lacking an
// entry merge), the answer carrying the unverified flag, and nothing is written to its
// chain: a flag or a refusal appended would sign a checkpoint over entries the host cannot
// vouch for, and the chain would verify again. Asked again, by the same process or by a
// restarted one, the same.
func TestMergeRefusesBrokenChainUnderEveryPolicy(t *testing.T) {
	ctx := context.Background()
	breaks := map[string]func(t *testing.T, st storage.Storage, ns, id string){
		"entry changed": func(t *testing.T, st storage.Storage, ns, id string) {
			res, err := st.Scan(ctx, storage.ScanRequest{Namespace: ns, Limit: storage.MaxScanLimit})
			if err != nil {
				t.Fatal(err)
			}
			changed := 0
			for _, it := range res.Items {
				if v := string(it.Value); strings.Contains(v, "original-value") && strings.Contains(string(it.Key), id) && !strings.Contains(v, `"kind":"created"`) {
					if err := st.Put(ctx, ns, it.Key, []byte(strings.ReplaceAll(v, "original-value", "changed-value"))); err != nil {
						t.Fatal(err)
					}
					changed++
				}
			}
			if changed == 0 {
				t.Fatal("found no stored entry to change")
			}
		},
		"checkpoint removed": func(t *testing.T, st storage.Storage, ns, id string) {
			res, err := st.Scan(ctx, storage.ScanRequest{Namespace: ns, Prefix: []byte("ckpt/" + id + "/"), Limit: storage.MaxScanLimit})
			if err != nil || len(res.Items) == 0 {
				t.Fatalf("checkpoints: %v %d", err, len(res.Items))
			}
			if _, err := st.Delete(ctx, ns, res.Items[len(res.Items)-1].Key); err != nil {
				t.Fatal(err)
			}
		},
	}
	for how, breakIt := range breaks {
		for _, policy := range governance.PolicyNames() {
			for _, restarted := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/restarted=%v", how, policy, restarted), func(t *testing.T) {
					st := memstore.New()
					traces, key := tracetest.New(t, st)
					srv, sessions, stats := serverWith(t, st, traces)
					s, err := sessions.Create(ctx, session.CreateRequest{Name: "x", Policy: policy})
					if err != nil {
						t.Fatal(err)
					}
					tr, err := traces.Create(ctx, s.ID, trace.TraceCustom, json.RawMessage(`{"n":1}`), "api")
					if err != nil {
						t.Fatal(err)
					}
					if _, err := traces.Append(ctx, tr.ID, trace.Entry{Kind: "note", Agent: "alice", Data: json.RawMessage(`{"secret":"original-value"}`)}); err != nil {
						t.Fatal(err)
					}
					breakIt(t, st, trace.SessionNamespace(trace.DefaultTenant, s.ID), tr.ID)
					if restarted {
						if traces, err = trace.New(st, key, trace.Options{TempDir: t.TempDir()}); err != nil {
							t.Fatal(err)
						}
						srv, _, stats = serverWith(t, st, traces)
					}
					before, err := traces.Verify(ctx, tr.ID)
					if err != nil || before.Valid {
						t.Fatalf("verify after breaking the chain: %+v %v", before, err)
					}
					for range 2 {
						rec := httptest.NewRecorder()
						srv.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/traces/"+tr.ID+"/merge", nil))
						var p struct {
							Reasons []string          `json:"reasons"`
							Flags   []governance.Flag `json:"flags"`
						}
						_ = json.Unmarshal(rec.Body.Bytes(), &p)
						if rec.Code != 409 || len(p.Reasons) == 0 || !strings.Contains(p.Reasons[len(p.Reasons)-1], "provenance does not verify") ||
							strings.Count(rec.Body.String(), "provenance does not verify: provenance") > 0 {
							t.Fatalf("merge of a broken chain: %d %s", rec.Code, rec.Body.String())
						}
						if len(p.Flags) != 1 || p.Flags[0].Flag != "unverified" || p.Flags[0].Severity != 9 || p.Flags[0].RuleID != "host.provenance" {
							t.Fatalf("flags answered: %+v", p.Flags)
						}
						after, err := traces.Verify(ctx, tr.ID)
						if err != nil || after.Valid || after.Length != before.Length {
							t.Fatalf("chain after the refused merge: %+v (before %+v) %v", after, before, err)
						}
						if in, err := traces.InMerged(ctx, tr.ID); err != nil || in {
							t.Fatalf("in the shared record: %v %v", in, err)
						}
					}
					got, err := stats.Get(ctx, s.ID)
					// Both refusals count; the flag, written nowhere, once for the chain.
					if err != nil || got.ByFlag["unverified"] != 1 || got.MergesRefused != 2 {
						t.Fatalf("stats: %+v %v", got, err)
					}
				})
			}
		}
	}
}

// TestBodylessRoutesRefuseABody: the routes that take no body (merge, deleting a session)
// take an empty body or {} and refuse anything else with 400, not silently ignore it.
func TestBodylessRoutesRefuseABody(t *testing.T) {
	ctx := context.Background()
	srv, traces, sessions, _ := mergeServer(t)
	s, err := sessions.Create(ctx, session.CreateRequest{Name: "x"})
	if err != nil {
		t.Fatal(err)
	}
	tr, _ := traces.Create(ctx, s.ID, trace.TraceCustom, json.RawMessage(`{}`), "api")
	for _, c := range []struct {
		method, path, body string
		code               int
		says               string
	}{
		{"POST", "/v1/traces/" + tr.ID + "/merge", `{bad`, 400, "JSON"},
		{"POST", "/traces/" + tr.ID + "/merge", `{"force":true}`, 400, "force"},
		{"DELETE", "/v1/sessions/" + s.ID, `[1]`, 400, "JSON object"},
		{"POST", "/v1/traces/" + tr.ID + "/merge", " {} ", 200, ""},
		{"DELETE", "/v1/sessions/" + s.ID, "", 200, ""},
	} {
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, httptest.NewRequest(c.method, c.path, strings.NewReader(c.body)))
		if rec.Code != c.code || !strings.Contains(rec.Body.String(), c.says) {
			t.Errorf("%s %s %q: %d %s, want %d saying %q", c.method, c.path, c.body, rec.Code, rec.Body.String(), c.code, c.says)
		}
		if c.code == 400 && rec.Header().Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s %s: Content-Type %q", c.method, c.path, rec.Header().Get("Content-Type"))
		}
	}
}

// TestRequiredFields: a body without a field the API requires (api:"required", as the
// OpenAPI document lists them), or with it as an empty string, is a 400 naming it, not a
// zero value judged as if sent (a flag without trace_id answered 404 "not a trace id").
func TestRequiredFields(t *testing.T) {
	srv, _, _, _ := mergeServer(t)
	for _, c := range []struct{ path, body, says string }{
		{"/v1/governance/flag", `{"flag":"HighRisk","severity":5}`, "trace_id is required"},
		{"/v1/governance/flag", `{"trace_id":"","flag":"HighRisk","severity":5}`, "trace_id is required"},
		{"/governance/flag", `{"trace_id":"x","severity":5}`, "flag is required"},
		{"/v1/governance/flag", `{"trace_id":"x","flag":"anomaly"}`, "severity is required"},
		{"/v1/traces", `{"data":{}}`, "session_id is required"},
		{"/v1/governance/evaluate", `{"text":"hi"}`, "kind is required"},
		{"/v1/rd/fgw", `{"c1":[[0]]}`, "c2 is required"},
		{"/v1/rd/points", `{"session_id":"x","distortion":1}`, "variance is required"},
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", c.path, strings.NewReader(c.body))
		req.Header.Set("Content-Type", "application/json")
		srv.ServeHTTP(rec, req)
		if rec.Code != 400 || !strings.Contains(rec.Body.String(), c.says) {
			t.Errorf("POST %s %s: %d %s, want 400 saying %q", c.path, c.body, rec.Code, rec.Body.String(), c.says)
		}
	}
}
