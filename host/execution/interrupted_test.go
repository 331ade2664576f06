package execution

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/limitgraph/limit/host/trace"
	"github.com/limitgraph/limit/host/trace/tracetest"
	"github.com/limitgraph/limit/sdk/storage"
)

// TestFinishInterrupted: a marked trace without an outcome gets an "interrupted" executed
// entry and still verifies; one with its outcome, or never created, only loses its marker;
// another node's markers are left alone; a second pass finds nothing.
func TestFinishInterrupted(t *testing.T) {
	ctx := context.Background()
	st, traces := tracetest.Mem(t)
	e := &Engine{Traces: traces, Store: st, Node: "a", Logger: hclog.NewNullLogger()}
	const sid = "01M8V4FXRZG7EWFH84V313M64M"
	mk := func(id string, outcome bool) {
		t.Helper()
		cr := trace.Creation{ID: id, SessionID: sid, Kind: trace.TraceExecution, Data: json.RawMessage(`{"input":"x"}`), Agent: Agent, At: time.Now()}
		if err := e.markRunning(ctx, cr); err != nil {
			t.Fatal(err)
		}
		if outcome {
			cr.Updates = []trace.Update{{Entries: []trace.Entry{entry(trace.KindExecuted, map[string]any{"status": "ok"})}}}
		}
		if _, _, err := traces.CreateAll(ctx, cr); err != nil {
			t.Fatal(err)
		}
	}
	cut, finished, other := trace.NewID(), trace.NewID(), trace.NewID()
	mk(cut, false)
	mk(finished, true)
	if err := e.markRunning(ctx, trace.Creation{ID: trace.NewID(), SessionID: sid}); err != nil { // never created
		t.Fatal(err)
	}
	b := &Engine{Traces: traces, Store: st, Node: "b", Logger: hclog.NewNullLogger()}
	if err := b.markRunning(ctx, trace.Creation{ID: other, SessionID: sid}); err != nil {
		t.Fatal(err)
	}

	if n, err := e.FinishInterrupted(ctx); err != nil || n != 1 {
		t.Fatalf("FinishInterrupted: %d, %v; want 1 trace completed", n, err)
	}
	chain, err := traces.Chain(ctx, cut)
	if err != nil {
		t.Fatal(err)
	}
	last := chain[len(chain)-1]
	var out struct{ Status string }
	if last.Kind != trace.KindExecuted || json.Unmarshal(last.Data, &out) != nil || out.Status != StatusInterrupted {
		t.Fatalf("the cut trace ends with %s %s, want an executed entry with status interrupted", last.Kind, last.Data)
	}
	if v, err := traces.Verify(ctx, cut); err != nil || !v.Valid {
		t.Fatalf("verify: %+v %v", v, err)
	}
	if chain, _ := traces.Chain(ctx, finished); len(chain) != 2 {
		t.Errorf("the finished trace has %d entries, want its 2", len(chain))
	}
	if _, ok, _ := st.Get(ctx, RunningNamespace, b.markerKey(other)); !ok {
		t.Error("another node's marker was removed")
	}
	if n, err := e.FinishInterrupted(ctx); err != nil || n != 0 {
		t.Fatalf("second pass: %d, %v; want nothing left", n, err)
	}
	if page, _ := st.Scan(ctx, storageScan(e.markerKey(""))); len(page.Items) != 0 {
		t.Errorf("markers left: %d", len(page.Items))
	}
}

func storageScan(prefix []byte) storage.ScanRequest {
	return storage.ScanRequest{Namespace: RunningNamespace, Prefix: prefix}
}

// TestFinishInterruptedLeavesMergedFinal: a trace merged without its outcome (before the
// API refused that) keeps its final chain: no interrupted entry is appended to it.
func TestFinishInterruptedLeavesMergedFinal(t *testing.T) {
	ctx := context.Background()
	st, traces := tracetest.Mem(t)
	e := &Engine{Traces: traces, Store: st, Node: "a", Logger: hclog.NewNullLogger()}
	cr := trace.Creation{ID: trace.NewID(), SessionID: "01M8V4FXRZG7EWFH84V313M64M", Kind: trace.TraceExecution, Agent: Agent, At: time.Now(),
		Updates: []trace.Update{{Status: trace.StatusMerged, Reason: "before the fix"}}}
	if err := e.markRunning(ctx, cr); err != nil {
		t.Fatal(err)
	}
	if _, _, err := traces.CreateAll(ctx, cr); err != nil {
		t.Fatal(err)
	}
	if n, err := e.FinishInterrupted(ctx); err != nil || n != 0 {
		t.Fatalf("FinishInterrupted: %d, %v; want nothing completed", n, err)
	}
	if chain, _ := traces.Chain(ctx, cr.ID); chain[len(chain)-1].Kind != trace.KindMerged {
		t.Fatalf("the merged chain ends with %s", chain[len(chain)-1].Kind)
	}
}

// TestRunningOtherHost: an execution another host sharing the storage runs (its marker)
// is running here too; a marker this host left from a run before is not.
func TestRunningOtherHost(t *testing.T) {
	ctx := context.Background()
	st, traces := tracetest.Mem(t)
	a := &Engine{Traces: traces, Store: st, Node: "a", Logger: hclog.NewNullLogger()}
	b := &Engine{Traces: traces, Store: st, Node: "b", Logger: hclog.NewNullLogger()}
	id := trace.NewID()
	if err := b.markRunning(ctx, trace.Creation{ID: id, SessionID: "01M8V4FXRZG7EWFH84V313M64M"}); err != nil {
		t.Fatal(err)
	}
	if r, err := a.Running(ctx, id); err != nil || !r {
		t.Errorf("another host's execution: running %v, %v", r, err)
	}
	if r, err := b.Running(ctx, id); err != nil || r {
		t.Errorf("this host's stale marker: running %v, %v", r, err)
	}
	if r, err := a.Running(ctx, trace.NewID()); err != nil || r {
		t.Errorf("an unmarked trace: running %v, %v", r, err)
	}
}
