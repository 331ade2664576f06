package trace

import (
	"context"
	"errors"
	"testing"

	"github.com/limitgraph/limit/sdk/storage"
	"github.com/limitgraph/limit/sdk/storage/memstore"
)

// TestPurgeSessionBatches: PurgeSession deletes a session's traces in batches of at most
// purgeBatch keys; cut short at any batch, it leaves the traces it has not finished
// findable (their records), a second PurgeSession completes it, and at no point does the
// copy of a merged trace in the shared record fail to verify. Another session's traces
// are untouched.
func TestPurgeSessionBatches(t *testing.T) {
	defer func(n int) { purgeBatch = n }(purgeBatch)
	purgeBatch = 2
	ctx := context.Background()
	errKilled := errors.New("killed")
	for cut := 1; ; cut++ {
		batches, largest := 0, 0
		st := &batchHook{Storage: memstore.New(), prefix: "t/", hook: func(ns string, ops []storage.Op) error {
			if ops[0].Kind != storage.OpDelete {
				return nil // the fixture's writes
			}
			batches++
			largest = max(largest, len(ops))
			if batches == cut {
				return errKilled
			}
			return nil
		}}
		s := newStore(t, st)
		sid, other := NewID(), NewID()
		var ids []string
		for range 3 {
			rec, err := s.Create(ctx, sid, TraceCustom, []byte(`{"a":1}`), "test")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Append(ctx, rec.ID, Entry{Kind: "review", Agent: "test"}); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, rec.ID)
		}
		if _, err := s.SetStatus(ctx, ids[1], StatusMerged, "gov", "ok"); err != nil {
			t.Fatal(err)
		}
		merged, err := s.CopyToMerged(ctx, ids[1])
		if err != nil {
			t.Fatal(err)
		}
		kept, err := s.Create(ctx, other, TraceCustom, []byte(`{}`), "test")
		if err != nil {
			t.Fatal(err)
		}
		checkMerged := func(when string) {
			t.Helper()
			if v, err := s.Verify(ctx, merged.ID); err != nil || !v.Valid || v.Length != merged.Length {
				t.Fatalf("cut at batch %d, %s: the merged trace: %+v, %v; want it valid, %d entries", cut, when, v, err, merged.Length)
			}
			if v, err := s.Verify(ctx, kept.ID); err != nil || !v.Valid {
				t.Fatalf("cut at batch %d, %s: another session's trace: %+v, %v; want it valid", cut, when, v, err)
			}
		}
		n, err := s.PurgeSession(ctx, sid)
		if err == nil {
			if n != 3 || largest > purgeBatch || batches < 3 {
				t.Fatalf("PurgeSession = %d in %d batches of up to %d ops; want 3 traces, batches of at most %d", n, batches, largest, purgeBatch)
			}
			if cut == 1 {
				t.Fatal("PurgeSession wrote nothing")
			}
			break
		}
		if !errors.Is(err, errKilled) {
			t.Fatalf("cut at batch %d: %v", cut, err)
		}
		left, err := st.Scan(ctx, storage.ScanRequest{Namespace: SessionNamespace(DefaultTenant, sid), Prefix: recordPrefix, KeysOnly: true})
		if err != nil || len(left.Items) == 0 {
			t.Fatalf("cut at batch %d: the session's records: %v, %v; want those of the traces not yet purged", cut, left.Items, err)
		}
		checkMerged("cut short")
		if _, err := s.PurgeSession(ctx, sid); err != nil {
			t.Fatalf("cut at batch %d: PurgeSession again: %v", cut, err)
		}
		all, err := st.Scan(ctx, storage.ScanRequest{Namespace: SessionNamespace(DefaultTenant, sid), KeysOnly: true})
		if err != nil || len(all.Items) != 0 {
			t.Fatalf("cut at batch %d: the session's namespace holds %d keys, %v; want none", cut, len(all.Items), err)
		}
		for _, id := range ids {
			if _, ok, err := st.Get(ctx, IndexNamespace(DefaultTenant), recordKey(id)); err != nil || ok {
				t.Fatalf("cut at batch %d: index entry of %s: %v, %v; want it purged", cut, id, ok, err)
			}
			_, err := s.Get(ctx, id)
			if id == merged.ID && err != nil || id != merged.ID && !errors.Is(err, ErrNotFound) {
				t.Fatalf("cut at batch %d: Get %s: %v", cut, id, err)
			}
		}
		checkMerged("completed")
		// A purged trace's copy in the shared record is read, never written as the trace.
		if _, err := s.AddFlag(ctx, merged.ID, Flag{Flag: "anomaly", Severity: 1}, "test"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("AddFlag to a purged merged trace: %v, want ErrNotFound", err)
		}
		checkMerged("after a refused flag")
		// Nor is it withdrawn (a flag the policy refuses would withdraw a merged trace).
		if err := s.RemoveFromMerged(ctx, merged.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("RemoveFromMerged of a purged merged trace: %v, want ErrNotFound", err)
		}
		checkMerged("after a refused withdrawal")
	}
}
