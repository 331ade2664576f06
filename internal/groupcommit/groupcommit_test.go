package groupcommit

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// memDB is a transactional map: a transaction works on a copy that Commit installs.
type memDB struct {
	mu        sync.Mutex
	data      map[string]string
	commits   int
	rollbacks int
	failNext  error // the next Commit fails with it
}

type memTx struct {
	db   *memDB
	data map[string]string
}

func (d *memDB) config(maxBatch int) Config[*memTx] {
	return Config[*memTx]{
		MaxBatch: maxBatch,
		MaxBytes: 1 << 20,
		Begin: func() (*memTx, error) {
			d.mu.Lock()
			defer d.mu.Unlock()
			return &memTx{db: d, data: maps.Clone(d.data)}, nil
		},
		Commit: func(tx *memTx) error {
			d.mu.Lock()
			defer d.mu.Unlock()
			if err := d.failNext; err != nil {
				d.failNext = nil
				return err
			}
			d.data = tx.data
			d.commits++
			return nil
		},
		Rollback: func(*memTx) error {
			d.mu.Lock()
			defer d.mu.Unlock()
			d.rollbacks++
			return nil
		},
	}
}

func (d *memDB) get(k string) (string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	v, ok := d.data[k]
	return v, ok
}

func put(k, v string) Apply[*memTx] {
	return func(tx *memTx) (bool, error) { tx.data[k] = v; return true, nil }
}

func newWriter(t *testing.T, maxBatch int) (*Writer[*memTx], *memDB) {
	t.Helper()
	d := &memDB{data: map[string]string{}}
	w := New(d.config(maxBatch))
	t.Cleanup(w.Close)
	return w, d
}

// hold makes the writer wait after taking its next request until release is called.
func hold(w *Writer[*memTx]) (taken <-chan struct{}, release func()) {
	tk, rel := make(chan struct{}), make(chan struct{})
	var once sync.Once
	w.HookCollect = func() { once.Do(func() { close(tk); <-rel }) }
	return tk, sync.OnceFunc(func() { close(rel) })
}

