package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/hashicorp/go-hclog"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/limitgraph/limit/host/version"
	"github.com/limitgraph/limit/internal/fsutil"
	"github.com/limitgraph/limit/internal/opened"
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/storage"
)

var (
	errNotConfigured = fmt.Errorf("sqlite: storage not configured (Configure must succeed first): %w", storage.ErrUnavailable)
	errClosed        = fmt.Errorf("sqlite: storage closed: %w", storage.ErrUnavailable)
)

// store is the SQLite storage backend: one table keyed by (namespace, key), both BLOBs,
// in a database in write-ahead-log mode. Reads run on a pool of reader connections, each
// statement on its own snapshot; writes go through the engine's single writer connection,
// which groups concurrent writes into one transaction and one fsync.
type store struct {
	log hclog.Logger
	eng opened.Slot[settings, engine]
}

func newStore() *store {
	return &store{log: hclog.NewNullLogger(), eng: opened.Slot[settings, engine]{
		Name: "sqlite", ErrNotConfigured: errNotConfigured, ErrClosed: errClosed,
	}}
}

// PluginInfo implements base.Plugin.
func (s *store) PluginInfo() base.Info {
	return base.Info{
		Name:         "sqlite",
		Kind:         base.KindStorage,
		Version:      version.Version,
		Capabilities: []string{"batch", "cas", "scan", "durable", storage.CapBatchNamespaces},
		Description:  "SQLite database (pure Go) in WAL mode with synchronous=FULL; concurrent writes share one transaction and one fsync.",
	}
}

// ConfigSchema implements base.Plugin.
func (s *store) ConfigSchema() base.Schema { return configSchema() }

// Configure implements base.Plugin. Without ValidateOnly it opens the database; a second
// Configure with the same settings is a no-op, with different ones an error, since the
// open database cannot be swapped under running requests.
func (s *store) Configure(ctx context.Context, req base.ConfigureRequest) base.Diagnostics {
	set, ds := parseConfig(req)
	if ds.HasErrors() {
		return ds
	}
	if req.ValidateOnly {
		// What a start would create first: the file's directory (nothing is created now).
		if err := fsutil.CheckCreatable(filepath.Dir(set.path)); err != nil {
			ds = append(ds, base.Errorf([]string{"path"}, "cannot create the directory of %s: %v", set.path, err))
		}
		return ds
	}
	return append(ds, s.eng.Configure(set, func() (*engine, base.Diagnostics) {
		d, diag := openDB(ctx, set)
		if diag != nil {
			return nil, base.Diagnostics{*diag}
		}
		s.log.Info("database open", "path", set.path, "max_batch", set.maxBatch, "readers", set.readers)
		return newEngine(d, set, s.log), nil
	})...)
}

// engine returns the open engine, or an ErrUnavailable error.
func (s *store) engine() (*engine, error) { return s.eng.Get() }

// Get implements storage.Storage.
func (s *store) Get(ctx context.Context, ns string, key []byte) ([]byte, bool, error) {
	if err := storage.ValidateNamespace(ns); err != nil {
		return nil, false, err
	}
	if err := storage.ValidateKey(key); err != nil {
		return nil, false, err
	}
	e, err := s.engine()
	if err != nil {
		return nil, false, err
	}
	var v []byte
	err = e.db.rGet.QueryRowContext(ctx, []byte(ns), key).Scan(&v)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, false, nil
	case err != nil:
		return nil, false, e.mapErr("get", err)
	}
	return nonNil(v), true, nil
}

// Put implements storage.Storage.
func (s *store) Put(ctx context.Context, ns string, key, value []byte) error {
	if err := storage.ValidateNamespace(ns); err != nil {
		return err
	}
	if err := storage.ValidateKey(key); err != nil {
		return err
	}
	if err := storage.ValidateValue(value); err != nil {
		return err
	}
	e, err := s.engine()
	if err != nil {
		return err
	}
	err = e.write(ctx, len(key)+len(value), func(t *wtx) (bool, error) {
		return true, t.put(ns, key, value)
	})
	return e.mapErr("put", err)
}

