package execution

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
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
	return e.settle(ctx, e.Node)
}

// ErrOwnNode refuses SettleNode of the host's own node: it settles its own executions
// when it starts (FinishInterrupted), and those running now are alive.
var ErrOwnNode = errors.New("the node is this host's own")

// SettleNode settles the executions another node sharing the storage left running, as that
// node's own restart would (see FinishInterrupted): an operator's way out when the host is
// gone for good, whose executions would otherwise read as running forever (a merge of their
// traces answers 409). A node that is in fact alive has its running executions recorded as
// interrupted all the same; their outcomes, when they end, are not recorded in the chain
// (the host logs them at ERROR), as for a trace merged while it ran. It returns how many
// traces it completed; the host's own node is refused with ErrOwnNode.
func (e *Engine) SettleNode(ctx context.Context, node string) (int, error) {
	if node == e.Node {
		return 0, fmt.Errorf("%w (%s): it settles its own executions when it starts", ErrOwnNode, node)
	}
	if !ValidNode(node) {
		return 0, fmt.Errorf("%w: node %q is not a node id (letters, digits, '.', '_' and '-', at most 128, as in data_dir/node_id)", ErrInvalid, clip(node, 200))
	}
	if err := e.knownNode(ctx, node); err != nil {
		return 0, err
	}
	return e.settle(ctx, node)
}

// UnknownNodeError refuses SettleNode of a node storage holds no trace of: no host of that
// id recorded its provenance key (each does at its start) and none of its executions is
// left running. It is a mistyped node id, or a placeholder taken as one, which would
// otherwise be "settled" with nothing done and nothing said.
type UnknownNodeError struct {
	// Node is the node asked for; Known the nodes storage records, sorted.
	Node  string
	Known []string
}

func (e *UnknownNodeError) Error() string {
	msg := "no host with node id " + e.Node + " ever used this storage (none recorded its key, and no execution of it is left running)"
	if len(e.Known) > 0 {
		msg += "; the nodes it records: " + strings.Join(e.Known, ", ")
	}
	return msg + " (a host's node id is in its data_dir/node_id, and in its log's lines)"
}

// knownNode returns an *UnknownNodeError when storage holds nothing of node: neither the
// key record every host writes at its start (trace.Store.KeyNodes) nor a running marker (a
// host that ran before hosts recorded their key has only those).
func (e *Engine) knownNode(ctx context.Context, node string) error {
	if e.Store == nil || e.Traces == nil {
		return nil
	}
	keys, err := e.Traces.KeyNodes(ctx)
	if err != nil {
		return err
	}
	if _, ok := keys[node]; ok {
		return nil
	}
	page, err := e.Store.Scan(ctx, storage.ScanRequest{Namespace: RunningNamespace, Prefix: []byte(node + "/"), Limit: 1, KeysOnly: true})
	if err != nil {
		return fmt.Errorf("list interrupted executions: %w", err)
	}
	if len(page.Items) > 0 {
		return nil
	}
	known := make([]string, 0, len(keys))
	for n := range keys {
		known = append(known, n)
	}
	slices.Sort(known)
	return &UnknownNodeError{Node: node, Known: known}
}

// ValidNode reports whether s is what a node id may be (data_dir/node_id): a host name's
// characters, bounded, and no '/', which would let one node's marker prefix take in
// another's.
func ValidNode(s string) bool { return validNode.MatchString(s) }

