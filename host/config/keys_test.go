package config

import (
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"

	"github.com/limitgraph/limit/host/trace"
)

func pubPEM(t *testing.T) ([]byte, string) {
	t.Helper()
	k, err := trace.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return trace.MarshalPublicKey(k.PublicKey()), k.Fingerprint()
}

// TestTrustedKeys: host.trusted_keys takes PEM files (with the whitespace an editor or jq
// leaves), inline PEM blocks and their base64 line, in file order, each key once; every
// entry that cannot be read or is no Ed25519 public key (a missing file, a directory,
// another key type, a fingerprint given for a key, an empty entry) is an error at its own
// line, naming it, and every one is reported.
func TestTrustedKeys(t *testing.T) {
	dir := t.TempDir()
	pemB, fpB := pubPEM(t)
	pemC, fpC := pubPEM(t)
	pemD, fpD := pubPEM(t)
	fileB := filepath.Join(dir, "node-b.pem")
	if err := os.WriteFile(fileB, append(pemB, '\n'), 0o644); err != nil { // as `jq -r` saves it
		t.Fatal(err)
	}
	block, _ := pem.Decode(pemD)
	src := fmt.Sprintf(`host {
  trusted_keys = [
    %q,
    %q,
    %q,
  ]
}
`, fileB, string(pemC), base64.StdEncoding.EncodeToString(block.Bytes))
	cfg := mustParse(t, src, nil)
	var got []string
	for _, k := range cfg.Host.TrustedKeys {
		got = append(got, trace.Fingerprint(k.Key)+" "+k.Source+fmt.Sprintf(" line %d", k.Range.Start.Line))
	}
	want := []string{fpB + " " + fileB + " line 3", fpC + " inline line 4", fpD + " inline line 5"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("trusted keys:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if cfg := mustParse(t, "host {}\n", nil); cfg.Host.TrustedKeys != nil {
		t.Errorf("without trusted_keys: %v", cfg.Host.TrustedKeys)
	}

	bad := filepath.Join(dir, "bad.pem")
	if err := os.WriteFile(bad, []byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	src = fmt.Sprintf(`host {
  trusted_keys = [
    %q,
    %q,
    %q,
    %q,
    "",
    %q,
    %q,
  ]
}
`, filepath.Join(dir, "missing.pem"), bad, dir, fpB, fileB, "MCowBQYDK2VwAyEAnotakey")
	_, diags := Parse(testFile, []byte(src), envMap(nil))
	errs := errorsOf(diags)
	wants := []struct {
		line int
		text string
	}{
		{3, "missing.pem: no such file"},
		{4, "bad.pem is not an Ed25519 public key file"},
		{5, "is a directory, not a regular file"},
		{6, "the form of a key fingerprint"},
		{7, "trusted_keys[4]: the entry is empty"},
		{9, "not the base64 line of an Ed25519 public key"},
	}
	if len(errs) != len(wants) {
		t.Fatalf("diagnostics:\n%s\nwant %d errors", diags.Error(), len(wants))
	}
	for i, w := range wants {
		d := errs[i]
		if d.Subject == nil || d.Subject.Filename != testFile || d.Subject.Start.Line != w.line || !strings.Contains(d.Detail, w.text) {
			t.Errorf("error %d: %q at %v, want %q at line %d", i, d.Detail, d.Subject, w.text, w.line)
		}
	}

	// One key twice: a warning at the second entry, the key kept once.
	cfg, diags = Parse(testFile, []byte(fmt.Sprintf("host {\n  trusted_keys = [%q,\n    %q]\n}\n", fileB, string(pemB))), envMap(nil))
	if diags.HasErrors() || len(diags) != 1 || diags[0].Severity != hcl.DiagWarning || diags[0].Subject.Start.Line != 3 || len(cfg.Host.TrustedKeys) != 1 {
		t.Errorf("a key listed twice: %v, %d keys", diags, len(cfg.Host.TrustedKeys))
	}
}
