package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/limitgraph/limit/internal/groupcommit"
	"github.com/limitgraph/limit/sdk/storage"
)

// maxGroupBytes bounds the keys and values of one group (one log record).
const maxGroupBytes = 64 << 20

// maxGroupLinger bounds how long the writer waits for the stragglers of concurrent writers
// (groupcommit.Config.MaxLinger); it waits at most one commit's duration.
const maxGroupLinger = time.Millisecond

// Checkpoints: the writes in memory since the last one are copied into the database file
// once they reach checkpointBytes, or checkpointEvery after the last checkpoint when
// fewer. While one runs, writes go on into the other log file; they wait only when the
// memory holds hardLimitBytes.
// They are variables for tests, which set them before opening a store.
var (
	checkpointBytes = 4 << 20
	checkpointEvery = time.Second
	hardLimitBytes  = 64 << 20
	// checkpointRetry is how soon a failed checkpoint (a full disk) is tried again.
	checkpointRetry = 250 * time.Millisecond
	// checkpointFailLogEvery is how often checkpoints that keep failing with the same
	// error are logged again: the first failure is logged at once, the retries (four a
	// second) only this often, with their count, so a full disk does not flood the log.
	checkpointFailLogEvery = time.Minute
)

// applyFunc performs a write inside tx and reports whether it changed anything. It may run
// twice (in a group that fails, then alone), so it must set its results afresh on every
// call.
type applyFunc = groupcommit.Apply[*wtx]

