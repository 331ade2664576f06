package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/limitgraph/limit/host/trace"
	"github.com/limitgraph/limit/sdk/client"
)

// TestHostsTrustEachOthersKeys: two hosts on one PostgreSQL database, each with its own
// provenance key. Before they trust each other, a trace one signed does not verify on the
// other (foreign_key, naming the signer's node) and is not appended to there. Restarted
// with each other's public key (as `limitctl key -f` writes it) in host.trusted_keys, each
// verifies, appends to, flags, merges and exports the other's traces, signing what it adds
// with its own key; the chain then holds checkpoints of both keys and verifies on both, and
// the bundle one exports verifies offline against that host's key alone.
func TestHostsTrustEachOthersKeys(t *testing.T) {
	u, _ := pgSchema(t, pgTestURL(t))
	pluginDir := auditPluginDir(t, "postgres", false)
	storageCfg := fmt.Sprintf("url = %q", u)
	dataA, dataB := t.TempDir(), t.TempDir()
	a := start(t, auditConfig(t, "postgres", storageCfg, pluginDir, dataA, false))
	b := start(t, auditConfig(t, "postgres", storageCfg, pluginDir, dataB, false))

	// Each host's public key, saved as an operator would.
	keyDir := t.TempDir()
	pemA, pemB := filepath.Join(keyDir, "node-a.pem"), filepath.Join(keyDir, "node-b.pem")
	for _, h := range []struct {
		d    *daemon
		path string
	}{{a, pemA}, {b, pemB}} {
		if out, code := limitctl(t, h.d.url, "key", "-f", h.path); code != 0 {
			t.Fatalf("limitctl key -f: %d %s", code, out)
		}
	}
	keyA, err := a.c.ProvenanceKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	keyB, err := b.c.ProvenanceKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if keyA.Fingerprint == keyB.Fingerprint {
		t.Fatal("the two hosts have one key")
	}

	s, err := b.c.CreateSession(ctx, client.CreateSessionRequest{Name: "on b"})
	if err != nil {
		t.Fatal(err)
	}
	nodeB := s.OwnerNode
	tr, err := b.c.CreateTrace(ctx, s.ID, map[string]any{"step": 1})
	if err != nil {
		t.Fatal(err)
	}
	toMerge, err := b.c.CreateTrace(ctx, s.ID, map[string]any{"step": 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.c.AppendProvenance(ctx, tr.ID, "note", "agent-b", map[string]any{"by": "b"}); err != nil {
		t.Fatal(err)
	}

	// Not trusted yet: today's refusals.
	v, err := a.c.VerifyProvenance(ctx, tr.ID)
	if err != nil || v.Valid || v.ForeignKey != keyB.Fingerprint || v.ForeignNode != nodeB {
		t.Fatalf("A verifies B's trace before trusting B's key: %+v %v", v, err)
	}
	_, err = a.c.AppendProvenance(ctx, tr.ID, "note", "agent-a", nil)
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != 409 || !strings.Contains(ce.Detail, keyB.Fingerprint) {
		t.Fatalf("A appends to B's trace before trusting B's key: %v", err)
	}

	// Restarted, each trusting the other's key.
	a.stop()
	b.stop()
	a = start(t, trustingConfig(t, storageCfg, pluginDir, dataA, pemB))
	b = start(t, trustingConfig(t, storageCfg, pluginDir, dataB, pemA))

	v, err = a.c.VerifyProvenance(ctx, tr.ID)
	if err != nil || !v.Valid || v.SignedBy != keyB.Fingerprint || v.SignerNode != nodeB || v.ForeignKey != "" {
		t.Fatalf("A verifies B's trace, trusting B's key: %+v %v", v, err)
	}
	if _, err := a.c.AppendProvenance(ctx, tr.ID, "note", "agent-a", map[string]any{"by": "a"}); err != nil {
		t.Fatalf("A appends to B's trace: %v", err)
	}
	if _, err := a.c.Flag(ctx, client.FlagRequest{TraceID: tr.ID, Flag: "anomaly", Severity: 2, Reason: "checked on a"}); err != nil {
		t.Fatalf("A flags B's trace: %v", err)
	}
	if _, err := b.c.AppendProvenance(ctx, tr.ID, "note", "agent-b", map[string]any{"by": "b again"}); err != nil {
		t.Fatalf("B appends after A: %v", err)
	}
	for name, d := range map[string]*daemon{"A": a, "B": b} {
		v, err := d.c.VerifyProvenance(ctx, tr.ID)
		if err != nil || !v.Valid || v.SignedLength != v.Length || v.Length != 5 {
			t.Errorf("%s verifies the chain both signed: %+v %v", name, v, err)
		}
	}

	// A merge through A of a trace B signed.
	if _, err := a.c.AppendProvenance(ctx, toMerge.ID, "note", "agent-a", nil); err != nil {
		t.Fatal(err)
	}
	if m, err := a.c.Merge(ctx, toMerge.ID); err != nil || !m.Merged {
		t.Fatalf("A merges B's trace: %+v %v", m, err)
	}

	// A's bundle of the session verifies offline against A's key, naming B's as a signer.
	var bundle bytes.Buffer
	if err := a.c.Export(ctx, client.ExportRequest{SessionID: s.ID}, &bundle); err != nil {
		t.Fatalf("A exports the session: %v", err)
	}
	sum, err := trace.VerifyBundle(bytes.NewReader(bundle.Bytes()), trace.VerifyOptions{})
	if err != nil || sum.KeyFingerprint != keyA.Fingerprint || len(sum.SignerFingerprints) != 1 || sum.SignerFingerprints[0] != keyB.Fingerprint || sum.Format != trace.BundleFormatSigners {
		t.Fatalf("the bundle: %+v %v", sum, err)
	}
	file := filepath.Join(t.TempDir(), "bundle.tar.gz")
	if err := os.WriteFile(file, bundle.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	out, code := limitctl(t, a.url, "verify", "--key", pemA, file)
	if code != 0 || !strings.Contains(out, "valid") || !strings.Contains(out, "also signed by key "+keyB.Fingerprint) {
		t.Errorf("limitctl verify --key node-a.pem: %d %s", code, out)
	}
	if out, code := limitctl(t, a.url, "verify", "--key", pemB, file); code != 1 || !strings.Contains(out, "is not the trusted key") {
		t.Errorf("limitctl verify --key node-b.pem (the bundle is A's): %d %s", code, out)
	}
}

// trustingConfig is auditConfig with host.trusted_keys naming the PEM files given.
func trustingConfig(t *testing.T, storageCfg, pluginDir, dataDir string, pems ...string) string {
	t.Helper()
	path := auditConfig(t, "postgres", storageCfg, pluginDir, dataDir, false)
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	list := ""
	for _, p := range pems {
		list += fmt.Sprintf("%q, ", p)
	}
	out := strings.Replace(string(src), "host {\n", "host {\n  trusted_keys = ["+list+"]\n", 1)
	return writeConfig(t, out)
}
