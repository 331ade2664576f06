package api

import (
	"crypto/sha256"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/limitgraph/limit/host/config"
)

// hostRequestID reports whether id is one the host made (newRequestID).
func hostRequestID(id string) bool { return regexp.MustCompile(`^[0-9a-f]{24}$`).MatchString(id) }

// TestRequestIDIsTheHosts: a request's id is always the host's own, whatever X-Request-Id
// the client sent, so one user cannot put its lines in the log under another's id; the
// client's is logged beside it as client_request_id, cut to 128 bytes, every byte outside
// printable ASCII replaced, and refused requests are logged the same way.
func TestRequestIDIsTheHosts(t *testing.T) {
	var logs strings.Builder
	s := New(Options{Logger: hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Debug, JSONFormat: true}), Tokens: []config.Token{
		{Digest: sha256.Sum256([]byte(tokOperator))}, {Digest: sha256.Sum256([]byte(tokAlice)), User: "alice"},
	}})
	send := func(tok, clientID string) string {
		t.Helper()
		logs.Reset()
		req := httptest.NewRequest("GET", "/v1/openapi.json", nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		if clientID != "" {
			req.Header.Set(requestIDHeader, clientID)
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		id := rec.Header().Get(requestIDHeader)
		if !hostRequestID(id) {
			t.Fatalf("X-Request-Id %q, want one of the host's", id)
		}
		if !strings.Contains(logs.String(), `"request_id":"`+id+`"`) {
			t.Fatalf("log %s, want request_id %s", logs.String(), id)
		}
		return id
	}
	// The operator's request, then alice's reusing its id: two ids.
	first := send(tokOperator, "")
	if second := send(tokAlice, first); second == first {
		t.Fatalf("alice's request took the id %s the client sent", first)
	}
	if !strings.Contains(logs.String(), `"client_request_id":"`+first+`"`) {
		t.Fatalf("log %s, want the client's id as client_request_id", logs.String())
	}
	// Bounded and sanitised: no newline, quote breaking out, nor a byte beyond ASCII.
	long := "a\nb c\x7fé" + strings.Repeat("x", 200)
	send(tokAlice, long)
	want := "a?b?c???" + strings.Repeat("x", 120)
	if !strings.Contains(logs.String(), `"client_request_id":"`+want+`"`) || strings.Contains(logs.String(), strings.Repeat("x", 121)) {
		t.Fatalf("log %s, want client_request_id %q", logs.String(), want)
	}
	// A request refused for want of a token is logged with both too.
	send("", "probe-1")
	if !strings.Contains(logs.String(), "API request without a valid token") || !strings.Contains(logs.String(), `"client_request_id":"probe-1"`) {
		t.Fatalf("log of a refused request %s", logs.String())
	}
}
