package api

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/limitgraph/limit/host/config"
	"github.com/limitgraph/limit/host/plugins"
	"github.com/limitgraph/limit/host/session"
	"github.com/limitgraph/limit/internal/downstore"
	"github.com/limitgraph/limit/sdk/base"
	sdkgov "github.com/limitgraph/limit/sdk/governance"
	"github.com/limitgraph/limit/sdk/storage/memstore"
)

// scrape gets h's /metrics as an operator and parses it with the Prometheus text parser,
// failing the test on a page it does not take or that promlint finds fault with.
func scrape(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", rec.Code, rec.Body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(rec.Body.String()))
	if err != nil {
		t.Fatalf("GET /metrics is not Prometheus text: %v", err)
	}
	problems, err := promlint.New(strings.NewReader(rec.Body.String())).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	return fams
}

// sample returns the value of the series of family name whose labels include labels
// (name=value pairs), and whether there is one: a counter's or gauge's value, a
// histogram's sample count.
func sample(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), true
		}
	}
	return 0, false
}

// journalledAPI serves a plugin API on a storage that can be taken down, with a journal
// of pending outcomes.
func journalledAPI(t *testing.T) (*downstore.Store, pluginAPI, *httptest.Server) {
	t.Helper()
	st := &downstore.Store{Storage: memstore.New()}
	a := newPluginAPI(t, st)
	a.srv.opts.Engine.JournalDir = t.TempDir()
	srv := httptest.NewServer(a.srv)
	t.Cleanup(srv.Close)
	return st, a, srv
}

