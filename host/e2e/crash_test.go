package e2e

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/limitgraph/limit/sdk/client"
)

// TestKillNineKeepsAcknowledgedTraces kills limitd with SIGKILL while clients create
// traces and append provenance, restarts it on the same data, and checks that every
// acknowledged trace and entry is there and every chain still verifies.
func TestKillNineKeepsAcknowledgedTraces(t *testing.T) {
	dataDir := t.TempDir()
	cfg := config(t, dataDir, "default")
	for round := 0; round < 3; round++ {
		d := start(t, cfg)
		s, err := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: "crash"})
		if err != nil {
			t.Fatal(err)
		}
		type acked struct {
			id      string
			entries int64 // acknowledged chain length
		}
		var mu sync.Mutex
		var got []acked
		cctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for cctx.Err() == nil {
					tr, err := d.c.CreateTrace(cctx, s.ID, map[string]any{"writer": w})
					if err != nil {
						return
					}
					a := acked{id: tr.ID, entries: tr.Length}
					if e, err := d.c.AppendProvenance(cctx, tr.ID, "step", "writer", map[string]any{"n": 1}); err == nil {
						a.entries = e.Index + 1
					}
					mu.Lock()
					got = append(got, a)
					mu.Unlock()
				}
			}()
		}
		time.Sleep(time.Duration(300+200*round) * time.Millisecond)
		if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		d.cmd.Wait()
		cancel()
		wg.Wait()
		if len(got) == 0 {
			t.Fatalf("round %d: nothing was acknowledged before the kill", round)
		}
		d2 := start(t, cfg)
		for _, a := range got {
			tv, err := d2.c.GetTrace(ctx, a.id)
			if err != nil {
				t.Fatalf("round %d: acknowledged trace %s lost: %v", round, a.id, err)
			}
			if int64(len(tv.Provenance)) < a.entries {
				t.Fatalf("round %d: trace %s has %d entries, %d were acknowledged", round, a.id, len(tv.Provenance), a.entries)
			}
			v, err := d2.c.VerifyProvenance(ctx, a.id)
			if err != nil || !v.Valid {
				t.Fatalf("round %d: trace %s does not verify after the crash: %+v %v", round, a.id, v, err)
			}
		}
		t.Logf("round %d: %d acknowledged traces survived SIGKILL of limitd", round, len(got))
		d2.stop()
	}
}

// TestKillNineLeavesNoSockets: the plugins' Unix sockets are in data_dir/run, not the
// shared /tmp; those a limitd killed with SIGKILL leaves there (its plugins die with it
// and cannot remove theirs) are removed when limitd starts again on that data_dir.
func TestKillNineLeavesNoSockets(t *testing.T) {
	dataDir := t.TempDir()
	run := filepath.Join(dataDir, "run")
	cfg := config(t, dataDir, "default")
	d := start(t, cfg)
	s, err := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: "sockets"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.c.Execute(ctx, s.ID, client.ExecuteRequest{Runner: "echo", Input: "x"}); err != nil {
		t.Fatal(err)
	}
	// Storage, the rule, the session's runner and its pool's spare: a socket each.
	left, _ := filepath.Glob(filepath.Join(run, "plugin*"))
	if len(left) < 3 {
		t.Fatalf("sockets in %s while limitd runs: %v, want one per plugin process", run, left)
	}
	killDaemon(t, d)
	for _, p := range left {
		if _, err := os.Lstat(p); err != nil {
			t.Fatalf("%s after the SIGKILL: %v (the test expects it left behind)", p, err)
		}
	}
	d2 := start(t, cfg)
	for _, p := range left {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("stale %s after the restart: %v", p, err)
		}
	}
	d2.stop()
	if ents, err := os.ReadDir(run); err != nil || len(ents) != 0 {
		t.Errorf("%s after a clean stop: %v %v, want it empty", run, ents, err)
	}
}
