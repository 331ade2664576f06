package e2e

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/limitgraph/limit/sdk/client"
)

func TestSessionsAndErrors(t *testing.T) {
	d := start(t, config(t, t.TempDir(), "default"))

	s, err := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: "one", MaxConcurrency: 2, Runners: []string{"echo"}})
	if err != nil {
		t.Fatal(err)
	}
	if s.ID == "" || s.State != "active" || s.Policy != "default" || s.MaxConcurrency != 2 || s.CreatedAt.IsZero() {
		t.Fatalf("session %+v", s)
	}
	got, err := d.c.GetSession(ctx, s.ID)
	if err != nil || got.Name != "one" {
		t.Fatalf("get: %+v %v", got, err)
	}
	// Pagination walks every session exactly once.
	ids := map[string]bool{s.ID: true}
	for i := 0; i < 6; i++ {
		x, err := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: fmt.Sprint("s", i)})
		if err != nil {
			t.Fatal(err)
		}
		ids[x.ID] = true
	}
	seen := map[string]bool{}
	token := ""
	for pages := 0; ; pages++ {
		l, err := d.c.ListSessions(ctx, 3, token)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range l.Sessions {
			if seen[x.ID] {
				t.Fatalf("session %s listed twice", x.ID)
			}
			seen[x.ID] = true
		}
		if l.NextToken == "" {
			if pages != 2 {
				t.Fatalf("7 sessions in pages of 3 took %d pages", pages+1)
			}
			break
		}
		token = l.NextToken
	}
	if len(seen) != len(ids) {
		t.Fatalf("listed %d sessions, want %d", len(seen), len(ids))
	}

	for _, tc := range []struct {
		name, method, path, ctype, body string
		want                            int
	}{
		{"malformed JSON", "POST", "/v1/sessions", "application/json", `{"name": `, 400},
		{"unknown field", "POST", "/v1/sessions", "application/json", `{"name": "x", "colour": 1}`, 400},
		{"wrong type", "POST", "/v1/sessions", "application/json", `{"max_concurrency": "many"}`, 400},
		{"bad max_concurrency", "POST", "/v1/sessions", "application/json", `{"max_concurrency": 0}`, 400},
		{"unknown policy", "POST", "/v1/sessions", "application/json", `{"policy": "lax"}`, 400},
		{"unknown runner", "POST", "/v1/sessions", "application/json", `{"runners": ["cobol"]}`, 400},
		{"wrong content type", "POST", "/v1/sessions", "multipart/form-data; boundary=x", `{}`, 415},
		{"too large", "POST", "/v1/sessions", "application/json", `{"name": "` + strings.Repeat("x", 70000) + `"}`, 413},
		{"missing session", "GET", "/v1/sessions/01ARZ3NDEKTSV4RRFFQ69G5FAV", "", "", 404},
		{"non-canonical path", "GET", "/v1/sessions/../../etc", "", "", 404},
		// Cleaned, these name routes: ServeMux answered a 307 to them, in text/html.
		{"non-canonical path to a route", "GET", "/v1/sessions/../health", "", "", 404},
		{"double slash", "POST", "/v1//sessions", "application/json", `{}`, 404},
		{"invalid trace id", "GET", "/v1/traces/nope", "", "", 404},
		{"wrong method", "PUT", "/v1/sessions", "application/json", `{}`, 405},
		{"no route", "GET", "/v1/nothing", "", "", 404},
		{"trace of missing session", "POST", "/v1/traces", "application/json", `{"session_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "data": {}}`, 404},
		{"trace data not an object", "POST", "/v1/traces", "application/json", `{"session_id": "` + s.ID + `", "data": [1]}`, 400},
		{"bad flag", "POST", "/v1/governance/flag", "application/json", `{"trace_id": "x", "flag": "purple", "severity": 3}`, 400},
		{"bad severity", "POST", "/v1/governance/flag", "application/json", `{"trace_id": "x", "flag": "anomaly", "severity": 11}`, 400},
		{"unknown runner in execution", "POST", "/v1/sessions/" + s.ID + "/executions", "application/json", `{"runner": "cobol", "input": "x"}`, 400},
		{"evaluate bad kind", "POST", "/v1/governance/evaluate", "application/json", `{"kind": "poem", "text": "x"}`, 400},
		{"evaluate bad preset", "POST", "/v1/governance/evaluate", "application/json", `{"kind": "prompt", "text": "x", "preset": "lenient"}`, 400},
		{"export nothing", "POST", "/v1/artifacts/export", "application/json", `{}`, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, h, body := d.raw(tc.method, tc.path, tc.ctype, []byte(tc.body))
			mustProblem(t, status, h, body, tc.want)
		})
	}

	// Requests net/http would answer by itself answer problem+json too.
	for _, tc := range []struct {
		name, request string
		want          int
	}{
		{"bad escape in the path", "GET /v1/traces/%zz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 400},
		{"no Host header", "GET /v1/health HTTP/1.1\r\n\r\n", 400},
		{"header over the limit", "GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + strings.Repeat("a", 2<<20) + "\r\n\r\n", 431},
		// net/http answered an empty 200 itself.
		{"OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", strings.TrimPrefix(d.url, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(30 * time.Second))
			go func() { _, _ = io.WriteString(c, tc.request) }() // the server may answer before it has read all
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body map[string]any
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatal(err)
			}
			mustProblem(t, resp.StatusCode, resp.Header, body, tc.want)
		})
	}

	if _, err := d.c.DeleteSession(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	del, err := d.c.GetSession(ctx, s.ID)
	if err != nil || del.State != "deleted" {
		t.Fatalf("after delete: %+v %v", del, err)
	}
	_, err = d.c.Execute(ctx, s.ID, client.ExecuteRequest{Runner: "echo", Input: "x"})
	if client.StatusOf(err) != 409 {
		t.Fatalf("execution in a deleted session: %v", err)
	}
}

