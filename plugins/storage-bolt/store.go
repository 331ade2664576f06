package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/limitgraph/limit/host/version"
	"github.com/limitgraph/limit/internal/fsutil"
	"github.com/limitgraph/limit/internal/opened"
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/storage"
)

var (
	errNotConfigured = fmt.Errorf("bolt: storage not configured (Configure must succeed first): %w", storage.ErrUnavailable)
	errClosed        = fmt.Errorf("bolt: storage closed: %w", storage.ErrUnavailable)
)

// store is the bbolt storage backend. Each namespace is a top-level bucket named by the
// namespace's bytes; keys and values are stored as given. Writes go through the engine's
// single writer, which groups concurrent writes into one write-ahead log record and one
// fdatasync; checkpoints copy them into the bbolt file. Reads consult the writes not yet
// copied, then the file, in concurrent read transactions.
type store struct {
	log hclog.Logger
	eng opened.Slot[settings, engine]
}

func newStore() *store {
	return &store{log: hclog.NewNullLogger(), eng: opened.Slot[settings, engine]{
		Name: "bolt", ErrNotConfigured: errNotConfigured, ErrClosed: errClosed,
	}}
}

// PluginInfo implements base.Plugin.
func (s *store) PluginInfo() base.Info {
	return base.Info{
		Name:         "bolt",
		Kind:         base.KindStorage,
		Version:      version.Version,
		Capabilities: []string{"batch", "cas", "scan", "durable", storage.CapBatchNamespaces},
		Description:  "Embedded key-value storage in one bbolt file behind a write-ahead log; concurrent writes share one log record and one fdatasync.",
	}
}

// ConfigSchema implements base.Plugin.
func (s *store) ConfigSchema() base.Schema { return configSchema() }

// Configure implements base.Plugin. Without ValidateOnly it opens the database; a second
// Configure with the same settings is a no-op, with different ones an error, since the
// open file cannot be swapped under running requests.
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
		db, d := openDB(ctx, set)
		if d != nil {
			return nil, base.Diagnostics{*d}
		}
		e, err := openEngine(db, set, s.log)
		var damage *walDamageError
		if errors.As(err, &damage) {
			_ = db.Close()
			s.log.Error("write-ahead log damaged; not opening the database", "file", damage.path, "offset", damage.off,
				"intact_records_after", damage.intact, "next_intact_offset", damage.next)
			return nil, base.Diagnostics{{
				Severity: base.SeverityError,
				Summary:  damage.Error(),
				Detail:   damage.advice(),
				Path:     []string{"path"},
			}}
		}
		if err != nil {
			_ = db.Close()
			return nil, base.Diagnostics{base.Errorf([]string{"path"}, "cannot open the write-ahead log of %s: %v", set.path, mapErr("open", err))}
		}
		s.log.Info("database open", "path", set.path, "no_sync", set.noSync, "max_batch", set.maxBatch)
		if set.noSync {
			s.log.Warn(noSyncWarning, "path", set.path)
		}
		return e, nil
	})...)
}

// openDB creates the file's directory and opens the database, waiting at most the
// configured timeout (or the context's deadline, if sooner) for another process's lock.
func openDB(ctx context.Context, set settings) (*bolt.DB, *base.Diagnostic) {
	if err := os.MkdirAll(filepath.Dir(set.path), 0o700); err != nil {
		d := base.Errorf([]string{"path"}, "cannot create the directory of %s: %v", set.path, err)
		return nil, &d
	}
	wait := set.timeout
	if dl, ok := ctx.Deadline(); ok {
		wait = max(min(wait, time.Until(dl).Round(time.Millisecond)), time.Millisecond)
	}
	// An existing file is checked first (see dbfile.go): cut short or with damaged pages,
	// bbolt would crash the plugin opening it. The read-only open takes the file's lock
	// shared, so it waits for another process's as the open below would.
	if fi, err := os.Stat(set.path); err == nil && fi.Size() > 0 {
		err := checkSize(set.path)
		if err == nil {
			err = guardDamage(set.path, func() error {
				ro, err := bolt.Open(set.path, 0o600, &bolt.Options{ReadOnly: true, Timeout: wait})
				if err != nil {
					return err
				}
				defer ro.Close()
				return walkPages(set.path, ro)
			})
		}
		if err != nil {
			return nil, openDiagnostic(set, wait, err)
		}
	}
	// The free-page list is not written at every commit but rebuilt when the file is
	// opened (as etcd runs bbolt): commits write fewer pages, and nothing durable depends
	// on it. A file written with the list synced opens the same.
	var db *bolt.DB
	err := guardDamage(set.path, func() (err error) {
		db, err = bolt.Open(set.path, 0o600, &bolt.Options{
			Timeout: wait, NoSync: set.noSync, NoFreelistSync: true, FreelistType: bolt.FreelistMapType,
		})
		return err
	})
	if err != nil {
		return nil, openDiagnostic(set, wait, err)
	}
	return db, nil
}