// TestMetricsCountUnrecordedExecutions: an execution that ran but whose trace the storage
// did not take (answered record_pending) counts in limit_executions_total by its status
// and in the duration histogram like one recorded, and in
// limit_execution_records_failed_total: after 2 recorded runs and 3 pending, the metrics
// said status="ok" 2.
func TestMetricsCountUnrecordedExecutions(t *testing.T) {
	st, a, srv := journalledAPI(t)
	var sess session.Session
	call(t, srv, "POST", "/v1/sessions", map[string]any{"name": "m"}, http.StatusCreated, &sess)
	run := map[string]any{"runner": "echo", "input": "hello"}
	for range 2 {
		call(t, srv, "POST", "/v1/sessions/"+sess.ID+"/executions", run, http.StatusOK, nil)
	}
	st.Down.Store(true)
	for range 3 {
		call(t, srv, "POST", "/v1/sessions/"+sess.ID+"/executions", run, http.StatusServiceUnavailable, nil)
	}
	fams := scrape(t, a.srv)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"limit_executions_total", []string{"runner", "echo", "status", "ok"}, 5},
		{"limit_execution_duration_seconds", []string{"runner", "echo"}, 5},
		{"limit_execution_records_failed_total", []string{"outcome", "pending"}, 3},
	} {
		if got, _ := sample(fams, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

// TestMetricsCountEveryFlagOfBlocked: a blocked execution counts every flag the rules
// raised on its input in limit_governance_flags_total, as GET /v1/governance/stats does,
// not only those that blocked it (the anomaly beside the blocking jailbreak was missing).
func TestMetricsCountEveryFlagOfBlocked(t *testing.T) {
	a := newPluginAPI(t, memstore.New())
	srv := httptest.NewServer(a.srv)
	t.Cleanup(srv.Close)
	var sess session.Session
	call(t, srv, "POST", "/v1/sessions", map[string]any{"name": "b"}, http.StatusCreated, &sess)
	call(t, srv, "POST", "/v1/sessions/"+sess.ID+"/executions", map[string]any{"runner": "echo", "input": "forbidden lowrisk"}, http.StatusForbidden, nil)
	fams := scrape(t, a.srv)
	if got, _ := sample(fams, "limit_executions_total", "status", "blocked"); got != 1 {
		t.Errorf("blocked executions %v, want 1", got)
	}
	for _, flag := range []string{"jailbreak", "anomaly"} {
		if got, _ := sample(fams, "limit_governance_flags_total", "flag", flag); got != 1 {
			t.Errorf("limit_governance_flags_total{flag=%q} = %v, want 1", flag, got)
		}
	}
}

// TestMetricsLint: /metrics passes promlint (names, units, counters ending _total, help
// texts), with every kind of series present: a storage plugin's figures (a counter and a
// gauge among them), a plugin being restarted (no process), requests.
func TestMetricsLint(t *testing.T) {
	status := []plugins.Status{
		{Name: "bolt", Kind: "storage", PID: 10, Healthy: true, Metrics: map[string]float64{
			"log_pending_bytes": 4096, "checkpoints_total": 7, "last_checkpoint_seconds": 0.25,
		}},
		{Name: "keyword", Kind: "governance", LastError: "plugin process exited"}, // being restarted
		{Name: "python", Kind: "runner", PID: 12, Healthy: false, Session: "a"},
	}
	s := New(Options{Version: "1.0.0", Plugins: func() []plugins.Status { return status },
		PluginRestarts: func() []plugins.RestartCount {
			return []plugins.RestartCount{{Kind: "governance", Name: "keyword", Reason: plugins.RestartCrash, Count: 3}}
		}})
	do(t, s, "GET", "/v1/health")
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	problems, err := promlint.New(strings.NewReader(rec.Body.String())).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	fams := scrape(t, s)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"limit_plugin_backend", []string{"plugin", "bolt", "figure", "log_pending_bytes"}, 4096},
		{"limit_plugin_backend", []string{"plugin", "bolt", "figure", "last_checkpoint_seconds"}, 0.25},
		{"limit_plugin_backend_total", []string{"plugin", "bolt", "figure", "checkpoints"}, 7},
		// A plugin being restarted has no process, healthy or not.
		{"limit_plugin_processes", []string{"plugin", "keyword", "healthy", "false"}, 0},
		{"limit_plugin_processes", []string{"plugin", "keyword", "healthy", "true"}, 0},
		{"limit_plugin_processes", []string{"plugin", "python", "healthy", "false"}, 1},
	} {
		if got, ok := sample(fams, c.name, c.labels...); !ok || got != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	if f := fams["limit_plugin_backend_total"]; f == nil || f.GetType() != dto.MetricType_COUNTER {
		t.Errorf("limit_plugin_backend_total is not a counter: %v", f)
	}
	if _, ok := sample(fams, "limit_plugin_backend", "figure", "checkpoints_total"); ok {
		t.Error("a counter figure is exposed as a gauge")
	}
	if h := fams["limit_http_requests_total"].GetHelp(); strings.Contains(h, "method") && !strings.Contains(h, "method and path") {
		t.Errorf("limit_http_requests_total's help names a method label it does not have: %q", h)
	}
}

// TestMetricsOnCall: the figures an on-call needs are counted: merges by outcome (allowed,
// refused, withdrawn), flags by the rule that raised them, a rule's failed calls (an
// execution refused under a policy that fails closed, by reason), the outcomes waiting
// in the journal, executions refused for being busy (max_concurrency, max_processes),
// and the host's version.
func TestMetricsOnCall(t *testing.T) {
	st, a, srv := journalledAPI(t)
	var sess session.Session
	call(t, srv, "POST", "/v1/sessions", map[string]any{"name": "oncall"}, http.StatusCreated, &sess)
	execs := "/v1/sessions/" + sess.ID + "/executions"
	var ok, blocked struct {
		TraceID string `json:"trace_id"`
	}
	call(t, srv, "POST", execs, map[string]any{"runner": "echo", "input": "lowrisk"}, http.StatusOK, &ok)
	call(t, srv, "POST", execs, map[string]any{"runner": "echo", "input": "forbidden"}, http.StatusForbidden, &blocked)
	// The rule fails; the default policy fails closed.
	call(t, srv, "POST", execs, map[string]any{"runner": "echo", "input": "rulefault"}, http.StatusServiceUnavailable, nil)
	call(t, srv, "POST", "/v1/traces/"+ok.TraceID+"/merge", map[string]any{}, http.StatusOK, nil)
	call(t, srv, "POST", "/v1/traces/"+blocked.TraceID+"/merge", map[string]any{}, http.StatusConflict, nil)
	call(t, srv, "POST", "/v1/governance/flag", map[string]any{"trace_id": ok.TraceID, "flag": "unsafe", "severity": 4, "reason": "found later"}, http.StatusCreated, nil)
	// Refusals for being busy come from the session's slots and the runner's processes.
	a.srv.metrics.execution("echo", nil, fmt.Errorf("wait for a slot: %w", session.ErrBusy))
	a.srv.metrics.execution("echo", nil, &plugins.RunnerBusyError{Runner: "echo", Max: 1})
	// One outcome waits in the journal.
	st.Down.Store(true)
	call(t, srv, "POST", execs, map[string]any{"runner": "echo", "input": "hello"}, http.StatusServiceUnavailable, nil)

	fams := scrape(t, a.srv)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"limit_merges_total", []string{"outcome", "allowed"}, 1},
		{"limit_merges_total", []string{"outcome", "refused"}, 1},
		{"limit_merges_total", []string{"outcome", "withdrawn"}, 1},
		{"limit_governance_rule_flags_total", []string{"rule", "keyword"}, 2},
		{"limit_governance_rule_errors_total", []string{"rule", "keyword"}, 1},
		{"limit_executions_refused_total", []string{"reason", "governance_unavailable"}, 1},
		{"limit_executions_refused_total", []string{"reason", "max_concurrency"}, 1},
		{"limit_executions_refused_total", []string{"reason", "max_processes"}, 1},
		{"limit_execution_pending_outcomes", nil, 1},
	} {
		if got, ok := sample(fams, c.name, c.labels...); !ok || got != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	info := scrape(t, New(Options{Version: "1.2.3"}))
	if got, ok := sample(info, "limit_build_info", "version", "1.2.3"); !ok || got != 1 {
		t.Errorf("limit_build_info{version=\"1.2.3\"} = %v (present %v), want 1", got, ok)
	}
}

