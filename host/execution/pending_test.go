package execution

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/limitgraph/limit/internal/downstore"
	"github.com/limitgraph/limit/sdk/storage"
	"github.com/limitgraph/limit/sdk/storage/memstore"
)

// TestPendingOutcome: an execution that ran while the storage would not take its trace
// (down from the moment it started, or once its trace was created early) answers a
// RecordPendingError with its outcome's status, keeps the outcome in the journal and counts
// as running; the next start stores that outcome before the interrupted-executions sweep,
// which then finds nothing. It used to answer the storage's 503 with Retry-After (run it
// again) and leave the trace to be recorded "interrupted" at the next start.
func TestPendingOutcome(t *testing.T) {
	defer func(d time.Duration) { PendingRetry = d }(PendingRetry)
	PendingRetry = time.Hour // the restart stores it, not the background retry
	for _, tc := range []struct {
		name   string
		early  bool // the trace was created before the storage went down
		status string
		output string // what the output holds
	}{
		{"short", false, "ok", "input=x"},
		{"long", true, "cancelled", "hello"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !tc.early {
				defer func(d time.Duration) { RecordStartAfter = d }(RecordStartAfter)
				RecordStartAfter = time.Hour
			}
			ctx := context.Background()
			st := &downstore.Store{Storage: memstore.New()}
			e, s := echoEngineOn(t, st)
			stopping, stop := context.WithCancel(ctx)
			defer stop()
			dir := filepath.Join(t.TempDir(), PendingDir)
			e.Store, e.Node, e.JournalDir, e.Stopping = st, "a", dir, stopping
			var err error
			var id string
			if tc.early {
				var leave context.CancelFunc
				var done <-chan error
				id, leave, done = running(t, e, s, "tokens-wait:hello")
				st.Down.Store(true)
				leave()
				err = <-done
			} else {
				_, err = e.Execute(ctx, s.ID, Request{Runner: "echo", Input: "x"}, func(ev Event) {
					if ev.Kind == EventStarted {
						st.Down.Store(true)
					}
				})
			}
			var pe *RecordPendingError
			if !errors.As(err, &pe) || pe.Status != tc.status || !errors.Is(err, storage.ErrUnavailable) {
				t.Fatalf("execution: %v, want a RecordPendingError with status %s", err, tc.status)
			}
			// The client, told not to run it again, gets what it printed: the trace keeps
			// only digests of the outputs.
			if r := pe.Result; r == nil || r.TraceID != pe.TraceID || r.Status != tc.status || !strings.Contains(r.Output, tc.output) ||
				(!tc.early && r.Stdout != r.Output) {
				t.Fatalf("the error's result %+v, want the outcome with output %q", r, tc.output)
			}
			if id == "" {
				id = pe.TraceID
			}
			if _, err := os.Stat(filepath.Join(dir, id+".json")); err != nil {
				t.Fatalf("journal: %v", err)
			}
			if r, err := e.Running(ctx, id); err != nil || !r {
				t.Fatalf("running %v, %v; want the pending outcome to count as running", r, err)
			}
			stop()

			// The next start, the storage back.
			st.Down.Store(false)
			next := &Engine{Sessions: e.Sessions, Traces: e.Traces, Rules: e.Rules, Stats: e.Stats, Logger: hclog.NewNullLogger(),
				Store: st, Node: "a", JournalDir: dir}
			if n, err := next.ReplayPending(ctx); err != nil || n != 1 {
				t.Fatalf("ReplayPending: %d, %v; want 1 stored", n, err)
			}
			if n, err := next.FinishInterrupted(ctx); err != nil || n != 0 {
				t.Fatalf("FinishInterrupted: %d, %v; want nothing left to call interrupted", n, err)
			}
			if ex := executed(t, next, id); ex["status"] != tc.status {
				t.Fatalf("executed entry %v, want status %s", ex, tc.status)
			}
			if r, err := next.Running(ctx, id); err != nil || r {
				t.Fatalf("running %v, %v after the outcome was stored", r, err)
			}
			if v, err := next.Traces.Verify(ctx, id); err != nil || !v.Valid {
				t.Fatalf("verify: %+v %v", v, err)
			}
			if names, _ := filepath.Glob(filepath.Join(dir, "*")); len(names) != 0 {
				t.Fatalf("journal left: %v", names)
			}
		})
	}
}

