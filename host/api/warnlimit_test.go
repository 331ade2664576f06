package api

import (
	"bufio"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/limitgraph/limit/host/config"
	"github.com/limitgraph/limit/host/plugins"
	"github.com/limitgraph/limit/internal/syncbuf"
)

// TestRefusedLinesAreBounded: a client sending requests without a token as fast as it can
// gets refusedLogBurst warn lines, not one per request; once the rate has refilled, the
// next line says how many were held back; every request is still answered 401 and counted.
func TestRefusedLinesAreBounded(t *testing.T) {
	var logged syncbuf.Buffer
	logger := hclog.New(&hclog.LoggerOptions{Output: &logged, JSONFormat: true})
	s := New(Options{Version: "1.0.0", Plugins: func() []plugins.Status { return nil }, Logger: logger,
		Tokens: []config.Token{{Digest: sha256.Sum256([]byte("0123456789abcdef0123456789abcdef"))}}})
	now := time.Unix(1_700_000_000, 0)
	s.refused.now = func() time.Time { return now }
	const sent = 500
	for range sent {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/sessions", nil))
		if rec.Code != 401 {
			t.Fatalf("answer %d, want 401", rec.Code)
		}
	}
	lines := func() []map[string]any {
		var out []map[string]any
		sc := bufio.NewScanner(strings.NewReader(logged.String()))
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Fatalf("log line %q: %v", sc.Text(), err)
			}
			if m["@message"] == "API request without a valid token" {
				out = append(out, m)
			}
		}
		return out
	}
	if got := lines(); len(got) != refusedLogBurst {
		t.Fatalf("%d requests refused at once wrote %d warn lines, want %d", sent, len(got), refusedLogBurst)
	}
	// A second later the rate allows refusedLogRate more lines; the first says how many
	// were held back.
	now = now.Add(time.Second)
	for range 3 {
		s.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/v1/sessions", nil))
	}
	got := lines()
	if len(got) != refusedLogBurst+refusedLogRate {
		t.Fatalf("after a second: %d warn lines, want %d", len(got), refusedLogBurst+refusedLogRate)
	}
	if n := got[refusedLogBurst]["suppressed"]; n != float64(sent-refusedLogBurst) {
		t.Errorf("the first line after the burst says suppressed=%v, want %d", n, sent-refusedLogBurst)
	}
	if _, ok := got[refusedLogBurst+1]["suppressed"]; ok {
		t.Errorf("the next line says suppressed again: %v", got[refusedLogBurst+1])
	}
	if _, ok := got[0]["request_id"]; !ok {
		t.Errorf("a refusal line without its request id: %v", got[0])
	}
	rec := httptest.NewRecorder()
	s.metrics.handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if want := fmt.Sprintf(`limit_http_requests_total{code="401",route="refused"} %d`, sent+3); !strings.Contains(rec.Body.String(), want) {
		t.Errorf("metrics lack %q", want)
	}
}
