package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/limitgraph/limit/internal/testbin"
	"github.com/limitgraph/limit/sdk/client"
	"github.com/limitgraph/limit/sdk/sdktest"
)

// restore runs `limitd -config cfg -restore archive` and returns its output and exit code.
func restore(t *testing.T, cfg, archive string) (string, int) {
	t.Helper()
	cmd := exec.Command(testbin.Command(t, "limitd"), "-config", cfg, "-restore", archive)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

// hostState is what a host's API shows of its record: every trace of its sessions with
// its chain's head and verification, and the shared record.
func hostState(t *testing.T, d *daemon) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	ss, err := d.c.ListSessions(ctx, 100, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range ss.Sessions {
		out["session "+s.ID] = s.Name + " " + s.State
		tl, err := d.c.ListTraces(ctx, s.ID, 100, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, tr := range tl.Traces {
			v, err := d.c.VerifyProvenance(ctx, tr.ID)
			if err != nil {
				t.Fatal(err)
			}
			out["trace "+tr.ID] = fmt.Sprintf("%s %s flags=%d valid=%v length=%d head=%s by=%s", tr.Kind, tr.Status, len(tr.Flags), v.Valid, v.Length, v.Head, v.SignedBy)
		}
	}
	ml, err := d.c.ListMerged(ctx, 100, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range ml.Traces {
		out["merged "+tr.ID] = tr.Status
	}
	return out
}

// TestOnlineBackupRestore backs a running bolt host up through the API, restores the
// archive into a SQLite host with limitd -restore, and finds the same record there, signed
// by the same key; a restore is refused over data, over another host's node id, and one
// cut short is finished by running it again.
func TestOnlineBackupRestore(t *testing.T) {
	ctx := context.Background()
	d := start(t, config(t, t.TempDir(), "default"))
	s, err := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: "kept"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.c.Execute(ctx, s.ID, client.ExecuteRequest{Runner: "echo", Input: "work to keep"}); err != nil {
		t.Fatal(err)
	}
	tr, err := d.c.CreateTrace(ctx, s.ID, map[string]any{"model": "m1"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := d.c.AppendProvenance(ctx, tr.ID, "step", "agent-x", map[string]any{"i": i}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.c.Merge(ctx, tr.ID); err != nil {
		t.Fatal(err)
	}
	flagged, err := d.c.CreateTrace(ctx, s.ID, map[string]any{"model": "m2"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.c.Flag(ctx, client.FlagRequest{TraceID: flagged.ID, Flag: "unsafe", Reason: "review", Severity: 8}); err != nil {
		t.Fatal(err)
	}
	want := hostState(t, d)
	key, err := d.c.ProvenanceKey(ctx)
	if err != nil {
		t.Fatal(err)
	}

	archive := filepath.Join(t.TempDir(), "host.tar.gz")
	out, code := limitctl(t, d.url, "backup", "-f", archive)
	if code != 0 || !strings.Contains(out, "wrote "+archive) {
		t.Fatalf("limitctl backup: exit %d\n%s", code, out)
	}
	fi, err := os.Stat(archive)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("the archive (it holds the private key) has mode %v, want 0600", fi.Mode().Perm())
	}
	// The host keeps serving, and left no copy of its storage behind.
	if _, err := d.c.Execute(ctx, s.ID, client.ExecuteRequest{Runner: "echo", Input: "after the backup"}); err != nil {
		t.Fatal(err)
	}
	d.stop()

	// Into SQLite, in a fresh data_dir.
	pluginDir := auditPluginDir(t, "sqlite", false)
	dir2 := t.TempDir()
	cfg2 := auditConfig(t, "sqlite", `path = "limit.sqlite"`, pluginDir, dir2, false)
	out, code = restore(t, cfg2, archive)
	if code != 0 || !strings.Contains(out, "restored the backup of node") || !strings.Contains(out, key.Fingerprint) {
		t.Fatalf("restore: exit %d\n%s", code, out)
	}
	if left, _ := filepath.Glob(filepath.Join(dir2, "backup-*")); len(left) > 0 {
		t.Errorf("restore left %v", left)
	}
	// Again over what it wrote: refused, nothing changed.
	out, code = restore(t, cfg2, archive)
	if code == 0 || !strings.Contains(out, "already holds data") {
		t.Fatalf("a second restore over the data: exit %d\n%s", code, out)
	}
	d2 := start(t, cfg2)
	got := hostState(t, d2)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: restored %q, backed up %q", k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok && !strings.HasPrefix(k, "trace ") {
			t.Errorf("restored %s, which the backup did not hold", k)
		}
	}
	key2, err := d2.c.ProvenanceKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if key2.Fingerprint != key.Fingerprint {
		t.Errorf("restored host signs with %s, the backed-up one with %s", key2.Fingerprint, key.Fingerprint)
	}
	// The restored host appends to the chains it restored.
	if _, err := d2.c.AppendProvenance(ctx, flagged.ID, "review", "agent-x", map[string]any{"ok": true}); err != nil {
		t.Fatalf("append to a restored chain: %v", err)
	}
	if _, err := d2.c.Execute(ctx, s.ID, client.ExecuteRequest{Runner: "echo", Input: "on the restored host"}); err != nil {
		t.Fatal(err)
	}
	d2.stop()

	// From a pipe (`-restore -`), as from `ssh old limitctl backup -f - |`: the archive is
	// read twice, so it is copied to data_dir first, and the copy removed.
	dir5 := t.TempDir()
	in, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	cmd5 := exec.Command(testbin.Command(t, "limitd"), "-config", auditConfig(t, "sqlite", `path = "limit.sqlite"`, pluginDir, dir5, false), "-restore", "-")
	cmd5.Stdin = in
	b5, err := cmd5.CombinedOutput()
	in.Close()
	if err != nil || !strings.Contains(string(b5), "restored the backup of node") {
		t.Fatalf("restore from standard input: %v\n%s", err, b5)
	}
	if left, _ := filepath.Glob(filepath.Join(dir5, "restore-*")); len(left) > 0 {
		t.Errorf("the copy of the archive is left: %v", left)
	}
	// An empty archive name (an unset variable in a script) is a usage error, not a start.
	if out, code := restore(t, cfg2, ""); code != 2 || !strings.Contains(out, "-restore needs an archive") {
		t.Errorf("-restore \"\": exit %d\n%s", code, out)
	}

	// A data_dir that belongs to another host (its own node id) is not overwritten.
	// (Its key too: a node id beside no key is one a limitd that never served made, which
	// the backup's replaces.)
	dir3 := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir3, "node_id"), []byte("another-host\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir3, "provenance.ed25519"), bytes.Repeat([]byte{9}, 32), 0o600); err != nil {
		t.Fatal(err)
	}
	out, code = restore(t, auditConfig(t, "sqlite", `path = "limit.sqlite"`, pluginDir, dir3, false), archive)
	if code == 0 || !strings.Contains(out, "already holds another host's") {
		t.Fatalf("restore over another host's data_dir: exit %d\n%s", code, out)
	}

	// A restore cut short (its record still in storage): limitd refuses to start on it,
	// and the same restore run again finishes it.
	dir4 := t.TempDir()
	boltDir := auditPluginDir(t, "bolt", false)
	cfg4 := auditConfig(t, "bolt", "", boltDir, dir4, false)
	var man struct {
		Node string    `json:"node"`
		Made time.Time `json:"made"`
	}
	readManifest(t, archive, &man)
	st, stop, err := sdktest.LaunchStorage(ctx, filepath.Join(boltDir, "limit-storage-bolt"), nil, []byte(`{}`), dir4)
	if err != nil {
		t.Fatal(err)
	}
	mark := fmt.Sprintf("node %s, made %s", man.Node, man.Made.Format(time.RFC3339))
	if err := st.Put(ctx, "t/default/index", []byte("meta/restore"), []byte(mark)); err != nil {
		t.Fatal(err)
	}
	stop()
	cmd := exec.Command(testbin.Command(t, "limitd"), "-config", cfg4)
	b, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(b), "did not finish") {
		t.Fatalf("limitd on an unfinished restore: %v\n%s", err, b)
	}
	out, code = restore(t, cfg4, archive)
	if code != 0 || !strings.Contains(out, "finished restoring") {
		t.Fatalf("finishing the restore: exit %d\n%s", code, out)
	}
	d4 := start(t, cfg4)
	got = hostState(t, d4)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("after a finished restore, %s: %q, backed up %q", k, got[k], v)
		}
	}
}

// readManifest decodes the archive's manifest with `tar -xzOf`.
func readManifest(t *testing.T, archive string, v any) {
	t.Helper()
	b, err := exec.Command("tar", "-xzOf", archive, "limit-backup.json").Output()
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}
