package api

import (
	"encoding/base64"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/limitgraph/limit/host/session"
)

// TestClientInputEchoBounded: an id or page token a client sends is quoted in an error's
// detail by its first 80 bytes at most (a path of 300,000 escapes was answered with a
// 3.3 MB body quoting it twice), and a problem's instance is the path as the client
// escaped it, a valid URI reference (it was the decoded path, control characters and
// all), left out when it is longer than 1 KiB.
func TestClientInputEchoBounded(t *testing.T) {
	srv, _, sessions, _ := mergeServer(t)
	s, err := sessions.Create(t.Context(), session.CreateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	get := func(target string) (int, map[string]any, int) {
		t.Helper()
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, httptest.NewRequest("GET", target, nil))
		var p map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
			t.Fatalf("GET %.100s: %v %s", target, err, rec.Body)
		}
		return rec.Code, p, rec.Body.Len()
	}
	forged := func(listing string) string {
		return base64.RawURLEncoding.EncodeToString(append(listingTag(listing), "t1:"+strings.Repeat("A", 100_000)...))
	}
	for _, c := range []struct {
		target   string
		status   int
		instance string
	}{
		{"/v1/sessions/" + strings.Repeat("%01", 300_000), 404, ""},
		{"/v1/traces/" + strings.Repeat("x", 100_000), 404, ""},
		{"/v1/sessions/AB%00CD", 404, "/v1/sessions/AB%00CD"},
		{"/v1/sessions/%2F..%2F..%2Fetc", 404, "/v1/sessions/%2F..%2F..%2Fetc"},
		{"/v1/sessions?next_token=" + forged("sessions"), 400, "/v1/sessions"},
		{"/v1/sessions/" + s.ID + "/traces?next_token=" + forged("traces/"+s.ID), 400, "/v1/sessions/" + s.ID + "/traces"},
	} {
		code, p, size := get(c.target)
		detail, _ := p["detail"].(string)
		inst, _ := p["instance"].(string)
		if code != c.status || size > 2000 || inst != c.instance || strings.Contains(detail, "\x00") {
			t.Errorf("GET %.60s…: %d, %d bytes, instance %q, detail %.300q; want %d, a short body, instance %q", c.target, code, size, inst, detail, c.status, c.instance)
		}
	}
}
