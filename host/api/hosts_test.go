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
		// An IP address is fine in Host, not in Origin: any site may serve its pages
		// from one. Loopback pages, the API's own origin and allowed names pass.
		{"127.0.0.1:8080", "http://203.0.113.9", 403},
		{"127.0.0.1:8080", "https://203.0.113.9:8443", 403},
		{"127.0.0.1:8080", "http://[2001:db8::1]", 403},
		{"10.1.2.3:8080", "http://10.1.2.3:3000", 403}, // the same address, another port
		{"10.1.2.3:8080", "http://10.1.2.3:8080", 200}, // the API's own origin
		{"10.1.2.3", "http://10.1.2.3:80", 200},
		{"10.1.2.3:443", "https://10.1.2.3", 200},
		{"127.0.0.1:8080", "http://127.0.0.2:3000", 200},
		{"127.0.0.1:8080", "http://[::1]:3000", 200},
		{"127.0.0.1:8080", "http://app.localhost:3000", 200},
		{"127.0.0.1:8080", "https://x.corp.example", 200},
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
	// A POST a page may send without a preflight (text/plain, a form) is refused before
	// it runs, whether the page's site has a name or an IP address.
	for _, origin := range []string{"https://evil.example", "http://203.0.113.9"} {
		for _, ct := range []string{"text/plain;charset=UTF-8", "application/x-www-form-urlencoded"} {
			for _, path := range []string{"/v1/sessions", "/v1/rd/fgw"} {
				r := httptest.NewRequest("POST", path, strings.NewReader(`{"name":"x"}`))
				r.Host = "127.0.0.1:8080"
				r.Header.Set("Content-Type", ct)
				r.Header.Set("Origin", origin)
				rec := httptest.NewRecorder()
				s.ServeHTTP(rec, r)
				if rec.Code != http.StatusForbidden {
					t.Errorf("a cross-site %s POST %s from %s: %d", ct, path, origin, rec.Code)
				}
			}
		}
	}
	// Without CheckHosts (a library user's choice) nothing is refused for its host.
	open := New(Options{})
	r := httptest.NewRequest("GET", "/v1/health", nil)
	r.Host = "attacker.example"
	rec := httptest.NewRecorder()
	open.ServeHTTP(rec, r)
	if rec.Code == http.StatusForbidden {
		t.Fatalf("without CheckHosts: %d", rec.Code)
	}
}
