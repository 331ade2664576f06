package main

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/limitgraph/limit/sdk/storage"
)

// snapshotSQL reads every row in (ns, key) order. Both columns are bytea, which orders
// bytewise (memcmp, then length) whatever the database's collation: the protocol's order.
const snapshotSQL = `SELECT ns, key, value FROM limit_kv ORDER BY ns, key`

// Snapshot implements storage.Snapshotter with one REPEATABLE READ READ ONLY transaction:
// its one snapshot of the database, taken at the query's start, serves the whole walk,
// while other sessions (other hosts sharing the database included) write on. The rows
// stream from the server as fn takes them; the walk holds one of the pool's connections
// and is not bounded by statement_timeout (it runs as long as the host takes to copy it),
// only by ctx. It is not retried after a broken connection: the items yielded so far
// would be yielded twice.
func (s *store) Snapshot(ctx context.Context, fn func(ns string, key, value []byte) error) error {
	c, err := s.current()
	if err != nil {
		return err
	}
	var fnErr error
	err = c.snapshot(ctx, func(ns string, key, value []byte) error {
		fnErr = fn(ns, key, value)
		return fnErr
	})
	if fnErr != nil {
		return fnErr // as it is, as the interface says
	}
	return c.mapErr(ctx, "snapshot", err)
}

// snapshot is Snapshot on c.
func (c *conn) snapshot(ctx context.Context, fn func(ns string, key, value []byte) error) error {
	// Getting a connection and beginning are bounded like any call; the walk is not.
	bctx := ctx
	if d := c.set.callTimeout(); d > 0 {
		var cancel context.CancelFunc
		bctx, cancel = context.WithTimeoutCause(ctx, d, errCallTimeout)
		defer cancel()
	}
	tx, err := c.pool.BeginTx(bctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return err
	}
	defer func() {
		// After a cancelled walk the connection may be broken: do not wait long for it.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.set.connectTimeout+time.Second)
		defer cancel()
		_ = tx.Rollback(rctx)
	}()
	if _, err := tx.Exec(bctx, `SET LOCAL statement_timeout = 0`); err != nil {
		return err
	}
	rows, err := tx.Query(ctx, snapshotSQL)
	if err != nil {
		return err
	}
	defer rows.Close()
	var (
		nsb, key, value pgtype.DriverBytes // valid until the next row: fn must not keep them
		ns              string
	)
	for rows.Next() {
		if err := rows.Scan(&nsb, &key, &value); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
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

var _ storage.Snapshotter = (*store)(nil)
