package api

import (
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/limitgraph/limit/host/execution"
	"github.com/limitgraph/limit/host/session"
)

// postJSON posts body to path on srv and returns the status and the body as text.
func postJSON(t *testing.T, srv *Server, path, body string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	srv.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

// TestLoneSurrogatesRefused: a string holding a lone surrogate escape, which encoding/json
// turns into U+FFFD, is a 400 naming the field on every route that takes a body (code
// that prints '\ufffd' ran, and a session was named "�"); a pair is one character.
func TestLoneSurrogatesRefused(t *testing.T) {
	srv, _, _, _ := mergeServer(t)
	for _, c := range []struct{ path, body, says string }{
		{"/v1/sessions", `{"name":"\ud800"}`, `field \"name\" holds a lone surrogate \\ud800`},
		{"/v1/sessions", `{"name":"ok \udc00 then"}`, `field \"name\" holds a lone surrogate \\udc00`},
		{"/v1/sessions", `{"name":"\ud800\u0041"}`, `lone surrogate \\ud800`},
		{"/v1/sessions", `{"runners":["python","\udbff"]}`, `field \"runners[1]\" holds a lone surrogate \\udbff`},
		{"/v1/governance/evaluate", `{"kind":"prompt","text":"a\\\ud800"}`, `field \"text\" holds a lone surrogate`},
		{"/v1/traces", `{"session_id":"x","data":{"k":["\ud800"]}}`, `field \"data.k[0]\" holds a lone surrogate`},
		{"/v1/traces", `{"session_id":"x","data":{"\udfff":1}}`, `the name of field \"data.\\\\udfff\" holds a lone surrogate`},
	} {
		code, body := postJSON(t, srv, c.path, c.body)
		if code != 400 || !strings.Contains(body, c.says) {
			t.Errorf("POST %s %s: %d %s, want 400 saying %s", c.path, c.body, code, body, c.says)
		}
	}
	var req execution.Request
	err := decodeBody([]byte(`{"runner":"python","input":"print(ascii(\"\ud800\"))"}`), &req, nil)
	if err == nil || !strings.Contains(err.Error(), `field "input" holds a lone surrogate \ud800`) {
		t.Errorf("an execution's input with a lone surrogate: %v, input %q", err, req.Input)
	}
	// A pair, and an escaped backslash before "ud800", are no lone surrogate.
	code, body := postJSON(t, srv, "/v1/sessions", `{"name":"\ud83d\ude00 \\ud800"}`)
	if code != 201 || !strings.Contains(body, `"name": "😀 \\ud800"`) {
		t.Errorf("a surrogate pair: %d %s", code, body)
	}
}

// TestFieldNamesCaseSensitive: a member name that matches a field only without case is an
// unknown field, on every route (encoding/json took {"NAME":"x"} for name).
func TestFieldNamesCaseSensitive(t *testing.T) {
	srv, _, _, _ := mergeServer(t)
	for _, c := range []struct{ path, body, says string }{
		{"/v1/sessions", `{"NAME":"x"}`, `unknown field \"NAME\"; field names are case-sensitive: did you mean \"name\"?`},
		{"/v1/sessions", `{"limits":{"Max_Processes":1}}`, `unknown field \"limits.Max_Processes\"`},
		{"/v1/governance/flag", `{"TRACE_ID":"x","flag":"HighRisk","severity":5}`, `unknown field \"TRACE_ID\"`},
		{"/v1/rd/fgw", `{"C1":[[0]],"c2":[[0]],"m":[[0]]}`, `unknown field \"C1\"`},
		{"/v1/rd/knee", `{"points":[[0,1],[1,0],[2,0]],"Method":"kneedle"}`, `unknown field \"Method\"`},
		{"/v1/traces", `{"Session_Id":"x"}`, `unknown field \"Session_Id\"`},
	} {
		code, body := postJSON(t, srv, c.path, c.body)
		if code != 400 || !strings.Contains(body, c.says) {
			t.Errorf("POST %s %s: %d %s, want 400 saying %s", c.path, c.body, code, body, c.says)
		}
	}
}

// TestNullsRefused: null for a required field says it is required (it read as 0: "severity
// must be between 1 and 10, got 0"), and null as an element of a list of strings or numbers
// is refused by path (runners [null] read as runner ""); null for an optional field still
// means absent.
func TestNullsRefused(t *testing.T) {
	srv, _, _, _ := mergeServer(t)
	for _, c := range []struct{ path, body, says string }{
		{"/v1/governance/flag", `{"trace_id":"x","flag":"HighRisk","severity":null}`, "severity is required and must not be null"},
		{"/v1/governance/flag", `{"trace_id":null,"flag":"HighRisk","severity":5}`, "trace_id is required and must not be null"},
		{"/v1/rd/points", `{"session_id":"x","distortion":null,"variance":null}`, "distortion is required and must not be null"},
		{"/v1/rd/knee", `{"points":null}`, "points is required and must not be null"},
		{"/v1/sessions", `{"runners":[null]}`, `field \"runners[0]\" must not be null`},
		{"/v1/rd/fgw", `{"c1":[[0,null],[1,0]],"c2":[[0]],"m":[[0],[0]]}`, `field \"c1[0][1]\" must not be null`},
	} {
		code, body := postJSON(t, srv, c.path, c.body)
		if code != 400 || !strings.Contains(body, c.says) {
			t.Errorf("POST %s %s: %d %s, want 400 saying %s", c.path, c.body, code, body, c.says)
		}
	}
	if code, body := postJSON(t, srv, "/v1/sessions", `{"name":null,"max_concurrency":null,"runners":null,"limits":null}`); code != 201 {
		t.Errorf("nulls for optional fields: %d %s", code, body)
	}
}

// TestIntegersAsDecimals: a whole number written as 4.0 or 1e3 is an integer (JSON Schema
// 2020-12 says so; encoding/json refused it), within the field's range; 4.5, and a number
// past the range, are refused saying the range.
func TestIntegersAsDecimals(t *testing.T) {
	for _, c := range []struct {
		body string
		want session.CreateRequest
		err  string
	}{
		{body: `{"max_concurrency":4.0}`, want: session.CreateRequest{MaxConcurrency: ptr(4)}},
		{body: `{"max_concurrency":1e1,"limits":{"memory_bytes":6.7108864E7,"max_processes":100.000e-2}}`,
			want: session.CreateRequest{MaxConcurrency: ptr(10), Limits: session.Limits{MemoryBytes: 67108864, MaxProcesses: 1}}},
		{body: `{"max_concurrency":-0.0e5}`, want: session.CreateRequest{MaxConcurrency: ptr(0)}},
		{body: `{"max_concurrency":-20e-1}`, want: session.CreateRequest{MaxConcurrency: ptr(-2)}},
		{body: `{"max_concurrency":4.5}`, err: `field "max_concurrency" must be a whole number from 1 to 1024, got 4.5`},
		{body: `{"max_concurrency":1e30}`, err: `field "max_concurrency" must be a whole number from 1 to 1024, got 1e30`},
		{body: `{"max_concurrency":1,"limits":{"memory_bytes":1.5e8}}`, want: session.CreateRequest{MaxConcurrency: ptr(1), Limits: session.Limits{MemoryBytes: 150000000}}},
		{body: `{"limits":{"memory_bytes":67108864.5}}`, err: `field "limits.memory_bytes" must be a whole number from 67108864 (64 MiB) to 1099511627776 (1 TiB), or 0 for the runner's default, got 67108864.5`},
		{body: `{"limits":{"timeout_ms":0.5}}`, err: `field "limits.timeout_ms" must be a whole number from 0 to 3600000, got 0.5`},
		{body: `{"max_concurrency":1e-400}`, err: `field "max_concurrency" must be a whole number`},
		{body: `{"max_concurrency":1e999999999999}`, err: `field "max_concurrency" must be a whole number`},
		{body: `{"limits":{"max_processes":1000000000000}}`, err: `field "limits.max_processes" must be a whole number from 0 to 4294967295, got 1000000000000`},
		{body: `{"limits":{"max_processes":-1}}`, err: `field "limits.max_processes" must be a whole number from 0 to 4294967295, got -1`},
		{body: `{"limits":{"timeout_ms":18446744073709551616}}`, err: `field "limits.timeout_ms" must be a whole number from 0 to 3600000`},
		{body: `{"limits":{"max_output_bytes":18446744073709551616}}`, err: `must be a whole number from 0 to 18446744073709551615`},
		{body: `{"max_concurrency":01}`, err: `malformed JSON`},
		{body: `{"max_concurrency":"4"}`, err: `field "max_concurrency" must be a whole number, got JSON string`},
	} {
		var got session.CreateRequest
		err := decodeBody([]byte(c.body), &got, nil)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: %v, want %q", c.body, err, c.err)
			}
			continue
		}
		if err != nil || fmt.Sprint(*got.MaxConcurrency, got.Limits) != fmt.Sprint(*c.want.MaxConcurrency, c.want.Limits) {
			t.Errorf("%s: %+v %v, want %+v", c.body, got, err, c.want)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// TestBodiesNotUTF8JSON: a body the API cannot read as UTF-8 JSON is told why, not called
// "not a JSON object": a gzip'd body is a 415 naming its Content-Encoding, UTF-16 and
// UTF-32 are named, and a UTF-8 byte order mark is skipped (RFC 8259 §8.1).
func TestBodiesNotUTF8JSON(t *testing.T) {
	srv, _, _, _ := mergeServer(t)
	utf16le := func(s string) string {
		var b strings.Builder
		for _, c := range s {
			b.WriteByte(byte(c))
			b.WriteByte(0)
		}
		return b.String()
	}
	utf16be := func(s string) string {
		var b strings.Builder
		for _, c := range s {
			b.WriteByte(0)
			b.WriteByte(byte(c))
		}
		return b.String()
	}
	body := `{"name":"x"}`
	for _, c := range []struct {
		path, encoding, body string
		code                 int
		says                 string
	}{
		{"/v1/sessions", "gzip", "\x1f\x8b\x08\x00", 415, `Content-Encoding \"gzip\" is not accepted; send the body uncompressed (identity)`},
		{"/v1/traces/x/merge", "br", "{}", 415, `Content-Encoding \"br\" is not accepted`},
		{"/v1/sessions", "identity", body, 201, ""},
		{"/v1/sessions", "", "\xef\xbb\xbf" + body, 201, ""},
		{"/v1/traces", "", "\xef\xbb\xbf" + `{"data":{}}`, 400, "session_id is required"},
		{"/v1/sessions", "", utf16le(body), 400, "request body must be UTF-8 JSON; it looks like UTF-16 (little-endian)"},
		{"/v1/sessions", "", "\xff\xfe" + utf16le(body), 400, "request body must be UTF-8 JSON; it looks like UTF-16 (little-endian)"},
		{"/v1/sessions", "", "\xfe\xff" + utf16be(body), 400, "it looks like UTF-16 (big-endian)"},
		{"/v1/sessions", "", utf16le(utf16le(body)), 400, "it looks like UTF-32 (little-endian)"},
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", c.path, strings.NewReader(c.body))
		if c.encoding != "" {
			req.Header.Set("Content-Encoding", c.encoding)
		}
		srv.ServeHTTP(rec, req)
		if rec.Code != c.code || !strings.Contains(rec.Body.String(), c.says) {
			t.Errorf("POST %s (%s) %q: %d %s, want %d saying %s", c.path, c.encoding, c.body, rec.Code, rec.Body.String(), c.code, c.says)
		}
		if c.code == 415 && rec.Header().Get("Accept-Encoding") != "identity" {
			t.Errorf("POST %s (%s): Accept-Encoding %q", c.path, c.encoding, rec.Header().Get("Accept-Encoding"))
		}
	}
}
