package session

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/limitgraph/limit/sdk/storage"
)

// deletedPrefix keys the index of deleted sessions by when they were deleted:
// deletedPrefix + DeletedAt (deletedTimeLayout, UTC) + "/" + id, an empty value, written
// with the record that marks the session deleted, so that the retention sweep reads the
// sessions due for purging first and stops at the first that is not.
const (
	deletedPrefix     = "deleted/"
	deletedTimeLayout = "20060102T150405.000000000Z" // fixed width: sorts as it reads
)

func deletedKey(at time.Time, id string) []byte {
	return []byte(deletedPrefix + at.UTC().Format(deletedTimeLayout) + "/" + id)
}

// parseDeletedKey returns the time and session id of a deleted index key.
func parseDeletedKey(key []byte) (time.Time, string, bool) {
	ts, id, ok := strings.Cut(strings.TrimPrefix(string(key), deletedPrefix), "/")
	if !ok || !ValidID(id) {
		return time.Time{}, "", false
	}
	at, err := time.Parse(deletedTimeLayout, ts)
	return at, id, err == nil
}

// TracePurger removes from storage what a session holds besides its record: its traces,
// with their chains, checkpoints and index entries, and the rest of its namespace. Deleting
// what is gone already is no error. *trace.Store is one.
type TracePurger interface {
	PurgeSession(ctx context.Context, sessionID string) (traces int, err error)
}

// Purged counts what a sweep removed.
type Purged struct {
	Sessions, Traces int
}

// purgePage bounds the sessions one scan of the deleted index reads.
var purgePage = 100

// PurgeDeleted purges every session deleted at or before before: its traces first
// (traces.PurgeSession), then, in one batch, its record, its owner index entry and its
// entry in the deleted index. So a purge cut short (a crash, a kill, a failed write) leaves
// the session's record and its deleted index entry, and the next call completes it; and
// since every delete of what is gone already succeeds, hosts sharing a database may purge
// the same sessions at once. An active session is never purged, whatever the index says.
// It returns what it removed, up to a failure.
func (m *Manager) PurgeDeleted(ctx context.Context, before time.Time, traces TracePurger) (Purged, error) {
	var done Purged
	ns := IndexNamespace(DefaultTenant)
	var after []byte
	for {
		res, err := m.opts.Store.Scan(ctx, storage.ScanRequest{Namespace: ns, Prefix: []byte(deletedPrefix), StartAfter: after, Limit: purgePage, KeysOnly: true})
		if err != nil {
			return done, fmt.Errorf("list deleted sessions: %w", err)
		}
		for _, kv := range res.Items {
			after = kv.Key
			at, id, ok := parseDeletedKey(kv.Key)
			if !ok {
				continue // not ours to read: left as it is
			}
			if at.After(before) {
				return done, nil // the index is in order of deletion: none later is due
			}
			n, purged, err := m.purge(ctx, id, kv.Key, before, traces)
			done.Traces += n
			if err != nil {
				return done, err
			}
			if purged {
				done.Sessions++
			}
		}
		if !res.More || len(res.Items) == 0 {
			return done, nil
		}
	}
}

