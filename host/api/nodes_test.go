package api

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/limitgraph/limit/host/config"
	"github.com/limitgraph/limit/host/execution"
	"github.com/limitgraph/limit/host/governance"
	"github.com/limitgraph/limit/host/session"
	"github.com/limitgraph/limit/host/trace"
	"github.com/limitgraph/limit/host/trace/tracetest"
	"github.com/limitgraph/limit/sdk/storage/memstore"
)

// TestSettleGoneNode: an execution another host (node vm-gone) left running, its host
// dead, answers a merge 409 naming that node and since when, and how to settle it; an
// operator's POST /v1/nodes/vm-gone/settle records it as interrupted (as that node's
// restart would), after which it merges. Settling the host's own node is 409, a malformed
// node 400, a node storage holds nothing of (a placeholder, a typo) 404.
func TestSettleGoneNode(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	traces, _ := tracetest.New(t, st)
	sessions := session.NewManager(session.Options{Store: st, DataDir: t.TempDir(), Policies: governance.PolicyNames(), DefaultPolicy: "default"})
	stats := &governance.StatsStore{Store: st, Namespace: func(id string) string { return trace.SessionNamespace(trace.DefaultTenant, id) }}
	engine := &execution.Engine{Sessions: sessions, Traces: traces, Stats: stats, Store: st, Node: "vm-here", Logger: hclog.NewNullLogger()}
	srv := New(Options{Sessions: sessions, Engine: engine, Traces: traces, Stats: stats, Store: st, DefaultPolicy: "default"})

	s, err := sessions.Create(ctx, session.CreateRequest{Name: "x"})
	if err != nil {
		t.Fatal(err)
	}
	// What the gone host left: its execution's early trace and its running marker.
	started := time.Date(2026, 12, 5, 1, 2, 3, 0, time.UTC)
	id := trace.NewID()
	if _, _, err := traces.CreateAll(ctx, trace.Creation{ID: id, SessionID: s.ID, Kind: trace.TraceExecution, Data: json.RawMessage(`{"input":"x"}`), Agent: execution.Agent, At: started}); err != nil {
		t.Fatal(err)
	}
	marker, _ := json.Marshal(map[string]any{"session_id": s.ID, "started": started})
	if err := st.Put(ctx, execution.RunningNamespace, []byte("vm-gone/"+id), marker); err != nil {
		t.Fatal(err)
	}

	// This host recorded its key at its start, as every host does; the gone host ran
	// before hosts recorded theirs, so storage has only its running marker.
	if err := traces.ClaimKey(ctx, "vm-here", true); err != nil {
		t.Fatal(err)
	}

	code, _, body := send(t, srv, "POST", "/v1/traces/"+id+"/merge", "")
	var p map[string]any
	_ = json.Unmarshal(body, &p)
	if d, _ := p["detail"].(string); code != 409 || !strings.HasPrefix(d, "the execution is still running on node vm-gone (since 2026-12-05T01:02:03Z); merge it once it has ended") ||
		!strings.Contains(d, "POST /v1/nodes/vm-gone/settle") || p["node"] != "vm-gone" || p["since"] != "2026-12-05T01:02:03Z" {
		t.Fatalf("merge of the gone host's execution: %d %s", code, body)
	}

	for _, c := range []struct {
		node string
		code int
		says string
	}{
		{"vm-here", 409, "node vm-here is this host"},
		{"bad..%2F", 400, "not a node id"},
		{"NODE", 404, "no host with node id NODE ever used this storage (none recorded its key, and no execution of it is left running); the nodes it records: vm-here"},
		{"vm-gon", 404, "no host with node id vm-gon"},
	} {
		if code, _, body := send(t, srv, "POST", "/v1/nodes/"+c.node+"/settle", ""); code != c.code || !strings.Contains(string(body), c.says) {
			t.Errorf("settle %s: %d %s, want %d saying %q", c.node, code, body, c.code, c.says)
		}
	}
	if chain, _ := traces.Chain(ctx, id); len(chain) != 1 {
		t.Fatalf("the trace has %d entries before the settle, want its created entry alone", len(chain))
	}

	code, _, body = send(t, srv, "POST", "/v1/nodes/vm-gone/settle", "")
	var got settleResponse
	if err := json.Unmarshal(body, &got); err != nil || code != 200 || got.Node != "vm-gone" || got.Settled != 1 {
		t.Fatalf("settle: %d %s", code, body)
	}
	chain, err := traces.Chain(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var ex map[string]any
	if last := chain[len(chain)-1]; last.Kind != trace.KindExecuted || json.Unmarshal(last.Data, &ex) != nil ||
		ex["status"] != execution.StatusInterrupted || ex["node"] != "vm-gone" || ex["settled_by"] != "vm-here" {
		t.Fatalf("the settled trace ends with %s %s", last.Kind, last.Data)
	}
	// Settled, it left nothing in storage: settling it again is a 404; a host that
	// recorded its key is settled again with 0.
	if code, _, body := send(t, srv, "POST", "/v1/nodes/vm-gone/settle", ""); code != 404 || !strings.Contains(string(body), "no host with node id vm-gone") {
		t.Fatalf("settle again: %d %s", code, body)
	}
	if err := traces.ClaimKey(ctx, "vm-other", true); err != nil {
		t.Fatal(err)
	}
	if code, _, body := send(t, srv, "POST", "/v1/nodes/vm-other/settle", ""); code != 200 || json.Unmarshal(body, &got) != nil || got.Settled != 0 {
		t.Fatalf("settle a node with nothing running: %d %s", code, body)
	}
	if code, _, body := send(t, srv, "POST", "/v1/traces/"+id+"/merge", ""); code != 200 {
		t.Fatalf("merge once settled: %d %s", code, body)
	}
}

// TestHealthNode: GET /v1/health names the host's node to a caller with a valid token (an
// operator's or a user's), not to a health check without one, whose answer stays generic.
func TestHealthNode(t *testing.T) {
	st := memstore.New()
	sessions := session.NewManager(session.Options{Store: st, DataDir: t.TempDir(), Node: "vm-a", Policies: governance.PolicyNames(), DefaultPolicy: "default"})
	srv := New(Options{Sessions: sessions, Store: st, Tokens: []config.Token{
		{Digest: sha256.Sum256([]byte(tokOperator))}, {Digest: sha256.Sum256([]byte(tokAlice)), User: "alice"},
	}})
	for tok, want := range map[string]string{tokOperator: "vm-a", tokAlice: "vm-a", "": ""} {
		req := httptest.NewRequest("GET", "/v1/health", nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		var h map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &h); err != nil || rec.Code != 200 {
			t.Fatalf("token %q: %d %s", tok, rec.Code, rec.Body)
		}
		if got, _ := h["node"].(string); got != want {
			t.Errorf("token %q: node %q, want %q", tok, got, want)
		}
	}
}