func TestExecutionsTracesAndIsolation(t *testing.T) {
	d := start(t, config(t, t.TempDir(), "default"))
	a, _ := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: "a"})
	b, _ := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: "b"})

	r1, err := d.c.Execute(ctx, a.ID, client.ExecuteRequest{Runner: "echo", Input: "hello"})
	if err != nil {
		t.Fatal(err)
	}
	if r1.Status != "ok" || !strings.Contains(r1.Stdout, "session="+a.ID) || !strings.Contains(r1.Stdout, "n=1") || r1.TraceID == "" || len(r1.Flags) != 0 {
		t.Fatalf("result %+v", r1)
	}
	r2, _ := d.c.Execute(ctx, a.ID, client.ExecuteRequest{Runner: "echo", Input: "again"})
	if !strings.Contains(r2.Stdout, "n=2") {
		t.Fatalf("state not kept in session a: %q", r2.Stdout)
	}
	rb, _ := d.c.Execute(ctx, b.ID, client.ExecuteRequest{Runner: "echo", Input: "hello"})
	if !strings.Contains(rb.Stdout, "session="+b.ID) || !strings.Contains(rb.Stdout, "n=1") {
		t.Fatalf("session b saw a's state: %q", rb.Stdout)
	}
	// Each session has its own runner process.
	h, err := d.c.Health(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pids := map[string]int{}
	for _, p := range h.Plugins {
		if p.Kind == "runner" {
			pids[p.Session] = p.PID
		}
		// Storage, runners and rules built on the SDK take their fast path.
		if p.Kind != "pool" && p.Transport != "unix" {
			t.Fatalf("%s plugin %q: calls over %q, want its fast path (unix)", p.Kind, p.Name, p.Transport)
		}
		// The bolt backend reports its write-ahead log.
		if _, ok := p.Metrics["log_pending_bytes"]; p.Kind == "storage" && (!ok || !p.Healthy || p.Detail != "") {
			t.Fatalf("storage plugin %q: %+v, want healthy with its log's figures", p.Name, p)
		}
	}
	if len(pids) != 2 || pids[a.ID] == pids[b.ID] {
		t.Fatalf("runner processes %v", pids)
	}

	// The execution's trace: data, provenance created + executed, verifiable.
	tv, err := d.c.GetTrace(ctx, r1.TraceID)
	if err != nil {
		t.Fatal(err)
	}
	if tv.SessionID != a.ID || tv.Kind != "execution" || tv.Status != "active" || len(tv.Provenance) < 2 ||
		tv.Provenance[0].Kind != "created" || tv.Provenance[len(tv.Provenance)-1].Kind != "executed" {
		t.Fatalf("trace %+v", tv)
	}
	v, err := d.c.VerifyProvenance(ctx, r1.TraceID)
	if err != nil || !v.Valid || v.Length != int64(len(tv.Provenance)) || v.Head != tv.Provenance[len(tv.Provenance)-1].Hash {
		t.Fatalf("verify %+v %v", v, err)
	}

	// A custom trace (the seed's call) and provenance appended by a client.
	ct, err := d.c.CreateTrace(ctx, b.ID, map[string]any{"key": "value"})
	if err != nil {
		t.Fatal(err)
	}
	e, err := d.c.AppendProvenance(ctx, ct.ID, "reviewed", "alice", map[string]any{"ok": true})
	if err != nil || e.Index != 1 || e.PrevHash != ct.Head {
		t.Fatalf("append %+v %v (record head %s)", e, err, ct.Head)
	}
	// Clients cannot forge the host's own entries.
	for _, kind := range []string{"executed", "created", "flagged", "merged", "merge_refused"} {
		status, h, body := d.raw("POST", "/v1/traces/"+ct.ID+"/provenance", "application/json", []byte(`{"kind": "`+kind+`", "agent": "mallory", "data": {}}`))
		mustProblem(t, status, h, body, 400)
	}
	// Isolation: a's listing never shows b's traces and the other way round.
	la, _ := d.c.ListTraces(ctx, a.ID, 100, "")
	lb, _ := d.c.ListTraces(ctx, b.ID, 100, "")
	for _, tr := range la.Traces {
		if tr.SessionID != a.ID {
			t.Fatalf("a's listing shows %s of %s", tr.ID, tr.SessionID)
		}
	}
	found := false
	for _, tr := range lb.Traces {
		if tr.SessionID != b.ID {
			t.Fatalf("b's listing shows %s of %s", tr.ID, tr.SessionID)
		}
		found = found || tr.ID == ct.ID
	}
	if len(la.Traces) != 2 || !found {
		t.Fatalf("listings: a %d traces, b has custom trace: %v", len(la.Traces), found)
	}
	// An export of one session holds its traces and nothing of the other's.
	exported := func(sessionID string) string {
		t.Helper()
		var buf bytes.Buffer
		if err := d.c.Export(ctx, client.ExportRequest{SessionID: sessionID}, &buf); err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(&buf)
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(zr)
		for {
			hd, err := tr.Next()
			if err != nil {
				t.Fatalf("bundle of %s without records.jsonl: %v", sessionID, err)
			}
			if hd.Name == "records.jsonl" {
				b, _ := io.ReadAll(tr)
				return string(b)
			}
		}
	}
	ea, eb := exported(a.ID), exported(b.ID)
	if !strings.Contains(ea, r1.TraceID) || strings.Contains(ea, rb.TraceID) || strings.Contains(ea, ct.ID) || strings.Contains(ea, b.ID) {
		t.Fatalf("a's export: has its trace %v, has b's traces or id %v", strings.Contains(ea, r1.TraceID), strings.Contains(ea, rb.TraceID) || strings.Contains(ea, ct.ID) || strings.Contains(ea, b.ID))
	}
	if !strings.Contains(eb, ct.ID) || strings.Contains(eb, r1.TraceID) || strings.Contains(eb, a.ID) {
		t.Fatalf("b's export: has its trace %v, has a's trace or id %v", strings.Contains(eb, ct.ID), strings.Contains(eb, r1.TraceID) || strings.Contains(eb, a.ID))
	}

	// Streaming: events arrive, then the same result object.
	var events []client.Event
	res, err := d.c.ExecuteStream(ctx, a.ID, client.ExecuteRequest{Runner: "echo", Input: "streamed"}, func(ev client.Event) {
		events = append(events, ev)
	})
	if err != nil || res.Status != "ok" || len(events) == 0 || events[0].Kind != "stdout" || !strings.Contains(events[0].Data, "streamed") || res.Stdout != events[0].Data {
		t.Fatalf("stream: %+v events %+v err %v", res, events, err)
	}

	// A runner crash is reported, and the next execution gets a fresh process.
	crash, err := d.c.Execute(ctx, a.ID, client.ExecuteRequest{Runner: "echo", Input: "crash"})
	if err != nil || crash.Status != "error" || !crash.StateReset || !strings.Contains(crash.Error, "runner") {
		t.Fatalf("crash: %+v %v", crash, err)
	}
	after, err := d.c.Execute(ctx, a.ID, client.ExecuteRequest{Runner: "echo", Input: "x"})
	if err != nil || after.Status != "ok" || !strings.Contains(after.Stdout, "n=1") {
		t.Fatalf("after crash: %+v %v", after, err)
	}
	// The same when the process dies leaving a child that holds its output pipes (its
	// plugin client does not call it exited until they close): it is not handed out again.
	crash, err = d.c.Execute(ctx, a.ID, client.ExecuteRequest{Runner: "echo", Input: "orphan-crash"})
	if err != nil || crash.Status != "error" || !crash.StateReset || !strings.Contains(crash.Error, "died") {
		t.Fatalf("crash leaving a child: %+v %v", crash, err)
	}
	after, err = d.c.Execute(ctx, a.ID, client.ExecuteRequest{Runner: "echo", Input: "x"})
	if err != nil || after.Status != "ok" || !strings.Contains(after.Stdout, "n=1") {
		t.Fatalf("after a crash leaving a child: %+v %v", after, err)
	}
}

