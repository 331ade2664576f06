package api

import (
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/limitgraph/limit/host/config"
	"github.com/limitgraph/limit/host/plugins"
)

func do(t *testing.T, h http.Handler, method, path string) (*http.Response, map[string]any) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	res := rec.Result()
	var body map[string]any
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		t.Fatalf("%s %s: body is not JSON: %v", method, path, err)
	}
	return res, body
}

func TestHealth(t *testing.T) {
	status := []plugins.Status{{Name: "bolt", Kind: "storage", Version: "0.1.0", PID: 42, Healthy: true}}
	s := New(Options{Version: "1.0.0", Plugins: func() []plugins.Status { return status }})
	for _, path := range []string{"/v1/health", "/health"} {
		res, body := do(t, s, "GET", path)
		if res.StatusCode != 200 || body["status"] != "ok" || body["version"] != "1.0.0" {
			t.Fatalf("%s: %d %v", path, res.StatusCode, body)
		}
		p := body["plugins"].([]any)[0].(map[string]any)
		for k, want := range map[string]any{"name": "bolt", "kind": "storage", "version": "0.1.0", "pid": 42.0, "healthy": true} {
			if p[k] != want {
				t.Errorf("%s: plugins[0].%s = %v, want %v", path, k, p[k], want)
			}
		}
	}
	status[0].Healthy = false
	res, body := do(t, s, "GET", "/v1/health")
	if res.StatusCode != 503 || body["status"] != "degraded" {
		t.Fatalf("unhealthy plugin: %d %v", res.StatusCode, body)
	}
}

func TestProblems(t *testing.T) {
	s := New(Options{})
	res, body := do(t, s, "GET", "/v1/nope")
	if res.StatusCode != 404 || res.Header.Get("Content-Type") != "application/problem+json" || body["status"] != 404.0 || body["title"] != "Not Found" {
		t.Fatalf("404: %d %q %v", res.StatusCode, res.Header.Get("Content-Type"), body)
	}
	res, body = do(t, s, "DELETE", "/v1/health")
	if res.StatusCode != 405 || res.Header.Get("Allow") == "" || body["status"] != 405.0 {
		t.Fatalf("405: %d allow %q %v", res.StatusCode, res.Header.Get("Allow"), body)
	}
}

