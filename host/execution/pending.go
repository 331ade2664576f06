package execution

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/limitgraph/limit/host/governance"
	"github.com/limitgraph/limit/host/trace"
)

// An execution that ran but whose trace the storage would not take (it failed, or went
// down during the run) must not lose its outcome: its client is told not to run it again,
// and the host, after its next start, would otherwise record it as interrupted. So the
// outcome is kept in a journal, a file per execution under Engine.JournalDir, written
// durably before the answer, and stored from there as soon as the storage takes it: by a
// background retry with backoff, and at start (ReplayPending) before FinishInterrupted.

// PendingDir is the journal's directory under data_dir.
const PendingDir = "pending-outcomes"

// PendingRetry is the first wait before the journal is replayed again after the storage
// refused it; each failure doubles it, up to PendingRetryMax.
var (
	PendingRetry    = time.Second
	PendingRetryMax = time.Minute
)

// RecordPendingError means the execution ran but its trace could not be stored yet: its
// outcome is kept in the journal and is stored once the storage takes it. The client must
// not run it again.
type RecordPendingError struct {
	TraceID string
	// Status is the execution's outcome (ok, error, timeout, cancelled).
	Status string
	// Err is why the trace could not be stored.
	Err error
	// Result is the execution's outcome as its answer would have carried it (stdout,
	// stderr and output bounded as there, the flags of both stages): the trace keeps
	// only their digests, so a client told not to run it again gets them here.
	Result *Result
}

func (e *RecordPendingError) Error() string {
	return fmt.Sprintf("the execution ran (status %s) but its trace could not be stored yet; it will be recorded when storage is back: do not run it again (%v)", e.Status, e.Err)
}

func (e *RecordPendingError) Unwrap() error { return e.Err }

// RecordLostError means the execution ran but its outcome is neither stored nor kept to
// store later: the storage did not take its trace and the journal could not be written
// (a full disk), or the trace store refused it for good. The client must not run it again:
// the code ran, and Result is all that is left of what it did.
type RecordLostError struct {
	TraceID string
	// Status is the execution's outcome (ok, error, timeout, cancelled).
	Status string
	// Err is why the trace could not be stored.
	Err error
	// JournalErr is why the outcome could not be kept in the journal; nil when the
	// storage refused the trace for good, when the journal would not have helped.
	JournalErr error
	// Result is the execution's outcome as its answer would have carried it, as in
	// RecordPendingError.
	Result *Result
}

func (e *RecordLostError) Error() string {
	msg := fmt.Sprintf("the execution ran (status %s) but its trace could not be stored (%v)", e.Status, e.Err)
	if e.JournalErr != nil {
		msg += fmt.Sprintf(" nor its outcome kept to store later (%v)", e.JournalErr)
	}
	return msg + ": its record is lost; do not run it again"
}

func (e *RecordLostError) Unwrap() error { return e.Err }

// pendingOutcome is a journal entry: the trace as it would have been created, with the
// pre-execution verdict (First) and the outcome (Last), and the statistics to count.
type pendingOutcome struct {
	TraceID   string           `json:"trace_id"`
	SessionID string           `json:"session_id"`
	Kind      string           `json:"kind"`
	Data      json.RawMessage  `json:"data"`
	Agent     string           `json:"agent"`
	At        time.Time        `json:"at"`
	First     pendingUpdate    `json:"first"`
	Last      pendingUpdate    `json:"last"`
	Delta     governance.Delta `json:"delta"`
	// Marked: a running marker was (maybe) written, to remove once stored.
	Marked bool `json:"marked"`
}

// pendingUpdate is the part of a trace.Update an execution uses.
type pendingUpdate struct {
	Entries []trace.Entry     `json:"entries,omitempty"`
	Flags   []governance.Flag `json:"flags,omitempty"`
	Status  trace.Status      `json:"status,omitempty"`
	Reason  string            `json:"reason,omitempty"`
	At      time.Time         `json:"at"`
}

func toPending(u trace.Update) pendingUpdate {
	return pendingUpdate{Entries: u.Entries, Flags: u.Flags, Status: u.Status, Reason: u.Reason, At: u.At}
}

func (p pendingUpdate) update() trace.Update {
	return trace.Update{Entries: p.Entries, Flags: p.Flags, Status: p.Status, Reason: p.Reason, At: p.At, UnlessMerged: true}
}