// Delete implements storage.Storage.
func (s *store) Delete(ctx context.Context, ns string, key []byte) (bool, error) {
	if err := storage.ValidateNamespace(ns); err != nil {
		return false, err
	}
	if err := storage.ValidateKey(key); err != nil {
		return false, err
	}
	e, err := s.engine()
	if err != nil {
		return false, err
	}
	var existed bool
	err = e.write(ctx, len(key), func(t *wtx) (bool, error) {
		var err error
		existed, err = t.del(ns, key)
		return existed, err
	})
	if err != nil {
		return false, e.mapErr("delete", err)
	}
	return existed, nil
}

// scanQuery returns the SQL of a scan: keys from lower (inclusive, none if empty) to upper
// (exclusive, none if nil), in key order, one more than the page to tell whether more
// follow.
func scanQuery(hasLower, hasUpper, keysOnly bool) string {
	var b strings.Builder
	if keysOnly {
		b.WriteString("SELECT key FROM limit_kv WHERE ns = ?1")
	} else {
		b.WriteString("SELECT key, value FROM limit_kv WHERE ns = ?1")
	}
	if hasLower {
		b.WriteString(" AND key >= ?2")
	}
	if hasUpper {
		b.WriteString(" AND key < ?3")
	}
	b.WriteString(" ORDER BY key LIMIT ?4")
	return b.String()
}

// Scan implements storage.Storage. The page is read by one statement, so it is one
// consistent snapshot.
func (s *store) Scan(ctx context.Context, req storage.ScanRequest) (storage.ScanResult, error) {
	if err := storage.NormalizeScan(&req); err != nil {
		return storage.ScanResult{}, err
	}
	e, err := s.engine()
	if err != nil {
		return storage.ScanResult{}, err
	}
	lower, upper := storage.ScanBounds(req)
	if upper != nil && bytes.Compare(lower, upper) >= 0 {
		return storage.ScanResult{Items: []storage.KeyValue{}}, nil
	}
	st, err := e.db.scanStmt(ctx, scanQuery(len(lower) > 0, upper != nil, req.KeysOnly))
	if err != nil {
		return storage.ScanResult{}, e.mapErr("scan", err)
	}
	// Unused parameters are bound too (SQLite ignores them), so every shape of query
	// takes the same arguments.
	rows, err := st.QueryContext(ctx, []byte(req.Namespace), nonNil(lower), nonNil(upper), req.Limit+1)
	if err != nil {
		return storage.ScanResult{}, e.mapErr("scan", err)
	}
	defer rows.Close()
	res := storage.ScanResult{Items: []storage.KeyValue{}}
	size := 0
	for rows.Next() {
		if len(res.Items) == req.Limit {
			res.More = true
			break
		}
		var kv storage.KeyValue
		if req.KeysOnly {
			err = rows.Scan(&kv.Key)
		} else {
			err = rows.Scan(&kv.Key, &kv.Value)
			kv.Value = nonNil(kv.Value)
		}
		if err != nil {
			return storage.ScanResult{}, e.mapErr("scan", err)
		}
		size += len(kv.Key) + len(kv.Value)
		// Cut a page short rather than exceed MaxScanBytes; the first item always fits,
		// so a scan always makes progress.
		if len(res.Items) > 0 && size > storage.MaxScanBytes {
			res.More = true
			break
		}
		res.Items = append(res.Items, kv)
	}
	if err := rows.Err(); err != nil {
		return storage.ScanResult{}, e.mapErr("scan", err)
	}
	return res, nil
}

// snapshotQuery reads every row in the order of the table's primary key, (ns, key): both
// are BLOBs, which compare with memcmp, so the order is the protocol's bytewise one and
// SQLite walks the table without sorting. The health probe's namespace, which the probe
// never commits, is left out all the same: it is not a namespace of the storage API.
const snapshotQuery = `SELECT ns, key, value FROM limit_kv WHERE ns <> ?1 ORDER BY ns, key`