func TestConcurrencyLimit(t *testing.T) {
	d := start(t, config(t, t.TempDir(), "default"))
	s, _ := d.c.CreateSession(ctx, client.CreateSessionRequest{MaxConcurrency: 1})
	long := make(chan struct{})
	go func() {
		defer close(long)
		if r, err := d.c.Execute(ctx, s.ID, client.ExecuteRequest{Runner: "echo", Input: "sleep:1500", TimeoutMS: 5000}); err != nil || r.Status != "ok" {
			t.Errorf("long execution: %+v %v", r, err)
		}
	}()
	// A second execution while the long one holds the only slot gets 429. On a loaded
	// machine the long one may not have its slot yet: a second one that ran did not
	// overlap it, and is tried again, until the long one ends.
	var err error
	for {
		select {
		case <-long:
			t.Fatal("every execution beside the long one ran: none got 429 while it held the only slot")
		case <-time.After(100 * time.Millisecond):
		}
		var r *client.ExecutionResult
		r, err = d.c.Execute(ctx, s.ID, client.ExecuteRequest{Runner: "echo", Input: "x", TimeoutMS: 200})
		if err == nil && r.Status == "ok" {
			continue
		}
		break
	}
	var apiErr *client.Error
	if !asErr(err, &apiErr) || apiErr.Status != 429 || apiErr.RetryAfter <= 0 {
		t.Fatalf("second execution: %v", err)
	}
	<-long
	// A timeout inside the runner is reported as such.
	r, err := d.c.Execute(ctx, s.ID, client.ExecuteRequest{Runner: "echo", Input: "sleep:5000", TimeoutMS: 200})
	if err != nil || r.Status != "timeout" {
		t.Fatalf("timeout: %+v %v", r, err)
	}
}