// TestPendingOutcomeRetried: a pending outcome is stored by the background retry once the
// storage takes writes again, without a restart.
func TestPendingOutcomeRetried(t *testing.T) {
	defer func(d time.Duration) { PendingRetry = d }(PendingRetry)
	PendingRetry = 10 * time.Millisecond
	ctx := context.Background()
	st := &downstore.Store{Storage: memstore.New()}
	e, s := echoEngineOn(t, st)
	e.Store, e.Node, e.JournalDir = st, "a", t.TempDir()
	_, err := e.Execute(ctx, s.ID, Request{Runner: "echo", Input: "x"}, func(ev Event) {
		if ev.Kind == EventStarted {
			st.Down.Store(true)
		}
	})
	var pe *RecordPendingError
	if !errors.As(err, &pe) {
		t.Fatalf("execution: %v, want a RecordPendingError", err)
	}
	st.Down.Store(false)
	for e.pending(pe.TraceID) {
		time.Sleep(10 * time.Millisecond)
	}
	if ex := executed(t, e, pe.TraceID); ex["status"] != "ok" {
		t.Fatalf("executed entry %v", ex)
	}
}

// failingFile is a journal file whose write or sync fails as on a full disk.
type failingFile struct {
	journalFile
	write, sync bool
}

func (f failingFile) Write(b []byte) (int, error) {
	if f.write {
		return 0, syscall.ENOSPC
	}
	return f.journalFile.Write(b)
}

func (f failingFile) Sync() error {
	if f.sync {
		return syscall.ENOSPC
	}
	return f.journalFile.Sync()
}

// TestPendingOutcomeNotKept: when the journal entry cannot be written durably (its write
// or its sync fails, as on a full disk, or the directory cannot be synced after the
// rename), the execution does not answer record_pending (the client would be told its
// outcome will be recorded), and nothing is left in the journal: no temporary file, no
// entry. The write's error used to be dropped (a shadowed err): the empty file was renamed
// into the journal, the client told it would be recorded, and the replay set it aside as
// unreadable.
func TestPendingOutcomeNotKept(t *testing.T) {
	defer func(d time.Duration) { PendingRetry = d }(PendingRetry)
	PendingRetry = time.Hour
	defer func(d time.Duration) { RecordStartAfter = d }(RecordStartAfter)
	RecordStartAfter = time.Hour
	defer func(f func(string) (journalFile, error), s func(string) error) { createJournalTemp, syncDir = f, s }(createJournalTemp, syncDir)
	for _, tc := range []struct {
		name               string
		write, sync, dirOK bool
	}{
		{"write", true, false, true},
		{"sync", false, true, true},
		{"dir sync", false, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			create := createJournalTemp
			createJournalTemp = func(dir string) (journalFile, error) {
				f, err := create(dir)
				if err != nil {
					return nil, err
				}
				return failingFile{journalFile: f, write: tc.write, sync: tc.sync}, nil
			}
			defer func() { createJournalTemp = create }()
			syncDir = func(string) error {
				if tc.dirOK {
					return nil
				}
				return syscall.EIO
			}
			ctx := context.Background()
			st := &downstore.Store{Storage: memstore.New()}
			e, s := echoEngineOn(t, st)
			dir := filepath.Join(t.TempDir(), PendingDir)
			e.Store, e.Node, e.JournalDir = st, "a", dir
			_, err := e.Execute(ctx, s.ID, Request{Runner: "echo", Input: "x"}, func(ev Event) {
				if ev.Kind == EventStarted {
					st.Down.Store(true)
				}
			})
			var pe *RecordPendingError
			if err == nil || errors.As(err, &pe) {
				t.Fatalf("execution: %v; want an error that does not say the outcome will be recorded", err)
			}
			if names, _ := filepath.Glob(filepath.Join(dir, "*")); len(names) != 0 {
				t.Fatalf("journal left: %v", names)
			}
			if names, _ := filepath.Glob(filepath.Join(dir, ".tmp-*")); len(names) != 0 {
				t.Fatalf("temporary files left: %v", names)
			}
		})
	}
}