// Snapshot implements storage.Snapshotter: one read transaction, on a connection of its
// own (neither the writer's nor one of the readers Get and Scan use), walks the table
// in (namespace, key) order. In WAL mode the transaction's view is fixed at its first
// read, and writes go on meanwhile; checkpoints do not copy past the frames it may still
// read, so the write-ahead log grows until it ends. Close cancels it.
func (s *store) Snapshot(ctx context.Context, fn func(ns string, key, value []byte) error) error {
	e, err := s.engine()
	if err != nil {
		return err
	}
	sctx, done, err := e.db.startSnapshot(ctx)
	if err != nil {
		return err
	}
	defer done()
	var fnErr error
	err = e.db.snapshot(sctx, func(ns string, key, value []byte) error {
		fnErr = fn(ns, key, value)
		return fnErr
	})
	switch {
	case err == nil:
		return nil
	case fnErr != nil:
		return fnErr // as it is, as the interface says
	case ctx.Err() == nil && e.db.snapStopped.Err() != nil:
		// Cut short by Close, not by the caller.
		return fmt.Errorf("sqlite snapshot: %w", errClosed)
	}
	return e.mapErr("snapshot", err)
}

// snapshot is Snapshot on d.
func (d *db) snapshot(ctx context.Context, fn func(ns string, key, value []byte) error) error {
	// A deferred BEGIN (ReadOnly): the read transaction, and its view, starts at the
	// query's first step and lasts until Rollback, whatever the query does in between.
	tx, err := d.snapshots.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	rows, err := tx.QueryContext(ctx, snapshotQuery, []byte(probeNamespace))
	if err != nil {
		return err
	}
	defer rows.Close()
	var (
		nsb, key, value sql.RawBytes // valid until the next row: fn must not keep them
		ns              string
	)
	for rows.Next() {
		if err := rows.Scan(&nsb, &key, &value); err != nil {
			return err
		}
		// A cancellation reaches the query asynchronously: check here, so that no item
		// is yielded once the caller, or Close, has given up.
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := d.snapStopped.Err(); err != nil {
			return err
		}
		if string(nsb) != ns {
			ns = string(nsb)
		}
		if err := fn(ns, key, nonNil(value)); err != nil {
			return err
		}
	}
	return rows.Err()
}

// Batch implements storage.Storage: the operations run in order in the writer's
// transaction, so they commit together or not at all. Assertions are checked first, in
// the same transaction, against the state the batch starts from; when one fails nothing
// is written and Batch returns its *storage.ConditionError.
func (s *store) Batch(ctx context.Context, ns string, ops []storage.Op) error {
	if err := storage.ValidateBatch(ns, ops); err != nil {
		return err
	}
	e, err := s.engine()
	if err != nil {
		return err
	}
	if len(ops) == 0 {
		return ctx.Err()
	}
	size := 0
	for _, op := range ops {
		size += len(op.Key) + len(op.Value)
	}
	// A failed assertion is an outcome, not a failed transaction: it is kept aside so the
	// group's other requests commit. apply may run twice, so it resets it.
	var condErr error
	err = e.write(ctx, size, func(t *wtx) (bool, error) {
		condErr = storage.CheckAssertionsIn(ns, ops, func(ns string, key []byte) ([]byte, bool, error) { return t.get(ns, key) })
		if condErr != nil {
			if errors.Is(condErr, storage.ErrConditionFailed) {
				return false, nil
			}
			return false, condErr // reading failed
		}
		wrote := false
		for i, op := range ops {
			switch op.Kind {
			case storage.OpPut:
				if err := t.put(op.In(ns), op.Key, op.Value); err != nil {
					return false, fmt.Errorf("operation %d: %w", i, err)
				}
				wrote = true
			case storage.OpDelete:
				existed, err := t.del(op.In(ns), op.Key)
				if err != nil {
					return false, fmt.Errorf("operation %d: %w", i, err)
				}
				wrote = wrote || existed
			}
		}
		return wrote, nil
	})
	if err == nil && condErr != nil {
		return condErr
	}
	return e.mapErr("batch", err)
}

