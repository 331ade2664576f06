package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/limitgraph/limit/host/governance"
	"github.com/limitgraph/limit/host/session"
	"github.com/limitgraph/limit/host/trace"
	"github.com/limitgraph/limit/sdk/storage"
	"github.com/limitgraph/limit/sdk/storage/memstore"
)

// sharedDownStore is a storage whose writes to the shared record (MergedNamespace) fail
// while SharedDown is set, as a backend's that failed between two writes would; the
// trace's own writes go through.
type sharedDownStore struct {
	storage.Storage
	SharedDown atomic.Bool
}

var errSharedDown = errors.New("shared record write refused by the test")

func (s *sharedDownStore) Batch(ctx context.Context, ns string, ops []storage.Op) error {
	if s.SharedDown.Load() && ns == trace.MergedNamespace(trace.DefaultTenant) {
		return errSharedDown
	}
	return s.Storage.Batch(ctx, ns, ops)
}

// sharedDownFixture is a server on a sharedDownStore with a session and a merged trace.
type sharedDownFixture struct {
	st     *sharedDownStore
	traces *trace.Store
	stats  *governance.StatsStore
	s      *session.Session
	tr     trace.Record
	call   func(method, path, body string) *httptest.ResponseRecorder
}

func mergedOnSharedDown(t *testing.T) sharedDownFixture {
	t.Helper()
	ctx := context.Background()
	f := sharedDownFixture{st: &sharedDownStore{Storage: memstore.New()}}
	srv, traces, sessions, stats := serverOn(t, f.st)
	f.traces, f.stats = traces, stats
	f.call = func(method, path, body string) *httptest.ResponseRecorder {
		t.Helper()
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
		return rec
	}
	var err error
	if f.s, err = sessions.Create(ctx, session.CreateRequest{Name: "x"}); err != nil {
		t.Fatal(err)
	}
	if f.tr, err = traces.Create(ctx, f.s.ID, trace.TraceCustom, json.RawMessage(`{}`), "api"); err != nil {
		t.Fatal(err)
	}
	if res := f.call("POST", "/v1/traces/"+f.tr.ID+"/merge", ""); res.Code != 200 {
		t.Fatalf("merge: %d %s", res.Code, res.Body)
	}
	return f
}

// TestFlagMergedCopyFails: a flag of a merged trace that is written, but whose shared copy
// cannot be replaced, is answered 201 with the flagged record and Limit-Shared-Copy: stale
// (a 500 had the client flag it again, twice in the chain and the stats); the trace's next
// flag replaces the copy.
func TestFlagMergedCopyFails(t *testing.T) {
	ctx := context.Background()
	f := mergedOnSharedDown(t)
	st, traces, stats, s, tr, call := f.st, f.traces, f.stats, f.s, f.tr, f.call
	sharedFlags := func() int {
		t.Helper()
		recs, _, err := traces.ListMerged(ctx, 10, "")
		if err != nil || len(recs) != 1 {
			t.Fatalf("shared record: %+v %v", recs, err)
		}
		return len(recs[0].Flags)
	}

	st.SharedDown.Store(true)
	res := call("POST", "/v1/governance/flag", `{"trace_id":"`+tr.ID+`","flag":"anomaly","severity":3,"reason":"odd"}`)
	var got trace.Record
	if err := json.Unmarshal(res.Body.Bytes(), &got); err != nil || res.Code != 201 || got.Status != trace.StatusMerged || len(got.Flags) != 1 {
		t.Fatalf("flag whose copy failed: %d %s", res.Code, res.Body)
	}
	if h := res.Header().Get("Limit-Shared-Copy"); h != "stale" {
		t.Errorf("Limit-Shared-Copy %q, want stale", h)
	}
	if now, err := traces.Get(ctx, tr.ID); err != nil || len(now.Flags) != 1 || now.Length != got.Length {
		t.Fatalf("trace after the flag: %+v %v (answered length %d)", now, err, got.Length)
	}
	if n := sharedFlags(); n != 0 {
		t.Fatalf("the shared copy holds %d flags while its write failed", n)
	}
	if sst, err := stats.Get(ctx, s.ID); err != nil || sst.ByFlag["anomaly"] != 1 {
		t.Fatalf("stats: %+v %v", sst, err)
	}

	// The next flag replaces the copy, and says nothing of it.
	st.SharedDown.Store(false)
	res = call("POST", "/v1/governance/flag", `{"trace_id":"`+tr.ID+`","flag":"anomaly","severity":2,"reason":"odder"}`)
	if res.Code != 201 || res.Header().Get("Limit-Shared-Copy") != "" {
		t.Fatalf("next flag: %d %q %s", res.Code, res.Header().Get("Limit-Shared-Copy"), res.Body)
	}
	if n := sharedFlags(); n != 2 {
		t.Fatalf("the shared copy holds %d flags after the next flag, want 2", n)
	}
	if v, err := traces.Verify(ctx, tr.ID); err != nil || !v.Valid {
		t.Fatalf("verify: %+v %v", v, err)
	}
}

// TestMergeRefreshesStaleCopy: after a flag whose shared copy could not be replaced
// (Limit-Shared-Copy: stale), a merge of the trace replaces the copy, answering 200 with
// Limit-Shared-Copy: refreshed, without counting a second merge; once the copy is up to
// date a merge is the usual 409 "already merged".
func TestMergeRefreshesStaleCopy(t *testing.T) {
	ctx := context.Background()
	f := mergedOnSharedDown(t)
	st, traces, stats, s, tr, call := f.st, f.traces, f.stats, f.s, f.tr, f.call
	st.SharedDown.Store(true)
	if res := call("POST", "/v1/governance/flag", `{"trace_id":"`+tr.ID+`","flag":"anomaly","severity":3,"reason":"odd"}`); res.Code != 201 || res.Header().Get("Limit-Shared-Copy") != "stale" {
		t.Fatalf("flag whose copy failed: %d %q %s", res.Code, res.Header().Get("Limit-Shared-Copy"), res.Body)
	}
	st.SharedDown.Store(false)

	res := call("POST", "/v1/traces/"+tr.ID+"/merge", "")
	if res.Code != 200 || res.Header().Get("Limit-Shared-Copy") != "refreshed" {
		t.Fatalf("merge of a trace whose copy is stale: %d %q %s", res.Code, res.Header().Get("Limit-Shared-Copy"), res.Body)
	}
	recs, _, err := traces.ListMerged(ctx, 10, "")
	if err != nil || len(recs) != 1 || len(recs[0].Flags) != 1 {
		t.Fatalf("shared record after the merge: %+v %v", recs, err)
	}
	if now, err := traces.Get(ctx, tr.ID); err != nil || recs[0].Length != now.Length {
		t.Fatalf("the copy reflects %d entries, the trace %+v %v", recs[0].Length, now, err)
	}
	if sst, err := stats.Get(ctx, s.ID); err != nil || sst.MergesAllowed != 1 {
		t.Fatalf("stats after the refresh: %+v %v", sst, err)
	}
	if res := call("POST", "/v1/traces/"+tr.ID+"/merge", ""); res.Code != 409 || res.Header().Get("Limit-Shared-Copy") != "" {
		t.Fatalf("merge once the copy is up to date: %d %q %s", res.Code, res.Header().Get("Limit-Shared-Copy"), res.Body)
	}
}
