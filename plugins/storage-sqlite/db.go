package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/limitgraph/limit/sdk/base"
)

// schemaVersion is the schema this plugin writes, kept in the database's user_version.
// migrations[i] moves a database from version i to i+1.
const schemaVersion = 1

var migrations = []string{
	// 1: one table for every namespace. BLOB columns compare with memcmp, so keys sort in
	// the protocol's byte order; WITHOUT ROWID stores each row once, in key order.
	`CREATE TABLE limit_kv (
		ns    BLOB NOT NULL,
		key   BLOB NOT NULL,
		value BLOB NOT NULL,
		PRIMARY KEY (ns, key)
	) WITHOUT ROWID`,
}

// maxSnapshots bounds the snapshots that run at once (each on a connection of its own);
// more wait for one to end.
const maxSnapshots = 4

// journalSizeLimit truncates the write-ahead log back to this size after a checkpoint,
// so one burst of large values does not leave a large file behind.
const journalSizeLimit = 64 << 20

// dsn builds the driver's connection string for the database at path. Every connection
// waits busy_timeout for locks; the writer also runs with synchronous=FULL (a commit is
// on disk when it returns); readers are query_only, so a bug cannot write through them.
func dsn(set settings, reader bool) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", set.busyTimeout.Milliseconds()))
	q.Add("_pragma", "synchronous(FULL)")
	if reader {
		q.Add("_pragma", "query_only(1)")
	} else {
		q.Add("_pragma", fmt.Sprintf("journal_size_limit(%d)", journalSizeLimit))
	}
	u := url.URL{Scheme: "file", Path: set.path, RawQuery: q.Encode()}
	return u.String()
}

// db is an open database: one writer connection and a pool of readers.
type db struct {
	set     settings
	writer  *sql.DB   // at most one connection
	conn    *sql.Conn // the writer's connection, held for the database's lifetime
	readers *sql.DB
	// snapshots opens a read connection of its own for each snapshot, closed when it
	// ends: a snapshot's read transaction can last as long as the host takes to copy it,
	// and must neither take a reader from Get and Scan nor run on the writer's connection.
	snapshots *sql.DB
	// lock holds the exclusive flock on the lock file beside the database until close.
	lock *os.File
	// Statements on the writer connection.
	wGet, wPut, wDelete *sql.Stmt
	// Statements on the reader pool.
	rGet *sql.Stmt

	scanMu    sync.Mutex
	scanStmts map[string]*sql.Stmt // by SQL text

	// snapMu guards snapClosed; snapRunning counts the snapshots under way, which close
	// cancels (snapStop) and waits for before it closes the pools and drops the lock.
	snapMu      sync.Mutex
	snapClosed  bool
	snapRunning sync.WaitGroup
	snapStopped context.Context
	snapStop    context.CancelFunc
}

