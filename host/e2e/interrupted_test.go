package e2e

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/limitgraph/limit/internal/testbin"
	"github.com/limitgraph/limit/sdk/client"
)

// TestInterruptedExecutionSettledAtStart: limitd killed while an execution runs leaves its
// trace with only its created entry; the next start appends an executed entry with status
// "interrupted", and the chain still verifies.
func TestInterruptedExecutionSettledAtStart(t *testing.T) {
	testbin.Plugin(t, "storage-bolt")
	testbin.Plugin(t, "runner-python")
	cfg := writeConfig(t, fmt.Sprintf(`host {
  listen     = "127.0.0.1:0"
  data_dir   = %q
  plugin_dir = %q
}
storage "bolt" {}
runner "python" {}
`, t.TempDir(), testbin.PluginDir(t)))
	d := start(t, cfg)
	s, err := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: "long"})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		_, _ = d.c.Execute(ctx, s.ID, client.ExecuteRequest{Runner: "python", Input: "import time; time.sleep(120)"})
	}()
	// The trace of a long execution is created while it runs.
	var id string
	for deadline := time.Now().Add(60 * time.Second); id == ""; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the running execution's trace never appeared")
		}
		if l, err := d.c.ListTraces(ctx, s.ID, 10, ""); err == nil && len(l.Traces) > 0 {
			id = l.Traces[0].ID
		}
	}
	killDaemon(t, d)

	d = start(t, cfg)
	tr, err := d.c.GetTrace(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var outcome map[string]any
	for _, e := range tr.Provenance {
		if e.Kind == "executed" {
			if err := json.Unmarshal(e.Data, &outcome); err != nil {
				t.Fatal(err)
			}
			if e.Agent != "limitd" {
				t.Errorf("executed entry by %q, want limitd", e.Agent)
			}
		}
	}
	if outcome["status"] != "interrupted" {
		t.Fatalf("after the restart the trace's outcome is %v, want status interrupted (chain %d entries)", outcome, len(tr.Provenance))
	}
	v, err := d.c.VerifyProvenance(ctx, id)
	if err != nil || !v.Valid {
		t.Fatalf("verify: %+v %v", v, err)
	}
	// Settled once: a further restart adds nothing.
	n := len(tr.Provenance)
	d.stop()
	d = start(t, cfg)
	if tr, err := d.c.GetTrace(ctx, id); err != nil || len(tr.Provenance) != n {
		t.Fatalf("after a second restart: %v entries (was %d), %v", len(tr.Provenance), n, err)
	}
	if r, err := d.c.Execute(ctx, s.ID, client.ExecuteRequest{Runner: "python", Input: "print(1)"}); err != nil || r.Status != "ok" {
		t.Fatalf("the session after the restarts: %+v %v", r, err)
	}
}
