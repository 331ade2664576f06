package execution

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/limitgraph/limit/host/trace"
	"github.com/limitgraph/limit/host/trace/tracetest"
	"github.com/limitgraph/limit/sdk/storage"
	"github.com/limitgraph/limit/sdk/storage/memstore"
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

// TestSettleNode: a host settles another node's executions (SettleNode) as that node's
// restart would, leaving its own markers and a third node's alone; it refuses its own node,
// a malformed one, and one storage holds nothing of (no key record, no marker).
func TestSettleNode(t *testing.T) {
	ctx := context.Background()
	st, traces := tracetest.Mem(t)
	const sid = "01M8V4FXRZG7EWFH84V313M64M"
	engines := map[string]*Engine{}
	ids := map[string]string{}
	for _, node := range []string{"a", "gone", "gone2"} {
		e := &Engine{Traces: traces, Store: st, Node: node, Logger: hclog.NewNullLogger()}
		cr := trace.Creation{ID: trace.NewID(), SessionID: sid, Kind: trace.TraceExecution, Data: json.RawMessage(`{}`), Agent: Agent, At: time.Now()}
		if err := e.markRunning(ctx, cr); err != nil {
			t.Fatal(err)
		}
		if _, _, err := traces.CreateAll(ctx, cr); err != nil {
			t.Fatal(err)
		}
		engines[node], ids[node] = e, cr.ID
	}
	a := engines["a"]
	if _, err := a.SettleNode(ctx, "a"); !errors.Is(err, ErrOwnNode) {
		t.Fatalf("settling its own node: %v, want ErrOwnNode", err)
	}
	if _, err := a.SettleNode(ctx, "gone/x"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("settling a malformed node: %v, want ErrInvalid", err)
	}
	if err := traces.ClaimKey(ctx, "a", true); err != nil {
		t.Fatal(err)
	}
	var unknown *UnknownNodeError
	if _, err := a.SettleNode(ctx, "NODE"); !errors.As(err, &unknown) || unknown.Node != "NODE" || fmt.Sprint(unknown.Known) != "[a]" {
		t.Fatalf("settling a node storage holds nothing of: %v, want an *UnknownNodeError naming node a", err)
	}
	if n, err := a.SettleNode(ctx, "gone"); err != nil || n != 1 {
		t.Fatalf("SettleNode: %d, %v; want 1 trace completed", n, err)
	}
	if ex := executed(t, a, ids["gone"]); ex["status"] != StatusInterrupted || ex["node"] != "gone" || ex["settled_by"] != "a" ||
		!strings.Contains(fmt.Sprint(ex["error"]), "node gone") {
		t.Fatalf("the settled trace's executed entry: %v", ex)
	}
	for _, node := range []string{"a", "gone2"} {
		if _, ok, _ := st.Get(ctx, RunningNamespace, engines[node].markerKey(ids[node])); !ok {
			t.Errorf("node %s's marker was removed", node)
		}
	}
	if r, err := a.RunningAt(ctx, ids["gone"]); err != nil || r != nil {
		t.Errorf("the settled execution still runs: %+v %v", r, err)
	}
	if r, err := a.RunningAt(ctx, ids["gone2"]); err != nil || r == nil || r.Node != "gone2" || r.Since.IsZero() {
		t.Errorf("another node's execution: %+v %v; want it running on gone2, with its start", r, err)
	}
}

// TestSettledNodesOutcomeNotRecorded: when a node that is alive is settled by another host
// (an operator's mistake), its execution's outcome, live or kept in its journal, is not
// appended after the "interrupted" the other host wrote: the chain keeps one outcome, and
// the execution still answers what ran.
func TestSettledNodesOutcomeNotRecorded(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	e, s := echoEngineOn(t, st)
	e.Store, e.Node = st, "a"
	other := &Engine{Traces: e.Traces, Store: st, Node: "b", Logger: hclog.NewNullLogger()}
	countExecuted := func(id string) int {
		t.Helper()
		chain, err := e.Traces.Chain(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, en := range chain {
			if en.Kind == trace.KindExecuted {
				n++
			}
		}
		return n
	}

	// Live: settled while it runs.
	id, leave, done := running(t, e, s, "tokens-wait:hello")
	if n, err := other.SettleNode(ctx, "a"); err != nil || n != 1 {
		t.Fatalf("SettleNode: %d, %v", n, err)
	}
	leave()
	if err := <-done; err != nil {
		t.Fatalf("execution: %v, want its result", err)
	}
	if n := countExecuted(id); n != 1 || executed(t, e, id)["status"] != StatusInterrupted {
		t.Fatalf("the settled trace has %d executed entries (%v), want the interrupted one alone", n, executed(t, e, id))
	}

	// Journal: its outcome kept for the storage, settled before it is stored.
	cr := trace.Creation{ID: trace.NewID(), SessionID: s.ID, Kind: trace.TraceExecution, Data: json.RawMessage(`{}`), Agent: Agent, At: time.Now()}
	if err := e.markRunning(ctx, cr); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.Traces.CreateAll(ctx, cr); err != nil {
		t.Fatal(err)
	}
	if n, err := other.SettleNode(ctx, "a"); err != nil || n != 1 {
		t.Fatalf("SettleNode: %d, %v", n, err)
	}
	p := pendingOutcome{TraceID: cr.ID, SessionID: s.ID, Kind: cr.Kind, Data: cr.Data, Agent: Agent, At: cr.At,
		Last: toPending(trace.Update{Entries: []trace.Entry{entry(trace.KindExecuted, map[string]any{"status": "ok"})}}), Marked: true}
	if recorded, err := e.storePending(ctx, p); err != nil || recorded {
		t.Fatalf("storePending: %v, %v; want it not recorded", recorded, err)
	}
	if n := countExecuted(cr.ID); n != 1 || executed(t, e, cr.ID)["status"] != StatusInterrupted {
		t.Fatalf("the settled trace has %d executed entries, want the interrupted one alone", n)
	}
}