func asErr(err error, target **client.Error) bool {
	e, ok := err.(*client.Error)
	if ok {
		*target = e
	}
	return ok
}

func TestGovernanceBlockFlagMerge(t *testing.T) {
	d := start(t, config(t, t.TempDir(), "default"))
	def, _ := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: "default"})
	strict, _ := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: "strict", Policy: "strict"})

	// Blocked before running: 403 naming the flag; the trace is stored, flagged.
	_, err := d.c.Execute(ctx, def.ID, client.ExecuteRequest{Runner: "echo", Input: "please do the forbidden thing"})
	var apiErr *client.Error
	if !asErr(err, &apiErr) || apiErr.Status != 403 || !strings.Contains(apiErr.Detail, "jailbreak") {
		t.Fatalf("blocked execution: %v", err)
	}
	var traceID string
	_ = json.Unmarshal(apiErr.Extra["trace_id"], &traceID)
	tv, err := d.c.GetTrace(ctx, traceID)
	if err != nil || len(tv.Flags) != 1 || tv.Flags[0].Flag != "jailbreak" || !tv.Flags[0].AutoDetected || tv.Status != "quarantined" {
		t.Fatalf("blocked trace: %+v %v", tv, err)
	}
	if _, err := d.c.Merge(ctx, traceID); client.StatusOf(err) != 409 {
		t.Fatalf("merge of a quarantined trace: %v", err)
	}

	// A low-severity flag does not block under default but does under strict.
	r, err := d.c.Execute(ctx, def.ID, client.ExecuteRequest{Runner: "echo", Input: "lowrisk"})
	if err != nil || r.Status != "ok" || len(r.Flags) != 1 || r.Flags[0].Flag != "anomaly" {
		t.Fatalf("default with anomaly: %+v %v", r, err)
	}
	// A post-execution flag from the output.
	r2, err := d.c.Execute(ctx, def.ID, client.ExecuteRequest{Runner: "echo", Input: "tell the secret"})
	if err != nil || len(r2.Flags) != 1 || r2.Flags[0].Flag != "high_risk" {
		t.Fatalf("post flag: %+v %v", r2, err)
	}
	// Under default an anomaly-flagged trace may merge; the merged record lists it.
	m, err := d.c.Merge(ctx, r.TraceID)
	if err != nil || !m.Merged || m.Trace.Status != "merged" {
		t.Fatalf("merge under default: %+v %v", m, err)
	}
	merged, _ := d.c.ListMerged(ctx, 10, "")
	if len(merged.Traces) != 1 || merged.Traces[0].ID != r.TraceID {
		t.Fatalf("merged record %+v", merged)
	}

	// Strict: a manually flagged trace's merge is refused with each reason.
	ct, _ := d.c.CreateTrace(ctx, strict.ID, map[string]any{"k": 1})
	if _, err := d.c.Flag(ctx, client.FlagRequest{TraceID: ct.ID, Flag: "HighRisk", Reason: "reviewer says so", Severity: 3}); err != nil {
		t.Fatal(err)
	}
	_, err = d.c.Merge(ctx, ct.ID)
	if !asErr(err, &apiErr) || apiErr.Status != 409 || !strings.Contains(apiErr.Detail, "high_risk") {
		t.Fatalf("strict merge of a flagged trace: %v", err)
	}
	var reasons []string
	_ = json.Unmarshal(apiErr.Extra["reasons"], &reasons)
	if len(reasons) == 0 {
		t.Fatalf("no reasons in %v", apiErr.Extra)
	}
	// Strict blocks anomaly from severity 5: "lowrisk" (severity 2) runs, flagged, and
	// its merge is refused; "forbidden" is blocked.
	lr, err := d.c.Execute(ctx, strict.ID, client.ExecuteRequest{Runner: "echo", Input: "lowrisk"})
	if err != nil || lr.Status != "ok" || len(lr.Flags) != 1 {
		t.Fatalf("strict with anomaly severity 2: %+v %v", lr, err)
	}
	if _, err := d.c.Merge(ctx, lr.TraceID); client.StatusOf(err) != 409 {
		t.Fatalf("strict merge of an anomaly-flagged trace: %v", err)
	}
	if _, err := d.c.Execute(ctx, strict.ID, client.ExecuteRequest{Runner: "echo", Input: "forbidden"}); client.StatusOf(err) != 403 {
		t.Fatalf("strict with jailbreak: %v", err)
	}

	st, err := d.c.GovernanceStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	o := st.Overall
	if o.ByFlag["jailbreak"] != 2 || o.ByFlag["high_risk"] != 2 || o.MergesAllowed != 1 || o.MergesRefused != 3 || o.ExecutionsBlocked < 1 || o.Quarantined < 1 {
		t.Fatalf("stats %+v", o)
	}
	if st.Sessions[strict.ID].MergesRefused != 2 {
		t.Fatalf("per-session stats %+v", st.Sessions[strict.ID])
	}
	ev, err := d.c.Evaluate(ctx, "prompt", "a forbidden prompt")
	if err != nil || len(ev.Findings) != 1 || ev.Findings[0].Flag != "jailbreak" {
		t.Fatalf("evaluate: %+v %v", ev, err)
	}
	// The same outcomes as Prometheus metrics.
	res, err := http.Get(d.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, want := range []string{
		`limit_executions_total{runner="echo",status="blocked"} 2`,
		`limit_executions_total{runner="echo",status="ok"} `,
		`limit_governance_flags_total{flag="jailbreak"} 2`,
		`limit_governance_flags_total{flag="anomaly"} `,
		`limit_http_requests_total{code="403",route="POST /v1/sessions/{id}/executions"} 2`,
		`limit_plugin_processes{healthy="true",kind="storage",plugin="bolt"} 1`,
		// What the daemon hands the API besides: restarts, storage calls, rule errors.
		`limit_plugin_restarts_total{kind="storage",plugin="bolt",reason="crash"} 0`,
		`limit_plugin_restarts_total{kind="governance",plugin="keyword",reason="crash"} 0`,
		`limit_plugin_restarts_total{kind="runner",plugin="echo",reason="crash"} 0`,
		`limit_storage_call_duration_seconds_count{op="batch"} `,
		`limit_governance_rule_errors_total{rule="keyword"} 0`,
		`limit_merges_total{outcome="allowed"} 1`,
		`limit_merges_total{outcome="refused"} 3`,
		`limit_execution_pending_outcomes 0`,
		`limit_build_info{version=`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", body)
	}
}

