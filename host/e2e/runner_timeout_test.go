package e2e

import (
	"encoding/json"
	"testing"

	"github.com/limitgraph/limit/sdk/client"
)

// TestRunnerConfiguredTimeout: an execution that names no timeout, in a session that names
// none, gets the runner's configured timeout (here 1 s), not the host's default of 60 s;
// the session's limits.timeout_ms and the request's timeout_ms still come first. The
// trace records the timeout that applied.
func TestRunnerConfiguredTimeout(t *testing.T) {
	d := start(t, pythonConfigWith(t, t.TempDir(), `
  config {
    timeout         = "1s"
    interrupt_grace = "1s"
  }`))
	plain, err := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: "plain"})
	if err != nil {
		t.Fatal(err)
	}
	limited, err := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: "limited", Limits: client.Limits{TimeoutMS: 1500}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		session   *client.Session
		code      string
		timeoutMS uint64
		status    string
		applied   float64
	}{
		{"runner's timeout", plain, "while True: pass", 0, "timeout", 1000},
		{"runner's timeout, code within it", plain, "print(1)", 0, "ok", 1000},
		{"session's timeout", limited, "import time; time.sleep(1.2); print('slept')", 0, "ok", 1500},
		{"request's timeout", plain, "import time; time.sleep(1.2); print('slept')", 3000, "ok", 3000},
		{"request's timeout, shorter", limited, "while True: pass", 500, "timeout", 500},
	} {
		r, err := d.c.Execute(ctx, c.session.ID, client.ExecuteRequest{Runner: "python", Input: c.code, TimeoutMS: c.timeoutMS})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if r.Status != c.status {
			t.Errorf("%s: status %q, want %q (%+v)", c.name, r.Status, c.status, r)
		}
		tr, err := d.c.GetTrace(ctx, r.TraceID)
		if err != nil {
			t.Fatal(err)
		}
		var data struct {
			TimeoutMS float64 `json:"timeout_ms"`
		}
		if err := json.Unmarshal(tr.Data, &data); err != nil {
			t.Fatal(err)
		}
		if data.TimeoutMS != c.applied {
			t.Errorf("%s: trace says timeout_ms %v, want %v", c.name, data.TimeoutMS, c.applied)
		}
	}
}
