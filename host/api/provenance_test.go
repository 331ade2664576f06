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
	"github.com/limitgraph/limit/sdk/storage/memstore"
)

// provenanceAPI is a server without plugins over st, whose traces are signed by a fresh key.
func provenanceAPI(t *testing.T, st *memstore.Store) (*Server, *trace.Store, *session.Manager) {
	t.Helper()
	traces, _ := tracetest.New(t, st)
	return provenanceAPIWith(t, st, traces)
}

// provenanceAPIWith is provenanceAPI with the trace store given.
func provenanceAPIWith(t *testing.T, st *memstore.Store, traces *trace.Store) (*Server, *trace.Store, *session.Manager) {
	t.Helper()
	rules, err := governance.NewEvaluator(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	sessions := session.NewManager(session.Options{Store: st, DataDir: t.TempDir(), Policies: governance.PolicyNames(), DefaultPolicy: "default"})
	stats := &governance.StatsStore{Store: st, Namespace: func(id string) string { return trace.SessionNamespace(trace.DefaultTenant, id) }}
	return New(Options{Sessions: sessions, Traces: traces, Rules: rules, Stats: stats, Store: st, DefaultPolicy: "default"}), traces, sessions
}

// send makes a request to srv and returns its status, content type and body.
func send(t *testing.T, srv *Server, method, path, body string) (int, string, []byte) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	return rec.Code, rec.Header().Get("Content-Type"), rec.Body.Bytes()
}