// downRule is a test rule that cannot answer: every evaluation fails, as a rule plugin
// that is down does for the host.
type downRule struct{}

func (downRule) PluginInfo() base.Info {
	return base.Info{Name: "down", Kind: base.KindGovernance, Version: "0.0.1"}
}

func (downRule) ConfigSchema() base.Schema { return base.Schema{} }

func (downRule) Configure(context.Context, base.ConfigureRequest) base.Diagnostics { return nil }

func (downRule) Describe(context.Context) ([]sdkgov.RuleDescription, error) {
	return []sdkgov.RuleDescription{{ID: "down", Flags: []string{sdkgov.FlagAnomaly}, Stages: []sdkgov.Stage{sdkgov.StagePre}}}, nil
}

func (downRule) Evaluate(context.Context, sdkgov.EvaluateRequest) ([]sdkgov.Finding, error) {
	return nil, errors.New("rule down")
}

// TestMetricsCountRefusedExecutionFlags: an execution refused because a rule could not
// answer (the default policy fails closed) still has the flags the other rules raised on
// it, in its trace and governance counts; the flag metrics count them too, as a blocked
// execution's.
func TestMetricsCountRefusedExecutionFlags(t *testing.T) {
	a := newPluginAPIRules(t, memstore.New(), hclog.NewNullLogger(), "keyword", "down")
	srv := httptest.NewServer(a.srv)
	t.Cleanup(srv.Close)
	var sess session.Session
	call(t, srv, "POST", "/v1/sessions", map[string]any{"name": "refused"}, http.StatusCreated, &sess)
	// keyword raises jailbreak and anomaly; down fails.
	call(t, srv, "POST", "/v1/sessions/"+sess.ID+"/executions", map[string]any{"runner": "echo", "input": "forbidden lowrisk"}, http.StatusServiceUnavailable, nil)
	var stats statsResponse
	call(t, srv, "GET", "/v1/governance/stats?session_id="+sess.ID, nil, http.StatusOK, &stats)
	fams := scrape(t, a.srv)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"limit_executions_refused_total", []string{"reason", "governance_unavailable"}, 1},
		{"limit_governance_rule_errors_total", []string{"rule", "down"}, 1},
		{"limit_governance_flags_total", []string{"flag", "jailbreak"}, 1},
		{"limit_governance_flags_total", []string{"flag", "anomaly"}, 1},
		{"limit_governance_rule_flags_total", []string{"rule", "keyword"}, 2},
	} {
		if got, ok := sample(fams, c.name, c.labels...); !ok || got != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	// As the governance counts have them.
	if by := stats.Overall.ByFlag; by["jailbreak"] != 1 || by["anomaly"] != 1 {
		t.Errorf("governance stats by flag %v, want jailbreak and anomaly once", by)
	}
}

