package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/limitgraph/limit/sdk/runner"
)

// TestSIGTERMKeepsTheSession: a SIGTERM to the plugin while its host lives (systemd
// stopping limitd signals every process of its unit) neither closes the session nor
// stops the execution running in it: the host finishes it and stops the process itself.
func TestSIGTERMKeepsTheSession(t *testing.T) {
	t.Parallel()
	l, logs := launchLogged(t, map[string]any{"max_disk_bytes": 0})
	s := openOn(t, l, nil)
	// The code waits for a file the test writes once the plugin has had its SIGTERM.
	done := make(chan outcome, 1)
	go func() {
		done <- s.run("import os, time\nopen('started', 'w').close()\nwhile not os.path.exists('proceed'):\n    time.sleep(0.01)\nprint('finished')", time.Minute)
	}()
	waitFor(t, 30*time.Second, "the execution to run", func() bool {
		_, err := os.Stat(filepath.Join(s.sess.WorkDir, "started"))
		return err == nil
	})
	if err := syscall.Kill(l.pid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the plugin to have the SIGTERM", func() bool { return strings.Contains(logs.String(), "SIGTERM ignored") })
	if err := os.WriteFile(filepath.Join(s.sess.WorkDir, "proceed"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	e := <-done
	if e.err != nil || e.res.Status != runner.StatusOK || !strings.Contains(e.stdout, "finished") {
		t.Fatalf("execution across a SIGTERM: %s", e)
	}
	s.mustRun("print('alive')")
}