// openDiagnostic says why the database file could not be opened, and what to do.
func openDiagnostic(set settings, wait time.Duration, err error) *base.Diagnostic {
	var damaged *damagedFileError
	switch {
	case errors.As(err, &damaged):
		return &base.Diagnostic{
			Severity: base.SeverityError, Summary: damaged.Error(), Detail: damaged.advice(), Path: []string{"path"},
		}
	case errors.Is(err, berrors.ErrTimeout):
		d := base.Diagnostic{
			Severity: base.SeverityError,
			Summary:  fmt.Sprintf("database file %s is locked by another process", set.path),
			Detail:   fmt.Sprintf("Gave up waiting for its lock after %s. Stop the other LIMIT host or plugin that uses this file, or set path to another file.", wait),
			Path:     []string{"path"},
		}
		return &d
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, berrors.ErrChecksum):
		d := base.Diagnostic{
			Severity: base.SeverityError,
			Summary:  fmt.Sprintf("%s is not a bbolt database", set.path),
			Detail: fmt.Sprintf("The file exists but bbolt cannot read it as a database (%v): it is another kind of file, or a damaged one. "+
				"Set path to another file, or move this one away so that a new database is created there.", err),
			Path: []string{"path"},
		}
		return &d
	default:
		d := base.Errorf([]string{"path"}, "cannot open database file %s: %v", set.path, mapErr("open", err))
		return &d
	}
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
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	e, err := s.engine()
	if err != nil {
		return nil, false, err
	}
	val, found, err := e.get(ns, key)
	if err != nil {
		return nil, false, mapErr("get", err)
	}
	return val, found, nil
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
	err = e.write(ctx, len(key)+len(value), func(tx *wtx) (bool, error) {
		tx.put(ns, key, value)
		return true, nil
	})
	return mapErr("put", err)
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
	err = e.write(ctx, len(key), func(tx *wtx) (bool, error) {
		var err error
		if _, existed, err = tx.get(ns, key); err != nil || !existed {
			return false, err
		}
		tx.del(ns, key)
		return true, nil
	})
	if err != nil {
		return false, mapErr("delete", err)
	}
	return existed, nil
}

// Scan implements storage.Storage.
func (s *store) Scan(ctx context.Context, req storage.ScanRequest) (storage.ScanResult, error) {
	if err := storage.NormalizeScan(&req); err != nil {
		return storage.ScanResult{}, err
	}
	if err := ctx.Err(); err != nil {
		return storage.ScanResult{}, err
	}
	e, err := s.engine()
	if err != nil {
		return storage.ScanResult{}, err
	}
	v, err := e.read()
	if err != nil {
		return storage.ScanResult{}, mapErr("scan", err)
	}
	defer func() { _ = v.tx.Rollback() }()
	return scan(v, req), nil
}