var validNode = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// settle completes the traces the running markers of node name, and removes the markers.
func (e *Engine) settle(ctx context.Context, node string) (int, error) {
	if e.Store == nil {
		return 0, nil
	}
	done := 0
	var after []byte
	for {
		prefix := []byte(node + "/")
		page, err := e.Store.Scan(ctx, storage.ScanRequest{Namespace: RunningNamespace, Prefix: prefix, StartAfter: after, Limit: 100})
		if err != nil {
			return done, fmt.Errorf("list interrupted executions: %w", err)
		}
		for _, kv := range page.Items {
			id := string(kv.Key[len(prefix):])
			completed, err := e.finishInterrupted(ctx, node, id, kv.Value)
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

func (e *Engine) finishInterrupted(ctx context.Context, node, id string, raw []byte) (bool, error) {
	if node == e.Node && e.pending(id) {
		return false, nil // it ended: its outcome waits in the journal (ReplayPending)
	}
	executed, err := e.executedEntry(ctx, id)
	if errors.Is(err, trace.ErrNotFound) {
		return false, nil // the host stopped before the early create landed
	}
	if err != nil {
		return false, err
	}
	if executed != nil {
		return false, nil // the outcome landed; only the marker was left
	}
	var m runningMarker
	_ = json.Unmarshal(raw, &m)
	why := "limitd stopped during the execution (killed, crashed or forced to exit); its outcome is unknown"
	if node != e.Node {
		why = "the host running the execution (node " + node + ") was settled as gone by an operator, through node " + e.Node + "; its outcome is unknown"
	}
	_, _, err = e.Traces.Apply(ctx, id, Agent, trace.Update{Entries: []trace.Entry{entry(trace.KindExecuted, map[string]any{
		"status":  StatusInterrupted,
		"error":   why,
		"started": m.Started, "settled": time.Now().UTC(), "node": node, "settled_by": e.Node,
	})}, UnlessMerged: true}) // a merged chain is final
	if errors.Is(err, trace.ErrFinal) {
		return false, nil
	}
	return err == nil, err
}

// errSettled refuses an execution's outcome to a trace whose chain has one already: an
// "interrupted" entry another host wrote when it settled this node (SettleNode).
var errSettled = errors.New("the trace has its outcome already")

// unlessSettled is the Check of the update that appends execution id's outcome to its
// early-created trace: it refuses it once the chain holds an executed entry. The chain is
// read after the record the update extends, so an entry written after that record makes
// the update lose its race and be checked again.
func (e *Engine) unlessSettled(ctx context.Context, id string) func(trace.Record) error {
	return func(trace.Record) error {
		en, err := e.executedEntry(ctx, id)
		if err == nil && en != nil {
			return errSettled
		}
		return err
	}
}

// executedEntry returns the executed entry of trace id's chain, or nil when it has none.
func (e *Engine) executedEntry(ctx context.Context, id string) (*trace.Entry, error) {
	chain, err := e.Traces.Chain(ctx, id)
	if err != nil {
		return nil, err
	}
	for i := range chain {
		if chain[i].Kind == trace.KindExecuted {
			return &chain[i], nil
		}
	}
	return nil, nil
}

// settledBy returns the node of the host that settled execution id as interrupted when
// it is another than this one (SettleNode), else "".
func (e *Engine) settledBy(ctx context.Context, id string) string {
	en, err := e.executedEntry(ctx, id)
	if err != nil || en == nil {
		return ""
	}
	var ex struct {
		Status    string `json:"status"`
		SettledBy string `json:"settled_by"`
	}
	if json.Unmarshal(en.Data, &ex) == nil && ex.Status == StatusInterrupted && ex.SettledBy != e.Node {
		return ex.SettledBy
	}
	return ""
}

// opened notes that the trace of this host's execution id, started at, may be stored
// before its outcome.
func (e *Engine) opened(id string, at time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.open == nil {
		e.open = map[string]time.Time{}
	}
	e.open[id] = at
}

// settled notes that execution id's outcome is stored (or never will be).
func (e *Engine) settled(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.open, id)
}

// Run is where an execution that has not ended runs.
type Run struct {
	// Node is the node of the host that runs it (Engine.Node: this host's, or another's
	// sharing the storage).
	Node string
	// Since is when it started; zero when not known.
	Since time.Time
	// Pending tells that it ended on this host but its outcome waits in the journal for
	// the storage to take it (see ReplayPending).
	Pending bool
}

// Running tells whether the execution of trace id has not ended (see RunningAt).
func (e *Engine) Running(ctx context.Context, id string) (bool, error) {
	r, err := e.RunningAt(ctx, id)
	return r != nil, err
}

// RunningAt returns where the execution of trace id runs if it has not ended, as far as its
// record goes, else nil: it runs on this host, its outcome waits in the journal (see
// ReplayPending), or a running marker of another host names it (one that host left behind
// once the outcome was stored is harmless: read it before the chain, which then holds the
// outcome). A merge of such a trace must wait, as its chain is still to grow: a merged
// chain is final. A host that died for good leaves its markers until an operator settles
// its node (SettleNode).
func (e *Engine) RunningAt(ctx context.Context, id string) (*Run, error) {
	e.mu.Lock()
	since, open := e.open[id]
	e.mu.Unlock()
	if open {
		return &Run{Node: e.Node, Since: since}, nil
	}
	if e.pending(id) {
		return &Run{Node: e.Node, Pending: true}, nil
	}
	if e.Store == nil {
		return nil, nil
	}
	// Markers are few (one per execution running past RecordStartAfter), keyed by node;
	// this host's own are left from a run before (see FinishInterrupted), none running.
	var after []byte
	for {
		page, err := e.Store.Scan(ctx, storage.ScanRequest{Namespace: RunningNamespace, StartAfter: after, Limit: 1000})
		if err != nil {
			return nil, fmt.Errorf("list running executions: %w", err)
		}
		for _, kv := range page.Items {
			k := string(kv.Key)
			if i := strings.LastIndexByte(k, '/'); i >= 0 && k[i+1:] == id && k[:i] != e.Node {
				var m runningMarker
				_ = json.Unmarshal(kv.Value, &m)
				return &Run{Node: k[:i], Since: m.Started}, nil
			}
		}
		if !page.More || len(page.Items) == 0 {
			return nil, nil
		}
		after = page.Items[len(page.Items)-1].Key
	}
}
