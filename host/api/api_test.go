package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

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