func TestRestartKeepsSessionsAndTraces(t *testing.T) {
	dataDir := t.TempDir()
	cfg := config(t, dataDir, "default")
	d := start(t, cfg)
	s, _ := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: "durable"})
	r, err := d.c.Execute(ctx, s.ID, client.ExecuteRequest{Runner: "echo", Input: "before"})
	if err != nil {
		t.Fatal(err)
	}
	d.stop()
	d2 := start(t, cfg)
	got, err := d2.c.GetSession(ctx, s.ID)
	if err != nil || got.Name != "durable" || got.State != "active" {
		t.Fatalf("session after restart: %+v %v", got, err)
	}
	v, err := d2.c.VerifyProvenance(ctx, r.TraceID)
	if err != nil || !v.Valid {
		t.Fatalf("trace after restart: %+v %v", v, err)
	}
	r2, err := d2.c.Execute(ctx, s.ID, client.ExecuteRequest{Runner: "echo", Input: "after"})
	if err != nil || r2.Status != "ok" || !strings.Contains(r2.Stdout, "n=1") {
		t.Fatalf("execution after restart: %+v %v", r2, err)
	}
}

func TestSeedRoutesAndOpenAPI(t *testing.T) {
	d := start(t, config(t, t.TempDir(), "default"))
	s, _ := d.c.CreateSession(ctx, client.CreateSessionRequest{})
	for _, path := range []string{"/health", "/sessions/" + s.ID, "/governance/stats"} {
		status, h, _ := d.raw("GET", path, "", nil)
		if status != 200 || h.Get("X-Request-Id") == "" {
			t.Fatalf("GET %s: %d", path, status)
		}
	}
	status, _, body := d.raw("POST", "/traces", "application/json", []byte(`{"session_id": "`+s.ID+`", "data": {"key": "value"}}`))
	if status != 201 || body["id"] == "" {
		t.Fatalf("POST /traces: %d %v", status, body)
	}
	status, _, _ = d.raw("POST", "/traces/"+body["id"].(string)+"/provenance", "application/json", []byte(`{"kind": "note", "agent": "seed", "data": {}}`))
	if status != 201 {
		t.Fatalf("POST /traces/{id}/provenance: %d", status)
	}
	tid := body["id"].(string)
	// The seed's other calls: a session created, a flag, an export, each unversioned.
	status, _, seedSess := d.raw("POST", "/sessions", "application/json", []byte(`{"name": "seed"}`))
	if status != 201 || seedSess["name"] != "seed" || seedSess["id"] == "" {
		t.Fatalf("POST /sessions: %d %v", status, seedSess)
	}
	status, _, flagged := d.raw("POST", "/governance/flag", "application/json", []byte(`{"trace_id": "`+tid+`", "flag": "HighRisk", "reason": "seed spelling", "severity": 3}`))
	if status != 201 || len(flagged["flags"].([]any)) != 1 {
		t.Fatalf("POST /governance/flag: %d %v", status, flagged)
	}
	status, h, _ := d.raw("POST", "/artifacts/export", "application/json", []byte(`{"session_id": "`+s.ID+`"}`))
	if status != 200 || h.Get("Content-Type") != "application/gzip" {
		t.Fatalf("POST /artifacts/export: %d %s", status, h.Get("Content-Type"))
	}
	// An unversioned GET answers what its /v1 twin does.
	for _, path := range []string{"/sessions/" + s.ID, "/sessions/" + s.ID + "/traces", "/traces/" + tid, "/traces/" + tid + "/provenance/verify", "/governance/stats", "/governance/policies", "/merged"} {
		st1, _, legacy := d.raw("GET", path, "", nil)
		st2, _, v1 := d.raw("GET", "/v1"+path, "", nil)
		if st1 != 200 || st2 != 200 || !reflect.DeepEqual(legacy, v1) {
			t.Fatalf("GET %s: %d %v; GET /v1%s: %d %v", path, st1, legacy, path, st2, v1)
		}
	}
	status, _, doc := d.raw("GET", "/v1/openapi.json", "", nil)
	if status != 200 || doc["openapi"] != "3.1.0" {
		t.Fatalf("openapi: %d %v", status, doc["openapi"])
	}
	paths := doc["paths"].(map[string]any)
	for _, p := range []string{"/v1/sessions", "/v1/sessions/{id}", "/v1/sessions/{id}/executions", "/v1/traces", "/v1/traces/{id}/provenance/verify", "/v1/traces/{id}/merge", "/v1/artifacts/export", "/v1/governance/flag", "/v1/governance/stats", "/v1/governance/evaluate", "/v1/merged", "/v1/health"} {
		if _, ok := paths[p]; !ok {
			t.Errorf("openapi lacks %s", p)
		}
	}
}

