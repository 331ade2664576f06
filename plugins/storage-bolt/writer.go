package main

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	bolt "go.etcd.io/bbolt"

	"github.com/limitgraph/limit/internal/groupcommit"
)

// maxGroupBytes bounds the keys and values of one group transaction. bbolt keeps a
// transaction's dirty pages in memory until commit, so max_batch requests of 16 MiB each
// must not land in one transaction.
const maxGroupBytes = 64 << 20

// maxGroupLinger bounds how long the writer waits for the stragglers of concurrent writers
// (groupcommit.Config.MaxLinger); it waits at most one commit's duration.
const maxGroupLinger = time.Millisecond

// applyFunc performs a write inside tx and reports whether it changed anything. It may run
// twice (in a group transaction that fails, then alone), so it must set its results afresh
// on every call.
type applyFunc = groupcommit.Apply[*bolt.Tx]

// engine owns an open database and the single goroutine that writes to it: concurrent
// writes are grouped into one bbolt transaction, one fsync (internal/groupcommit).
type engine struct {
	*groupcommit.Writer[*bolt.Tx]
	db        *bolt.DB
	set       settings
	closeOnce sync.Once
	closeErr  error
}

func newEngine(db *bolt.DB, set settings, log hclog.Logger) *engine {
	return &engine{
		db: db, set: set,
		Writer: groupcommit.New(groupcommit.Config[*bolt.Tx]{
			MaxBatch:  set.maxBatch,
			MaxBytes:  maxGroupBytes,
			MaxLinger: maxGroupLinger,
			Begin:     func() (*bolt.Tx, error) { return db.Begin(true) },
			Commit:    (*bolt.Tx).Commit,
			Rollback:  (*bolt.Tx).Rollback,
			ErrClosed: errClosed,
			Log:       log,
		}),
	}
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
		e.closeErr = e.db.Close()
	})
	return e.closeErr
}