// TestForeignKeyIs409: when the host holds another key than the one that signed a chain
// (its key file lost or replaced), appending to and exporting the trace answer 409
// problem+json naming the key, not 500; verify answers valid false.
func TestForeignKeyIs409(t *testing.T) {
	st := memstore.New()
	_, oldTraces, sessions := provenanceAPI(t, st)
	sess, err := sessions.Create(context.Background(), session.CreateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := oldTraces.Create(context.Background(), sess.ID, trace.TraceCustom, nil, "api")
	if err != nil {
		t.Fatal(err)
	}
	srv, _, _ := provenanceAPI(t, st) // the same storage, another key
	for _, c := range []struct{ path, body string }{
		{"/v1/traces/" + rec.ID + "/provenance", `{"kind":"note"}`},
		{"/v1/artifacts/export", `{"trace_ids":["` + rec.ID + `"]}`},
	} {
		code, ctype, body := send(t, srv, "POST", c.path, c.body)
		if code != 409 || ctype != "application/problem+json" || !strings.Contains(string(body), "checkpoint is signed by key ") {
			t.Errorf("POST %s: %d %s %s; want 409 problem+json naming the key", c.path, code, ctype, body)
		}
	}
	code, _, body := send(t, srv, "GET", "/v1/traces/"+rec.ID+"/provenance/verify", "")
	var v trace.VerifyResult
	if err := json.Unmarshal(body, &v); err != nil || code != 200 || v.Valid {
		t.Errorf("verify: %d %s", code, body)
	}
}

// TestClientAgents: an agent that reads as the host's (limitd in look-alike letters of
// other scripts too) or as another principal is refused with 400; an entry appended
// without an agent is recorded under the caller's principal ("operator" here, without
// tokens), not under "api", the agent of the host's own entries.
func TestClientAgents(t *testing.T) {
	srv, traces, sessions := provenanceAPI(t, memstore.New())
	sess, err := sessions.Create(context.Background(), session.CreateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := traces.Create(context.Background(), sess.ID, trace.TraceCustom, nil, "api")
	if err != nil {
		t.Fatal(err)
	}
	path := "/v1/traces/" + rec.ID + "/provenance"
	for _, agent := range []string{
		"limitd", "LIMITD", "\uff4c\uff49\uff4d\uff49\uff54\uff44", "limitd.x",
		"l\u0456mitd",       // Cyrillic і
		"\u04cfimitd",       // Cyrillic palochka for l
		"1imitd", "lirnitd", // digit one for l, rn for m
		"l\u0456m\u0456td:runner",
		"ӀIMITD", "LІMІTD", // capital palochka, capital Cyrillic І
		"user:alice", "User:Alice", // another principal ("operator" is this caller)
		"api", "API", "api.x", "anonymous", "Anonymous", "metrics", "METRICS:x", // the host's own names
	} {
		b, _ := json.Marshal(map[string]any{"kind": "review", "agent": agent})
		if code, _, body := send(t, srv, "POST", path, string(b)); code != 400 {
			t.Errorf("agent %q: %d %s, want 400", agent, code, body)
		}
		b, _ = json.Marshal(map[string]any{"session_id": sess.ID, "agent": agent})
		if code, _, body := send(t, srv, "POST", "/v1/traces", string(b)); code != 400 {
			t.Errorf("trace created by agent %q: %d %s, want 400", agent, code, body)
		}
	}
	for _, agent := range []string{"limitdemo", "reviewer", "apis", "lim-itd", "operator", "limited", "metricsbot"} {
		b, _ := json.Marshal(map[string]any{"kind": "review", "agent": agent})
		if code, _, body := send(t, srv, "POST", path, string(b)); code != 201 {
			t.Errorf("agent %q: %d %s, want 201", agent, code, body)
		}
	}
	code, _, body := send(t, srv, "POST", path, `{"kind":"review"}`)
	var e trace.Entry
	if err := json.Unmarshal(body, &e); err != nil || code != 201 || e.Agent != "operator" {
		t.Fatalf("entry without an agent: %d %s, want agent operator", code, body)
	}
}

// TestMergeThroughAnotherHostsKey: two hosts share the storage, each with its own key
// (their node ids recorded with it). A merge through the host whose key did not sign the
// trace answers 409 naming the signing key and its node, and flags, counts, quarantines
// and writes nothing: the chain is not broken, only unverifiable here. Verify says which
// key and node. The host that signed it merges it.
func TestMergeThroughAnotherHostsKey(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	srvA, tracesA, sessions, stats := serverOn(t, st)
	tracesB, keyB := tracetest.New(t, st)
	srvB, _, _ := serverWith(t, st, tracesB)
	if err := tracesA.ClaimKey(ctx, "vm-a", true); err != nil {
		t.Fatal(err)
	}
	if err := tracesB.ClaimKey(ctx, "vm-b", true); err != nil {
		t.Fatal(err)
	}
	s, err := sessions.Create(ctx, session.CreateRequest{Name: "x"})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := tracesA.Create(ctx, s.ID, trace.TraceCustom, json.RawMessage(`{"n":1}`), "api")
	if err != nil {
		t.Fatal(err)
	}
	keyA, _ := tracesA.KeyNodes(ctx)
	for range 5 {
		code, _, body := send(t, srvB, "POST", "/v1/traces/"+tr.ID+"/merge", "")
		var p map[string]any
		_ = json.Unmarshal(body, &p)
		if d, _ := p["detail"].(string); code != 409 || !strings.Contains(d, "signed by key "+keyA["vm-a"]+" (node vm-a's)") ||
			!strings.Contains(d, "not by the host key "+keyB.Fingerprint()) || !strings.Contains(d, "merge it through node vm-a") ||
			p["node"] != "vm-a" || p["key"] != keyA["vm-a"] || p["flags"] != nil || p["reasons"] != nil {
			t.Fatalf("merge through the other host: %d %s", code, body)
		}
	}
	got, err := stats.Get(ctx, s.ID)
	if err != nil || got.ByFlag["unverified"] != 0 || got.MergesRefused != 0 || got.Quarantined != 0 {
		t.Fatalf("stats after merges through the other host: %+v %v", got, err)
	}
	if rec, err := tracesA.Get(ctx, tr.ID); err != nil || rec.Length != 1 || len(rec.Flags) != 0 || rec.Status != trace.StatusActive {
		t.Fatalf("trace after merges through the other host: %+v %v; want it untouched", rec, err)
	}
	code, _, body := send(t, srvB, "GET", "/v1/traces/"+tr.ID+"/provenance/verify", "")
	var v trace.VerifyResult
	if err := json.Unmarshal(body, &v); err != nil || code != 200 || v.Valid || v.ForeignKey != keyA["vm-a"] || v.ForeignNode != "vm-a" {
		t.Fatalf("verify through the other host: %d %s", code, body)
	}
	if code, _, body := send(t, srvA, "POST", "/v1/traces/"+tr.ID+"/merge", ""); code != 200 {
		t.Fatalf("merge through the signing host: %d %s", code, body)
	}
}