func waitQueued(t *testing.T, w *Writer[*memTx], n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for w.Queued() < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d requests queued", w.Queued(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// writeAll starts one Write per apply function and returns their results once all ended.
func writeAll(ctx context.Context, w *Writer[*memTx], applies ...Apply[*memTx]) func() []error {
	errs := make([]error, len(applies))
	var wg sync.WaitGroup
	for i, a := range applies {
		wg.Go(func() { errs[i] = w.Write(ctx, 1, a) })
	}
	return func() []error { wg.Wait(); return errs }
}

func TestQueuedWritesShareOneCommit(t *testing.T) {
	w, d := newWriter(t, 64)
	taken, release := hold(w)
	first := writeAll(t.Context(), w, put("first", "1"))
	<-taken
	var applies []Apply[*memTx]
	for i := range 16 {
		applies = append(applies, put(fmt.Sprint("k", i), "v"))
	}
	rest := writeAll(t.Context(), w, applies...)
	waitQueued(t, w, 16)
	release()
	for _, err := range append(first(), rest()...) {
		if err != nil {
			t.Fatal(err)
		}
	}
	// The writer took the first request, found 16 queued behind it, and committed all
	// of them at once.
	if got := w.Commits(); got != 1 {
		t.Fatalf("17 writes took %d commits, want 1", got)
	}
	if v, ok := d.get("k15"); !ok || v != "v" {
		t.Fatalf("k15 = %q, %v after the group", v, ok)
	}
}

func TestMaxBatchSplitsGroups(t *testing.T) {
	w, _ := newWriter(t, 4)
	taken, release := hold(w)
	first := writeAll(t.Context(), w, put("first", "1"))
	<-taken
	var applies []Apply[*memTx]
	for i := range 4 {
		applies = append(applies, put(fmt.Sprint("k", i), "v"))
	}
	rest := writeAll(t.Context(), w, applies...)
	waitQueued(t, w, 4) // the queue holds MaxBatch requests
	release()
	first()
	rest()
	// first + 3 queued (MaxBatch 4), then the last one.
	if got := w.Commits(); got != 2 {
		t.Fatalf("5 writes with MaxBatch 4 took %d commits, want 2", got)
	}
}

func TestGroupAppliesInOrder(t *testing.T) {
	w, d := newWriter(t, 64)
	taken, release := hold(w)
	first := writeAll(t.Context(), w, put("x", "0"))
	<-taken
	var seen string
	a := writeAll(t.Context(), w, put("x", "1"))
	waitQueued(t, w, 1)
	b := writeAll(t.Context(), w, func(tx *memTx) (bool, error) {
		seen = tx.data["x"]
		tx.data["x"] = seen + "+"
		return true, nil
	})
	waitQueued(t, w, 2)
	release()
	first()
	a()
	b()
	if v, _ := d.get("x"); seen != "1" || v != "1+" {
		t.Fatalf("second request saw %q and left %q; want it to see the first's write (1) and leave 1+", seen, v)
	}
}

func TestFailureIsIsolated(t *testing.T) {
	w, d := newWriter(t, 64)
	taken, release := hold(w)
	first := writeAll(t.Context(), w, put("first", "1"))
	<-taken
	bad := errors.New("bad request")
	results := writeAll(t.Context(), w,
		put("a", "1"),
		func(*memTx) (bool, error) { return true, bad },
		func(*memTx) (bool, error) { panic("bug in a request") },
		put("b", "1"),
	)
	waitQueued(t, w, 4)
	release()
	first()
	errs := results()
	if errs[0] != nil || errs[3] != nil {
		t.Fatalf("good requests failed: %v, %v", errs[0], errs[3])
	}
	if !errors.Is(errs[1], bad) {
		t.Fatalf("bad request: %v, want %v", errs[1], bad)
	}
	if errs[2] == nil || errs[2].Error() != "panic in write: bug in a request" {
		t.Fatalf("panicking request: %v, want the panic as an error", errs[2])
	}
	for _, k := range []string{"a", "b"} {
		if _, ok := d.get(k); !ok {
			t.Fatalf("%s was not written", k)
		}
	}
}

func TestCommitFailureReachesEveryRequest(t *testing.T) {
	w, d := newWriter(t, 64)
	d.failNext = errors.New("disk full")
	if err := w.Write(t.Context(), 1, put("a", "1")); err == nil || err.Error() != "disk full" {
		t.Fatalf("write: %v, want the commit's error", err)
	}
	if _, ok := d.get("a"); ok {
		t.Fatal("a failed commit left its write behind")
	}
	if err := w.Write(t.Context(), 1, put("a", "1")); err != nil {
		t.Fatalf("write after the failure: %v", err)
	}
}

func TestNothingChangedIsRolledBack(t *testing.T) {
	w, d := newWriter(t, 64)
	if err := w.Write(t.Context(), 1, func(*memTx) (bool, error) { return false, nil }); err != nil {
		t.Fatal(err)
	}
	if w.Commits() != 0 || d.rollbacks != 1 {
		t.Fatalf("%d commits, %d rollbacks; want a rollback and no commit", w.Commits(), d.rollbacks)
	}
}

func TestCanceledWhileQueuedIsNotApplied(t *testing.T) {
	w, d := newWriter(t, 64)
	taken, release := hold(w)
	first := writeAll(t.Context(), w, put("first", "1"))
	<-taken
	ctx, cancel := context.WithCancel(t.Context())
	queued := writeAll(ctx, w, put("gone", "1"))
	waitQueued(t, w, 1)
	cancel()
	if err := queued()[0]; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled write: %v, want context.Canceled", err)
	}
	release()
	first()
	if err := w.Write(t.Context(), 1, put("after", "1")); err != nil {
		t.Fatal(err)
	}
	if _, ok := d.get("gone"); ok {
		t.Fatal("a write whose caller got context.Canceled was applied")
	}
}

func TestCloseDrainsQueue(t *testing.T) {
	d := &memDB{data: map[string]string{}}
	cfg := d.config(64)
	closed := errors.New("closed for the test")
	cfg.ErrClosed = closed
	w := New(cfg)
	taken, release := hold(w)
	first := writeAll(t.Context(), w, put("first", "1"))
	<-taken
	queued := writeAll(t.Context(), w, put("a", "1"), put("b", "1"))
	waitQueued(t, w, 2)
	done := make(chan struct{})
	go func() { w.Close(); close(done) }()
	release()
	<-done
	for _, err := range append(first(), queued()...) {
		if err != nil {
			t.Fatalf("write queued before Close: %v", err)
		}
	}
	if _, ok := d.get("b"); !ok {
		t.Fatal("a write queued before Close was dropped")
	}
	if err := w.Write(t.Context(), 1, put("late", "1")); !errors.Is(err, closed) {
		t.Fatalf("write after Close: %v, want %v", err, closed)
	}
}

