package e2e

import (
	"slices"
	"testing"
	"time"

	"github.com/limitgraph/limit/sdk/client"
)

// kinds returns the kinds of a trace's provenance entries, in order.
func kinds(tv *client.TraceView) []string {
	out := make([]string, len(tv.Provenance))
	for i, e := range tv.Provenance {
		out[i] = e.Kind
	}
	return out
}

// TestExecutionRecord checks the trace an execution leaves: a short one is stored once,
// complete, with the entries in the order things happened (pre-execution flags before the
// executed entry, output flags after it); a long one is stored while it runs, so it is
// visible before it ends, and its outcome is appended.
func TestExecutionRecord(t *testing.T) {
	d := start(t, config(t, t.TempDir(), "default"))
	s, err := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: "record"})
	if err != nil {
		t.Fatal(err)
	}

	before := time.Now().UTC()
	r, err := d.c.Execute(ctx, s.ID, client.ExecuteRequest{Runner: "echo", Input: "lowrisk secret"})
	if err != nil {
		t.Fatal(err)
	}
	tv, err := d.c.GetTrace(ctx, r.TraceID)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"created", "flagged", "executed", "flagged"}
	if got := kinds(tv); !slices.Equal(got, want) {
		t.Fatalf("short execution: entries %v, want %v", got, want)
	}
	if f := tv.Provenance[1]; f.Kind != "flagged" || len(tv.Flags) != 2 || tv.Flags[0].Flag != "anomaly" || tv.Flags[1].Flag != "high_risk" {
		t.Fatalf("flags %+v", tv.Flags)
	}
	// Entries carry the time they describe: created and the pre-execution verdict at the
	// start, never after the executed entry.
	created, executed := tv.Provenance[0].Timestamp, tv.Provenance[2].Timestamp
	if created.Before(before.Add(-time.Second)) || executed.Before(created) || tv.Provenance[1].Timestamp.After(executed) {
		t.Fatalf("timestamps: created %v, pre flag %v, executed %v", created, tv.Provenance[1].Timestamp, executed)
	}
	if v, err := d.c.VerifyProvenance(ctx, r.TraceID); err != nil || !v.Valid || v.Length != 4 {
		t.Fatalf("verify %+v %v", v, err)
	}

	// A long execution: its trace appears while it runs.
	type answer struct {
		r   *client.ExecutionResult
		err error
	}
	done := make(chan answer, 1)
	go func() {
		r, err := d.c.Execute(ctx, s.ID, client.ExecuteRequest{Runner: "echo", Input: "sleep:3000"})
		done <- answer{r, err}
	}()
	var running *client.Trace
	deadline := time.Now().Add(2500 * time.Millisecond)
	for running == nil && time.Now().Before(deadline) {
		list, err := d.c.ListTraces(ctx, s.ID, 100, "")
		if err != nil {
			t.Fatal(err)
		}
		for i := range list.Traces {
			if list.Traces[i].ID != r.TraceID {
				running = &list.Traces[i]
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if running == nil {
		t.Fatal("the running execution's trace was not stored while it ran")
	}
	mid, err := d.c.GetTrace(ctx, running.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got := kinds(mid); !slices.Equal(got, []string{"created"}) {
		t.Fatalf("while running: entries %v, want [created]", got)
	}
	a := <-done
	if a.err != nil {
		t.Fatal(a.err)
	}
	if a.r.TraceID != running.ID || a.r.Status != "ok" {
		t.Fatalf("long execution: %+v (trace seen while running: %s)", a.r, running.ID)
	}
	end, err := d.c.GetTrace(ctx, running.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got := kinds(end); !slices.Equal(got, []string{"created", "executed"}) {
		t.Fatalf("after the run: entries %v, want [created executed]", got)
	}
	if v, err := d.c.VerifyProvenance(ctx, running.ID); err != nil || !v.Valid || v.Length != 2 {
		t.Fatalf("verify %+v %v", v, err)
	}
}
