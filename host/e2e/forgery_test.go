package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/limitgraph/limit/host/trace"
	"github.com/limitgraph/limit/sdk/client"
	"github.com/limitgraph/limit/sdk/storage/memstore"
)

// TestForgeryHostEntries: a client of the API may append provenance entries, but none that
// an auditor would read as the host's own: no kind the host writes, and no agent that names
// the host (limitd, however spelled). Refusals are 400 problem+json and write nothing.
func TestForgeryHostEntries(t *testing.T) {
	d := start(t, config(t, t.TempDir(), "default"))
	s, err := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: "forgery"})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := d.c.CreateTrace(ctx, s.ID, map[string]any{"claim": "x"})
	if err != nil {
		t.Fatal(err)
	}
	post := func(path string, body map[string]any) (int, map[string]any) {
		t.Helper()
		b, _ := json.Marshal(body)
		status, h, m := d.raw("POST", path, "application/json", b)
		if status >= 400 {
			mustProblem(t, status, h, m, status)
		}
		return status, m
	}
	for _, kind := range []string{"created", "executed", "flagged", "quarantined", "merged", "reactivated", "blocked", "governance_error", "merge_refused"} {
		for _, prefix := range []string{"/v1", ""} {
			status, m := post(prefix+"/traces/"+tr.ID+"/provenance", map[string]any{"kind": kind, "agent": "auditor", "data": map[string]any{"exit_code": 0}})
			if status != 400 || !strings.Contains(m["detail"].(string), "written only by the host") {
				t.Errorf("kind %q via %s: %d %v, want 400", kind, prefix+"/traces", status, m)
			}
		}
	}
	for _, agent := range []string{"limitd", "LimitD", " limitd", "limitd\u200b", "lim\u00adit\u200dd", "\uff4c\uff49\uff4d\uff49\uff54\uff44", "limitd.governance", "limitd:runner"} {
		status, m := post("/v1/traces/"+tr.ID+"/provenance", map[string]any{"kind": "note", "agent": agent})
		if status != 400 || !strings.Contains(m["detail"].(string), "names the host") {
			t.Errorf("append by agent %q: %d %v, want 400", agent, status, m)
		}
		status, m = post("/v1/traces", map[string]any{"session_id": s.ID, "agent": agent, "data": map[string]any{}})
		if status != 400 || !strings.Contains(m["detail"].(string), "names the host") {
			t.Errorf("trace created by agent %q: %d %v, want 400", agent, status, m)
		}
	}
	// Names that merely start like it are the client's to use ("api" is the host's agent of
	// what it writes on a client's behalf: refused, as "limitd"; "apis" is not it).
	if status, m := post("/v1/traces/"+tr.ID+"/provenance", map[string]any{"kind": "note", "agent": "api"}); status != 400 {
		t.Errorf("append by agent \"api\": %d %v, want 400", status, m)
	}
	for _, agent := range []string{"limitdemo", "agent-x", "apis"} {
		if _, err := d.c.AppendProvenance(ctx, tr.ID, "note", agent, nil); err != nil {
			t.Errorf("append by agent %q: %v", agent, err)
		}
	}
	tv, err := d.c.GetTrace(ctx, tr.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range tv.Provenance {
		if e.Agent == "limitd" || (e.Index > 0 && e.Kind != "note") {
			t.Errorf("entry %d: kind %q by %q in a chain only the client wrote to", e.Index, e.Kind, e.Agent)
		}
	}
	if len(tv.Provenance) != 4 {
		t.Errorf("chain of %d entries, want created and 3 notes", len(tv.Provenance))
	}
	if v, err := d.c.VerifyProvenance(ctx, tr.ID); err != nil || !v.Valid || v.Length != 4 {
		t.Fatalf("verify %+v %v", v, err)
	}
	// The host's own entries carry its name.
	r, err := d.c.Execute(ctx, s.ID, client.ExecuteRequest{Runner: "echo", Input: "hello"})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := d.c.GetTrace(ctx, r.TraceID)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ev.Provenance {
		if e.Agent != "limitd" {
			t.Errorf("execution entry %d (%s) by %q, want limitd", e.Index, e.Kind, e.Agent)
		}
	}
}

// TestForgeryOtherKey: a bundle made by another host (or anyone with a key of their own)
// is intact, so verify without --key accepts it, but must say that the key it carries was
// trusted on first use; with --key naming the host's key it is refused.
func TestForgeryOtherKey(t *testing.T) {
	d := start(t, config(t, t.TempDir(), "default"))
	other, err := trace.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	st, err := trace.New(memstore.New(), other, trace.Options{TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	session := trace.NewID()
	bg := context.Background()
	rec, err := st.Create(bg, session, trace.TraceCustom, json.RawMessage(`{"claim":"forged"}`), "limitd")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Append(bg, rec.ID, trace.Entry{Kind: trace.KindExecuted, Agent: "limitd", Data: json.RawMessage(`{"exit_code":0}`)}); err != nil {
		t.Fatal(err)
	}
	var bundle bytes.Buffer
	if _, err := st.WriteBundle(bg, &bundle, trace.BundleScope{SessionID: session}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "forged.tar.gz")
	os.WriteFile(path, bundle.Bytes(), 0o600)

	out, code := limitctl(t, d.url, "verify", path)
	if code != 0 || !strings.Contains(out, "trusted on first use") || !strings.Contains(out, other.Fingerprint()) {
		t.Fatalf("verify without --key: exit %d, want 0 with a trust-on-first-use warning naming the key\n%s", code, out)
	}
	out, code = limitctl(t, d.url, "verify", "-o", "json", path)
	if code != 0 || !strings.Contains(out, `"key_trusted": false`) || !strings.Contains(out, "trusted on first use") {
		t.Fatalf("verify -o json without --key: exit %d\n%s", code, out)
	}
	_, _, key := d.raw("GET", "/v1/provenance/key", "", nil)
	pemPath := filepath.Join(dir, "host.pem")
	os.WriteFile(pemPath, []byte(key["public_key_pem"].(string)), 0o600)
	out, code = limitctl(t, d.url, "verify", "--key", pemPath, path)
	if code == 0 || !strings.Contains(out, "is not the trusted key") {
		t.Fatalf("verify --key host.pem of another key's bundle: exit %d\n%s", code, out)
	}
	// The host's own bundle, pinned to its key, says so.
	s, err := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: "own"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.c.CreateTrace(ctx, s.ID, map[string]any{"a": 1}); err != nil {
		t.Fatal(err)
	}
	var own bytes.Buffer
	if err := d.c.Export(ctx, client.ExportRequest{SessionID: s.ID}, &own); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(path, own.Bytes(), 0o600)
	out, code = limitctl(t, d.url, "verify", "-o", "json", "--key", pemPath, path)
	if code != 0 || !strings.Contains(out, `"key_trusted": true`) || strings.Contains(out, "trusted on first use") {
		t.Fatalf("verify -o json --key of the host's bundle: exit %d\n%s", code, out)
	}
}