// openDB opens (creating if needed) the database, switches it to WAL, migrates its
// schema and opens the reader pool. A failure comes back as a diagnostic at path.
func openDB(ctx context.Context, set settings) (*db, *base.Diagnostic) {
	fail := func(summary, detail string) (*db, *base.Diagnostic) {
		return nil, &base.Diagnostic{Severity: base.SeverityError, Summary: summary, Detail: detail, Path: []string{"path"}}
	}
	if err := os.MkdirAll(filepath.Dir(set.path), 0o700); err != nil {
		return fail(fmt.Sprintf("cannot create the directory of %s", set.path), err.Error())
	}
	// Lock before touching the database, so a second LIMIT host on the same file stops
	// here instead of sharing it. SQLite's own locks would let both run.
	lock, err := acquireLock(set.path)
	if err != nil {
		if inUse := (*inUseError)(nil); errors.As(err, &inUse) {
			return fail(inUse.Error(), fmt.Sprintf("Its lock file %s is held. Stop the other LIMIT host or plugin that uses this file, or set path to another file.", set.path+lockSuffix))
		}
		return fail(fmt.Sprintf("cannot lock database file %s", set.path), mapErr("lock", set.path, err).Error())
	}
	d := &db{set: set, lock: lock, scanStmts: map[string]*sql.Stmt{}}
	d.snapStopped, d.snapStop = context.WithCancel(context.Background())
	ok := false
	defer func() {
		if !ok {
			d.close()
		}
	}()

	// Create the file first so it gets mode 0600; SQLite gives its -wal and -shm files
	// the database file's mode.
	f, err := os.OpenFile(set.path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fail(fmt.Sprintf("cannot open database file %s", set.path), mapErr("open", set.path, err).Error())
	}
	_ = f.Close()

	d.writer, err = sql.Open("sqlite", dsn(set, false))
	if err != nil {
		return fail(fmt.Sprintf("cannot open database file %s", set.path), err.Error())
	}
	d.writer.SetMaxOpenConns(1)
	d.writer.SetMaxIdleConns(1)
	d.writer.SetConnMaxLifetime(0)
	d.writer.SetConnMaxIdleTime(0)
	if d.conn, err = d.writer.Conn(ctx); err != nil {
		return fail(fmt.Sprintf("cannot open database file %s", set.path), describe(err))
	}
	var mode string
	if err := d.conn.QueryRowContext(ctx, "PRAGMA journal_mode=WAL").Scan(&mode); err != nil {
		return fail(fmt.Sprintf("cannot use %s as an SQLite database", set.path), describe(err))
	}
	if !strings.EqualFold(mode, "wal") {
		return fail(fmt.Sprintf("cannot switch %s to write-ahead logging (journal mode stays %q)", set.path, mode),
			"The file system must support shared memory maps (a local disk, not a network share). Put the database on a local file system.")
	}
	var syncMode int
	if err := d.conn.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&syncMode); err != nil || syncMode != 2 {
		return fail(fmt.Sprintf("cannot set synchronous=FULL on %s", set.path), fmt.Sprintf("synchronous is %d (%v)", syncMode, err))
	}
	if err := migrate(ctx, d.conn); err != nil {
		return fail(fmt.Sprintf("cannot prepare the schema of %s", set.path), describe(err))
	}
	prep := func(dst **sql.Stmt, q string) error {
		var err error
		*dst, err = d.conn.PrepareContext(ctx, q)
		return err
	}
	for _, p := range []struct {
		dst **sql.Stmt
		q   string
	}{
		{&d.wGet, `SELECT value FROM limit_kv WHERE ns = ?1 AND key = ?2`},
		{&d.wPut, `INSERT INTO limit_kv (ns, key, value) VALUES (?1, ?2, ?3) ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value`},
		{&d.wDelete, `DELETE FROM limit_kv WHERE ns = ?1 AND key = ?2`},
	} {
		if err := prep(p.dst, p.q); err != nil {
			return fail(fmt.Sprintf("cannot prepare statements on %s", set.path), describe(err))
		}
	}

	d.readers, err = sql.Open("sqlite", dsn(set, true))
	if err != nil {
		return fail(fmt.Sprintf("cannot open database file %s for reading", set.path), err.Error())
	}
	d.readers.SetMaxOpenConns(set.readers)
	d.readers.SetMaxIdleConns(set.readers)
	d.readers.SetConnMaxLifetime(0)
	d.readers.SetConnMaxIdleTime(0)
	if d.rGet, err = d.readers.PrepareContext(ctx, `SELECT value FROM limit_kv WHERE ns = ?1 AND key = ?2`); err != nil {
		return fail(fmt.Sprintf("cannot prepare statements on %s", set.path), describe(err))
	}
	if d.snapshots, err = sql.Open("sqlite", dsn(set, true)); err != nil {
		return fail(fmt.Sprintf("cannot open database file %s for reading", set.path), err.Error())
	}
	d.snapshots.SetMaxOpenConns(maxSnapshots)
	d.snapshots.SetMaxIdleConns(0)
	ok = true
	return d, nil
}

