package api

import (
	"crypto/sha256"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/limitgraph/limit/host/config"
	"github.com/limitgraph/limit/host/plugins"
)

// TestProbes: /v1/health/live answers 200 while the host serves, a plugin down or a
// shutdown begun; /v1/health/ready answers 503 only when executions cannot be served (the
// storage down, a rule down under a policy that fails closed, a shutdown), not for a rule
// down under permissive nor a session's runner process; both without a token, whatever
// query a probe adds. /v1/health keeps its 503 for any host plugin down.
func TestProbes(t *testing.T) {
	status := []plugins.Status{
		{Name: "bolt", Kind: "storage", Healthy: true},
		{Name: "jailbreak", Kind: "governance", Healthy: true},
		{Name: "python", Kind: "runner", Session: "S1", Healthy: true},
	}
	tok := strings.Repeat("t", 32)
	newServer := func(policy string) *Server {
		return New(Options{Version: "1", DefaultPolicy: policy, Plugins: func() []plugins.Status { return status },
			Tokens: []config.Token{{Digest: sha256.Sum256([]byte(tok))}}})
	}
	get := func(s *Server, path string) (int, probeResponse) {
		t.Helper()
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		var body probeResponse
		_ = json.Unmarshal(rec.Body.Bytes(), &body)
		return rec.Code, body
	}
	type want struct{ health, live, ready int }
	for _, tc := range []struct {
		name    string
		policy  string
		down    int // index in status, -1 for none
		want    want
		because string
	}{
		{"all up", "default", -1, want{200, 200, 200}, ""},
		{"rule down, default", "default", 1, want{503, 200, 503}, "governance.jailbreak is unavailable"},
		{"rule down, strict", "strict", 1, want{503, 200, 503}, "governance.jailbreak is unavailable"},
		{"rule down, permissive", "permissive", 1, want{503, 200, 200}, ""},
		{"storage down, permissive", "permissive", 0, want{503, 200, 503}, "storage.bolt is unavailable"},
		{"a session's runner down", "default", 2, want{200, 200, 200}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i := range status {
				status[i].Healthy = i != tc.down
			}
			s := newServer(tc.policy)
			if code, _ := get(s, "/v1/health"); code != tc.want.health {
				t.Errorf("health %d, want %d", code, tc.want.health)
			}
			if code, body := get(s, "/v1/health/live?probe=1"); code != tc.want.live || body.Status != "ok" {
				t.Errorf("live %d %+v, want %d", code, body, tc.want.live)
			}
			code, body := get(s, "/v1/health/ready?probe=1")
			if code != tc.want.ready {
				t.Errorf("ready %d %+v, want %d", code, body, tc.want.ready)
			}
			if tc.because != "" && (len(body.Reasons) != 1 || !strings.Contains(body.Reasons[0], tc.because) || body.Status != "unavailable") {
				t.Errorf("ready %+v, want the reason %q", body, tc.because)
			}
		})
	}
	for i := range status {
		status[i].Healthy = true
	}
	s := newServer("default")
	s.Stop()
	if code, _ := get(s, "/v1/health/live"); code != 200 {
		t.Errorf("live while shutting down: %d", code)
	}
	if code, _ := get(s, "/v1/health/ready"); code != 503 {
		t.Errorf("ready while shutting down: %d", code)
	}
	if code, _ := get(s, "/v1/health"); code != 503 {
		t.Errorf("health while shutting down: %d", code)
	}
	// The seed's unversioned paths answer the same.
	if code, _ := get(newServer("default"), "/health/ready"); code != 200 {
		t.Errorf("unversioned /health/ready without a token: %d, want 200", code)
	}
	if code, _ := get(newServer("default"), "/health/other"); code != 401 {
		t.Errorf("another path under /health without a token: %d, want 401", code)
	}
}

// TestHealthGenericLastError: without an operator's token a plugin's last_error is a
// generic text, which does not say a start failed when its process crashed.
func TestHealthGenericLastError(t *testing.T) {
	status := []plugins.Status{{Name: "bolt", Kind: "storage", Healthy: false, LastError: "plugin process exited", LastErrorAt: "2026-01-01T00:00:00Z"}}
	s := New(Options{Plugins: func() []plugins.Status { return status },
		Tokens: []config.Token{{Digest: sha256.Sum256([]byte(strings.Repeat("t", 32)))}}})
	_, body := do(t, s, "GET", "/v1/health")
	p := body["plugins"].([]any)[0].(map[string]any)
	got, _ := p["last_error"].(string)
	if strings.Contains(got, "start failed;") || strings.Contains(got, "exited") || !strings.Contains(got, "operator's token") || p["last_error_at"] != "2026-01-01T00:00:00Z" {
		t.Fatalf("last_error %q at %v", got, p["last_error_at"])
	}
}