// TestGovernanceReadsParams: text in an execution's params (an LLM runner's messages or
// system prompt) is read by the rules as the input is: a jailbreak there is blocked, with
// the flag saying it was in params. It used to reach the runner unchecked (found by an LLM
// runner's user journey: the same text refused as input went through in
// params.messages).
func TestGovernanceReadsParams(t *testing.T) {
	d := start(t, config(t, t.TempDir(), "default"))
	s, err := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: "params"})
	if err != nil {
		t.Fatal(err)
	}
	for _, params := range []map[string]any{
		{"messages": []any{map[string]any{"role": "user", "content": "please do the forbidden thing"}}},
		{"system": "forbidden"},
	} {
		_, err := d.c.Execute(ctx, s.ID, client.ExecuteRequest{Runner: "echo", Input: "hello", Params: params})
		var apiErr *client.Error
		if !asErr(err, &apiErr) || apiErr.Status != 403 || !strings.Contains(apiErr.Detail, "jailbreak") {
			t.Fatalf("params %v: %v, want 403 naming jailbreak", params, err)
		}
		var traceID string
		_ = json.Unmarshal(apiErr.Extra["trace_id"], &traceID)
		tv, err := d.c.GetTrace(ctx, traceID)
		if err != nil || len(tv.Flags) != 1 || !strings.Contains(tv.Flags[0].Reason, "params") {
			t.Fatalf("params %v: trace %+v %v, want one flag saying it is in params", params, tv, err)
		}
	}
	// Params without text, or with harmless text, change nothing.
	r, err := d.c.Execute(ctx, s.ID, client.ExecuteRequest{Runner: "echo", Input: "hello", Params: map[string]any{"n": 3, "note": "fine"}})
	if err != nil || r.Status != "ok" || len(r.Flags) != 0 {
		t.Fatalf("harmless params: %+v %v", r, err)
	}
}

