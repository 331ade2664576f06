package trace

import (
	"context"
	"errors"
	"fmt"

	"github.com/limitgraph/limit/sdk/storage"
)

// purgeBatch bounds the keys one storage batch of PurgeSession deletes (and one scan
// reads), so that purging a session of any size costs bounded writes.
var purgeBatch = storage.MaxScanLimit

// PurgeSession removes from storage everything of a session the store keeps: the
// index entries of its traces and its whole namespace (the traces' records, chains and
// checkpoints, and the keys other packages keep there, such as refinement points and
// governance statistics). It returns how many traces it removed. The copies of its
// merged traces in MergedNamespace stay: the shared record keeps them, complete with
// their chains and checkpoints, and Get, Chain, Verify and WriteBundle read them there
// once the session's own copies are gone.
//
// It deletes in batches of at most purgeBatch keys, the index entries of a page of
// traces before anything of them in the namespace, and in the namespace the chains and
// checkpoints (keys ckpt/ and prov/) before the records (trace/), which sort after them.
// So a purge cut short (a crash, a kill, a storage failure) leaves the records of the
// traces not yet gone, which a purge of the session run again finds and completes. Deleting
// what is gone already is no error: hosts sharing a database may purge one session at
// once. The caller makes sure the session is no longer used: a write to one of its
// traces that lands meanwhile may outlive the purge.
func (s *Store) PurgeSession(ctx context.Context, sessionID string) (int, error) {
	if !ValidID(sessionID) {
		return 0, fmt.Errorf("%w: %s is not a session id", ErrInvalid, quoteID(sessionID))
	}
	ns := SessionNamespace(s.tenant, sessionID)
	traces := 0
	// The index entries first: once they are gone, no one finds a trace of the session
	// (but its copy in the shared record) while its chain is deleted.
	var after []byte
	for {
		res, err := s.st.Scan(ctx, storage.ScanRequest{Namespace: ns, Prefix: recordPrefix, StartAfter: after, Limit: purgeBatch, KeysOnly: true})
		if err != nil {
			return traces, fmt.Errorf("purge session %s: list its traces: %w", sessionID, err)
		}
		ops := make([]storage.Op, 0, len(res.Items))
		for _, kv := range res.Items {
			id := string(kv.Key[len(recordPrefix):])
			ops = append(ops, storage.Op{Kind: storage.OpDelete, Key: recordKey(id)})
			s.sessions.remove(id)
			s.heads.remove(id)
		}
		if len(ops) > 0 {
			if err := s.st.Batch(ctx, IndexNamespace(s.tenant), ops); err != nil {
				return traces, fmt.Errorf("purge session %s: remove its traces' index entries: %w", sessionID, err)
			}
			traces += len(ops)
		}
		if !res.More || len(res.Items) == 0 {
			break
		}
		after = res.Items[len(res.Items)-1].Key
	}
	// Then the namespace, from its first key on: what a batch deleted is not read again,
	// and a key written meanwhile is found by a later scan.
	for {
		res, err := s.st.Scan(ctx, storage.ScanRequest{Namespace: ns, Limit: purgeBatch, KeysOnly: true})
		if err != nil {
			return traces, fmt.Errorf("purge session %s: %w", sessionID, err)
		}
		if len(res.Items) == 0 {
			return traces, nil
		}
		ops := make([]storage.Op, 0, len(res.Items))
		for _, kv := range res.Items {
			ops = append(ops, storage.Op{Kind: storage.OpDelete, Key: kv.Key})
		}
		if err := s.st.Batch(ctx, ns, ops); err != nil {
			return traces, fmt.Errorf("purge session %s: %w", sessionID, err)
		}
	}
}

// mergedLocation is where a trace's copy in MergedNamespace lives, if there is one.
func (s *Store) mergedLocation(ctx context.Context, traceID string) (location, bool, error) {
	ns := MergedNamespace(s.tenant)
	raw, ok, err := s.st.Get(ctx, ns, recordKey(traceID))
	if err != nil {
		return location{}, false, fmt.Errorf("look trace %s up in the merged record: %w", traceID, err)
	}
	if !ok {
		return location{}, false, nil
	}
	rec, err := parseRecord(raw)
	if err != nil || rec.ID != traceID || !ValidID(rec.SessionID) {
		return location{}, false, fmt.Errorf("%w: the merged record's copy of trace %s: record of trace %q in session %q (%v)", ErrCorrupt, traceID, rec.ID, rec.SessionID, err)
	}
	return location{traceID: traceID, sessionID: rec.SessionID, ns: ns}, true, nil
}

// read calls fn with the location of a trace: in its session's namespace, or, when it is
// not found there (its session was purged, see PurgeSession), its copy in MergedNamespace
// if it has one. fn must answer ErrNotFound for a trace whose record it does not find.
// Only reads go through read: a purged trace's copy in the shared record is never written
// as if it were the trace.
func (s *Store) read(ctx context.Context, traceID string, fn func(location) error) error {
	loc, err := s.locate(ctx, traceID)
	if err == nil {
		err = fn(loc)
	}
	if !errors.Is(err, ErrNotFound) || !ValidID(traceID) {
		return err
	}
	mloc, ok, merr := s.mergedLocation(ctx, traceID)
	if merr != nil {
		return merr
	}
	if !ok {
		return err
	}
	return fn(mloc)
}

// isMerged reports whether loc is a copy in MergedNamespace.
func (s *Store) isMerged(loc location) bool {
	return loc.ns == MergedNamespace(s.tenant)
}
