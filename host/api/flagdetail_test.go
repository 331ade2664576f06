package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
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
	"github.com/limitgraph/limit/internal/testplugins/echo"
	"github.com/limitgraph/limit/sdk/base"
	sdkgov "github.com/limitgraph/limit/sdk/governance"
	"github.com/limitgraph/limit/sdk/runner"
	"github.com/limitgraph/limit/sdk/storage"
	"github.com/limitgraph/limit/sdk/storage/memstore"
)

// testPluginEnv turns this test binary into one of the echo test plugins (the test binary
// is its own plugin), so that tests run executions through real plugin processes.
const testPluginEnv = "LIMIT_API_TEST_PLUGIN"

func TestMain(m *testing.M) {
	switch os.Getenv(testPluginEnv) {
	case "":
		os.Exit(m.Run())
	case "keyword":
		sdkgov.Serve(echo.Rule{})
	case "echo":
		runner.Serve(&echo.Runner{})
	case "down":
		sdkgov.Serve(downRule{})
	}
	os.Exit(0)
}

// pluginSpec runs this test binary as the named test plugin.
func pluginSpec(t *testing.T, kind, name string) plugins.Spec {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return plugins.Spec{Kind: kind, Name: name, Path: exe, Env: map[string]string{testPluginEnv: name}, StartTimeout: 10 * time.Second}
}

// pluginServer returns an API server on in-memory storage with the echo runner and the
// keyword rule, as plugin processes.
func pluginServer(t *testing.T) *httptest.Server {
	t.Helper()
	a := newPluginAPI(t, memstore.New())
	srv := httptest.NewServer(a.srv)
	t.Cleanup(srv.Close)
	return srv
}

// pluginAPI is an API server on st with the echo runner and the keyword rule, as plugin
// processes, and the stores behind it.
type pluginAPI struct {
	srv      *Server
	sessions *session.Manager
	traces   *trace.Store
	stats    *governance.StatsStore
}

func newPluginAPI(t *testing.T, st storage.Storage) pluginAPI {
	t.Helper()
	return newPluginAPILogged(t, st, hclog.NewNullLogger())
}

// newPluginAPILogged is newPluginAPI whose server and engine log to logger.
func newPluginAPILogged(t *testing.T, st storage.Storage, logger hclog.Logger) pluginAPI {
	t.Helper()
	return newPluginAPIRules(t, st, logger, "keyword")
}

