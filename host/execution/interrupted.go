package execution

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/limitgraph/limit/host/trace"
	"github.com/limitgraph/limit/sdk/storage"
)

// An execution that outlasts RecordStartAfter has its trace created while it runs and its
// outcome appended when it ends. Should limitd die in between (SIGKILL, a second signal
// during shutdown, a crash), the trace would keep only its created entry. So a marker is
// written in RunningNamespace before that early create and removed once the outcome is
// stored; at start, FinishInterrupted gives every trace a marker names that has no outcome
// an executed entry with status "interrupted", signed like any other.

// RunningNamespace holds a marker per execution whose trace may lack its outcome: key the
// host's node name (Engine.Node), "/" and the trace id; value {"session_id", "started"}.
// A host settles only its own node's markers, so hosts sharing a database leave each
// other's running executions alone.
var RunningNamespace = "t/" + trace.DefaultTenant + "/running"

// StatusInterrupted is the outcome FinishInterrupted records.
const StatusInterrupted = "interrupted"

type runningMarker struct {
	SessionID string    `json:"session_id"`
	Started   time.Time `json:"started"`
}

// markRunning writes the marker of the execution cr, before its trace is created early.
func (e *Engine) markRunning(ctx context.Context, cr trace.Creation) error {
	if e.Store == nil {
		return nil
	}
	v, err := json.Marshal(runningMarker{SessionID: cr.SessionID, Started: cr.At})
	if err != nil {
		return err
	}
	return e.Store.Put(ctx, RunningNamespace, e.markerKey(cr.ID), v)
}

// markerKey is the key of trace id's marker.
func (e *Engine) markerKey(id string) []byte { return []byte(e.Node + "/" + id) }

// unmarkRunning removes the marker of trace id once its outcome is stored. It runs after
// the answer is on its way: a marker left behind is only looked at again at start.
func (e *Engine) unmarkRunning(id string) {
	if e.Store == nil {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := e.Store.Delete(ctx, RunningNamespace, e.markerKey(id)); err != nil {
			e.Logger.Debug("removing a running execution's marker failed; it is settled at the next start", "trace", id, "error", err)
		}
	}()
}

// FinishInterrupted settles the executions a previous run of the host left running: each
// marked trace without an executed entry gets one with status "interrupted", and every
// marker is removed. It returns how many traces it completed.
func (e *Engine) FinishInterrupted(ctx context.Context) (int, error) {
	if e.Store == nil {
		return 0, nil
	}
	done := 0
	var after []byte
	for {
		prefix := e.markerKey("")
		page, err := e.Store.Scan(ctx, storage.ScanRequest{Namespace: RunningNamespace, Prefix: prefix, StartAfter: after, Limit: 100})
		if err != nil {
			return done, fmt.Errorf("list interrupted executions: %w", err)
		}
		for _, kv := range page.Items {
			id := string(kv.Key[len(prefix):])
			completed, err := e.finishInterrupted(ctx, id, kv.Value)
			if err != nil {
				return done, fmt.Errorf("complete the trace of interrupted execution %s: %w", id, err)
			}
			if completed {
				done++
			}
			if _, err := e.Store.Delete(ctx, RunningNamespace, kv.Key); err != nil {
				return done, fmt.Errorf("remove the marker of execution %s: %w", id, err)
			}
		}
		if !page.More || len(page.Items) == 0 {
			return done, nil
		}
		after = page.Items[len(page.Items)-1].Key
	}
}

func (e *Engine) finishInterrupted(ctx context.Context, id string, raw []byte) (bool, error) {
	if e.pending(id) {
		return false, nil // it ended: its outcome waits in the journal (ReplayPending)
	}
	chain, err := e.Traces.Chain(ctx, id)
	if errors.Is(err, trace.ErrNotFound) {
		return false, nil // the host stopped before the early create landed
	}
	if err != nil {
		return false, err
	}
	for _, en := range chain {
		if en.Kind == trace.KindExecuted {
			return false, nil // the outcome landed; only the marker was left
		}
	}
	var m runningMarker
	_ = json.Unmarshal(raw, &m)
	_, _, err = e.Traces.Apply(ctx, id, Agent, trace.Update{Entries: []trace.Entry{entry(trace.KindExecuted, map[string]any{
		"status":  StatusInterrupted,
		"error":   "limitd stopped during the execution (killed, crashed or forced to exit); its outcome is unknown",
		"started": m.Started, "settled": time.Now().UTC(),
	})}, UnlessMerged: true}) // a merged chain is final
	if errors.Is(err, trace.ErrFinal) {
		return false, nil
	}
	return err == nil, err
}

// opened notes that the trace of this host's execution id may be stored before its outcome.
func (e *Engine) opened(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.open == nil {
		e.open = map[string]struct{}{}
	}
	e.open[id] = struct{}{}
}

// settled notes that execution id's outcome is stored (or never will be).
func (e *Engine) settled(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.open, id)
}

// Running tells whether the execution of trace id has not ended, as far as its record
// goes: it runs on this host, its outcome waits in the journal (see ReplayPending), or a
// running marker of another host names it (one that host
// left behind once the outcome was stored is harmless: read it before the chain, which
// then holds the outcome). A merge of such a trace must wait, as its chain is still to
// grow: a merged chain is final.
func (e *Engine) Running(ctx context.Context, id string) (bool, error) {
	e.mu.Lock()
	_, open := e.open[id]
	e.mu.Unlock()
	if open = open || e.pending(id); open || e.Store == nil {
		return open, nil
	}
	// Markers are few (one per execution running past RecordStartAfter), keyed by node;
	// this host's own are left from a run before (see FinishInterrupted), none running.
	var after []byte
	for {
		page, err := e.Store.Scan(ctx, storage.ScanRequest{Namespace: RunningNamespace, StartAfter: after, Limit: 1000, KeysOnly: true})
		if err != nil {
			return false, fmt.Errorf("list running executions: %w", err)
		}
		for _, kv := range page.Items {
			k := string(kv.Key)
			if i := strings.LastIndexByte(k, '/'); i >= 0 && k[i+1:] == id && k[:i] != e.Node {
				return true, nil
			}
		}
		if !page.More || len(page.Items) == 0 {
			return false, nil
		}
		after = page.Items[len(page.Items)-1].Key
	}
}
