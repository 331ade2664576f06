package e2e

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/limitgraph/limit/sdk/client"
)

// pidOf returns the pid in the echo runner's output ("session=… pid=N n=…").
func pidOf(t *testing.T, out string) string {
	t.Helper()
	for _, f := range strings.Fields(out) {
		if p, ok := strings.CutPrefix(f, "pid="); ok {
			return p
		}
	}
	t.Fatalf("no pid in %q", out)
	return ""
}

// TestRunnerFailureReplacesProcess: a runner that panics in Execute, or never ends an
// execution, fails that execution with state_reset, and the session's next execution runs
// in a fresh process, as the error says (the host used to keep the failed process).
func TestRunnerFailureReplacesProcess(t *testing.T) {
	ctx := context.Background()
	d := start(t, config(t, filepath.Join(t.TempDir(), "data"), "default"))
	s, err := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: "faults"})
	if err != nil {
		t.Fatal(err)
	}
	first, err := d.c.Execute(ctx, s.ID, client.ExecuteRequest{Runner: "echo", Input: "x"})
	if err != nil || first.Status != "ok" {
		t.Fatalf("first: %+v %v", first, err)
	}
	pid := pidOf(t, first.Stdout)
	for _, tc := range []struct{ input, status, why string }{
		{"panic", "error", "plugin panic: echo: asked to panic"},
		{"hang", "timeout", "did not end the execution within its 200ms timeout"},
	} {
		res, err := d.c.Execute(ctx, s.ID, client.ExecuteRequest{Runner: "echo", Input: tc.input, TimeoutMS: 200})
		if err != nil || res.Status != tc.status || !res.StateReset || !strings.Contains(res.Error, tc.why) {
			t.Fatalf("%s: %+v %v, want status %s with state_reset and %q", tc.input, res, err, tc.status, tc.why)
		}
		after, err := d.c.Execute(ctx, s.ID, client.ExecuteRequest{Runner: "echo", Input: "y"})
		if err != nil || after.Status != "ok" || !strings.Contains(after.Stdout, "n=1 ") {
			t.Fatalf("after %s: %+v %v, want a fresh process (n=1)", tc.input, after, err)
		}
		if p := pidOf(t, after.Stdout); p == pid {
			t.Fatalf("after %s: the session still runs in process %s", tc.input, p)
		} else {
			pid = p
		}
	}
}

// TestClientGoneIsCancelled: an execution whose client goes away is recorded as cancelled,
// not as a runner failure, its output still goes through the post-execution rules, and
// the session keeps its process.
func TestClientGoneIsCancelled(t *testing.T) {
	ctx := context.Background()
	d := start(t, config(t, filepath.Join(t.TempDir(), "data"), "default"))
	s, err := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: "gone"})
	if err != nil {
		t.Fatal(err)
	}
	first, err := d.c.Execute(ctx, s.ID, client.ExecuteRequest{Runner: "echo", Input: "x"})
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	go func() { time.Sleep(500 * time.Millisecond); cancel() }()
	if _, err := d.c.ExecuteStream(cctx, s.ID, client.ExecuteRequest{Runner: "echo", Input: "sleep:5000"}, func(client.Event) {}); err == nil {
		t.Fatal("a cancelled client got a result")
	}
	var executed map[string]any
	var kinds []string
	for deadline := time.Now().Add(10 * time.Second); executed == nil; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no executed entry recorded: %v", kinds)
		}
		list, err := d.c.ListTraces(ctx, s.ID, 100, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, tr := range list.Traces {
			v, err := d.c.GetTrace(ctx, tr.ID)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(v.Data), "sleep:5000") {
				continue
			}
			kinds = kinds[:0]
			for _, e := range v.Provenance {
				kinds = append(kinds, e.Kind)
				if e.Kind == "executed" {
					if err := json.Unmarshal(e.Data, &executed); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
	}
	if executed["status"] != "cancelled" || executed["state_reset"] != false || !strings.Contains(executed["error"].(string), "client went away") {
		t.Fatalf("executed entry %v, want status cancelled without state_reset", executed)
	}
	for _, k := range kinds {
		if k == "governance_error" {
			t.Fatalf("entries %v: the output's rules did not run", kinds)
		}
	}
	after, err := d.c.Execute(ctx, s.ID, client.ExecuteRequest{Runner: "echo", Input: "y"})
	if err != nil || after.Status != "ok" || pidOf(t, after.Stdout) != pidOf(t, first.Stdout) {
		t.Fatalf("after: %+v %v, want the same process", after, err)
	}
}