// CompareAndSwap implements storage.Storage. It runs in the writer like any write, so it
// sees the effect of every write acknowledged before it and of the writes ahead of it in
// its group.
func (s *store) CompareAndSwap(ctx context.Context, req storage.CASRequest) (storage.CASResult, error) {
	if err := storage.ValidateCAS(req); err != nil {
		return storage.CASResult{}, err
	}
	e, err := s.engine()
	if err != nil {
		return storage.CASResult{}, err
	}
	var res storage.CASResult
	err = e.write(ctx, len(req.Key)+len(req.Value), func(t *wtx) (bool, error) {
		cur, present, err := t.get(req.Namespace, req.Key)
		if err != nil {
			return false, err
		}
		if present != req.ExpectPresent || (present && !bytes.Equal(cur, req.Expected)) {
			res = storage.CASResult{Present: present, Current: cur}
			return false, nil
		}
		if req.Delete {
			res = storage.CASResult{Swapped: true}
			if !present {
				return false, nil
			}
			_, err := t.del(req.Namespace, req.Key)
			return true, err
		}
		res = storage.CASResult{Swapped: true, Present: true, Current: bytes.Clone(nonNil(req.Value))}
		return true, t.put(req.Namespace, req.Key, req.Value)
	})
	if err != nil {
		return storage.CASResult{}, e.mapErr("compare-and-swap", err)
	}
	return res, nil
}

// Health implements storage.HealthReporter: unhealthy while the store is not open, and
// after a write was refused for a full disk until a write succeeds again.
func (s *store) Health(ctx context.Context) storage.Health {
	e, err := s.engine()
	if err != nil {
		return storage.Health{Detail: err.Error()}
	}
	return e.health(ctx)
}

// Close implements storage.Storage: it lets the writer finish every queued write, then
// closes the database. Calls after Close fail with ErrUnavailable.
func (s *store) Close() error {
	// New calls are refused from here; writes already queued still finish (the engine
	// drains its queue).
	return s.eng.Close(func(e *engine) error {
		if err := e.close(); err != nil {
			return fmt.Errorf("sqlite: close %s: %w", e.set.path, err)
		}
		return nil
	})
}

// mapErr is mapErr naming the engine's database file.
func (e *engine) mapErr(op string, err error) error {
	return mapErr(op, e.set.path, err)
}

// mapErr gives err the storage package's meaning: a full disk becomes ErrNoSpace, a
// database locked by another process or a closed one ErrUnavailable; context errors and
// the package's own pass unchanged.
func mapErr(op, path string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, storage.ErrInvalid), errors.Is(err, storage.ErrUnavailable),
		errors.Is(err, storage.ErrNoSpace), errors.Is(err, storage.ErrConditionFailed),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case isNoSpace(err):
		return fmt.Errorf("sqlite %s: %w: the disk holding %s is full; free some space or move the database to a larger disk: %w",
			op, storage.ErrNoSpace, path, err)
	case errors.Is(err, sql.ErrConnDone), errors.Is(err, sql.ErrTxDone),
		strings.Contains(err.Error(), "sql: database is closed"), strings.Contains(err.Error(), "sql: statement is closed"):
		return fmt.Errorf("sqlite %s: %w", op, errClosed)
	}
	switch sqliteCode(err) {
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
		return fmt.Errorf("sqlite %s: %w: %s", op, storage.ErrUnavailable, describe(err))
	case sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_IOERR:
		return fmt.Errorf("sqlite %s: %s", op, describe(err))
	}
	return fmt.Errorf("sqlite %s: %w", op, err)
}

// isNoSpace reports whether err means the disk (or the user's quota) is full. SQLite says
// SQLITE_FULL; writing its write-ahead log or shared-memory file may also surface as an
// I/O error whose errno is ENOSPC.
func isNoSpace(err error) bool {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || sqliteCode(err) == sqlite3.SQLITE_FULL {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, syscall.ENOSPC.Error()) || strings.Contains(msg, syscall.EDQUOT.Error())
}

// nonNil returns b, or an empty slice for nil, so SQLite stores an empty BLOB rather than
// NULL and an empty value reads back as empty, not absent.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

var (
	_ storage.Storage        = (*store)(nil)
	_ storage.HealthReporter = (*store)(nil)
	_ storage.Snapshotter    = (*store)(nil)
)