// pendingPath is the journal file of trace id, "" without a journal.
func (e *Engine) pendingPath(id string) string {
	if e.JournalDir == "" || !trace.ValidID(id) {
		return ""
	}
	return filepath.Join(e.JournalDir, id+".json")
}

// PendingCount is the number of outcomes waiting in the journal (its files), 0 without
// one.
func (e *Engine) PendingCount() int {
	if e.JournalDir == "" {
		return 0
	}
	names, _ := filepath.Glob(filepath.Join(e.JournalDir, "*.json"))
	return len(names)
}

// pending tells whether trace id's outcome waits in the journal.
func (e *Engine) pending(id string) bool {
	p := e.pendingPath(id)
	if p == "" {
		return false
	}
	_, err := os.Stat(p)
	return err == nil
}

// journal keeps p durably (a temporary file written and synced, renamed into place, the
// directory synced) and makes sure the background retry runs. An error means the outcome
// is not kept: nothing of it is left in the journal (the temporary file, or the entry
// renamed into place before the directory failed to sync, is removed), so the caller must
// not tell the client it will be recorded.
func (e *Engine) journal(p pendingOutcome) error {
	path := e.pendingPath(p.TraceID)
	if path == "" {
		return errors.New("no journal of pending outcomes (Engine.JournalDir)")
	}
	raw, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(e.JournalDir, 0o700); err != nil {
		return err
	}
	f, err := createJournalTemp(e.JournalDir)
	if err != nil {
		return fmt.Errorf("create a file in the journal: %w", err)
	}
	tmp := f.Name()
	if err := writeSynced(f, raw); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("rename %s into the journal: %w", tmp, err)
	}
	if err := syncDir(e.JournalDir); err != nil {
		// The entry may not survive a crash, and the client is told it is not kept:
		// removed, so that it is not recorded behind that answer either.
		_ = os.Remove(path)
		return fmt.Errorf("sync the journal's directory %s: %w", e.JournalDir, err)
	}
	e.retryPending()
	return nil
}

// journalFile is what journal writes a temporary file through: an *os.File, or in tests
// one whose writes fail as on a full disk.
type journalFile interface {
	Name() string
	Write([]byte) (int, error)
	Sync() error
	Close() error
}

// createJournalTemp creates the temporary file of a journal entry in dir.
var createJournalTemp = func(dir string) (journalFile, error) { return os.CreateTemp(dir, ".tmp-*") }

