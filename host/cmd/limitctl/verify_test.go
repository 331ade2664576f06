package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/limitgraph/limit/host/trace"
	"github.com/limitgraph/limit/host/trace/tracetest"
	"github.com/limitgraph/limit/sdk/storage/memstore"
)

// TestVerifyTrustOnFirstUse: without --key a bundle is checked against the key it carries,
// which anyone can make; verify must say so (on stderr, so -o json stays JSON) and the JSON
// must say key_trusted false. With --key it says key_trusted true and warns of nothing.
func TestVerifyTrustOnFirstUse(t *testing.T) {
	key, dir, bundlePath := testBundle(t)
	keyPath := filepath.Join(dir, "host.pem")
	if err := os.WriteFile(keyPath, trace.MarshalPublicKey(key.PublicKey()), 0o600); err != nil {
		t.Fatal(err)
	}

	code, stdout, stderr := limitctl(t, "verify", bundlePath)
	if code != 0 || !strings.Contains(stdout, "NOT checked against a trusted key") || !strings.Contains(stderr, "trusted on first use") || !strings.Contains(stderr, key.Fingerprint()) {
		t.Errorf("verify without --key: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	code, stdout, stderr = limitctl(t, "-o", "json", "verify", bundlePath)
	var out map[string]any
	if err := json.Unmarshal([]byte(stdout), &out); code != 0 || err != nil || out["key_trusted"] != false || out["key_fingerprint"] != key.Fingerprint() || !strings.Contains(stderr, "trusted on first use") {
		t.Errorf("verify -o json without --key: exit %d (%v)\nstdout: %s\nstderr: %s", code, err, stdout, stderr)
	}
	code, stdout, stderr = limitctl(t, "-o", "json", "verify", "--key", keyPath, bundlePath)
	out = nil
	if err := json.Unmarshal([]byte(stdout), &out); code != 0 || err != nil || out["key_trusted"] != true || stderr != "" {
		t.Errorf("verify -o json --key: exit %d (%v)\nstdout: %s\nstderr: %s", code, err, stdout, stderr)
	}
	code, stdout, stderr = limitctl(t, "verify", "--key", keyPath, bundlePath)
	if code != 0 || !strings.Contains(stdout, "a trusted key (--key)") || stderr != "" {
		t.Errorf("verify --key: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
}

// TestVerifyStdin: "-" reads the bundle from stdin (curl …/export | limitctl verify -), and
// a bundle broken on the way in is named as stdin.
func TestVerifyStdin(t *testing.T) {
	_, dir, bundlePath := testBundle(t)
	withStdin := func(path string) {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		old := os.Stdin
		os.Stdin = f
		t.Cleanup(func() { os.Stdin = old; f.Close() })
	}
	withStdin(bundlePath)
	if code, stdout, stderr := limitctl(t, "verify", "-"); code != 0 || !strings.HasPrefix(stdout, "stdin: valid") {
		t.Fatalf("verify - of a good bundle: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	b, err := os.ReadFile(bundlePath)
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(dir, "cut.tar.gz")
	if err := os.WriteFile(cut, b[:len(b)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	withStdin(cut)
	if code, stdout, stderr := limitctl(t, "verify", "-"); code != 1 || !strings.Contains(stderr, "stdin does not verify") {
		t.Fatalf("verify - of a truncated bundle: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
}

// TestVerifySignerKeysUnverifiedWithoutKey: a bundle holding checkpoints of another host's
// key lists that key in its signed header, vouched for by the bundle's own key. Without
// --key that key is trusted on first use only, so the listed signers must not be presented
// as vouched for (a forged bundle may list a real host's key): verify warns that they are
// unverified. With --key the exporting host's key vouches for them.
func TestVerifySignerKeysUnverifiedWithoutKey(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	a, keyA := tracetest.New(t, st)
	keyB, err := trace.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	b, err := trace.New(st, keyB, trace.Options{TempDir: t.TempDir(), TrustedKeys: []ed25519.PublicKey{keyA.PublicKey()}})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := a.Create(ctx, trace.NewID(), trace.TraceCustom, nil, "t")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Append(ctx, rec.ID, trace.Entry{Kind: "note"}); err != nil {
		t.Fatal(err)
	}
	var bundle bytes.Buffer
	if _, err := b.WriteBundle(ctx, &bundle, trace.BundleScope{TraceIDs: []string{rec.ID}}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bundlePath, keyPath := filepath.Join(dir, "bundle.tar.gz"), filepath.Join(dir, "b.pem")
	if err := os.WriteFile(bundlePath, bundle.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, trace.MarshalPublicKey(keyB.PublicKey()), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := limitctl(t, "verify", bundlePath)
	if code != 0 || strings.Contains(stdout+stderr, "vouches for") || strings.Contains(stdout, keyA.Fingerprint()) ||
		!strings.Contains(stderr, "UNVERIFIED") || !strings.Contains(stdout, "unverified") {
		t.Errorf("verify without --key: exit %d; want the signer keys called unverified, not vouched for\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	code, stdout, stderr = limitctl(t, "verify", "--key", keyPath, bundlePath)
	if code != 0 || !strings.Contains(stdout, "which the bundle's key vouches for") || !strings.Contains(stdout, keyA.Fingerprint()) || stderr != "" {
		t.Errorf("verify --key: exit %d; want the signer key named, vouched for\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
}

// TestVerifyExtraArguments: verify takes one bundle; given more, it names the ones it does
// not take (exit 2, before reading any), the first three of a long list and how many more.
func TestVerifyExtraArguments(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"verify", "a.tar.gz", "b.tar.gz"}, `limitctl: expected a bundle file (- for stdin); extra argument "b.tar.gz"`},
		{[]string{"verify", "a", "b", "c", "d", "e"}, `extra arguments "b", "c", "d" and 1 more`},
		{[]string{"verify"}, "limitctl: expected a bundle file (- for stdin)\n"},
	} {
		if code, stdout, stderr := limitctl(t, tc.args...); code != 2 || stdout != "" || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: exit %d, want 2 with %q\nstdout: %s\nstderr: %s", tc.args, code, tc.want, stdout, stderr)
		}
	}
}