// TestBearerTokens: with tokens configured, every route but the health check answers 401
// (problem+json, WWW-Authenticate) to a request without one of them, and serves one with.
func TestBearerTokens(t *testing.T) {
	good, other := "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"
	s := New(Options{Version: "1.0.0", Plugins: func() []plugins.Status { return nil },
		Tokens: []config.Token{{Digest: sha256.Sum256([]byte(other))}, {Digest: sha256.Sum256([]byte(good))}}})
	call := func(method, path, auth string) *http.Response {
		t.Helper()
		req := httptest.NewRequest(method, path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		return rec.Result()
	}
	for _, auth := range []string{"", "Bearer", "Bearer ", "Bearer wrong", "Basic " + good, good, "Bearer " + good + "x"} {
		res := call("GET", "/v1/openapi.json", auth)
		var body map[string]any
		_ = json.NewDecoder(res.Body).Decode(&body)
		if res.StatusCode != 401 || res.Header.Get("Content-Type") != "application/problem+json" ||
			res.Header.Get("WWW-Authenticate") != `Bearer realm="limitd"` || res.Header.Get("X-Request-Id") == "" {
			t.Errorf("Authorization %q: %d %v %v", auth, res.StatusCode, res.Header, body)
		}
		if d, _ := body["detail"].(string); strings.Contains(d, good) {
			t.Errorf("the answer quotes a token: %q", d)
		}
	}
	for _, auth := range []string{"Bearer " + good, "bearer " + other, "Bearer  " + good + " "} {
		if res := call("GET", "/v1/openapi.json", auth); res.StatusCode != 200 {
			t.Errorf("Authorization %q: %d", auth, res.StatusCode)
		}
	}
	// Probes need no token; other methods on the health path and other paths do.
	for _, path := range []string{"/health", "/v1/health"} {
		if res := call("GET", path, ""); res.StatusCode != 200 {
			t.Errorf("GET %s without a token: %d", path, res.StatusCode)
		}
	}
	if res := call("GET", "/v1/sessions", ""); res.StatusCode != 401 {
		t.Errorf("GET /v1/sessions without a token: %d", res.StatusCode)
	}
	if res := call("GET", "/v1/health/../sessions", ""); res.StatusCode != 401 {
		t.Errorf("a path that cleans to another route: %d", res.StatusCode)
	}
	// The OpenAPI document says so: a bearer scheme required everywhere but the health check.
	req := httptest.NewRequest("GET", "/v1/openapi.json", nil)
	req.Header.Set("Authorization", "Bearer "+good)
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	var doc struct {
		Security   []map[string]any `json:"security"`
		Components struct {
			SecuritySchemes map[string]map[string]any `json:"securitySchemes"`
		} `json:"components"`
		Paths map[string]map[string]struct {
			Security  *[]any         `json:"security"`
			Responses map[string]any `json:"responses"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Security) != 1 || doc.Components.SecuritySchemes["bearer"]["scheme"] != "bearer" {
		t.Errorf("document security %v, schemes %v", doc.Security, doc.Components.SecuritySchemes)
	}
	if h := doc.Paths["/v1/health"]["get"]; h.Security == nil || len(*h.Security) != 0 {
		t.Errorf("health is not marked open: %+v", h)
	}
	if op := doc.Paths["/v1/openapi.json"]["get"]; op.Responses["401"] == nil {
		t.Errorf("GET /v1/openapi.json does not list 401: %v", op.Responses)
	}
	// Without tokens the API is open, as before.
	if res := call("GET", "/v1/openapi.json", ""); res.StatusCode != 401 {
		t.Fatal("setup")
	}
	if res, _ := do(t, New(Options{}), "GET", "/v1/openapi.json"); res.StatusCode != 200 {
		t.Errorf("no tokens configured: %d", res.StatusCode)
	}
}

// TestMetrics: /metrics (and /v1/metrics) serve the Prometheus text format with requests
// counted by route pattern (never by a path with ids in it) and status, the plugin
// processes from the health status, and their restarts as a counter.
func TestMetrics(t *testing.T) {
	status := []plugins.Status{
		{Name: "bolt", Kind: "storage", PID: 10, Healthy: true, Restarts: 2, Metrics: map[string]float64{"wal_bytes": 4096}},
		{Name: "python", Kind: "runner", PID: 11, Healthy: true, Session: "a"},
		{Name: "python", Kind: "runner", PID: 12, Healthy: false, Session: "b", Restarts: 1},
	}
	restarts := []plugins.RestartCount{
		{Kind: "storage", Name: "bolt", Reason: plugins.RestartCrash, Count: 2},
		{Kind: "runner", Name: "python", Reason: plugins.RestartCrash, Count: 1},
	}
	s := New(Options{Version: "1.0.0", Plugins: func() []plugins.Status { return status }, PluginRestarts: func() []plugins.RestartCount { return restarts }})
	for _, p := range []string{"/v1/health", "/v1/health", "/v1/nope/123", "/health"} {
		do(t, s, "GET", p)
	}
	for _, path := range []string{"/metrics", "/v1/metrics"} {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		body := rec.Body.String()
		if rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/plain") {
			t.Fatalf("%s: %d %q", path, rec.Code, rec.Header().Get("Content-Type"))
		}
		for _, want := range []string{
			`limit_http_requests_total{code="200",route="GET /v1/health"} 2`,
			`limit_http_requests_total{code="200",route="GET /health"} 1`,
			`limit_http_requests_total{code="404",route="unmatched"} 1`,
			`limit_plugin_processes{healthy="true",kind="runner",plugin="python"} 1`,
			`limit_plugin_processes{healthy="false",kind="runner",plugin="python"} 1`,
			"# TYPE limit_plugin_restarts_total counter",
			`limit_plugin_restarts_total{kind="storage",plugin="bolt",reason="crash"} 2`,
			`limit_plugin_restarts_total{kind="runner",plugin="python",reason="crash"} 1`,
			`limit_plugin_backend{figure="wal_bytes",plugin="bolt"} 4096`,
			`limit_http_request_duration_seconds_bucket{route="GET /v1/health",le="+Inf"} 2`,
			"go_goroutines ", "process_resident_memory_bytes ",
		} {
			if !strings.Contains(body, want) {
				t.Errorf("%s lacks %q", path, want)
			}
		}
		if strings.Contains(body, "/v1/nope/123") {
			t.Errorf("%s labels a request by its path", path)
		}
	}
}

// TestRepeatedAuthorizationRefused: a request with two Authorization headers is a 400,
// with tokens configured or not, whatever the headers hold (the first was taken, silently).
func TestRepeatedAuthorizationRefused(t *testing.T) {
	good, other := "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"
	withTokens := New(Options{Version: "1.0.0", Plugins: func() []plugins.Status { return nil },
		Tokens: []config.Token{{Digest: sha256.Sum256([]byte(other))}, {Digest: sha256.Sum256([]byte(good))}}})
	open := New(Options{Version: "1.0.0", Plugins: func() []plugins.Status { return nil }})
	for name, s := range map[string]*Server{"with tokens": withTokens, "without": open} {
		for _, second := range []string{"Bearer " + good, "Bearer wrong"} {
			req := httptest.NewRequest("GET", "/v1/openapi.json", nil)
			req.Header.Add("Authorization", "Bearer "+good)
			req.Header.Add("Authorization", second)
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, req)
			if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "Authorization header is given more than once") {
				t.Errorf("%s, a second Authorization %q: %d %s", name, second, rec.Code, rec.Body)
			}
		}
	}
}
