package api

import (
	"bufio"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/limitgraph/limit/sdk/storage/memstore"
)

// lockedBuffer is a log's output, read while the server may write.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// take returns the JSON lines written since the last take.
func (l *lockedBuffer) take(t *testing.T) []map[string]any {
	t.Helper()
	l.mu.Lock()
	text := l.b.String()
	l.b.Reset()
	l.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

// TestAccessLog: at INFO every request has one line (method, route pattern, status,
// duration, bytes, request_id, principal; never the query string or the body), the health
// check's and the metrics' only at DEBUG, and every execution one line of its outcome
// (blocked, ok) carrying the request's id, as every line of the engine about it.
func TestAccessLog(t *testing.T) {
	var out lockedBuffer
	logger := hclog.New(&hclog.LoggerOptions{Output: &out, Level: hclog.Info, JSONFormat: true})
	a := newPluginAPILogged(t, memstore.New(), logger)
	send := func(method, path, body string) (int, string, []map[string]any) {
		t.Helper()
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		rec := httptest.NewRecorder()
		a.srv.ServeHTTP(rec, req)
		return rec.Code, rec.Header().Get(requestIDHeader), out.take(t)
	}
	requestLines := func(lines []map[string]any) []map[string]any {
		var rs []map[string]any
		for _, l := range lines {
			if l["@message"] == "request" {
				rs = append(rs, l)
			}
		}
		return rs
	}

	code, id, lines := send("POST", "/v1/sessions", `{"runners":["echo"]}`)
	if code != 201 {
		t.Fatalf("create: %d", code)
	}
	rs := requestLines(lines)
	if len(rs) != 1 {
		t.Fatalf("lines of one request: %v", lines)
	}
	l := rs[0]
	for k, want := range map[string]any{"@level": "info", "method": "POST", "route": "POST /v1/sessions", "status": 201.0, "request_id": id, "principal": "operator"} {
		if l[k] != want {
			t.Errorf("request line %s = %v, want %v (%v)", k, l[k], want, l)
		}
	}
	if b, _ := l["bytes"].(float64); b <= 0 {
		t.Errorf("request line bytes = %v", l["bytes"])
	}
	if _, ok := l["duration"]; !ok {
		t.Errorf("request line has no duration: %v", l)
	}
	sid := ""
	{
		req := httptest.NewRequest("GET", "/v1/sessions?per_page=1", nil)
		rec := httptest.NewRecorder()
		a.srv.ServeHTTP(rec, req)
		var list struct {
			Sessions []struct {
				ID string `json:"id"`
			} `json:"sessions"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil || len(list.Sessions) != 1 {
			t.Fatalf("list: %s %v", rec.Body, err)
		}
		sid = list.Sessions[0].ID
		lines := out.take(t)
		if len(requestLines(lines)) != 1 || strings.Contains(lines[0]["route"].(string), "per_page") {
			t.Fatalf("list lines: %v", lines)
		}
		for _, ln := range lines {
			b, _ := json.Marshal(ln)
			if strings.Contains(string(b), "per_page") {
				t.Fatalf("the query string is logged: %s", b)
			}
		}
	}

	// Probes and scrapers: nothing at INFO.
	for _, path := range []string{"/v1/health", "/health", "/metrics"} {
		if _, _, lines := send("GET", path, ""); len(lines) != 0 {
			t.Errorf("GET %s logged at INFO: %v", path, lines)
		}
	}

	// A blocked execution and one that ran: one line each, by the request's id.
	for _, c := range []struct{ input, msg, status string }{
		{"forbidden", "execution blocked", "blocked"},
		{"hello", "execution", "ok"},
	} {
		_, id, lines := send("POST", "/v1/sessions/"+sid+"/executions", `{"runner":"echo","input":"`+c.input+`"}`)
		var outcome map[string]any
		for _, l := range lines {
			if l["@message"] == c.msg {
				if outcome != nil {
					t.Fatalf("two outcome lines: %v", lines)
				}
				outcome = l
			}
		}
		if outcome == nil {
			t.Fatalf("input %q: no %q line in %v", c.input, c.msg, lines)
		}
		for k, want := range map[string]any{"@level": "info", "request_id": id, "session": sid, "runner": "echo", "status": c.status} {
			if outcome[k] != want {
				t.Errorf("input %q: %s = %v, want %v (%v)", c.input, k, outcome[k], want, outcome)
			}
		}
		if tr, _ := outcome["trace"].(string); tr == "" {
			t.Errorf("input %q: no trace in %v", c.input, outcome)
		}
		if _, ok := outcome["duration"]; !ok {
			t.Errorf("input %q: no duration in %v", c.input, outcome)
		}
		if c.status == "blocked" && outcome["flags"] != "jailbreak" {
			t.Errorf("blocked flags = %v", outcome["flags"])
		}
		if rs := requestLines(lines); len(rs) != 1 || rs[0]["request_id"] != id || rs[0]["route"] != "POST /v1/sessions/{id}/executions" {
			t.Errorf("input %q: request lines %v", c.input, rs)
		}
		if strings.Contains(func() string { b, _ := json.Marshal(lines); return string(b) }(), c.input) {
			t.Errorf("the input is logged: %v", lines)
		}
	}

	// A DELETE has its line too.
	code, id, lines = send("DELETE", "/v1/sessions/"+sid, "")
	if rs := requestLines(lines); code != 200 || len(rs) != 1 || rs[0]["route"] != "DELETE /v1/sessions/{id}" || rs[0]["status"] != 200.0 || rs[0]["request_id"] != id {
		t.Fatalf("DELETE: %d %v", code, lines)
	}
}
