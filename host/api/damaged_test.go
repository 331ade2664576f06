package api

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/limitgraph/limit/host/session"
	"github.com/limitgraph/limit/host/trace"
	"github.com/limitgraph/limit/sdk/storage/memstore"
)

// damagedSession is a session of three traces, the second of which has a stored record
// that no longer decodes; the third is merged, and its copy in the shared record no
// longer decodes either.
func damagedSession(t *testing.T) (srv *Server, st *memstore.Store, sid, good, bad, merged string) {
	t.Helper()
	ctx := context.Background()
	st = memstore.New()
	srv, traces, sessions := provenanceAPI(t, st)
	sess, err := sessions.Create(ctx, session.CreateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for range 3 {
		rec, err := traces.Create(ctx, sess.ID, trace.TraceCustom, nil, "t")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, rec.ID)
	}
	if code, _, body := send(t, srv, "POST", "/v1/traces/"+ids[2]+"/merge", ""); code != 200 {
		t.Fatalf("merge: %d %s", code, body)
	}
	if err := st.Put(ctx, trace.SessionNamespace(trace.DefaultTenant, sess.ID), []byte("trace/"+ids[1]), []byte(`{"id":`)); err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, trace.MergedNamespace(trace.DefaultTenant), []byte("trace/"+ids[2]), []byte(`not json`)); err != nil {
		t.Fatal(err)
	}
	return srv, st, sess.ID, ids[0], ids[1], ids[2]
}

// TestDamagedRecordIsNamedNotFatal: one stored record that does not decode leaves every
// listing that holds it answering the others, with the damaged one's id in damaged; a read,
// a merge or an append of the damaged trace is a 409 naming it, and its verify answers
// valid false saying what is wrong (not a 500 everywhere).
func TestDamagedRecordIsNamedNotFatal(t *testing.T) {
	srv, _, sid, good, bad, merged := damagedSession(t)
	list := func(path string) traceList {
		t.Helper()
		code, _, body := send(t, srv, "GET", path, "")
		var l traceList
		if err := json.Unmarshal(body, &l); code != 200 || err != nil {
			t.Fatalf("GET %s: %d %s", path, code, body)
		}
		return l
	}
	l := list("/v1/sessions/" + sid + "/traces")
	var listed []string
	for _, r := range l.Traces {
		listed = append(listed, r.ID)
	}
	if !slices.Equal(listed, []string{good, merged}) || !slices.Equal(l.Damaged, []string{bad}) {
		t.Errorf("session listing: traces %v, damaged %v; want [%s %s], damaged [%s]", listed, l.Damaged, good, merged, bad)
	}
	if l := list("/v1/merged"); len(l.Traces) != 0 || !slices.Equal(l.Damaged, []string{merged}) {
		t.Errorf("merged listing: traces %v, damaged %v; want none, damaged [%s]", l.Traces, l.Damaged, merged)
	}
	for _, c := range []struct{ method, path, body string }{
		{"GET", "/v1/traces/" + bad, ""},
		{"POST", "/v1/traces/" + bad + "/merge", ""},
		{"POST", "/v1/traces/" + bad + "/provenance", `{"kind":"note"}`},
		{"POST", "/v1/governance/flag", `{"trace_id":"` + bad + `","flag":"malicious","severity":9}`},
	} {
		code, ctype, body := send(t, srv, c.method, c.path, c.body)
		if code != 409 || ctype != "application/problem+json" || !strings.Contains(string(body), bad) {
			t.Errorf("%s %s: %d %s %s; want 409 problem+json naming the trace", c.method, c.path, code, ctype, body)
		}
	}
	code, _, body := send(t, srv, "GET", "/v1/traces/"+bad+"/provenance/verify", "")
	var v trace.VerifyResult
	if err := json.Unmarshal(body, &v); err != nil || code != 200 || v.Valid || !strings.Contains(v.Error, "malformed trace record") {
		t.Errorf("verify of the damaged trace: %d %s; want 200, valid false, saying the record is malformed", code, body)
	}
	code, _, body = send(t, srv, "GET", "/v1/rd/fgw/sessions?a="+sid+"&b="+sid, "")
	var g sessionFGWResponse
	if err := json.Unmarshal(body, &g); err != nil || code != 200 || !slices.Equal(g.Damaged, []string{bad}) || g.NodesA != 3 {
		t.Errorf("session FGW: %d %s; want 200 over the two intact traces (3 entries), damaged [%s]", code, body, bad)
	}
}