// scan reads one page of a view. It starts at the first key that has the prefix and is
// strictly after StartAfter, and reads one key past the page to tell whether more follow.
func scan(v view, req storage.ScanRequest) storage.ScanResult {
	res := storage.ScanResult{Items: []storage.KeyValue{}}
	start := req.Prefix
	if len(req.StartAfter) > 0 {
		// The least key greater than StartAfter is StartAfter followed by a zero byte.
		succ := append(bytes.Clone(req.StartAfter), 0)
		if bytes.Compare(succ, start) > 0 {
			start = succ
		}
	}
	srcs := []cursor{v.mem.cursor(req.Namespace, start)}
	if v.frozen != nil {
		srcs = append(srcs, v.frozen.cursor(req.Namespace, start))
	}
	if b := v.tx.Bucket([]byte(req.Namespace)); b != nil {
		srcs = append(srcs, &boltCursor{c: b.Cursor(), seek: start})
	}
	defer func() {
		for _, c := range srcs {
			c.close()
		}
	}()
	size := 0
	mergedScan(srcs, func(k, val []byte) bool {
		if !bytes.HasPrefix(k, req.Prefix) {
			return false
		}
		if len(res.Items) == req.Limit {
			res.More = true
			return false
		}
		kv := storage.KeyValue{Key: clone(k)}
		size += len(k)
		if !req.KeysOnly {
			kv.Value = clone(val)
			size += len(val)
		}
		// Like the protocol server, cut a page short rather than exceed MaxScanBytes; the
		// first item always fits, so a scan always makes progress.
		if len(res.Items) > 0 && size > storage.MaxScanBytes {
			res.More = true
			return false
		}
		res.Items = append(res.Items, kv)
		return true
	})
	return res
}

// boltCursor walks a bucket from a starting key, as a scan source.
type boltCursor struct {
	c       *bolt.Cursor
	seek    []byte
	started bool
}

func (c *boltCursor) next() (item, bool) {
	var k, v []byte
	if !c.started {
		c.started = true
		if len(c.seek) == 0 {
			k, v = c.c.First()
		} else {
			k, v = c.c.Seek(c.seek)
		}
	} else {
		k, v = c.c.Next()
	}
	if k == nil {
		return item{}, false
	}
	return item{key: k, val: v}, true
}

func (c *boltCursor) close() {}

// Batch implements storage.Storage.
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
	// A failed assertion is a logical outcome, not a failed transaction: it is kept aside
	// so the group's other requests commit. apply may run twice, so it resets it.
	var condErr error
	err = e.write(ctx, size, func(tx *wtx) (bool, error) {
		var lookupErr error
		condErr = storage.CheckAssertionsIn(ns, ops, func(ns string, key []byte) ([]byte, bool, error) {
			v, ok, err := tx.get(ns, key)
			if err != nil {
				lookupErr = err
			}
			return v, ok, err
		})
		if lookupErr != nil {
			return false, lookupErr
		}
		if condErr != nil {
			return false, nil
		}
		wrote := false
		for _, op := range ops {
			switch {
			case op.IsAssertion():
				continue
			case op.Kind == storage.OpPut:
				tx.put(op.In(ns), op.Key, op.Value)
			default:
				tx.del(op.In(ns), op.Key)
			}
			wrote = true
		}
		return wrote, nil
	})
	if err == nil && condErr != nil {
		return condErr
	}
	return mapErr("batch", err)
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
	err = e.write(ctx, len(req.Key)+len(req.Value), func(tx *wtx) (bool, error) {
		cur, present, err := tx.get(req.Namespace, req.Key)
		if err != nil {
			return false, err
		}
		if present != req.ExpectPresent || (present && !bytes.Equal(cur, req.Expected)) {
			res = storage.CASResult{Present: present}
			if present {
				res.Current = clone(cur)
			}
			return false, nil
		}
		if req.Delete {
			res = storage.CASResult{Swapped: true}
			if !present {
				return false, nil
			}
			tx.del(req.Namespace, req.Key)
			return true, nil
		}
		res = storage.CASResult{Swapped: true, Present: true, Current: clone(req.Value)}
		tx.put(req.Namespace, req.Key, req.Value)
		return true, nil
	})
	if err != nil {
		return storage.CASResult{}, mapErr("compare-and-swap", err)
	}
	return res, nil
}

// Health implements storage.HealthReporter: not OK while checkpoints fail (a full disk)
// or after a failed log sync, with what waits in the write-ahead log.
func (s *store) Health(context.Context) storage.Health {
	e, err := s.engine()
	if err != nil {
		return storage.Health{Detail: err.Error()}
	}
	return e.health()
}

