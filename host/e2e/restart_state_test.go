package e2e

import (
	"testing"

	"github.com/limitgraph/limit/sdk/client"
)

// TestStateResetAfterRestart: a session's first execution on a restarted limitd runs in a
// fresh interpreter, and its result says state_reset, as after a crash or an idle stop;
// the next does not. A session that had no Python process before the restart gets none.
// The session's files outlive the graceful stop (the stop used to close every session for
// good, which removed them).
func TestStateResetAfterRestart(t *testing.T) {
	config := pythonConfigWith(t, t.TempDir(), "")
	d := start(t, config)
	used, err := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: "used"})
	if err != nil {
		t.Fatal(err)
	}
	unused, err := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: "unused"})
	if err != nil {
		t.Fatal(err)
	}
	run := func(d *daemon, s *client.Session, code string) *client.ExecutionResult {
		t.Helper()
		r, err := d.c.Execute(ctx, s.ID, client.ExecuteRequest{Runner: "python", Input: code})
		if err != nil {
			t.Fatalf("execute %q: %v", code, err)
		}
		return r
	}
	if r := run(d, used, "x = 41\nopen('kept.txt', 'w').write('from before')"); r.Status != "ok" || r.StateReset {
		t.Fatalf("first execution: %+v", r)
	}
	if r := run(d, used, "print(x + 1)"); r.Status != "ok" || r.StateReset || r.Stdout != "42\n" {
		t.Fatalf("same process: %+v", r)
	}
	d.stop()

	d = start(t, config)
	if r := run(d, used, "print(x + 1)"); r.Status != "error" || !r.StateReset {
		t.Errorf("after the restart, the variable is gone and the result must say so: %+v", r)
	}
	if r := run(d, used, "print(open('kept.txt').read())"); r.Status != "ok" || r.StateReset || r.Stdout != "from before\n" {
		t.Errorf("the next execution on the restarted limitd, reading the session's file: %+v", r)
	}
	if r := run(d, unused, "print(1)"); r.Status != "ok" || r.StateReset {
		t.Errorf("a session's first Python process ever: %+v", r)
	}
}
