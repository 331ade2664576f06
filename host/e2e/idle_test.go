package e2e

import (
	"testing"
	"time"

	"github.com/limitgraph/limit/sdk/client"
)

// TestIdlePythonKeepsFiles: a session's Python process stopped for idleness loses its
// variables (the next result says state_reset) but not the files of the session's working
// directory, which go only when the session is deleted.
func TestIdlePythonKeepsFiles(t *testing.T) {
	d := start(t, pythonConfigWith(t, t.TempDir(), `
  idle_timeout = "300ms"
  config {
    timeout = "10s"
  }`))
	s, err := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: "idle"})
	if err != nil {
		t.Fatal(err)
	}
	run := func(code string) *client.ExecutionResult {
		t.Helper()
		r, err := d.c.Execute(ctx, s.ID, client.ExecuteRequest{Runner: "python", Input: code})
		if err != nil || r.Status != "ok" {
			t.Fatalf("execute %q: %+v, %v", code, r, err)
		}
		return r
	}
	run("x = 1\nopen('kept.txt', 'w').write('still here')")
	pid := func() int {
		h, err := d.c.Health(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range h.Plugins {
			if p.Session == s.ID {
				return p.PID
			}
		}
		return 0
	}
	for deadline := time.Now().Add(30 * time.Second); pid() != 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the idle process was not stopped")
		}
	}
	r := run("print('x' in globals(), open('kept.txt').read())")
	if !r.StateReset || r.Stdout != "False still here\n" {
		t.Fatalf("after the idle stop: state_reset %v, stdout %q; want true and the file kept", r.StateReset, r.Stdout)
	}
}