// migrate brings the schema to schemaVersion in one transaction, so a crash mid-way
// leaves the old version, and refuses a database written by a newer plugin.
func migrate(ctx context.Context, conn *sql.Conn) (err error) {
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_, _ = conn.ExecContext(context.Background(), "ROLLBACK")
		}
	}()
	var v int
	if err := conn.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return err
	}
	if v > schemaVersion {
		return fmt.Errorf("the database has schema version %d, newer than this plugin's %d; use a newer limit-storage-sqlite", v, schemaVersion)
	}
	if v == 0 {
		// A database LIMIT never wrote must not already hold our table.
		var n int
		if err := conn.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema WHERE name = 'limit_kv'`).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return errors.New("the database holds a limit_kv table but no schema version; it was not written by limit-storage-sqlite")
		}
	}
	for ; v < schemaVersion; v++ {
		if _, err := conn.ExecContext(ctx, migrations[v]); err != nil {
			return fmt.Errorf("migrate to schema version %d: %w", v+1, err)
		}
	}
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", schemaVersion)); err != nil {
		return err
	}
	_, err = conn.ExecContext(ctx, "COMMIT")
	return err
}

// scanStmt returns the prepared reader statement for one shape of scan query.
func (d *db) scanStmt(ctx context.Context, q string) (*sql.Stmt, error) {
	d.scanMu.Lock()
	defer d.scanMu.Unlock()
	if st, ok := d.scanStmts[q]; ok {
		return st, nil
	}
	st, err := d.readers.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	d.scanStmts[q] = st
	return st, nil
}

// startSnapshot registers a snapshot about to run and returns its context, which close
// cancels, and the function to call when it ends. After close it returns errClosed.
func (d *db) startSnapshot(ctx context.Context) (context.Context, func(), error) {
	d.snapMu.Lock()
	defer d.snapMu.Unlock()
	if d.snapClosed {
		return nil, nil, errClosed
	}
	d.snapRunning.Add(1)
	ctx, cancel := context.WithCancel(ctx)
	unhook := context.AfterFunc(d.snapStopped, cancel)
	return ctx, func() { unhook(); cancel(); d.snapRunning.Done() }, nil
}

// close cancels the snapshots under way and waits for them, then closes the statements
// and the pools; the last connection to close checkpoints the write-ahead log into the
// database file.
func (d *db) close() error {
	d.snapMu.Lock()
	d.snapClosed = true
	d.snapMu.Unlock()
	if d.snapStop != nil {
		d.snapStop()
	}
	d.snapRunning.Wait()
	var errs []error
	for _, st := range []*sql.Stmt{d.wGet, d.wPut, d.wDelete, d.rGet} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	d.scanMu.Lock()
	for _, st := range d.scanStmts {
		errs = append(errs, st.Close())
	}
	d.scanStmts = nil
	d.scanMu.Unlock()
	if d.snapshots != nil {
		errs = append(errs, d.snapshots.Close())
	}
	if d.readers != nil {
		errs = append(errs, d.readers.Close())
	}
	if d.conn != nil {
		errs = append(errs, d.conn.Close())
	}
	if d.writer != nil {
		errs = append(errs, d.writer.Close())
	}
	// Unlock last: the pools above checkpoint the write-ahead log as they close, and no
	// other process may open the file before that is done.
	if d.lock != nil {
		errs = append(errs, releaseLock(d.lock))
		d.lock = nil
	}
	return errors.Join(errs...)
}

// sqliteCode returns the primary SQLite result code of err, or 0.
func sqliteCode(err error) int {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() & 0xff
	}
	return 0
}

// describe renders a driver error for a diagnostic, with advice for the common causes.
func describe(err error) string {
	switch sqliteCode(err) {
	case sqlite3.SQLITE_NOTADB:
		return err.Error() + ": the file exists but is not an SQLite database; point path at another file"
	case sqlite3.SQLITE_CORRUPT:
		return err.Error() + ": the database file is damaged; restore it from a backup"
	case sqlite3.SQLITE_BUSY:
		return err.Error() + ": another process holds the database's lock; stop it or raise busy_timeout"
	case sqlite3.SQLITE_FULL:
		return err.Error() + ": the disk is full; free space and restart"
	case sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM, sqlite3.SQLITE_CANTOPEN:
		return err.Error() + ": check the permissions of the file and its directory"
	}
	return err.Error()
}