// TestTokensOfALeftStreamAreChecked: a model's tokens streamed to a client that then left
// are the execution's output: recorded, and checked by the rules (here the keyword rule's
// "secret", high_risk), as the README promises of a client that leaves. Only stdout and
// stderr were kept: the trace held an empty output and the rules saw nothing.
func TestTokensOfALeftStreamAreChecked(t *testing.T) {
	d := start(t, config(t, t.TempDir(), "default"))
	s, err := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: "tokens"})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", d.url+"/v1/sessions/"+s.ID+"/executions",
		strings.NewReader(`{"runner":"echo","input":"tokens-wait:the secret word"}`))
	req.Header.Set("Accept", "text/event-stream")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() && !strings.Contains(sc.Text(), "word") {
	}
	res.Body.Close() // the client leaves after the last token
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		l, err := d.c.ListTraces(ctx, s.ID, 10, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(l.Traces) == 1 && len(l.Traces[0].Flags) > 0 {
			if f := l.Traces[0].Flags[0]; f.Flag != "high_risk" || f.Stage != "post" {
				t.Fatalf("flag %+v, want the output rule's high_risk", f)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the left stream's trace has no output flag: %+v", l.Traces)
		}
	}
}

// TestStreamStartsWhenTheExecutionRuns: a streamed execution's response begins as soon as
// the execution passed its checks and runs (a comment, which clients skip), not at its
// first output, which from a model may take a minute; before, a client waited with nothing.
func TestStreamStartsWhenTheExecutionRuns(t *testing.T) {
	d := start(t, config(t, t.TempDir(), "default"))
	s, err := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: "stream"})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second) // the execution would run 60 s
	defer cancel()
	req, _ := http.NewRequestWithContext(rctx, "POST", d.url+"/v1/sessions/"+s.ID+"/executions",
		strings.NewReader(`{"runner":"echo","input":"sleep:60000"}`))
	req.Header.Set("Accept", "text/event-stream")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("no response while the execution runs: %v", err)
	}
	defer res.Body.Close()
	line, err := bufio.NewReader(res.Body).ReadString('\n')
	if err != nil || line != ": running\n" || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("first line %q (%v), Content-Type %q", line, err, res.Header.Get("Content-Type"))
	}
}
