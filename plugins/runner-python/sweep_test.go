package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestSweepStaleCgroups: a cgroup left by a plugin that died (its pid in the name, no
// longer running) is emptied of what still runs in it and removed by sweepStaleCgroups,
// which a pre-started plugin runs while it waits; a live plugin's cgroup is left alone.
// Both ways are checked: the call itself, and a configured runner preparing for its
// session with no session opened.
func TestSweepStaleCgroups(t *testing.T) {
	mounts, err := cgroupV1Mounts()
	if err != nil || mounts["pids"] == "" || os.Geteuid() != 0 {
		t.Skipf("needs root and the cgroup v1 pids controller (mounts %v, %v)", mounts, err)
	}
	own, err := ownCgroups()
	if err != nil {
		t.Fatal(err)
	}
	parent := filepath.Join(mounts["pids"], own["pids"])
	for _, tc := range []struct {
		name  string
		sweep func(t *testing.T)
	}{
		{"sweepStaleCgroups", func(*testing.T) { sweepStaleCgroups() }},
		{"prepare", func(t *testing.T) {
			r, initPID := prepared(t)
			if err := r.CloseSession(context.Background()); err != nil {
				t.Error(err)
			}
			waitGone(t, initPID)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A pid that ran and is gone: the "dead plugin".
			gone := exec.Command("true")
			if err := gone.Run(); err != nil {
				t.Fatal(err)
			}
			stale := filepath.Join(parent, fmt.Sprintf("%s%d-sweeptest", cgroupPrefix, gone.Process.Pid))
			live := filepath.Join(parent, fmt.Sprintf("%s%d-sweeptest", cgroupPrefix, os.Getpid()))
			for _, d := range []string{stale, live} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Skipf("cannot create a cgroup here: %v", err)
				}
				t.Cleanup(func() { _ = os.Remove(d) })
			}
			// What the dead plugin's session left running, in its cgroup.
			left := exec.Command("sleep", "300")
			if err := left.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- left.Wait() }()
			t.Cleanup(func() { _ = left.Process.Kill() })
			if err := os.WriteFile(filepath.Join(stale, "cgroup.procs"), []byte(strconv.Itoa(left.Process.Pid)), 0o644); err != nil {
				t.Fatal(err)
			}

			tc.sweep(t)

			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("the process left in the dead plugin's cgroup still runs after the sweep")
			}
			if _, err := os.Stat(stale); !os.IsNotExist(err) {
				t.Errorf("the dead plugin's cgroup is still there: %v", err)
			}
			if _, err := os.Stat(live); err != nil {
				t.Errorf("a live plugin's cgroup was swept: %v", err)
			}
		})
	}
}