// TestBrokenChainIs409: an append to a chain whose latest checkpoint was removed, and an
// export of a session holding it, answer 409 naming the trace (the export every trace that
// does not verify, in damaged), not 500.
func TestBrokenChainIs409(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	key, err := trace.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	traces, err := trace.New(st, key, trace.Options{TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	_, _, sessions := provenanceAPIWith(t, st, traces)
	sess, err := sessions.Create(ctx, session.CreateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for range 3 {
		rec, err := traces.Create(ctx, sess.ID, trace.TraceCustom, nil, "t")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, rec.ID)
	}
	ns := trace.SessionNamespace(trace.DefaultTenant, sess.ID)
	for _, id := range []string{ids[0], ids[2]} {
		if _, err := st.Delete(ctx, ns, fmt.Appendf(nil, "ckpt/%s/%020d", id, 1)); err != nil {
			t.Fatal(err)
		}
	}
	// A restart: nothing cached.
	if traces, err = trace.New(st, key, trace.Options{TempDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	srv, _, _ := provenanceAPIWith(t, st, traces)
	code, ctype, body := send(t, srv, "POST", "/v1/traces/"+ids[0]+"/provenance", `{"kind":"note"}`)
	if code != 409 || ctype != "application/problem+json" || !strings.Contains(string(body), ids[0]) {
		t.Errorf("append: %d %s %s; want 409 problem+json naming the trace", code, ctype, body)
	}
	code, ctype, body = send(t, srv, "POST", "/v1/artifacts/export", `{"session_id":"`+sess.ID+`"}`)
	var p struct {
		Damaged []string `json:"damaged"`
	}
	if err := json.Unmarshal(body, &p); err != nil || code != 409 || ctype != "application/problem+json" || !slices.Equal(p.Damaged, []string{ids[0], ids[2]}) {
		t.Errorf("session export: %d %s %s; want 409 problem+json with damaged [%s %s]", code, ctype, body, ids[0], ids[2])
	}
}

// TestRetriedMergeOfBrokenChainCountsFlagOnce: each merge of a chain that does not verify is
// refused and counted as refused, but the unverified flag it raises, written nowhere, is
// counted once for the chain however often the merge is retried.
func TestRetriedMergeOfBrokenChainCountsFlagOnce(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	srv, traces, sessions := provenanceAPI(t, st)
	sess, err := sessions.Create(ctx, session.CreateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := traces.Create(ctx, sess.ID, trace.TraceCustom, nil, "t")
	if err != nil {
		t.Fatal(err)
	}
	ns := trace.SessionNamespace(trace.DefaultTenant, sess.ID)
	if _, err := st.Delete(ctx, ns, fmt.Appendf(nil, "ckpt/%s/%020d", rec.ID, 1)); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if code, _, body := send(t, srv, "POST", "/v1/traces/"+rec.ID+"/merge", ""); code != 409 || !strings.Contains(string(body), "unverified") {
			t.Fatalf("merge of a broken chain: %d %s; want 409 with an unverified flag", code, body)
		}
	}
	code, _, body := send(t, srv, "GET", "/v1/governance/stats?session_id="+sess.ID, "")
	var stats statsResponse
	if err := json.Unmarshal(body, &stats); err != nil || code != 200 {
		t.Fatalf("stats: %d %s", code, body)
	}
	if got := stats.Overall; got.ByFlag["unverified"] != 1 || got.Flags != 1 || got.MergesRefused != 3 {
		t.Errorf("stats after 3 refused merges of one broken chain: %s; want 1 unverified flag, 3 merges refused", body)
	}
}

// TestMergeOfPurgedSessionsTraceIs404: a merged trace whose session was purged is read from
// its copy in the shared record; a merge of it answers 404, as a flag does (its session is
// gone), not 409 "already merged".
func TestMergeOfPurgedSessionsTraceIs404(t *testing.T) {
	ctx := context.Background()
	srv, traces, sessions := provenanceAPI(t, memstore.New())
	sess, err := sessions.Create(ctx, session.CreateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := traces.Create(ctx, sess.ID, trace.TraceCustom, nil, "t")
	if err != nil {
		t.Fatal(err)
	}
	if code, _, body := send(t, srv, "POST", "/v1/traces/"+rec.ID+"/merge", ""); code != 200 {
		t.Fatalf("merge: %d %s", code, body)
	}
	if _, err := traces.PurgeSession(ctx, sess.ID); err != nil {
		t.Fatal(err)
	}
	if code, _, body := send(t, srv, "GET", "/v1/traces/"+rec.ID, ""); code != 200 {
		t.Fatalf("read of the purged session's merged trace: %d %s; want its shared copy", code, body)
	}
	for _, c := range []struct{ path, body string }{
		{"/v1/traces/" + rec.ID + "/merge", ""},
		{"/v1/governance/flag", `{"trace_id":"` + rec.ID + `","flag":"anomaly","severity":2}`},
	} {
		if code, _, body := send(t, srv, "POST", c.path, c.body); code != 404 {
			t.Errorf("POST %s of a purged session's merged trace: %d %s; want 404", c.path, code, body)
		}
	}
}