// engine owns an open database, its write-ahead log and the single goroutine that writes:
// concurrent writes are grouped into one log record and one fdatasync
// (internal/groupcommit). A write is durable once its record is synced; it is then in the
// memtable, which reads consult before the database file, until a checkpoint has copied
// it into the database file in one durable bbolt transaction. This is how etcd runs
// bbolt behind its own log; the log makes a write one small sequential write and one
// sync, where a bbolt commit writes a dozen scattered pages and syncs twice.
type engine struct {
	*groupcommit.Writer[*wtx]
	db  *bolt.DB
	set settings
	log hclog.Logger

	// mu guards mem (the pointer and its contents), frozen, active, frozenWALs, broken
	// and cpErr; cond (on mu) tells waiting writers a checkpoint ended.
	mu   sync.RWMutex
	cond *sync.Cond
	mem  *memtable
	// frozen holds the writes a checkpoint is copying into the database file (nil when
	// none); they are in the log files frozenWALs.
	frozen     *memtable
	frozenWALs []int
	// cpErr is the last checkpoint's error, until one succeeds; cpGen counts the
	// checkpoints that ended, either way.
	cpErr error
	cpGen uint64
	// checkpoints counts the successful ones, each of which drops its frozen memtable;
	// cpLast is how long the last one took.
	checkpoints int
	cpLast      time.Duration
	// broken is set when a log sync failed: nothing can be acknowledged any more.
	broken error

	// logMu serializes appending (with the memtable update that follows) and switching
	// the log files; active is the file receiving records, -1 while none can (the writes
	// found at open are not yet in the database file).
	logMu  sync.Mutex
	wals   [2]*walFile
	active int
	// spaceFree is the disk's free space as read at spaceAt, spaceWritten what the log was
	// appended since (guarded by logMu; see lowOnSpace).
	spaceFree    int64
	spaceAt      time.Time
	spaceWritten int64
	// cpRun serializes checkpoints (the checkpointer's, open's, close's and tests'); it
	// guards nextEpoch.
	cpRun     sync.Mutex
	nextEpoch uint64

	// hookCopied, if set, runs in a checkpoint after its writes are in the database file
	// and before the log files are reset; tests copy the files there.
	hookCopied func()
	// hookCopyErr, if set, fails checkpoints with it (guarded by cpRun).
	hookCopyErr error

	kick      chan struct{}
	quit      chan struct{}
	cpStopped chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// openEngine replays the write-ahead log into the database file and starts the writer
// and the checkpointer. When the replay cannot be written (a full disk), the engine still
// opens: the replayed writes are readable, and writes are refused with the error until a
// checkpoint succeeds.
func openEngine(db *bolt.DB, set settings, log hclog.Logger) (*engine, error) {
	e := &engine{
		db: db, set: set, log: log, mem: newMemtable(), active: -1,
		kick: make(chan struct{}, 1), quit: make(chan struct{}), cpStopped: make(chan struct{}),
	}
	e.cond = sync.NewCond(&e.mu)
	replayed, err := e.openWALs()
	if err != nil {
		for _, w := range e.wals {
			if w != nil {
				_ = w.close()
			}
		}
		return nil, err
	}
	e.frozen, e.frozenWALs = replayed, []int{0, 1}
	if replayed.len() > 0 {
		log.Info("replaying write-ahead log", "keys", replayed.len())
	}
	if err := e.checkpoint(); err != nil {
		log.Warn("writes found in the write-ahead log cannot be copied into the database file yet; they are readable, and writes are refused until they are", "error", err)
	}
	e.Writer = groupcommit.New(groupcommit.Config[*wtx]{
		MaxBatch:  set.maxBatch,
		MaxBytes:  maxGroupBytes,
		MaxLinger: maxGroupLinger,
		Begin:     e.begin,
		Commit:    e.commit,
		Rollback:  func(t *wtx) error { t.release(); return nil },
		ErrClosed: errClosed,
		Log:       log,
	})
	go e.checkpointer()
	return e, nil
}

// openWALs opens both log files and reads them, older first, into a memtable. A damaged
// file (see walFile.read) fails it with a *walDamageError, the older file's if both are.
func (e *engine) openWALs() (*memtable, error) {
	type found struct {
		epoch  uint64
		recs   [][]walOp
		damage *walDamageError
	}
	var fs [2]found
	for i, suffix := range []string{"-wal", "-wal2"} {
		w, err := openWAL(e.set.path+suffix, !e.set.noSync)
		if err != nil {
			return nil, err
		}
		e.wals[i] = w
		epoch, recs, torn, err := w.read()
		if errors.As(err, &fs[i].damage) {
			// Read the other file too: the advice depends on which is newer.
			fs[i].epoch, fs[i].recs = epoch, recs
			continue
		}
		if err != nil {
			return nil, err
		}
		if torn >= 0 {
			e.log.Warn("write-ahead log ends in a torn record, cut short by a crash in the middle of its write: it was never acknowledged and is dropped; the records before it are replayed",
				"file", w.path, "offset", torn, "records_replayed", len(recs))
		}
		fs[i] = found{epoch: epoch, recs: recs}
		e.nextEpoch = max(e.nextEpoch, epoch+1)
	}
	order := []int{0, 1}
	if fs[1].epoch < fs[0].epoch {
		order = []int{1, 0}
	}
	for j, i := range order {
		if d := fs[i].damage; d != nil {
			if j == 0 {
				if o := order[1]; len(fs[o].recs) > 0 || fs[o].damage != nil {
					d.newer = e.wals[o].path
				}
			}
			return nil, d
		}
	}
	m := newMemtable()
	for _, i := range order {
		for _, ops := range fs[i].recs {
			for _, op := range ops {
				m.set(item{ns: op.ns, key: op.key, val: op.val, del: op.del})
			}
		}
	}
	return m, nil
}

// wtx is a group's transaction: its writes are staged until commit appends them to the
// log as one record. Reads see the staged writes, then the memtables, then the database
// file.
type wtx struct {
	e      *engine
	ops    []walOp
	staged map[stagedKey]int // the last op of each key in ops
	mem    *memtable
	frozen *memtable
	rtx    *bolt.Tx
}

type stagedKey struct{ ns, key string }

// begin starts a group. It waits while the memtables are at their limit or the writes
// found at open are not yet in the database file, and fails if a checkpoint keeps
// failing meanwhile (the disk is full) or the log is broken.
func (e *engine) begin() (*wtx, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	retried := false
	for {
		if e.broken != nil {
			return nil, e.broken
		}
		waiting := e.frozen != nil && (e.active < 0 || e.mem.bytes >= hardLimitBytes)
		if !waiting {
			break
		}
		if e.cpErr != nil {
			if retried {
				return nil, fmt.Errorf("the database file cannot take the logged writes: %w", e.cpErr)
			}
			// Space may have been freed since the last attempt: try once more now
			// rather than refuse the write on an old error.
			retried = true
			gen := e.cpGen
			select {
			case e.kick <- struct{}{}:
			default:
			}
			for e.cpGen == gen {
				e.cond.Wait()
			}
			continue
		}
		e.cond.Wait()
	}
	return &wtx{e: e, mem: e.mem, frozen: e.frozen}, nil
}

func (t *wtx) get(ns string, key []byte) ([]byte, bool, error) {
	if i, ok := t.staged[stagedKey{ns, string(key)}]; ok {
		return t.ops[i].val, !t.ops[i].del, nil
	}
	t.e.mu.RLock()
	it, ok := t.mem.get(ns, key)
	t.e.mu.RUnlock()
	if ok {
		return it.val, !it.del, nil
	}
	if t.frozen != nil {
		if it, ok := t.frozen.get(ns, key); ok {
			return it.val, !it.del, nil
		}
	}
	if t.rtx == nil {
		rtx, err := t.e.db.Begin(false)
		if err != nil {
			return nil, false, err
		}
		t.rtx = rtx
	}
	v, ok := lookup(t.rtx.Bucket([]byte(ns)), key)
	return v, ok, nil
}

func (t *wtx) put(ns string, key, val []byte) { t.add(walOp{ns: ns, key: key, val: nonNil(val)}) }
func (t *wtx) del(ns string, key []byte)      { t.add(walOp{ns: ns, key: key, del: true}) }

func (t *wtx) add(op walOp) {
	if t.staged == nil {
		t.staged = map[stagedKey]int{}
	}
	t.staged[stagedKey{op.ns, string(op.key)}] = len(t.ops)
	t.ops = append(t.ops, op)
}

func (t *wtx) release() {
	if t.rtx != nil {
		_ = t.rtx.Rollback()
		t.rtx = nil
	}
}

// commit appends the group's record to the active log, syncs it, and puts the writes in
// the memtable, where reads find them. The memtable's items point into the record (see
// encodeRecord), which is why the record is freshly allocated for each group.
func (e *engine) commit(t *wtx) error {
	t.release()
	e.logMu.Lock()
	defer e.logMu.Unlock()
	e.mu.RLock()
	active, broken, cpErr := e.active, e.broken, e.cpErr
	e.mu.RUnlock()
	switch {
	case broken != nil:
		return broken
	case active < 0 && cpErr != nil:
		return fmt.Errorf("the database file cannot take the logged writes: %w", cpErr)
	case active < 0:
		return fmt.Errorf("bolt: the write-ahead log is being replayed: %w", storage.ErrUnavailable)
	}
	w := e.wals[active]
	rec := encodeRecord(w.salt, t.ops)
	if err := w.append(rec); err != nil {
		var se *syncError
		if errors.As(err, &se) {
			e.mu.Lock()
			e.broken = fmt.Errorf("bolt: %v; restart the plugin to recover the log: %w", err, storage.ErrUnavailable)
			e.mu.Unlock()
			e.log.Error("write-ahead log sync failed; refusing writes until restarted", "error", err)
		}
		return err
	}
	e.mu.Lock()
	for _, op := range t.ops {
		e.mem.set(item{ns: op.ns, key: op.key, val: op.val, del: op.del})
	}
	pending := e.mem.bytes
	full := pending >= checkpointBytes && e.frozen == nil
	e.mu.Unlock()
	if full || e.lowOnSpace(pending, len(rec)) {
		select {
		case e.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

// lowOnSpace reports whether the disk's free space is short of what copying pending
// bytes of logged writes into the database file takes. On a disk about to fill up,
// checkpoints then run early, so that when it is full, the writes in the log (which a
// checkpoint needs as much space again to copy) are few, and freeing a little space is
// enough to write again. wrote is what the caller just appended to the log. The caller
// holds logMu.
//
// The free space is read again (a statfs, ~3 µs here: more than 1 % of a durable commit)
// only when the last reading is older than spaceRecheck or, less what the log took since,
// within twice the need of the margin; a disk far from full is not asked at every commit.
func (e *engine) lowOnSpace(pending, wrote int) bool {
	need := 2*int64(pending) + lowSpaceMargin
	e.spaceWritten += int64(wrote)
	// Never read yet, spaceAt is the zero time: long ago.
	if time.Since(e.spaceAt) < spaceRecheck && e.spaceFree-e.spaceWritten >= 2*need {
		return false
	}
	var st unix.Statfs_t
	if err := unix.Statfs(filepath.Dir(e.set.path), &st); err != nil {
		return false
	}
	e.spaceFree, e.spaceAt, e.spaceWritten = int64(st.Bavail)*int64(st.Bsize), time.Now(), 0
	return e.spaceFree < need
}

// spaceRecheck bounds how old a reading of the disk's free space lowOnSpace trusts: other
// programs fill the disk too.
const spaceRecheck = 100 * time.Millisecond

// lowSpaceMargin is the free space below which a checkpoint runs after every write.
const lowSpaceMargin = 16 << 20

// freeze hands the memtable to a checkpoint and switches writes to the other log file.
// It does nothing while a checkpoint is pending or nothing was written.
func (e *engine) freeze() {
	e.logMu.Lock()
	defer e.logMu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.frozen != nil || e.mem.len() == 0 || e.active < 0 {
		return
	}
	e.frozen, e.frozenWALs = e.mem, []int{e.active}
	e.mem = newMemtable()
	e.active = 1 - e.active
}

// checkpoint copies the frozen memtable into the database file in one durable
// transaction, then resets the log files that held it.
func (e *engine) checkpoint() error {
	e.cpRun.Lock()
	defer e.cpRun.Unlock()
	e.mu.RLock()
	fz, wals := e.frozen, e.frozenWALs
	e.mu.RUnlock()
	if fz == nil {
		return nil
	}
	start := time.Now()
	err := e.db.Update(func(tx *bolt.Tx) error {
		if e.hookCopyErr != nil {
			return e.hookCopyErr
		}
		return copyInto(tx, fz)
	})
	if err == nil && e.hookCopied != nil {
		e.hookCopied()
	}
	for _, i := range wals {
		if err != nil {
			break
		}
		err = e.wals[i].reset(e.nextEpoch)
		e.nextEpoch++
	}
	e.logMu.Lock()
	e.mu.Lock()
	if err != nil {
		e.cpErr = mapErr("checkpoint", err)
	} else {
		e.frozen, e.frozenWALs, e.cpErr = nil, nil, nil
		e.checkpoints++
		e.cpLast = time.Since(start)
		if e.active < 0 {
			e.active = 0
			if e.wals[1].epoch < e.wals[0].epoch {
				e.active = 1
			}
		}
	}
	e.cpGen++
	e.cond.Broadcast()
	e.mu.Unlock()
	e.logMu.Unlock()
	return err
}

// copyInto writes a memtable's items into the database file, in key order.
func copyInto(tx *bolt.Tx, m *memtable) error {
	var (
		b    *bolt.Bucket
		name string
		err  error
	)
	touched := map[string]bool{}
	m.t.Scan(func(it item) bool {
		if b == nil || it.ns != name {
			name = it.ns
			touched[name] = true
			if b, err = tx.CreateBucketIfNotExists([]byte(name)); err != nil {
				return false
			}
		}
		if it.del {
			err = b.Delete(it.key)
		} else {
			err = b.Put(it.key, it.val)
		}
		return err == nil
	})
	if err != nil {
		return err
	}
	for name := range touched {
		if err := dropIfEmpty(tx, name); err != nil {
			return err
		}
	}
	return nil
}

// health tells whether writes can be made durable, and what waits in the log.
func (e *engine) health() storage.Health {
	e.mu.RLock()
	defer e.mu.RUnlock()
	pending, keys := e.mem.bytes, e.mem.len()
	if e.frozen != nil {
		pending += e.frozen.bytes
		keys += e.frozen.len()
	}
	h := storage.Health{OK: true, Metrics: map[string]float64{
		"log_pending_bytes":       float64(pending),
		"log_pending_keys":        float64(keys),
		"checkpoints_total":       float64(e.checkpoints),
		"last_checkpoint_seconds": e.cpLast.Seconds(),
	}}
	switch {
	case e.broken != nil:
		h.OK, h.Detail = false, e.broken.Error()
	case e.cpErr != nil && e.active < 0:
		h.OK, h.Detail = false, fmt.Sprintf("writes refused: the writes replayed from the write-ahead log cannot be copied into the database file: %v", e.cpErr)
	case e.cpErr != nil:
		h.OK, h.Detail = false, fmt.Sprintf("checkpoints failing (the logged writes are durable and readable, and are retried): %v", e.cpErr)
	}
	if e.set.noSync {
		// Healthy, but every health answer says the writes are not durable.
		h.Metrics["no_sync"] = 1
		if h.OK {
			h.Detail = noSyncWarning
		}
	}
	return h
}

// checkpointer freezes and checkpoints when the memtable is full (kick), every
// checkpointEvery otherwise, and retries a failed checkpoint every checkpointRetry.
func (e *engine) checkpointer() {
	defer close(e.cpStopped)
	tick := time.NewTicker(checkpointEvery)
	defer tick.Stop()
	var (
		retry    <-chan time.Time
		failures int       // checkpoints failed in a row
		unlogged int       // of those, failures not logged yet
		lastMsg  string    // the error last logged
		lastLog  time.Time // when
	)
	for {
		select {
		case <-e.quit:
			return
		case <-e.kick:
		case <-tick.C:
		case <-retry:
		}
		e.freeze()
		retry = nil
		err := e.checkpoint()
		if err == nil {
			if failures > 0 {
				e.log.Info("checkpoints succeed again; the write-ahead log is copied into the database file", "failed_attempts", failures)
			}
			failures, unlogged, lastMsg = 0, 0, ""
			continue
		}
		failures++
		unlogged++
		if msg := err.Error(); failures == 1 || msg != lastMsg || time.Since(lastLog) >= checkpointFailLogEvery {
			e.log.Warn("checkpoint failed; writes stay in the write-ahead log and are retried", "error", err,
				"failed_attempts", failures, "since_last_logged", unlogged)
			lastMsg, lastLog, unlogged = msg, time.Now(), 0
		}
		retry = time.After(checkpointRetry)
	}
}

// view is a consistent read of the store: a read transaction on the database file and
// the memtables, the active one copied. Release it with tx.Rollback.
type view struct {
	mem, frozen *memtable
	tx          *bolt.Tx
}

// Lock order. No goroutine waits for bbolt while it holds e.mu or waits for it: bbolt
// grows its memory map, in a checkpoint's commit, only once every open read transaction
// has ended, and the writer goroutine may hold one (wtx.rtx) while it takes e.mu to read
// the memtable. So reads open their transaction outside e.mu.

// read opens a view. The transaction is opened first, then the memtables are taken; if a
// checkpoint dropped its frozen memtable in between (its writes may be in neither), it
// starts over. Writes the checkpoint copied into the file before the transaction began
// are in it, and those it had not are still in the memtables taken.
func (e *engine) read() (view, error) {
	for {
		e.mu.RLock()
		gen := e.checkpoints
		e.mu.RUnlock()
		tx, err := e.db.Begin(false)
		if err != nil {
			return view{}, err
		}
		e.mu.Lock()
		if e.checkpoints != gen {
			e.mu.Unlock()
			_ = tx.Rollback()
			continue
		}
		v := view{mem: e.mem.snapshot(), frozen: e.frozen, tx: tx}
		e.mu.Unlock()
		return v, nil
	}
}

// get looks key up in the memtables, newest first, then in the database file. The value
// is copied out. A key in neither memtable has its latest value in the file (a checkpoint
// drops its memtable only once the writes are in the file), and the file only moves
// forward, so it is read without the lock.
func (e *engine) get(ns string, key []byte) ([]byte, bool, error) {
	e.mu.RLock()
	it, ok := e.mem.get(ns, key)
	if !ok && e.frozen != nil {
		it, ok = e.frozen.get(ns, key)
	}
	e.mu.RUnlock()
	if ok {
		if it.del {
			return nil, false, nil
		}
		return clone(it.val), true, nil
	}
	var (
		val   []byte
		found bool
	)
	err := e.db.View(func(tx *bolt.Tx) error {
		if v, ok := lookup(tx.Bucket([]byte(ns)), key); ok {
			val, found = clone(v), true
		}
		return nil
	})
	return val, found, err
}

// write queues apply for the writer goroutine and waits until it is durable; see
// groupcommit.Writer.Write.
func (e *engine) write(ctx context.Context, size int, apply applyFunc) error {
	return e.Write(ctx, size, apply)
}

// close stops the writer after it has written everything queued, copies every logged
// write into the database file, and closes it. If that copy fails, the writes stay in
// the log and are replayed at the next open.
func (e *engine) close() error {
	e.closeOnce.Do(func() {
		e.Writer.Close()
		close(e.quit)
		<-e.cpStopped
		var errs []error
		for range 2 { // a pending checkpoint, then the memtable
			if err := e.checkpoint(); err != nil {
				errs = append(errs, fmt.Errorf("final checkpoint (the writes stay in the write-ahead log): %w", err))
				break
			}
			e.freeze()
		}
		for _, w := range e.wals {
			errs = append(errs, w.close())
		}
		errs = append(errs, e.db.Close())
		e.closeErr = errors.Join(errs...)
	})
	return e.closeErr
}
