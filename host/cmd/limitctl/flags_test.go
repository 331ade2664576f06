package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/limitgraph/limit/host/trace"
	"github.com/limitgraph/limit/host/trace/tracetest"
	"github.com/limitgraph/limit/sdk/governance"
	"github.com/limitgraph/limit/sdk/storage/memstore"
)

// located is a trace's flags as the API shows them: one a rule raised, with its stage,
// score and location, and one set by hand without them.
const located = `[
	{"flag":"jailbreak","severity":8,"reason":"keyword \"forbidden\" [pre, score 0.93, line 4:7, bytes 12-21]","rule_id":"keyword",
	 "auto_detected":true,"timestamp":"2026-01-02T03:04:05Z","stage":"pre","score":0.93,"location":{"line":4,"column":7,"start":12,"end":21}},
	{"flag":"unsafe","severity":3,"reason":"by hand","rule_id":"manual","auto_detected":false,"timestamp":"2026-01-02T03:04:05Z"}]`

// TestFlagLocationsShown: `traces show`, `exec` and `governance evaluate` print where a
// flag points, at which stage and with what score; -o json passes the fields through.
func TestFlagLocationsShown(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case strings.HasPrefix(r.URL.Path, "/v1/traces/"):
			io.WriteString(w, `{"id":"t1","session_id":"s1","kind":"execution","status":"active","data":{},"flags":`+located+`,"provenance":[]}`)
		case strings.HasSuffix(r.URL.Path, "/executions"): // limitctl exec streams
			var flags bytes.Buffer
			_ = json.Compact(&flags, []byte(located))
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "event: result\ndata: {\"trace_id\":\"t1\",\"status\":\"ok\",\"flags\":"+flags.String()+"}\n\n")
		case r.URL.Path == "/v1/governance/evaluate":
			io.WriteString(w, `{"findings":`+located+`}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	run1 := func(args ...string) (string, string) {
		t.Helper()
		var out, errOut bytes.Buffer
		if code := run(context.Background(), append([]string{"-addr", srv.URL}, args...), &out, &errOut); code != 0 {
			t.Fatalf("limitctl %v: exit %d\nstdout: %s\nstderr: %s", args, code, out.String(), errOut.String())
		}
		return out.String(), errOut.String()
	}

	out, _ := run1("traces", "show", "t1")
	for _, want := range []string{"STAGE", "WHERE", "SCORE", "line 4:7, bytes 12-21", "0.93", "manual"} {
		if !strings.Contains(out, want) {
			t.Errorf("traces show lacks %q:\n%s", want, out)
		}
	}
	_, errOut := run1("exec", "s1", "echo", "x")
	if !strings.Contains(errOut, "flag=jailbreak:8 flag=unsafe:3") || !strings.Contains(errOut, "jailbreak:8 keyword: pre, line 4:7, bytes 12-21, score 0.93") {
		t.Errorf("exec does not show the flag's details:\n%s", errOut)
	}
	if strings.Contains(errOut, "unsafe:3 manual:") {
		t.Errorf("exec shows details of a flag that has none:\n%s", errOut)
	}
	out, _ = run1("governance", "evaluate", "code", "x")
	if !strings.Contains(out, "WHERE") || !strings.Contains(out, "line 4:7, bytes 12-21") {
		t.Errorf("governance evaluate does not show where:\n%s", out)
	}

	out, _ = run1("-o", "json", "traces", "show", "t1")
	var tr struct {
		Flags []map[string]any `json:"flags"`
	}
	if err := json.Unmarshal([]byte(out), &tr); err != nil || len(tr.Flags) != 2 {
		t.Fatalf("traces show -o json: %v\n%s", err, out)
	}
	loc, _ := tr.Flags[0]["location"].(map[string]any)
	if tr.Flags[0]["stage"] != "pre" || tr.Flags[0]["score"] != 0.93 || loc["line"] != 4.0 || loc["end"] != 21.0 {
		t.Errorf("traces show -o json: %v", tr.Flags[0])
	}
	for _, k := range []string{"stage", "score", "location"} {
		if _, ok := tr.Flags[1][k]; ok {
			t.Errorf("traces show -o json shows %s on a flag without it: %v", k, tr.Flags[1])
		}
	}
}

// TestVerifyBundleWithLocatedFlags: a bundle whose flags carry a stage, score and location
// verifies offline.
func TestVerifyBundleWithLocatedFlags(t *testing.T) {
	s, key := tracetest.New(t, memstore.New())
	ctx := context.Background()
	session := trace.NewID()
	rec, err := s.Create(ctx, session, trace.TraceExecution, json.RawMessage(`{"input":"x\n forbidden"}`), "api")
	if err != nil {
		t.Fatal(err)
	}
	flags := []trace.Flag{
		{Flag: governance.FlagJailbreak, Severity: 8, Reason: "keyword", RuleID: "keyword", AutoDetected: true,
			Stage: trace.StagePre, Score: 0.93, Location: &trace.Location{Line: 2, Column: 2, Start: 3, End: 12}},
		{Flag: governance.FlagUnsafe, Severity: 3, Reason: "by hand", RuleID: "manual", Location: &trace.Location{Line: 1}},
	}
	if _, _, err := s.Apply(ctx, rec.ID, "governance", trace.Update{Flags: flags, Status: trace.StatusQuarantined, Reason: "severity 8"}); err != nil {
		t.Fatal(err)
	}
	var bundle bytes.Buffer
	if _, err := s.WriteBundle(ctx, &bundle, trace.BundleScope{SessionID: session}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bundlePath, keyPath := filepath.Join(dir, "bundle.tar.gz"), filepath.Join(dir, "host.pem")
	if err := os.WriteFile(bundlePath, bundle.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, trace.MarshalPublicKey(key.PublicKey()), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := limitctl(t, "-o", "json", "verify", "--key", keyPath, bundlePath)
	var out map[string]any
	if err := json.Unmarshal([]byte(stdout), &out); code != 0 || err != nil || out["key_trusted"] != true || out["traces"] != 1.0 {
		t.Errorf("verify: exit %d (%v)\nstdout: %s\nstderr: %s", code, err, stdout, stderr)
	}
}
