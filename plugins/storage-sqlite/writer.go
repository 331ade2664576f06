package main

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/limitgraph/limit/internal/groupcommit"
	"github.com/limitgraph/limit/sdk/storage"
)

// maxGroupBytes bounds the keys and values of one group transaction, so max_batch
// requests of 16 MiB each do not land in one transaction and one write-ahead log burst.
const maxGroupBytes = 64 << 20

// maxGroupLinger bounds how long the writer waits for the stragglers of concurrent writers
// (groupcommit.Config.MaxLinger); it waits at most one commit's duration.
const maxGroupLinger = time.Millisecond

// wtx is the open write transaction a request's apply function works in.
type wtx struct {
	ctx context.Context
	d   *db
}

// get reads key inside the transaction, seeing the writes before it in the group.
func (t *wtx) get(ns string, key []byte) ([]byte, bool, error) {
	var v []byte
	err := t.d.wGet.QueryRowContext(t.ctx, []byte(ns), key).Scan(&v)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, false, nil
	case err != nil:
		return nil, false, err
	}
	return nonNil(v), true, nil
}

// put writes key=value.
func (t *wtx) put(ns string, key, value []byte) error {
	_, err := t.d.wPut.ExecContext(t.ctx, []byte(ns), key, nonNil(value))
	return err
}

// del deletes key and tells whether it existed.
func (t *wtx) del(ns string, key []byte) (bool, error) {
	res, err := t.d.wDelete.ExecContext(t.ctx, []byte(ns), key)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// applyFunc performs a write inside t and reports whether it changed anything. It may run
// twice (in a group transaction that fails, then alone), so it must set its results afresh
// on every call.
type applyFunc = groupcommit.Apply[*wtx]

// engine owns an open database and the single goroutine that writes to it: concurrent
// writes are grouped into one IMMEDIATE transaction, one fsync of the write-ahead log
// (internal/groupcommit).
type engine struct {
	*groupcommit.Writer[*wtx]
	db        *db
	set       settings
	closeOnce sync.Once
	closeErr  error

	// spaceMu guards full, the last write refused for a full disk (SQLITE_FULL, ENOSPC),
	// and fullSize, its size: until a write succeeds or health's probe finds room for as
	// much, the backend reports itself unhealthy, and the host refuses executions before
	// they run rather than lose their record.
	spaceMu  sync.Mutex
	full     error
	fullSize int
}

func newEngine(d *db, set settings, log hclog.Logger) *engine {
	return &engine{
		db: d, set: set,
		Writer: groupcommit.New(groupcommit.Config[*wtx]{
			MaxBatch:  set.maxBatch,
			MaxBytes:  maxGroupBytes,
			MaxLinger: maxGroupLinger,
			Begin:     d.begin,
			Commit:    d.commit,
			Rollback:  func(*wtx) error { d.rollback(); return nil },
			ErrClosed: errClosed,
			Log:       log,
		}),
	}
}

// begin starts an IMMEDIATE transaction on the writer connection. The requests' own
// contexts do not reach SQLite: a caller that gives up must not interrupt the others'
// transaction.
func (d *db) begin() (*wtx, error) {
	ctx := context.Background()
	if _, err := d.conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		d.rollback()
		return nil, err
	}
	return &wtx{ctx: ctx, d: d}, nil
}

// commit commits the open transaction.
func (d *db) commit(*wtx) error {
	if _, err := d.conn.ExecContext(context.Background(), "COMMIT"); err != nil {
		// SQLite may leave the transaction open after a failed COMMIT (SQLITE_BUSY,
		// SQLITE_FULL); end it so the next group starts clean.
		d.rollback()
		return err
	}
	return nil
}

// rollback ends the open transaction, if any. SQLite rolls back by itself after some
// errors, in which case ROLLBACK reports that no transaction is active, which is fine.
func (d *db) rollback() {
	_, _ = d.conn.ExecContext(context.Background(), "ROLLBACK")
}

// write queues apply for the writer goroutine and waits until it is committed; see
// groupcommit.Writer.Write.
func (e *engine) write(ctx context.Context, size int, apply applyFunc) error {
	wrote := false
	err := e.Write(ctx, size, func(t *wtx) (bool, error) {
		w, err := apply(t)
		wrote = w
		return w, err
	})
	switch {
	case err == nil && wrote:
		e.setFull(nil, 0)
	case err != nil && isNoSpace(err):
		e.setFull(mapErr("write", e.set.path, err), size)
	}
	return err
}

func (e *engine) setFull(err error, size int) {
	e.spaceMu.Lock()
	e.full, e.fullSize = err, size
	e.spaceMu.Unlock()
}

// probeNamespace holds the row health's probe writes and deletes in one transaction; it
// is not a valid namespace of the storage API, so no caller's data is touched.
const probeNamespace = "\x00limit-health-probe"

// probeBytes and maxProbeBytes bound the size of the row health's probe writes: that of
// the write refused, within these bounds. A probe smaller than the write refused finds
// room in the database file's free pages or the write-ahead log's reused frames when the
// disk has none (0 bytes free), and reported the backend healthy while every trace write
// was refused; maxProbeBytes is above the largest trace the host writes (8 MiB).
const (
	probeBytes    = 4096
	maxProbeBytes = 16 << 20
)

// health reports the engine unhealthy while its last write was refused for a full disk;
// it then probes with a write of the refused write's size (written and deleted in one
// transaction), and is healthy again once one commits.
func (e *engine) health(ctx context.Context) storage.Health {
	e.spaceMu.Lock()
	full, size := e.full, min(max(e.fullSize, probeBytes), maxProbeBytes)
	e.spaceMu.Unlock()
	if full != nil {
		err := e.write(ctx, size, func(t *wtx) (bool, error) {
			if err := t.put(probeNamespace, []byte("probe"), make([]byte, size)); err != nil {
				return false, err
			}
			_, err := t.del(probeNamespace, []byte("probe"))
			return true, err
		})
		if err != nil {
			return storage.Health{Detail: full.Error()}
		}
	}
	return storage.Health{OK: true}
}

// close stops the writer after it has written everything queued, then closes the database.
func (e *engine) close() error {
	e.closeOnce.Do(func() {
		e.Writer.Close()
		e.closeErr = e.db.close()
	})
	return e.closeErr
}