// newPluginAPIRules is newPluginAPILogged with the named test rules ("keyword", "down").
func newPluginAPIRules(t *testing.T, st storage.Storage, logger hclog.Logger, names ...string) pluginAPI {
	t.Helper()
	ctx := context.Background()
	traces, _ := tracetest.New(t, st)
	var managed []*plugins.Managed
	for _, name := range names {
		rule, err := plugins.StartManaged(ctx, pluginSpec(t, base.KindGovernance, name), hclog.NewNullLogger(), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(rule.Close)
		managed = append(managed, rule)
	}
	rules, err := governance.NewEvaluator(ctx, managed)
	if err != nil {
		t.Fatal(err)
	}
	runners := plugins.NewRunners(map[string]plugins.Spec{"echo": pluginSpec(t, base.KindRunner, "echo")}, hclog.NewNullLogger())
	t.Cleanup(func() { runners.Close(context.Background()) })
	sessions := session.NewManager(session.Options{Store: st, Runners: runners, DataDir: t.TempDir(), Policies: governance.PolicyNames(), DefaultPolicy: "default"})
	stats := &governance.StatsStore{Store: st, Namespace: func(id string) string { return trace.SessionNamespace(trace.DefaultTenant, id) }}
	engine := &execution.Engine{Sessions: sessions, Traces: traces, Rules: rules, Stats: stats, Logger: logger.Named("execution")}
	srv := New(Options{Sessions: sessions, Engine: engine, Traces: traces, Rules: rules, Stats: stats, Store: st, DefaultPolicy: "default", Logger: logger.Named("api")})
	return pluginAPI{srv: srv, sessions: sessions, traces: traces, stats: stats}
}

// call sends a JSON request and decodes the JSON answer into out.
func call(t *testing.T, srv *httptest.Server, method, path string, body any, wantStatus int, out any) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(method, srv.URL+path, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var raw json.RawMessage
	if err := json.NewDecoder(res.Body).Decode(&raw); err != nil {
		t.Fatalf("%s %s: %d, body is not JSON: %v", method, path, res.StatusCode, err)
	}
	if res.StatusCode != wantStatus {
		t.Fatalf("%s %s: %d, want %d: %s", method, path, res.StatusCode, wantStatus, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatal(err)
		}
	}
}

// apiFlag is a flag as the API shows it, with the optional fields as pointers to tell
// "absent" from zero.
type apiFlag struct {
	Flag     string   `json:"flag"`
	RuleID   string   `json:"rule_id"`
	Reason   string   `json:"reason"`
	Stage    *string  `json:"stage"`
	Score    *float64 `json:"score"`
	Location *struct {
		Line   *int `json:"line"`
		Column *int `json:"column"`
		Start  *int `json:"start"`
		End    *int `json:"end"`
	} `json:"location"`
}

// checkFlag checks that f is the keyword rule's flag at stage, located at line:column and
// bytes start-end.
func checkFlag(t *testing.T, where string, f apiFlag, flag, stage string, line, column, start, end int) {
	t.Helper()
	l := f.Location
	if f.Flag != flag || f.Stage == nil || *f.Stage != stage || f.Score == nil || *f.Score != 1 || l == nil ||
		l.Line == nil || *l.Line != line || l.Column == nil || *l.Column != column || l.Start == nil || *l.Start != start || l.End == nil || *l.End != end {
		b, _ := json.Marshal(f)
		t.Errorf("%s: flag %s, want %s at stage %s, score 1, line %d:%d, bytes %d-%d", where, b, flag, stage, line, column, start, end)
	}
}

// TestExecutionFlagLocations: the flags of an execution, in its answer (JSON and the
// stream's result event) and on its trace, say at which stage the rule ran, its score and
// where it matched; a flag set by hand takes a location (checked) but no stage or score.
func TestExecutionFlagLocations(t *testing.T) {
	srv := pluginServer(t)
	var sess struct {
		ID string `json:"id"`
	}
	call(t, srv, "POST", "/v1/sessions", map[string]any{"runners": []string{"echo"}}, http.StatusCreated, &sess)

	// "lowrisk" (anomaly) on line 2 of the input, before; "secret" (high_risk) in the
	// output, which echoes the input after a prefix, after.
	input := "x = 1\n  lowrisk()\nsecret"
	var res struct {
		TraceID string    `json:"trace_id"`
		Output  string    `json:"output"`
		Flags   []apiFlag `json:"flags"`
	}
	call(t, srv, "POST", "/v1/sessions/"+sess.ID+"/executions", map[string]any{"runner": "echo", "input": input}, http.StatusOK, &res)
	if len(res.Flags) != 2 {
		t.Fatalf("execution flags %+v, want 2", res.Flags)
	}
	in := strings.Index(input, "lowrisk")
	out := strings.Index(res.Output, "secret")
	checkFlag(t, "execution answer", res.Flags[0], sdkgov.FlagAnomaly, "pre", 2, 3, in, in+len("lowrisk"))
	checkFlag(t, "execution answer", res.Flags[1], sdkgov.FlagHighRisk, "post", 3, 1, out, out+len("secret"))
	if !strings.Contains(res.Flags[0].Reason, "line 2:3") {
		t.Errorf("reason %q lost its summary", res.Flags[0].Reason)
	}

	var tr struct {
		Flags []apiFlag `json:"flags"`
	}
	call(t, srv, "GET", "/v1/traces/"+res.TraceID, nil, http.StatusOK, &tr)
	if len(tr.Flags) != 2 {
		t.Fatalf("trace flags %+v", tr.Flags)
	}
	checkFlag(t, "trace", tr.Flags[0], sdkgov.FlagAnomaly, "pre", 2, 3, in, in+len("lowrisk"))
	checkFlag(t, "trace", tr.Flags[1], sdkgov.FlagHighRisk, "post", 3, 1, out, out+len("secret"))
	var v map[string]any
	call(t, srv, "GET", "/v1/traces/"+res.TraceID+"/provenance/verify", nil, http.StatusOK, &v)
	if v["valid"] != true {
		t.Fatalf("the trace does not verify: %v", v)
	}
	// The answer has every field the API documents, error included (empty when valid).
	for _, k := range []string{"valid", "length", "head", "error"} {
		if _, ok := v[k]; !ok {
			t.Fatalf("verify answer %v lacks %q", v, k)
		}
	}

	// The stream's result event carries the same fields.
	b, _ := json.Marshal(map[string]any{"runner": "echo", "input": "\tlowrisk"})
	req, _ := http.NewRequest("POST", srv.URL+"/v1/sessions/"+sess.ID+"/executions", bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var result struct {
		Flags []apiFlag `json:"flags"`
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for event := ""; sc.Scan(); {
		line := sc.Text()
		if e, ok := strings.CutPrefix(line, "event: "); ok {
			event = e
		} else if d, ok := strings.CutPrefix(line, "data: "); ok && event == "result" {
			if err := json.Unmarshal([]byte(d), &result); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(result.Flags) != 1 {
		t.Fatalf("stream result flags %+v", result.Flags)
	}
	checkFlag(t, "stream result", result.Flags[0], sdkgov.FlagAnomaly, "pre", 1, 2, 1, 8)

	// POST /v1/governance/evaluate shows them too.
	var ev struct {
		Findings []apiFlag `json:"findings"`
	}
	call(t, srv, "POST", "/v1/governance/evaluate", map[string]any{"kind": "code", "text": "a\nb lowrisk"}, http.StatusOK, &ev)
	if len(ev.Findings) != 1 {
		t.Fatalf("evaluate findings %+v", ev.Findings)
	}
	checkFlag(t, "evaluate", ev.Findings[0], sdkgov.FlagAnomaly, "pre", 2, 3, 4, 11)

	// A flag by hand: a location is kept, a bad one refused, a stage or score unknown.
	var rec struct {
		Flags []apiFlag `json:"flags"`
	}
	call(t, srv, "POST", "/v1/governance/flag", map[string]any{"trace_id": res.TraceID, "flag": "unsafe", "severity": 3, "reason": "look here",
		"location": map[string]any{"line": 1, "column": 5, "start": 4, "end": 5}}, http.StatusCreated, &rec)
	if f := rec.Flags[len(rec.Flags)-1]; f.Flag != sdkgov.FlagUnsafe || f.Stage != nil || f.Score != nil || f.Location == nil || *f.Location.Line != 1 || *f.Location.End != 5 {
		b, _ := json.Marshal(f)
		t.Errorf("flag by hand %s", b)
	}
	for _, extra := range []map[string]any{
		{"location": map[string]any{"start": 9, "end": 2}},
		{"location": map[string]any{}},
		{"stage": "pre"},
		{"score": 0.5},
	} {
		body := map[string]any{"trace_id": res.TraceID, "flag": "unsafe", "severity": 3}
		for k, v := range extra {
			body[k] = v
		}
		call(t, srv, "POST", "/v1/governance/flag", body, http.StatusBadRequest, nil)
	}
	call(t, srv, "GET", "/v1/traces/"+res.TraceID, nil, http.StatusOK, &tr)
	if len(tr.Flags) != 3 {
		t.Errorf("trace has %d flags after refused ones, want 3", len(tr.Flags))
	}
}
