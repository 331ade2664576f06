package main

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/limitgraph/limit/internal/groupcommit"
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
	return e.Write(ctx, size, apply)
}

// close stops the writer after it has written everything queued, then closes the database.
func (e *engine) close() error {
	e.closeOnce.Do(func() {
		e.Writer.Close()
		e.closeErr = e.db.close()
	})
	return e.closeErr
}
