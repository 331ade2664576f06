package daemon

import (
	"crypto/ed25519"
	"strings"
	"testing"

	"github.com/limitgraph/limit/host/backup"
	"github.com/limitgraph/limit/host/trace"
)

// TestCheckIdentity: a restore needs the backup's provenance key, matching the manifest's
// fingerprint, and its node id, matching the manifest's node.
func TestCheckIdentity(t *testing.T) {
	seed := make([]byte, ed25519.SeedSize)
	seed[0] = 7
	k, err := trace.NewKey(seed)
	if err != nil {
		t.Fatal(err)
	}
	other := make([]byte, ed25519.SeedSize)
	good := func() *backup.Archive {
		return &backup.Archive{Manifest: backup.Manifest{Node: "node-1", KeyFingerprint: k.Fingerprint()},
			Files: map[string][]byte{trace.KeyFile: seed, nodeFile: []byte("node-1\n")}}
	}
	if err := checkIdentity(good()); err != nil {
		t.Fatalf("a whole identity: %v", err)
	}
	for name, c := range map[string]struct {
		change func(a *backup.Archive)
		want   string
	}{
		"no key":       {func(a *backup.Archive) { delete(a.Files, trace.KeyFile) }, "holds no provenance key"},
		"no node id":   {func(a *backup.Archive) { delete(a.Files, nodeFile) }, "holds no node id"},
		"another key":  {func(a *backup.Archive) { a.Files[trace.KeyFile] = other }, "its manifest says " + k.Fingerprint()},
		"not a key":    {func(a *backup.Archive) { a.Files[trace.KeyFile] = []byte("short") }, "is not a key"},
		"another node": {func(a *backup.Archive) { a.Files[nodeFile] = []byte("node-2") }, `"node-2" is not the manifest's "node-1"`},
	} {
		a := good()
		c.change(a)
		if err := checkIdentity(a); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error saying %q", name, err, c.want)
		}
	}
	for rel, want := range map[string]bool{trace.KeyFile: true, nodeFile: true, "pending-outcomes/01ABC.json": true,
		"pending-outcomes/.tmp-1": false, "pending-outcomes/a/b": false, "run/evil.sh": false, "sessions/x/work/a.py": false, "pending-outcomes/": false} {
		if got := backupPath(rel); got != want {
			t.Errorf("backupPath(%q) = %v, want %v", rel, got, want)
		}
	}
}