// Close implements storage.Storage: it lets the writer finish every queued write, then
// closes the database. Calls after Close fail with ErrUnavailable.
func (s *store) Close() error {
	return s.eng.Close(func(e *engine) error {
		if err := e.close(); err != nil {
			return fmt.Errorf("bolt: close %s: %w", e.set.path, err)
		}
		return nil
	})
}

// lookup returns the value at key in b (nil b is an empty namespace). It tests presence
// by the key, not by a nil value, so an empty value is found.
func lookup(b *bolt.Bucket, key []byte) ([]byte, bool) {
	if b == nil {
		return nil, false
	}
	k, v := b.Cursor().Seek(key)
	if k == nil || !bytes.Equal(k, key) {
		return nil, false
	}
	return v, true
}

// dropIfEmpty deletes a namespace's bucket once its last key is gone, so namespaces of
// ended sessions leave nothing behind.
func dropIfEmpty(tx *bolt.Tx, ns string) error {
	b := tx.Bucket([]byte(ns))
	if b == nil {
		return nil
	}
	if k, _ := b.Cursor().First(); k != nil {
		return nil
	}
	return tx.DeleteBucket([]byte(ns))
}

// mapErr gives err the storage package's meaning: a full disk becomes ErrNoSpace and a
// closed database ErrUnavailable; context errors and the package's own pass unchanged.
func mapErr(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, storage.ErrInvalid), errors.Is(err, storage.ErrUnavailable),
		errors.Is(err, storage.ErrNoSpace),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case isNoSpace(err):
		return fmt.Errorf("bolt %s: %w: %w", op, storage.ErrNoSpace, err)
	case errors.Is(err, berrors.ErrDatabaseNotOpen), errors.Is(err, berrors.ErrTxClosed):
		return fmt.Errorf("bolt %s: %w", op, errClosed)
	}
	return fmt.Errorf("bolt %s: %w", op, err)
}

// isNoSpace reports whether err means the disk (or the user's quota) is full. bbolt wraps
// some errors of growing the file with %s, which drops the errno, hence the text match.
func isNoSpace(err error) bool {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, syscall.ENOSPC.Error()) || strings.Contains(msg, syscall.EDQUOT.Error())
}

// clone copies b out of bbolt's memory map, which is only valid inside the transaction.
// The copy is never nil, so an empty value reads back as empty, not absent.
func clone(b []byte) []byte {
	out := make([]byte, len(b))
	copy(out, b)
	return out
}

// nonNil returns b, or an empty slice for nil, so bbolt always stores a value.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

var (
	_ storage.Storage        = (*store)(nil)
	_ storage.HealthReporter = (*store)(nil)
)

// Snapshot implements storage.Snapshotter over one read view: the logged writes not yet
// copied into the database file and a read transaction of the file, taken together
// (what Scan reads one page of). The view is held for the whole walk.
func (s *store) Snapshot(ctx context.Context, fn func(ns string, key, value []byte) error) error {
	e, err := s.engine()
	if err != nil {
		return err
	}
	v, err := e.read()
	if err != nil {
		return mapErr("snapshot", err)
	}
	defer func() { _ = v.tx.Rollback() }()
	names := map[string]bool{}
	_ = v.tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
		names[string(name)] = true
		return nil
	})
	v.mem.namespaces(names)
	if v.frozen != nil {
		v.frozen.namespaces(names)
	}
	for _, ns := range slices.Sorted(maps.Keys(names)) {
		srcs := []cursor{v.mem.cursor(ns, nil)}
		if v.frozen != nil {
			srcs = append(srcs, v.frozen.cursor(ns, nil))
		}
		if b := v.tx.Bucket([]byte(ns)); b != nil {
			srcs = append(srcs, &boltCursor{c: b.Cursor()})
		}
		var ferr error
		mergedScan(srcs, func(k, val []byte) bool {
			if ferr = ctx.Err(); ferr == nil {
				ferr = fn(ns, k, val)
			}
			return ferr == nil
		})
		for _, c := range srcs {
			c.close()
		}
		if ferr != nil {
			return ferr
		}
	}
	return nil
}
