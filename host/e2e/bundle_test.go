package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/limitgraph/limit/host/trace"
	"github.com/limitgraph/limit/internal/testbin"
	"github.com/limitgraph/limit/sdk/client"
)

// rewriteBundle returns the bundle with f applied to records.jsonl.
func rewriteBundle(t *testing.T, in []byte, f func([]byte) []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	tw := tar.NewWriter(zw)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		if h.Name == "records.jsonl" {
			b = f(b)
		}
		h.Size = int64(len(b))
		tw.WriteHeader(h)
		tw.Write(b)
	}
	tw.Close()
	zw.Close()
	return out.Bytes()
}

func limitctl(t *testing.T, addr string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(testbin.Command(t, "limitctl"), append([]string{"-addr", addr}, args...)...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

func TestExportAndOfflineVerify(t *testing.T) {
	d := start(t, config(t, t.TempDir(), "default"))
	s, _ := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: "audit"})
	r, err := d.c.Execute(ctx, s.ID, client.ExecuteRequest{Runner: "echo", Input: "audited work"})
	if err != nil {
		t.Fatal(err)
	}
	tr, _ := d.c.CreateTrace(ctx, s.ID, map[string]any{"model": "m1", "score": 0.5})
	for i := 0; i < 3; i++ {
		if _, err := d.c.AppendProvenance(ctx, tr.ID, "step", "agent-x", map[string]any{"i": i}); err != nil {
			t.Fatal(err)
		}
	}
	var bundle bytes.Buffer
	if err := d.c.Export(ctx, client.ExportRequest{SessionID: s.ID}, &bundle); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "bundle.tar.gz")
	os.WriteFile(path, bundle.Bytes(), 0o600)
	out, code := limitctl(t, d.url, "verify", path)
	if code != 0 || !strings.Contains(out, "valid") || !strings.Contains(out, "2 traces") {
		t.Fatalf("verify intact bundle: exit %d\n%s", code, out)
	}
	// Pinned to the host's key (from the API) it verifies; pinned to another key it does not.
	_, _, key := d.raw("GET", "/v1/provenance/key", "", nil)
	pemPath := filepath.Join(dir, "host.pem")
	os.WriteFile(pemPath, []byte(key["public_key_pem"].(string)), 0o600)
	if out, code := limitctl(t, d.url, "verify", "--key", pemPath, path); code != 0 || !strings.Contains(out, key["fingerprint"].(string)) {
		t.Fatalf("verify with the host key: exit %d\n%s", code, out)
	}
	other, err := trace.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	otherPath := filepath.Join(dir, "other.pem")
	os.WriteFile(otherPath, trace.MarshalPublicKey(other.PublicKey()), 0o600)
	if out, code := limitctl(t, d.url, "verify", "--key", otherPath, path); code == 0 {
		t.Fatalf("bundle verified against a key that did not sign it\n%s", out)
	}
	// The auditor's loop from the command line: the host's key, an export, a pinned verify.
	cliKey, cliBundle := filepath.Join(dir, "cli.pem"), filepath.Join(dir, "cli.tar.gz")
	if out, code := limitctl(t, d.url, "key", "-f", cliKey); code != 0 || !strings.Contains(out, key["fingerprint"].(string)) {
		t.Fatalf("limitctl key -f: exit %d\n%s", code, out)
	}
	if out, code := limitctl(t, d.url, "export", "--session", s.ID, "-f", cliBundle); code != 0 || !strings.Contains(out, "wrote "+cliBundle) {
		t.Fatalf("limitctl export: exit %d\n%s", code, out)
	}
	if out, code := limitctl(t, d.url, "verify", "--key", cliKey, cliBundle); code != 0 || !strings.Contains(out, "2 traces") || !strings.Contains(out, "a trusted key") {
		t.Fatalf("verify of limitctl's export with limitctl's key: exit %d\n%s", code, out)
	}
	// A failed export leaves no file behind, not even a partial one.
	missing := filepath.Join(dir, "missing.tar.gz")
	if out, code := limitctl(t, d.url, "export", "--session", trace.NewID(), "-f", missing); code != 1 || !strings.Contains(out, "404") {
		t.Fatalf("export of an unknown session: exit %d\n%s", code, out)
	}
	if ents, _ := os.ReadDir(dir); slices.ContainsFunc(ents, func(e os.DirEntry) bool { return strings.Contains(e.Name(), "missing") }) {
		t.Fatalf("a failed export left a file: %v", ents)
	}
	if out, code := limitctl(t, d.url, "export", "--session", s.ID); code != 2 || !strings.Contains(out, "-f FILE") {
		t.Fatalf("export without -f: exit %d\n%s", code, out)
	}
	// By trace ids too.
	var one bytes.Buffer
	if err := d.c.Export(ctx, client.ExportRequest{TraceIDs: []string{r.TraceID}}, &one); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(path, one.Bytes(), 0o600)
	if out, code := limitctl(t, d.url, "verify", "-o", "json", path); code != 0 || !strings.Contains(out, `"traces": 1`) {
		t.Fatalf("verify one-trace bundle: exit %d\n%s", code, out)
	}

	lines := func(b []byte) []string { return strings.Split(strings.TrimRight(string(b), "\n"), "\n") }
	tampers := map[string]func([]byte) []byte{
		"changed byte": func(b []byte) []byte {
			return []byte(strings.Replace(string(b), `"agent-x"`, `"agent-y"`, 1))
		},
		"changed data": func(b []byte) []byte {
			return []byte(strings.Replace(string(b), `"score":0.5`, `"score":0.9`, 1))
		},
		"record removed": func(b []byte) []byte {
			ls := lines(b)
			return []byte(strings.Join(append(ls[:len(ls)-2:len(ls)-2], ls[len(ls)-1]), "\n") + "\n")
		},
		"last record removed": func(b []byte) []byte {
			ls := lines(b)
			return []byte(strings.Join(ls[:len(ls)-1], "\n") + "\n")
		},
		"reordered": func(b []byte) []byte {
			ls := lines(b)
			n := len(ls)
			ls[n-1], ls[n-2] = ls[n-2], ls[n-1]
			return []byte(strings.Join(ls, "\n") + "\n")
		},
	}
	for name, f := range tampers {
		t.Run(name, func(t *testing.T) {
			bad := rewriteBundle(t, bundle.Bytes(), f)
			if bytes.Equal(bad, bundle.Bytes()) {
				t.Fatal("tampering changed nothing")
			}
			p := filepath.Join(dir, "bad.tar.gz")
			os.WriteFile(p, bad, 0o600)
			out, code := limitctl(t, d.url, "verify", p)
			if code == 0 || !strings.Contains(out, "does not verify") || !strings.Contains(out, "records.jsonl") {
				t.Fatalf("tampered bundle accepted or unclear: exit %d\n%s", code, out)
			}
		})
	}
}