// purge purges the session id, whose deleted index entry is key, if its record says it was
// deleted at or before before. It returns the traces it removed and whether it removed
// the session's record.
func (m *Manager) purge(ctx context.Context, id string, key []byte, before time.Time, traces TracePurger) (int, bool, error) {
	ns := IndexNamespace(DefaultTenant)
	// The record as stored, not as cached: it decides.
	b, found, err := m.opts.Store.Get(ctx, ns, []byte(sessionPrefix+id))
	if err != nil {
		return 0, false, fmt.Errorf("purge session %s: %w", id, err)
	}
	ops := []storage.Op{{Kind: storage.OpDelete, Key: key}}
	if found {
		s, err := decodeSession(id, b)
		if err != nil {
			return 0, false, fmt.Errorf("purge session %s: %w", id, err)
		}
		switch {
		case s.State != StateDeleted:
			// An entry no delete of this session wrote: the session is live, and stays.
			_, err := m.opts.Store.Delete(ctx, ns, key)
			return 0, false, err
		case s.DeletedAt.After(before):
			return 0, false, nil
		}
		ops = append(ops, storage.Op{Kind: storage.OpDelete, Key: []byte(sessionPrefix + id)})
		if s.Owner != "" {
			ops = append(ops, storage.Op{Kind: storage.OpDelete, Key: ownerKey(s.Owner, id)})
		}
	}
	// Without its record, the session's traces may still be there: a purge that removed
	// the record, then an index entry written again by an IndexDeleted that read the record
	// before (on another host). Purging them again costs one scan.
	n, err := traces.PurgeSession(ctx, id)
	if err != nil {
		return n, false, err
	}
	// The record last, with its index entries: until it is gone, the deleted index leads
	// the next sweep here.
	if err := m.opts.Store.Batch(ctx, ns, ops); err != nil {
		return n, false, fmt.Errorf("purge session %s: %w", id, err)
	}
	m.cacheMu.Lock()
	m.writes++
	delete(m.cache, id)
	m.cacheMu.Unlock()
	return n, found, nil
}

// IndexDeleted makes sure every deleted session has its entry in the deleted index: those
// this version deletes get it with the delete; those an older limitd deleted (before the
// upgrade, or on another host during a rolling upgrade) get it here. It reads every
// session record, a page at a time, and returns how many deleted sessions it indexed.
func (m *Manager) IndexDeleted(ctx context.Context) (int, error) {
	made, err := m.indexSessions(ctx, nil, func(s *Session) []byte {
		if s.State != StateDeleted {
			return nil
		}
		return deletedKey(s.DeletedAt, s.ID)
	})
	if err != nil {
		return made, fmt.Errorf("index deleted sessions: %w", err)
	}
	return made, nil
}

// Retention purges the sessions deleted longer than After ago, with their traces
// (PurgeDeleted), at start and then every SweepInterval(After).
type Retention struct {
	Sessions *Manager
	Traces   TracePurger
	// After is how long a deleted session is kept; 0 keeps it for good (Run does nothing).
	After  time.Duration
	Logger hclog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Counted, when set, is told what each sweep purged (for the metrics).
	Counted func(Purged)
}

// SweepInterval is how often the retention sweep runs for a retention of after: a tenth
// of it, between a minute and ten minutes.
func SweepInterval(after time.Duration) time.Duration {
	return min(max(after/10, time.Minute), 10*time.Minute)
}

// Sweep purges the sessions due, logging at INFO what it purged, if anything.
func (r *Retention) Sweep(ctx context.Context) (Purged, error) {
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	p, err := r.Sessions.PurgeDeleted(ctx, now().Add(-r.After), r.Traces)
	if r.Counted != nil && (p.Sessions > 0 || p.Traces > 0) {
		r.Counted(p)
	}
	if p.Sessions > 0 || p.Traces > 0 {
		r.Logger.Info("purged deleted sessions past their retention", "sessions", p.Sessions, "traces", p.Traces, "deleted_retention", r.After.String())
	}
	return p, err
}

// Run indexes the sessions an older limitd deleted (IndexDeleted), sweeps, and sweeps
// again every SweepInterval until ctx ends. A failed sweep is logged and left to the next:
// what it did not purge, the next one does.
func (r *Retention) Run(ctx context.Context) {
	if r.After <= 0 {
		return
	}
	if n, err := r.Sessions.IndexDeleted(ctx); err != nil && ctx.Err() == nil {
		r.Logger.Warn("indexing deleted sessions failed; sessions an older limitd deleted are purged once a later start indexes them", "error", err)
	} else if n > 0 {
		r.Logger.Debug("indexed deleted sessions", "sessions", n)
	}
	t := time.NewTicker(SweepInterval(r.After))
	defer t.Stop()
	for {
		if _, err := r.Sweep(ctx); err != nil && ctx.Err() == nil && !errors.Is(err, context.Canceled) {
			r.Logger.Warn("purging deleted sessions failed; the next sweep goes on with them", "error", err, "next_in", SweepInterval(r.After).String())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
