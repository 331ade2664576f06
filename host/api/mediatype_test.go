package api

import (
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

// TestContentTypesDocumented: the Content-Types the API reads as JSON and those it refuses
// (415) are the ones README's 415 row names, each on its side: text/plain and curl -d's
// application/x-www-form-urlencoded are read as JSON, not refused.
func TestContentTypesDocumented(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var row string
	for _, l := range strings.Split(string(readme), "\n") {
		if strings.HasPrefix(l, "| 415 |") {
			row = l
		}
	}
	accepted, refused, ok := strings.Cut(row, " such as ")
	if !ok {
		t.Fatalf("README's 415 row does not list the accepted types, then the refused ones \"such as\": %q", row)
	}
	for _, c := range []struct {
		ct, named string
		ok        bool
	}{
		{"application/json", "`application/json`", true},
		{"application/problem+json; charset=utf-8", "`application/*+json`", true},
		{"text/plain", "`text/plain`", true},
		{"application/x-www-form-urlencoded", "`application/x-www-form-urlencoded`", true},
		{"", "or none", true},
		{"multipart/form-data; boundary=x", "`multipart/form-data`", false},
		{"application/xml", "`application/xml`", false},
		{"text/html", "`text/html`", false},
	} {
		if got := jsonContentType(c.ct, false); got != c.ok {
			t.Errorf("jsonContentType(%q) = %v, want %v", c.ct, got, c.ok)
		}
		side := refused
		if c.ok {
			side = accepted
		}
		if !strings.Contains(side, c.named) {
			t.Errorf("README's 415 row does not name %s among the types %s: %q", c.named, map[bool]string{true: "read as JSON", false: "refused"}[c.ok], row)
		}
	}
}

// TestBrowserSimpleBodiesRefused: a body a cross-site page can send without a CORS
// preflight (text/plain, a form) is refused with 415 when a browser sends it (Origin or
// Sec-Fetch-Mode), even where api.allowed_hosts = ["*"] lets every Origin through; curl's
// forms without those headers, and JSON from a browser, are read as before.
func TestBrowserSimpleBodiesRefused(t *testing.T) {
	s, _, _, _ := mergeServer(t)
	s.opts.CheckHosts, s.opts.AllowedHosts = true, []string{"*"}
	const body = `{"points":[[0,1],[1,0.2],[2,0.1],[3,0.05]]}`
	for _, c := range []struct {
		ct, header, value string
		want              int
	}{
		{"text/plain;charset=UTF-8", "Origin", "https://evil.example", 415},
		{"application/x-www-form-urlencoded", "Origin", "https://evil.example", 415},
		{"text/plain", "Sec-Fetch-Mode", "no-cors", 415},
		{"application/json", "Origin", "https://limit.example.com", 200},
		{"", "Origin", "https://limit.example.com", 200},
		{"text/plain", "", "", 200},
		{"application/x-www-form-urlencoded", "", "", 200},
	} {
		r := httptest.NewRequest("POST", "/v1/rd/knee", strings.NewReader(body))
		r.Host = "limit.example.com"
		if c.ct != "" {
			r.Header.Set("Content-Type", c.ct)
		}
		if c.header != "" {
			r.Header.Set(c.header, c.value)
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, r)
		if rec.Code != c.want {
			t.Errorf("Content-Type %q, %s %q: status %d, want %d (%s)", c.ct, c.header, c.value, rec.Code, c.want, rec.Body)
			continue
		}
		if c.want == 415 && !strings.Contains(rec.Body.String(), "from a browser") {
			t.Errorf("Content-Type %q, %s %q: detail does not say why: %s", c.ct, c.header, c.value, rec.Body)
		}
	}
}
