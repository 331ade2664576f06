package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/limitgraph/limit/sdk/base"
)

// TestProbeDirInDataDir: the health probe's work dir is made in the data_dir the host gave
// the runner and removed after the probe; one a runner process killed during a probe left
// there is removed when the next one is configured, while one a live probe holds (locked)
// and one made a moment ago are left alone.
func TestProbeDirInDataDir(t *testing.T) {
	ctx := context.Background()
	dataDir := t.TempDir()
	dir := filepath.Join(dataDir, probeDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	stale, live, fresh := filepath.Join(dir, "probe-1"), filepath.Join(dir, "probe-2"), filepath.Join(dir, "probe-3")
	old := time.Now().Add(-2 * probeSweepAge)
	for _, p := range []string{stale, live, fresh} {
		if err := os.MkdirAll(filepath.Join(p, "sub"), 0o700); err != nil {
			t.Fatal(err)
		}
		if p != fresh {
			if err := os.Chtimes(p, old, old); err != nil {
				t.Fatal(err)
			}
		}
	}
	held, err := os.Open(live)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if err := syscall.Flock(int(held.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}

	r := newRunner(nil)
	t.Cleanup(func() { r.CloseSession(ctx) })
	if ds := r.Configure(ctx, base.ConfigureRequest{Config: []byte(`{}`), DataDir: dataDir}); ds.HasErrors() {
		t.Fatal(ds.Err())
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the stale probe dir %s after the runner started: %v", stale, err)
	}
	for _, p := range []string{live, fresh} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s was removed: %v", p, err)
		}
	}

	h, err := r.Health(ctx)
	if err != nil || !strings.Contains(h.Message, "probe") {
		t.Fatalf("health without a session: %+v %v", h, err)
	}
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "probe-2 probe-3" {
		t.Errorf("%s holds %v after the probe, want only the two dirs left before it", dir, names)
	}
}