func TestLimitctlCommands(t *testing.T) {
	d := start(t, config(t, t.TempDir(), "default"))
	out, code := limitctl(t, d.url, "sessions", "create", "--name", "cli", "--runner", "echo", "-o", "json")
	if code != 0 {
		t.Fatalf("sessions create: %d\n%s", code, out)
	}
	var s client.Session
	if err := json.Unmarshal([]byte(out), &s); err != nil || s.Name != "cli" {
		t.Fatalf("sessions create -o json: %v\n%s", err, out)
	}
	if out, code := limitctl(t, d.url, "sessions", "list"); code != 0 || !strings.Contains(out, s.ID) || !strings.Contains(out, "POLICY") {
		t.Fatalf("sessions list: %d\n%s", code, out)
	}
	out, code = limitctl(t, d.url, "exec", s.ID, "echo", "from the cli")
	if code != 0 || !strings.Contains(out, "input=from the cli") || !strings.Contains(out, "-- ok") {
		t.Fatalf("exec: %d\n%s", code, out)
	}
	out, code = limitctl(t, d.url, "exec", s.ID, "echo", "forbidden")
	if code != 1 || !strings.Contains(out, "403") || !strings.Contains(out, "jailbreak") {
		t.Fatalf("blocked exec: %d\n%s", code, out)
	}
	if out, code := limitctl(t, d.url, "governance", "stats"); code != 0 || !strings.Contains(out, "jailbreak=1") {
		t.Fatalf("governance stats: %d\n%s", code, out)
	}
	if out, code := limitctl(t, d.url, "sessions", "show", "nope"); code != 1 || !strings.Contains(out, "404") {
		t.Fatalf("show missing: %d\n%s", code, out)
	}
	if out, code := limitctl(t, d.url, "sessions", "frobnicate"); code != 2 {
		t.Fatalf("unknown subcommand: %d\n%s", code, out)
	}
	// Provenance from the command line: append, see it, merge, list the shared record.
	tr, err := d.c.CreateTrace(ctx, s.ID, map[string]any{"step": 1})
	if err != nil {
		t.Fatal(err)
	}
	if out, code := limitctl(t, d.url, "traces", "append", "--agent", "reviewer", tr.ID, "review", `{"ok":true}`); code != 0 || !strings.Contains(out, "entry 1 (review)") {
		t.Fatalf("traces append: %d\n%s", code, out)
	}
	if out, code := limitctl(t, d.url, "traces", "show", tr.ID); code != 0 || !strings.Contains(out, "review") || !strings.Contains(out, "reviewer") {
		t.Fatalf("traces show after append: %d\n%s", code, out)
	}
	if out, code := limitctl(t, d.url, "traces", "append", tr.ID, "note", "not json"); code != 2 || !strings.Contains(out, "must be JSON") {
		t.Fatalf("traces append with bad data: %d\n%s", code, out)
	}
	if out, code := limitctl(t, d.url, "traces", "append", tr.ID, "executed"); code != 1 || !strings.Contains(out, "400") {
		t.Fatalf("traces append of a host kind: %d\n%s", code, out)
	}
	if out, code := limitctl(t, d.url, "traces", "merge", tr.ID); code != 0 {
		t.Fatalf("traces merge: %d\n%s", code, out)
	}
	if out, code := limitctl(t, d.url, "traces", "merged"); code != 0 || !strings.Contains(out, tr.ID) || !strings.Contains(out, s.ID) {
		t.Fatalf("traces merged: %d\n%s", code, out)
	}
	if out, code := limitctl(t, d.url, "traces", "append", tr.ID, "late", "1"); code != 1 || !strings.Contains(out, "409") {
		t.Fatalf("traces append to a merged trace: %d\n%s", code, out)
	}
}

// TestBasicSessionExample runs examples/basic_session against the daemon.
func TestBasicSessionExample(t *testing.T) {
	d := start(t, config(t, t.TempDir(), "default"))
	cmd := exec.Command(testbin.Example(t, "basic_session"), "-addr", d.url, "-runner", "echo", "-input", "hello example")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("basic_session: %v\n%s", err, out)
	}
	for _, want := range []string{"session ", "[stdout] session=", "status ok", "chain valid=true", "verified offline"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