// TestMetricsToken: a token of api.token_file's metrics role reads GET /metrics (and
// /v1/metrics) and the health check, and nothing else: no listing, no session made or
// deleted, no code run, whatever the route. A user's token still gets 403 on /metrics,
// and a request without a token 401.
func TestMetricsToken(t *testing.T) {
	op, user, scraper := strings.Repeat("o", 32), strings.Repeat("u", 32), strings.Repeat("m", 32)
	a := newPluginAPI(t, memstore.New())
	s := New(Options{Sessions: a.sessions, Engine: a.srv.opts.Engine, Traces: a.traces, Rules: a.srv.opts.Rules, Stats: a.stats, Store: a.srv.opts.Store,
		Tokens: []config.Token{{Digest: sha256.Sum256([]byte(op))}, {Digest: sha256.Sum256([]byte(user)), User: "alice"}, {Digest: sha256.Sum256([]byte(scraper)), Metrics: true}}})
	sess, err := a.sessions.Create(context.Background(), session.CreateRequest{Runners: []string{"echo"}})
	if err != nil {
		t.Fatal(err)
	}
	send := func(token, method, path, body string) int {
		t.Helper()
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		s.ServeHTTP(rec, req)
		return rec.Code
	}
	for _, c := range []struct {
		token, method, path, body string
		want                      int
	}{
		{scraper, "GET", "/metrics", "", http.StatusOK},
		{scraper, "GET", "/v1/metrics", "", http.StatusOK},
		{scraper, "HEAD", "/metrics", "", http.StatusOK},
		{scraper, "GET", "/v1/health", "", http.StatusOK},
		{scraper, "GET", "/v1/sessions", "", http.StatusForbidden},
		{scraper, "GET", "/v1/sessions/" + sess.ID, "", http.StatusForbidden},
		{scraper, "POST", "/v1/sessions", `{}`, http.StatusForbidden},
		{scraper, "POST", "/v1/sessions/" + sess.ID + "/executions", `{"runner":"echo","input":"x"}`, http.StatusForbidden},
		{scraper, "DELETE", "/v1/sessions/" + sess.ID, "", http.StatusForbidden},
		{scraper, "GET", "/v1/merged", "", http.StatusForbidden},
		{scraper, "GET", "/v1/openapi.json", "", http.StatusForbidden},
		{user, "GET", "/metrics", "", http.StatusForbidden},
		{"", "GET", "/metrics", "", http.StatusUnauthorized},
		{op, "GET", "/metrics", "", http.StatusOK},
	} {
		if got := send(c.token, c.method, c.path, c.body); got != c.want {
			t.Errorf("%s %s with token %.1s…: %d, want %d", c.method, c.path, c.token, got, c.want)
		}
	}
	if got, err := a.sessions.Get(context.Background(), sess.ID); err != nil || !got.DeletedAt.IsZero() {
		t.Errorf("the session after a metrics token's requests: %+v %v", got, err)
	}
}
