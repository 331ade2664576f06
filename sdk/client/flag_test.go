package client

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestFlagDetails: a flag's stage, score and location are decoded from a trace and from an
// execution's result, a flag without them decodes as before, and a flag by hand sends a
// location only when given one.
func TestFlagDetails(t *testing.T) {
	const flags = `[
		{"flag":"jailbreak","severity":8,"reason":"keyword [pre, score 0.93, line 4:7, bytes 12-40]","rule_id":"keyword","auto_detected":true,
		 "timestamp":"2026-01-02T03:04:05Z","stage":"pre","score":0.93,"location":{"line":4,"column":7,"start":12,"end":40}},
		{"flag":"unsafe","severity":3,"reason":"by hand","rule_id":"manual","auto_detected":false,"timestamp":"2026-01-02T03:04:05Z"}]`
	var sent []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Method == "GET" && strings.HasPrefix(r.URL.Path, "/v1/traces/"):
			io.WriteString(w, `{"id":"t1","flags":`+flags+`,"provenance":[]}`)
		case r.Method == "POST" && strings.HasSuffix(r.URL.Path, "/executions"):
			io.WriteString(w, `{"trace_id":"t1","status":"ok","flags":`+flags+`}`)
		case r.URL.Path == "/v1/governance/flag":
			b, _ := io.ReadAll(r.Body)
			sent = append(sent, string(b))
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, `{"id":"t1","flags":`+flags+`}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	c := New(srv.URL)
	ctx := context.Background()

	check := func(where string, fs []Flag) {
		t.Helper()
		if len(fs) != 2 {
			t.Fatalf("%s: %d flags", where, len(fs))
		}
		f := fs[0]
		if f.Stage != "pre" || f.Score != 0.93 || f.Location == nil || *f.Location != (Location{Line: 4, Column: 7, Start: 12, End: 40}) {
			t.Errorf("%s: flag %+v (location %+v)", where, f, f.Location)
		}
		if s := f.Location.String(); s != "line 4:7, bytes 12-40" {
			t.Errorf("%s: location reads %q", where, s)
		}
		if f := fs[1]; f.Stage != "" || f.Score != 0 || f.Location != nil || f.Reason != "by hand" {
			t.Errorf("%s: flag without details %+v", where, f)
		}
	}
	tr, err := c.GetTrace(ctx, "t1")
	if err != nil {
		t.Fatal(err)
	}
	check("trace", tr.Flags)
	res, err := c.Execute(ctx, "s1", ExecuteRequest{Runner: "echo", Input: "x"})
	if err != nil {
		t.Fatal(err)
	}
	check("execution", res.Flags)

	if _, err := c.Flag(ctx, FlagRequest{TraceID: "t1", Flag: "unsafe", Severity: 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Flag(ctx, FlagRequest{TraceID: "t1", Flag: "unsafe", Severity: 3, Location: &Location{Line: 2}}); err != nil {
		t.Fatal(err)
	}
	var a, b map[string]any
	if len(sent) != 2 || json.Unmarshal([]byte(sent[0]), &a) != nil || json.Unmarshal([]byte(sent[1]), &b) != nil {
		t.Fatalf("sent %q", sent)
	}
	if _, ok := a["location"]; ok {
		t.Errorf("a flag without a location sends one: %s", sent[0])
	}
	if loc, _ := b["location"].(map[string]any); loc["line"] != 2.0 {
		t.Errorf("flag with a location sent %s", sent[1])
	}

	for _, tc := range []struct {
		l    Location
		want string
	}{{Location{Line: 3}, "line 3"}, {Location{Start: 1, End: 5}, "bytes 1-5"}, {Location{}, ""}} {
		if got := tc.l.String(); got != tc.want {
			t.Errorf("%+v reads %q, want %q", tc.l, got, tc.want)
		}
	}
}