// writeConcurrently makes writers goroutines write rounds keys each, one at a time.
func writeConcurrently(t *testing.T, w *Writer[*memTx], writers, rounds int) {
	t.Helper()
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			for r := range rounds {
				if err := w.Write(t.Context(), 1, put(fmt.Sprint(i, "/", r), "v")); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestConcurrentWritersAreGrouped(t *testing.T) {
	d := &memDB{data: map[string]string{}}
	cfg := d.config(64)
	fast := cfg.Commit
	// A commit that takes a while, like an fsync, lets the next group fill up.
	cfg.Commit = func(tx *memTx) error { time.Sleep(2 * time.Millisecond); return fast(tx) }
	w := New(cfg)
	defer w.Close()
	const writers, rounds = 16, 20
	writeConcurrently(t, w, writers, rounds)
	if got := w.Commits(); got > writers*rounds/4 {
		t.Fatalf("%d writes by %d writers took %d commits, want at most a quarter", writers*rounds, writers, got)
	}
	t.Logf("%d writes by %d writers took %d commits", writers*rounds, writers, w.Commits())
}

func TestLingerKeepsConcurrentWritersTogether(t *testing.T) {
	for _, linger := range []time.Duration{0, 5 * time.Millisecond} {
		d := &memDB{data: map[string]string{}}
		cfg := d.config(64)
		fast := cfg.Commit
		cfg.Commit = func(tx *memTx) error { time.Sleep(2 * time.Millisecond); return fast(tx) }
		cfg.MaxLinger = linger
		w := New(cfg)
		const writers, rounds = 16, 20
		writeConcurrently(t, w, writers, rounds)
		w.Close()
		t.Logf("MaxLinger %v: %d writes by %d writers took %d commits", linger, writers*rounds, writers, w.Commits())
		// With lingering, each round of the 16 writers should be one group (plus the
		// start, when the writers arrive one by one).
		if linger > 0 && w.Commits() > rounds*3/2 {
			t.Errorf("MaxLinger %v: %d commits for %d rounds of %d writers, want at most %d", linger, w.Commits(), rounds, writers, rounds*3/2)
		}
	}
}

// TestLingerFoldsInWritersThatMissedAGroup checks that writers who queued while a group
// committed are expected in the next group along with that group's writers: 13 writers
// commit while 3 more queue, and the next group holds all 16 instead of settling into 13
// again with 3 always a commit behind.
func TestLingerFoldsInWritersThatMissedAGroup(t *testing.T) {
	d := &memDB{data: map[string]string{}}
	cfg := d.config(64)
	cfg.MaxLinger = 5 * time.Second
	gate := make(chan struct{})
	var sizes []int
	fast := cfg.Commit
	cfg.Commit = func(tx *memTx) error {
		d.mu.Lock()
		sizes = append(sizes, len(tx.data)-len(d.data))
		first := len(sizes) == 1
		d.mu.Unlock()
		if first {
			<-gate // the first group commits slowly, like an fsync, while others queue
		}
		return fast(tx)
	}
	w := New(cfg)
	defer w.Close()
	taken, release := hold(w)
	ctx := context.Background()
	write := func(prefix string, n int) func() []error {
		applies := make([]Apply[*memTx], n)
		for i := range applies {
			applies[i] = put(fmt.Sprintf("%s%d", prefix, i), "v")
		}
		return writeAll(ctx, w, applies...)
	}
	first := write("a", 1)
	<-taken
	rest := write("b", 12)
	waitQueued(t, w, 12)
	release() // a group of 13 starts committing and waits at the gate
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		d.mu.Lock()
		n := len(sizes)
		d.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first group did not reach its commit")
		}
	}
	late := write("c", 3)
	waitQueued(t, w, 3)
	time.Sleep(50 * time.Millisecond) // the commit's duration bounds the next linger
	close(gate)
	// The 13 writers of the first group come back at once, as a client does.
	for _, errs := range [][]error{first(), rest()} {
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	again := write("d", 13)
	for _, errs := range [][]error{late(), again()} {
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(sizes) != 2 || sizes[0] != 13 || sizes[1] != 16 {
		t.Fatalf("groups of %v, want [13 16]", sizes)
	}
}

// goid is the calling goroutine's id, read off its stack trace's first line.
func goid() string {
	b := make([]byte, 64)
	b = b[:runtime.Stack(b, false)]
	f := strings.Fields(string(b))
	return f[1]
}

// gateSlow makes cfg's commit of a transaction that wrote the key "slow" close entered,
// then wait until gate is closed.
func gateSlow(cfg *Config[*memTx]) (entered, gate chan struct{}) {
	entered, gate = make(chan struct{}), make(chan struct{})
	var once sync.Once
	commit := cfg.Commit
	cfg.Commit = func(tx *memTx) error {
		if _, ok := tx.data["slow"]; ok {
			once.Do(func() { close(entered); <-gate })
		}
		return commit(tx)
	}
	return entered, gate
}

// sixteenBehindSlow writes "slow" (committed inline, held at gateSlow's gate) and, while
// it is held, 16 writes that queue behind it; then lets it go and checks every write.
func sixteenBehindSlow(t *testing.T, w *Writer[*memTx], entered, gate chan struct{}) {
	t.Helper()
	ctx := t.Context()
	slow := writeAll(ctx, w, put("slow", "1"))
	<-entered
	var applies []Apply[*memTx]
	for i := range 16 {
		applies = append(applies, put(fmt.Sprint("k", i), "v"))
	}
	rest := writeAll(ctx, w, applies...)
	waitQueued(t, w, 15) // the writer goroutine holds the 16th, waiting for its turn
	close(gate)
	for _, err := range append(slow(), rest()...) {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestLoneWriterCommitsInline: a writer expected to be alone (the last group was one
// request and nobody queued behind it) commits on its own goroutine, without a hand-off to
// the writer goroutine; writers that queue while it commits are grouped by the writer
// goroutine as before, and the writer that comes back then is expected in a group again.
func TestLoneWriterCommitsInline(t *testing.T) {
	d := &memDB{data: map[string]string{}}
	cfg := d.config(64)
	entered, gate := gateSlow(&cfg)
	w := New(cfg)
	t.Cleanup(w.Close)
	ctx := t.Context()

	// Sequential writes from one goroutine: each applied on the caller's goroutine.
	me := goid()
	for i := range 5 {
		var where string
		if err := w.Write(ctx, 1, func(tx *memTx) (bool, error) {
			where = goid()
			tx.data[fmt.Sprint("seq", i)] = "v"
			return true, nil
		}); err != nil {
			t.Fatal(err)
		}
		if where != me {
			t.Fatalf("write %d applied on goroutine %s, want the caller's (%s)", i, where, me)
		}
	}
	if w.Commits() != 5 {
		t.Fatalf("%d commits for 5 writes", w.Commits())
	}

	// A slow inline commit: the writers arriving meanwhile queue and share one commit.
	sixteenBehindSlow(t, w, entered, gate)
	if got := w.Commits(); got != 7 {
		t.Fatalf("%d commits after the slow write and 16 queued behind it, want 7 (5 + 1 + 1)", got)
	}
	// Now a group of 16 is expected: the next write goes to the writer goroutine.
	var where string
	if err := w.Write(ctx, 1, func(tx *memTx) (bool, error) {
		where = goid()
		tx.data["after"] = "v"
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}
	if where == me {
		t.Fatal("a write after a group of 16 committed inline; the group commit expects company")
	}
	if v, ok := d.get("k15"); !ok || v != "v" {
		t.Fatalf("k15 = %q, %v", v, ok)
	}
}

// TestIdleWriterIsAlone: after a group of 16, a write that comes once the writer has been
// idle for longer than it would linger neither waits for the 16 (they left) nor goes
// through the writer goroutine: it commits inline, alone.
func TestIdleWriterIsAlone(t *testing.T) {
	d := &memDB{data: map[string]string{}}
	cfg := d.config(64)
	cfg.MaxLinger = 5 * time.Millisecond
	entered, gate := gateSlow(&cfg)
	w := New(cfg)
	t.Cleanup(w.Close)
	ctx := t.Context()

	// A slow inline commit with 16 writers queued behind it: they share the next commit,
	// and the writer then expects 16.
	sixteenBehindSlow(t, w, entered, gate)
	if got := w.Commits(); got != 2 {
		t.Fatalf("%d commits for a slow write and 16 queued behind it, want 2", got)
	}

	time.Sleep(4 * cfg.MaxLinger) // idle: longer than any linger
	me := goid()
	var where string
	if err := w.Write(ctx, 1, func(tx *memTx) (bool, error) {
		where = goid()
		tx.data["later"] = "v"
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}
	if where != me {
		t.Fatalf("a write after the writer idled applied on goroutine %s, not the caller's (%s): it waited for the group of 16", where, me)
	}
	if got := w.Commits(); got != 3 {
		t.Fatalf("%d commits, want 3", got)
	}
}