// writeSynced writes raw to f, syncs and closes it; any step's error is the write's (a
// short write, ENOSPC at the write or at the sync, EIO at the close).
func writeSynced(f journalFile, raw []byte) error {
	_, err := f.Write(raw)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncDir syncs directory dir, so that a file renamed into it stays there after a crash.
var syncDir = func(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// ReplayPending stores the outcomes the journal holds, as far as the storage takes them,
// and returns how many it stored. The daemon calls it at start, before FinishInterrupted,
// so an execution that ran to its end gets its outcome rather than "interrupted". Outcomes
// the storage refused are retried in the background until it takes them.
func (e *Engine) ReplayPending(ctx context.Context) (int, error) {
	n, left, err := e.replayPending(ctx)
	if left > 0 {
		e.retryPending()
	}
	return n, err
}

// replayPending is one pass over the journal: how many outcomes it stored, how many are
// left, and the storage's error that stopped it.
func (e *Engine) replayPending(ctx context.Context) (stored, left int, err error) {
	if e.JournalDir == "" {
		return 0, 0, nil
	}
	e.replayMu.Lock()
	defer e.replayMu.Unlock()
	names, err := filepath.Glob(filepath.Join(e.JournalDir, "*.json"))
	if err != nil {
		return 0, 0, err
	}
	for i, name := range names {
		raw, err := os.ReadFile(name)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		var p pendingOutcome
		if err == nil {
			err = json.Unmarshal(raw, &p)
		}
		if err != nil || e.pendingPath(p.TraceID) != name {
			// Set aside (not *.json), for an operator to look at, rather than retried.
			e.Logger.Error("an unreadable file in the journal of pending outcomes is set aside", "file", name+".bad", "error", err)
			_ = os.Rename(name, name+".bad")
			continue
		}
		recorded, err := e.storePending(ctx, p)
		if err != nil {
			if permanent(err) {
				// It will never be taken: keeping it would retry forever.
				e.Logger.Error("a pending outcome cannot be stored; it is dropped", "trace", p.TraceID, "session", p.SessionID, "outcome", string(raw), "error", err)
				_ = os.Remove(name)
				continue
			}
			return stored, len(names) - i, err
		}
		if err := os.Remove(name); err != nil {
			e.Logger.Warn("removing a stored outcome from the journal failed; storing it again is harmless", "trace", p.TraceID, "error", err)
		}
		if recorded {
			stored++
			e.Logger.Info("an execution's pending outcome is stored", "trace", p.TraceID, "session", p.SessionID)
		}
	}
	return stored, 0, nil
}

// permanent tells whether the trace store's err would come again, whatever the storage.
func permanent(err error) bool {
	return errors.Is(err, trace.ErrInvalid) || errors.Is(err, trace.ErrCorrupt) || errors.Is(err, trace.ErrFinal)
}

// storePending stores p's trace with its outcome: the whole trace if it was not created,
// else the outcome appended, unless the chain has one already: this one (a replay cut short
// after the write), or the "interrupted" another host wrote when it settled this node as
// gone (SettleNode), which stays, as for a live execution's outcome; recorded is false then.
func (e *Engine) storePending(ctx context.Context, p pendingOutcome) (recorded bool, err error) {
	cr := trace.Creation{ID: p.TraceID, SessionID: p.SessionID, Kind: p.Kind, Data: p.Data, Agent: p.Agent, At: p.At,
		Updates: []trace.Update{p.First.update(), p.Last.update()}}
	_, _, err = e.Traces.CreateAll(ctx, cr)
	if errors.Is(err, trace.ErrExists) {
		last := p.Last.update()
		last.Check = e.unlessSettled(ctx, p.TraceID)
		_, _, err = e.Traces.Apply(ctx, p.TraceID, Agent, last)
		if errors.Is(err, errSettled) {
			if by := e.settledBy(ctx, p.TraceID); by != "" {
				e.Logger.Error("a pending outcome is not recorded: another host settled the execution as interrupted (this node was settled as gone)",
					"trace", p.TraceID, "session", p.SessionID, "settled_by", by)
				return false, e.afterPending(ctx, p)
			}
			err = nil // this outcome, stored by a replay cut short
		}
	}
	if err != nil {
		return false, err
	}
	return true, e.afterPending(ctx, p)
}

// afterPending counts p's statistics and removes its running marker, once it is stored.
func (e *Engine) afterPending(ctx context.Context, p pendingOutcome) error {
	if e.Stats != nil {
		if err := e.Stats.Record(ctx, p.SessionID, p.Delta); err != nil {
			e.Logger.Warn("counting a pending outcome's flags failed", "trace", p.TraceID, "error", err)
		}
	}
	if p.Marked && e.Store != nil {
		if _, err := e.Store.Delete(ctx, RunningNamespace, e.markerKey(p.TraceID)); err != nil {
			e.Logger.Debug("removing a running execution's marker failed; it is settled at the next start", "trace", p.TraceID, "error", err)
		}
	}
	return nil
}

// retryPending starts the background retry of the journal unless it runs: it replays the
// journal with backoff until nothing is left or the host stops (the next start replays).
func (e *Engine) retryPending() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.retrying {
		return
	}
	e.retrying = true
	stop := e.Stopping
	if stop == nil {
		stop = context.Background()
	}
	first, most := PendingRetry, PendingRetryMax
	go func() {
		wait := first
		for {
			t := time.NewTimer(wait)
			select {
			case <-stop.Done():
				t.Stop()
				e.mu.Lock()
				e.retrying = false
				e.mu.Unlock()
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(context.WithoutCancel(stop), time.Minute)
			_, left, err := e.replayPending(ctx)
			cancel()
			if left == 0 {
				// Checked again under the lock a journal entry takes to start a retry.
				e.mu.Lock()
				names, _ := filepath.Glob(filepath.Join(e.JournalDir, "*.json"))
				if len(names) == 0 {
					e.retrying = false
					e.mu.Unlock()
					return
				}
				e.mu.Unlock()
				wait = first
				continue
			}
			e.Logger.Warn("storing pending outcomes failed; retrying", "pending", left, "in", wait, "error", err)
			wait = min(2*wait, most)
		}
	}()
}
