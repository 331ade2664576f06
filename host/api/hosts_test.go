package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestForeignHostsRefused: with CheckHosts (as the daemon runs it), a request naming a
// host other than an IP address, localhost or an allowed name is refused with 403 (a
// page's own name rebound to 127.0.0.1), and so is one a browser sends from a page of
// another site (its Origin), before anything runs; clients that are not browsers, naming
// the address they dial, are served.
func TestForeignHostsRefused(t *testing.T) {
	s := New(Options{CheckHosts: true, AllowedHosts: []string{"limit.example.com", "*.corp.example"}})
	for _, tc := range []struct {
		host, origin string
		want         int
	}{
		{"127.0.0.1:8080", "", 200},
		{"localhost:8080", "", 200},
		{"[::1]:8080", "", 200},
		{"10.1.2.3:8080", "", 200},
		{"LIMIT.example.com", "", 200},
		{"api.corp.example:443", "", 200},
		{"127.0.0.1:8080", "http://localhost:3000", 200},
		{"127.0.0.1:8080", "https://limit.example.com", 200},
		{"attacker.example:8080", "", 403},              // DNS rebinding: the page's own name
		{"corp.example", "", 403},                       // *.corp.example is subdomains only
		{"127.0.0.1:8080", "https://evil.example", 403}, // a cross-site page
		{"127.0.0.1:8080", "null", 403},                 // a sandboxed frame or a file
		{"", "", 403},
	} {
		r := httptest.NewRequest("GET", "/v1/health", nil)
		r.Host = tc.host
		if tc.origin != "" {
			r.Header.Set("Origin", tc.origin)
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, r)
		if got := rec.Code; (got == 403) != (tc.want == 403) {
			t.Errorf("Host %q Origin %q: status %d, want %d (%s)", tc.host, tc.origin, got, tc.want, rec.Body)
			continue
		}
		if tc.want == 403 {
			var p map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || !strings.Contains(p["detail"].(string), "api.allowed_hosts") {
				t.Errorf("Host %q Origin %q: problem %s", tc.host, tc.origin, rec.Body)
			}
		}
	}
	// A POST a page may send without a preflight (text/plain) is refused before it runs.
	r := httptest.NewRequest("POST", "/v1/sessions", strings.NewReader(`{"name":"x"}`))
	r.Host = "127.0.0.1:8080"
	r.Header.Set("Content-Type", "text/plain")
	r.Header.Set("Origin", "https://evil.example")
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, r)
	if rec.Code != http.StatusForbidden {
		t.Fatalf("a cross-site text/plain POST: %d", rec.Code)
	}
	// Without CheckHosts (a library user's choice) nothing is refused for its host.
	open := New(Options{})
	r = httptest.NewRequest("GET", "/v1/health", nil)
	r.Host = "attacker.example"
	rec = httptest.NewRecorder()
	open.ServeHTTP(rec, r)
	if rec.Code == http.StatusForbidden {
		t.Fatalf("without CheckHosts: %d", rec.Code)
	}
}
