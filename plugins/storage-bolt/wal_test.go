package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/limitgraph/limit/internal/syncbuf"
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/storage"
)

// manualCheckpoints turns the checkpointer's own checkpoints off for the test, so the
// test decides when the log is copied into the database file.
func manualCheckpoints(t *testing.T) {
	every, bytes := checkpointEvery, checkpointBytes
	checkpointEvery, checkpointBytes = time.Hour, 1<<40
	t.Cleanup(func() { checkpointEvery, checkpointBytes = every, bytes })
}

// model is what the store must hold: namespace → key → value.
type model map[string]map[string]string

func (m model) put(ns, k, v string) {
	if m[ns] == nil {
		m[ns] = map[string]string{}
	}
	m[ns][k] = v
}

func (m model) clone() model {
	c := model{}
	for ns, kv := range m {
		c[ns] = maps.Clone(kv)
	}
	return c
}

// crashImage copies the database and its log files as they are now, which is what a
// crash (SIGKILL of the process) at this moment leaves on disk, and returns the copy's
// path.
func crashImage(t *testing.T, path string) string {
	t.Helper()
	dir := t.TempDir()
	for _, suffix := range []string{"", "-wal", "-wal2"} {
		src, err := os.Open(path + suffix)
		if err != nil {
			t.Fatal(err)
		}
		dst, err := os.Create(filepath.Join(dir, "x.db"+suffix))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(dst, src); err != nil {
			t.Fatal(err)
		}
		_ = src.Close()
		_ = dst.Close()
	}
	return filepath.Join(dir, "x.db")
}

// checkHolds reads every namespace of m back, with scans in pages of a few keys, and
// compares; it also checks a namespace m does not have is empty.
func checkHolds(t *testing.T, s *store, m model, when string) {
	t.Helper()
	ctx := context.Background()
	for _, ns := range []string{"a", "b", "c"} {
		want := m[ns]
		var got []storage.KeyValue
		var after []byte
		for {
			res, err := s.Scan(ctx, storage.ScanRequest{Namespace: ns, StartAfter: after, Limit: 3})
			if err != nil {
				t.Fatalf("%s: scan %s: %v", when, ns, err)
			}
			got = append(got, res.Items...)
			if !res.More {
				break
			}
			after = res.Items[len(res.Items)-1].Key
		}
		keys := slices.Sorted(maps.Keys(want))
		if len(got) != len(keys) {
			t.Fatalf("%s: namespace %s: scan found %d keys, want %d", when, ns, len(got), len(keys))
		}
		for i, k := range keys {
			if string(got[i].Key) != k || string(got[i].Value) != want[k] {
				t.Fatalf("%s: namespace %s item %d: %q=%q, want %q=%q", when, ns, i, got[i].Key, got[i].Value, k, want[k])
			}
			v, ok, err := s.Get(ctx, ns, []byte(k))
			if err != nil || !ok || string(v) != want[k] {
				t.Fatalf("%s: Get %s/%s = %q %v %v, want %q", when, ns, k, v, ok, err, want[k])
			}
		}
	}
}

// TestLogAndCheckpointsAgainstModel runs random writes with checkpoints at random moments
// (so keys live in the memtable, the frozen memtable, the file, or several with
// different values), checks scans and gets against a model, and opens crash images taken
// at random moments, including between a checkpoint's copy and its log reset.
func TestLogAndCheckpointsAgainstModel(t *testing.T) {
	manualCheckpoints(t)
	path := filepath.Join(t.TempDir(), "x.db")
	s := openStore(t, map[string]any{"path": path})
	e, _ := s.engine()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(7, 11))
	m := model{}
	key := func() string { return fmt.Sprintf("k%02d", rng.IntN(40)) }
	nsOf := func() string { return []string{"a", "b", "c"}[rng.IntN(3)] }
	type image struct {
		path string
		m    model
	}
	var images []image
	e.hookCopied = func() {
		if rng.IntN(3) == 0 {
			images = append(images, image{crashImage(t, path), m.clone()})
		}
	}

	for step := range 1500 {
		ns, k := nsOf(), key()
		switch r := rng.IntN(100); {
		case r < 45:
			v := fmt.Sprintf("v%d", step)
			if rng.IntN(10) == 0 {
				v = "" // empty values are values
			}
			if err := s.Put(ctx, ns, []byte(k), []byte(v)); err != nil {
				t.Fatal(err)
			}
			m.put(ns, k, v)
		case r < 65:
			existed, err := s.Delete(ctx, ns, []byte(k))
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := m[ns][k]; ok != existed {
				t.Fatalf("step %d: Delete %s/%s existed=%v, model says %v", step, ns, k, existed, ok)
			}
			delete(m[ns], k)
		case r < 80:
			var ops []storage.Op
			next := m.clone()
			for range 1 + rng.IntN(5) {
				bns, bk := nsOf(), key()
				if rng.IntN(3) == 0 {
					ops = append(ops, storage.Op{Kind: storage.OpDelete, Namespace: bns, Key: []byte(bk)})
					delete(next[bns], bk)
				} else {
					v := fmt.Sprintf("b%d", step)
					ops = append(ops, storage.Op{Kind: storage.OpPut, Namespace: bns, Key: []byte(bk), Value: []byte(v)})
					next.put(bns, bk, v)
				}
			}
			if err := s.Batch(ctx, "a", ops); err != nil {
				t.Fatal(err)
			}
			m = next
		case r < 90:
			cur, present := m[ns][k]
			req := storage.CASRequest{Namespace: ns, Key: []byte(k), ExpectPresent: present, Expected: []byte(cur), Value: []byte(fmt.Sprintf("c%d", step))}
			if rng.IntN(4) == 0 {
				req.Expected = []byte("stale")
				req.ExpectPresent = true
			}
			res, err := s.CompareAndSwap(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			want := present == req.ExpectPresent && (!present || cur == string(req.Expected))
			if res.Swapped != want {
				t.Fatalf("step %d: CAS swapped=%v, model says %v", step, res.Swapped, want)
			}
			if res.Swapped {
				m.put(ns, k, string(req.Value))
			}
		case r < 94:
			e.freeze()
		case r < 97:
			if err := e.checkpoint(); err != nil {
				t.Fatal(err)
			}
		default:
			images = append(images, image{crashImage(t, path), m.clone()})
		}
		if step%100 == 0 {
			checkHolds(t, s, m, fmt.Sprintf("step %d", step))
		}
	}
	checkHolds(t, s, m, "at the end")
	if len(images) < 10 {
		t.Fatalf("only %d crash images taken", len(images))
	}
	for i, img := range images {
		s2 := openStore(t, map[string]any{"path": img.path})
		checkHolds(t, s2, img.m, fmt.Sprintf("crash image %d of %d", i+1, len(images)))
		if err := s2.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// After a clean close everything is in the database file and the logs are empty.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, suffix := range []string{"-wal", "-wal2"} {
		w, err := openWAL(path+suffix, false)
		if err != nil {
			t.Fatal(err)
		}
		_, recs, _, err := w.read()
		_ = w.close()
		if err != nil || len(recs) != 0 {
			t.Errorf("log %s after a clean close: %d records, %v; want none", suffix, len(recs), err)
		}
	}
	s3 := openStore(t, map[string]any{"path": path})
	checkHolds(t, s3, m, "reopened after a clean close")
}

// TestTornRecordIgnored cuts the last record of the log short, as a crash in the middle
// of its write does, and appends garbage after another copy's last record: the writes
// before it are all there, the torn one is not.
func TestTornRecordIgnored(t *testing.T) {
	manualCheckpoints(t)
	path := filepath.Join(t.TempDir(), "x.db")
	s := openStore(t, map[string]any{"path": path})
	ctx := context.Background()
	for i := range 10 {
		if err := s.Put(ctx, "a", []byte(fmt.Sprintf("k%d", i)), bytes.Repeat([]byte{'v'}, 100)); err != nil {
			t.Fatal(err)
		}
	}
	e, _ := s.engine()
	log := e.wals[e.active]
	end := log.off
	img := crashImage(t, path)
	garbage := crashImage(t, path)

	// The last record is 8 + 12 + (1+2+1 + 4+2 + 4+100) bytes; cut it in the middle.
	if err := truncateZero(img+walSuffix(e.active), end-60, end); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(garbage+walSuffix(e.active), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{200, 0, 0, 0, 1, 2, 3, 4, 'x', 'y'}, end); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()

	s2 := openStore(t, map[string]any{"path": img})
	want := model{}
	for i := range 9 {
		want.put("a", fmt.Sprintf("k%d", i), string(bytes.Repeat([]byte{'v'}, 100)))
	}
	checkHolds(t, s2, want, "torn last record")
	s3 := openStore(t, map[string]any{"path": garbage})
	want.put("a", "k9", string(bytes.Repeat([]byte{'v'}, 100)))
	checkHolds(t, s3, want, "garbage after the last record")
}

// TestTornRecordReported checks that read reports a record of the file's current use cut
// short (its tail never written, or the file cut), so the engine can say it dropped it,
// and that the zeros ahead of the records and a left-over of an earlier use are not one.
func TestTornRecordReported(t *testing.T) {
	for _, tc := range []struct {
		name string
		tear func(w *walFile, start, end int64) error
		torn bool
	}{
		{"clean end", func(*walFile, int64, int64) error { return nil }, false},
		{"tail not written", func(w *walFile, start, end int64) error { return truncateZero(w.path, end-5, end) }, true},
		{"file cut in the payload", func(w *walFile, start, end int64) error { return os.Truncate(w.path, end-3) }, true},
		{"file cut in the head", func(w *walFile, start, end int64) error { return os.Truncate(w.path, start+5) }, true},
		{"left-over of an earlier use", func(w *walFile, start, end int64) error {
			rec := encodeRecord(w.salt+1, []walOp{{ns: "a", key: []byte("old"), val: []byte("x")}})
			rec[len(rec)-1] ^= 0xff // and torn, at that
			_, err := w.f.WriteAt(rec, end)
			return err
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x.db-wal")
			w, err := openWAL(path, false)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.reset(1); err != nil {
				t.Fatal(err)
			}
			for i := range 3 {
				if err := w.append(encodeRecord(w.salt, []walOp{{ns: "a", key: []byte{byte('a' + i)}, val: []byte("value")}})); err != nil {
					t.Fatal(err)
				}
			}
			end := w.off
			start := end - int64(len(encodeRecord(w.salt, []walOp{{ns: "a", key: []byte("c"), val: []byte("value")}})))
			if err := tc.tear(w, start, end); err != nil {
				t.Fatal(err)
			}
			_ = w.close()
			r, err := openWAL(path, false)
			if err != nil {
				t.Fatal(err)
			}
			defer r.close()
			_, recs, torn, err := r.read()
			wantRecs, wantTorn := 3, int64(-1)
			if tc.torn {
				wantRecs, wantTorn = 2, start
			}
			if err != nil || len(recs) != wantRecs || torn != wantTorn {
				t.Fatalf("read: %d records, torn at %d, %v; want %d records, torn at %d", len(recs), torn, err, wantRecs, wantTorn)
			}
		})
	}
}

func walSuffix(i int) string { return []string{"-wal", "-wal2"}[i] }

// truncateZero overwrites [from, to) of a file with zeros.
func truncateZero(path string, from, to int64) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteAt(make([]byte, to-from), from)
	return err
}

// TestOlderLogReplayedFirst writes the same key in both log files and checks the file
// with the later epoch wins, whichever file it is.
func TestOlderLogReplayedFirst(t *testing.T) {
	for _, newer := range []int{0, 1} {
		t.Run(walSuffix(newer), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x.db")
			for i, suffix := range []string{"-wal", "-wal2"} {
				w, err := openWAL(path+suffix, true)
				if err != nil {
					t.Fatal(err)
				}
				epoch := uint64(5)
				if i == newer {
					epoch = 9
				}
				if err := w.reset(epoch); err != nil {
					t.Fatal(err)
				}
				v := fmt.Sprintf("epoch %d", epoch)
				if err := w.append(encodeRecord(w.salt, []walOp{{ns: "a", key: []byte("k"), val: []byte(v)}})); err != nil {
					t.Fatal(err)
				}
				_ = w.close()
			}
			s := openStore(t, map[string]any{"path": path})
			checkHolds(t, s, model{"a": {"k": "epoch 9"}}, "replayed")
		})
	}
}

func TestRecordEncoding(t *testing.T) {
	ops := []walOp{
		{ns: "a", key: []byte{0, 1, 2}, val: []byte{}},
		{ns: "ns-2", key: []byte("k"), del: true},
		{ns: "a", key: []byte("big"), val: bytes.Repeat([]byte{0xff}, 70000)},
	}
	rec := encodeRecord(42, ops)
	got, salt, err := decodeRecord(rec[walRecordHead:])
	if err != nil || salt != 42 || len(got) != len(ops) {
		t.Fatalf("decode: %d ops, salt %d, %v", len(got), salt, err)
	}
	for i := range ops {
		if got[i].ns != ops[i].ns || !bytes.Equal(got[i].key, ops[i].key) || !bytes.Equal(got[i].val, ops[i].val) || got[i].del != ops[i].del {
			t.Errorf("op %d: %+v, want %+v", i, got[i], ops[i])
		}
	}
	for cut := range len(rec) - walRecordHead {
		if _, _, err := decodeRecord(rec[walRecordHead : walRecordHead+cut]); err == nil {
			t.Fatalf("a record cut to %d bytes decoded", cut)
		}
	}
}

// TestCheckpointFailureKeepsWrites makes checkpoints fail (as on a full disk): writes stay
// readable, durable in the log and acknowledged, and go into the file once a checkpoint
// succeeds.
func TestCheckpointFailureKeepsWrites(t *testing.T) {
	manualCheckpoints(t)
	path := filepath.Join(t.TempDir(), "x.db")
	s := openStore(t, map[string]any{"path": path})
	e, _ := s.engine()
	ctx := context.Background()
	if err := s.Put(ctx, "a", []byte("k"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	e.cpRun.Lock()
	e.hookCopyErr = boom
	e.cpRun.Unlock()
	e.freeze()
	if err := e.checkpoint(); !errors.Is(err, boom) {
		t.Fatalf("checkpoint: got %v, want boom", err)
	}
	if h := s.Health(ctx); h.OK || !strings.Contains(h.Detail, "boom") || h.Metrics["log_pending_keys"] != 1 {
		t.Errorf("health while checkpoints fail: %+v, want not OK, naming the error, 1 key waiting", h)
	}
	if err := s.Put(ctx, "a", []byte("k2"), []byte("2")); err != nil {
		t.Fatalf("a write while checkpoints fail: %v", err)
	}
	want := model{"a": {"k": "1", "k2": "2"}}
	checkHolds(t, s, want, "after a failed checkpoint")
	checkHolds(t, openStore(t, map[string]any{"path": crashImage(t, path)}), want, "crash image after a failed checkpoint")
	e.cpRun.Lock()
	e.hookCopyErr = nil
	e.cpRun.Unlock()
	checkpointNow(t, e)
	checkHolds(t, s, want, "after a checkpoint succeeded")
	if h := s.Health(ctx); !h.OK || h.Detail != "" || h.Metrics["log_pending_keys"] != 0 || h.Metrics["checkpoints_total"] < 1 {
		t.Errorf("health after a checkpoint succeeded: %+v, want OK, nothing waiting", h)
	}
	img := openStore(t, map[string]any{"path": crashImage(t, path)})
	checkHolds(t, img, want, "crash image after a checkpoint succeeded")
}

// TestCheckpointFailuresLoggedSparingly checks that a checkpoint failing again and again
// (a full disk: the checkpointer retries every checkpointRetry, four times a second) is
// logged when it starts failing and then at most every checkpointFailLogEvery, not at every
// retry, and that the recovery is logged.
func TestCheckpointFailuresLoggedSparingly(t *testing.T) {
	manualCheckpoints(t)
	retry := checkpointRetry
	checkpointRetry = time.Millisecond
	t.Cleanup(func() { checkpointRetry = retry })
	var logged syncbuf.Buffer
	s := newStore()
	s.log = hclog.New(&hclog.LoggerOptions{Output: &logged, Level: hclog.Info})
	raw, _ := json.Marshal(map[string]any{"path": filepath.Join(t.TempDir(), "x.db")})
	if ds := s.Configure(context.Background(), base.ConfigureRequest{Config: raw}); ds.HasErrors() {
		t.Fatalf("configure: %v", ds.Err())
	}
	t.Cleanup(func() { _ = s.Close() })
	e, _ := s.engine()
	ctx := context.Background()
	if err := s.Put(ctx, "a", []byte("k"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	e.cpRun.Lock()
	e.hookCopyErr = errors.New("no space left on device")
	e.cpRun.Unlock()
	e.kick <- struct{}{}
	deadline := time.Now().Add(5 * time.Second)
	for {
		e.mu.RLock()
		failing := e.cpErr != nil
		e.mu.RUnlock()
		if failing || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // ~100 retries at 1 ms and more
	if n := strings.Count(logged.String(), "checkpoint failed"); n != 1 {
		t.Errorf("%d checkpoint failures logged in 200 ms of retries, want 1:\n%s", n, logged.String())
	}
	e.cpRun.Lock()
	e.hookCopyErr = nil
	e.cpRun.Unlock()
	deadline = time.Now().Add(5 * time.Second)
	for !strings.Contains(logged.String(), "checkpoints succeed again") && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if h := s.Health(ctx); !h.OK {
		t.Errorf("health after checkpoints succeed again: %+v, want OK", h)
	}
	if !strings.Contains(logged.String(), "checkpoints succeed again") {
		t.Errorf("the recovery was not logged:\n%s", logged.String())
	}
}

// TestReadsWritesAndCheckpointsTogether runs scans, gets, reading writes (compare-and-swap)
// and checkpoints that grow the file at the same time, and checks they all keep working.
// It is a stress run: the interleaving that deadlocked reads before they took their
// transaction outside the lock is rare here, and TestScanDuringGrowingCheckpoint
// reproduces it on purpose.
func TestReadsWritesAndCheckpointsTogether(t *testing.T) {
	every, size := checkpointEvery, checkpointBytes
	checkpointEvery, checkpointBytes = 2*time.Millisecond, 64<<10
	t.Cleanup(func() { checkpointEvery, checkpointBytes = every, size })
	s := openStore(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	big := bytes.Repeat([]byte{'x'}, 32<<10)
	errs := make(chan error, 16)
	run := func(f func(i int) error) {
		go func() {
			var err error
			for i := 0; ctx.Err() == nil && err == nil; i++ {
				err = f(i)
			}
			if errors.Is(err, context.DeadlineExceeded) {
				err = nil
			}
			errs <- err
		}()
	}
	run(func(i int) error { return s.Put(ctx, "a", []byte(fmt.Sprintf("k%06d", i)), big) })
	for range 4 {
		run(func(i int) error {
			k := []byte(fmt.Sprintf("c%d", i%10))
			cur, ok, err := s.Get(ctx, "a", k)
			if err != nil {
				return err
			}
			_, err = s.CompareAndSwap(ctx, storage.CASRequest{Namespace: "a", Key: k, ExpectPresent: ok, Expected: cur, Value: big[:i%1000]})
			return err
		})
	}
	for range 2 {
		run(func(i int) error {
			_, err := s.Scan(ctx, storage.ScanRequest{Namespace: "a", Limit: 5, KeysOnly: true})
			return err
		})
		run(func(i int) error {
			_, _, err := s.Get(ctx, "a", []byte(fmt.Sprintf("k%06d", i)))
			return err
		})
	}
	for range 9 {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("readers, writers and checkpoints are stuck: deadlock")
		}
	}
}

// TestLeftoverRecordNotReplayed puts a well-formed record with a valid checksum right
// after the log's last record, as left-over bytes (or a stored value crafted to look
// like a record) may be there after the file is reused: without the file's salt, it is
// not replayed; with it (the control), it would be.
func TestLeftoverRecordNotReplayed(t *testing.T) {
	for _, tc := range []struct {
		name     string
		sameSalt bool
		want     model
	}{
		{"other salt", false, model{"a": {"k": "logged"}}},
		{"control: same salt", true, model{"a": {"k": "logged", "forged": "x"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x.db")
			w, err := openWAL(path+"-wal", true)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.reset(3); err != nil {
				t.Fatal(err)
			}
			if err := w.append(encodeRecord(w.salt, []walOp{{ns: "a", key: []byte("k"), val: []byte("logged")}})); err != nil {
				t.Fatal(err)
			}
			salt := w.salt + 1
			if tc.sameSalt {
				salt = w.salt
			}
			forged := encodeRecord(salt, []walOp{{ns: "a", key: []byte("forged"), val: []byte("x")}})
			if !tc.sameSalt {
				// Malformed past its salt, with a valid checksum: still just ignored.
				forged = forged[:len(forged)-1]
				binary.LittleEndian.PutUint32(forged, uint32(len(forged)-walRecordHead))
				binary.LittleEndian.PutUint32(forged[4:], crc32.Checksum(forged[walRecordHead:], crcTable))
			}
			if _, err := w.f.WriteAt(forged, w.off); err != nil {
				t.Fatal(err)
			}
			_ = w.close()
			checkHolds(t, openStore(t, map[string]any{"path": path}), tc.want, tc.name)
		})
	}
}

// TestScanDuringGrowingCheckpoint sets up, step by step, what deadlocked when reads opened
// their bbolt transaction under the engine lock: the writer holds a read transaction (a
// compare-and-swap looked a key up in the file); a checkpoint grows the file, so bbolt
// waits for every read transaction before remapping it, and new ones wait behind it; a
// scan starts; then the writer needs the engine lock for its next lookup. The writer's
// lookup must not wait for the scan.
func TestScanDuringGrowingCheckpoint(t *testing.T) {
	manualCheckpoints(t)
	s := openStore(t, nil)
	e, _ := s.engine()
	ctx := context.Background()
	if err := s.Put(ctx, "a", []byte("in-file"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	checkpointNow(t, e)
	big := bytes.Repeat([]byte{'x'}, 64<<10)
	for i := range 64 { // 4 MiB: the checkpoint must grow the file
		if err := s.Put(ctx, "b", []byte(fmt.Sprintf("k%02d", i)), big); err != nil {
			t.Fatal(err)
		}
	}
	e.freeze()

	tx, err := e.begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := tx.get("a", []byte("in-file")); err != nil || !ok || tx.rtx == nil {
		t.Fatalf("lookup in the file: %v %v (read transaction open: %v)", ok, err, tx.rtx != nil)
	}
	checkpointed := make(chan error, 1)
	go func() { checkpointed <- e.checkpoint() }()
	time.Sleep(100 * time.Millisecond) // the checkpoint now waits for tx's read transaction
	scanned := make(chan error, 1)
	go func() {
		_, err := s.Scan(ctx, storage.ScanRequest{Namespace: "b", Limit: 3})
		scanned <- err
	}()
	time.Sleep(100 * time.Millisecond) // the scan now waits behind the checkpoint
	looked := make(chan error, 1)
	go func() {
		_, _, err := tx.get("a", []byte("other"))
		looked <- err
	}()
	select {
	case err := <-looked:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		// Nothing can end now, and the test's cleanup would hang on it too: crash the
		// test binary from another goroutine, which runs no cleanup.
		go panic("deadlock: the writer's lookup waits for a scan that waits for a checkpoint that waits for the writer")
		select {}
	}
	tx.release()
	for name, ch := range map[string]chan error{"checkpoint": checkpointed, "scan": scanned} {
		select {
		case err := <-ch:
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s did not finish once the writer's read transaction ended", name)
		}
	}
}

// TestLowOnSpaceReadsDiskSparingly checks lowOnSpace's cache of the disk's free space: far
// from the margin a fresh reading is trusted (no statfs at the next commit), what the log
// took since counts against it, and a need near the free space, or a reading older than
// spaceRecheck, reads the disk again and reports it short when it is.
func TestLowOnSpaceReadsDiskSparingly(t *testing.T) {
	s := openStore(t, map[string]any{"path": filepath.Join(t.TempDir(), "x.db")})
	e, err := s.engine()
	if err != nil {
		t.Fatal(err)
	}
	e.logMu.Lock()
	defer e.logMu.Unlock()
	e.spaceAt = time.Time{}
	if e.lowOnSpace(0, 100) {
		t.Skip("the test's disk has less than twice lowSpaceMargin free")
	}
	at, free := e.spaceAt, e.spaceFree
	if at.IsZero() || free <= 0 {
		t.Fatalf("first call read nothing: at %v, free %d", at, free)
	}
	if free < 4*lowSpaceMargin {
		t.Skip("the test's disk is too full for the cached path")
	}
	if e.lowOnSpace(0, 100) || e.spaceAt != at || e.spaceWritten != 100 {
		t.Fatalf("second call far from the margin: read again (at %v → %v) or lost what was written (%d)", at, e.spaceAt, e.spaceWritten)
	}
	// What the log took since the reading counts: here, all but a byte less than twice
	// the need (the margin alone, nothing pending).
	e.spaceWritten = free - 2*lowSpaceMargin + 1
	e.lowOnSpace(0, 0)
	if e.spaceAt == at || e.spaceWritten != 0 {
		t.Fatalf("a reading within twice the need of what is left was trusted")
	}
	at = e.spaceAt
	e.spaceAt = at.Add(-spaceRecheck)
	e.lowOnSpace(0, 0)
	if !e.spaceAt.After(at) {
		t.Fatalf("a reading older than spaceRecheck was trusted")
	}
	// A need beyond the free space reads the disk and is reported short.
	if !e.lowOnSpace(int(e.spaceFree/2)+1, 0) {
		t.Fatalf("pending writes needing more than the free space: not reported short")
	}
}

// configureErr configures a new store on path and returns its diagnostics, which must hold
// an error; the store is closed at cleanup in case it opened.
func configureErr(t *testing.T, path string) base.Diagnostics {
	t.Helper()
	raw, _ := json.Marshal(map[string]any{"path": path})
	s := newStore()
	ds := s.Configure(context.Background(), base.ConfigureRequest{Config: raw})
	t.Cleanup(func() { _ = s.Close() })
	if !ds.HasErrors() {
		t.Fatalf("configure on %s succeeded, want an error", path)
	}
	return ds
}

// readFiles returns the contents of the database file and its log files.
func readFiles(t *testing.T, path string) [3][]byte {
	t.Helper()
	var out [3][]byte
	for i, suffix := range []string{"", "-wal", "-wal2"} {
		b, err := os.ReadFile(path + suffix)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = b
	}
	return out
}

// TestDamagedLogRefused flips one byte inside an acknowledged record that intact records
// follow, as a bad sector or bit rot does. Replaying the records before it and resetting
// the log would silently drop the later acknowledged writes and then overwrite them: the
// database is refused instead, with an error naming the file and the offset, and nothing
// is changed. The cut the error proposes then opens it with the records before the
// damage.
func TestDamagedLogRefused(t *testing.T) {
	manualCheckpoints(t)
	path := filepath.Join(t.TempDir(), "x.db")
	s := openStore(t, map[string]any{"path": path})
	ctx := context.Background()
	val := strings.Repeat("v", 100)
	for i := range 15 {
		if err := s.Put(ctx, "a", fmt.Appendf(nil, "k%02d", i), []byte(val)); err != nil {
			t.Fatal(err)
		}
	}
	e, _ := s.engine()
	img := crashImage(t, path)
	imgWAL := img + walSuffix(e.active)

	recLen := int64(len(encodeRecord(0, []walOp{{ns: "a", key: []byte("k00"), val: []byte(val)}})))
	bad := int64(walHeaderSize) + 4*recLen // the fifth record
	if end := e.wals[e.active].off; end != int64(walHeaderSize)+15*recLen {
		t.Fatalf("log ends at %d, want 15 records of %d bytes", end, recLen)
	}
	b, err := os.ReadFile(imgWAL)
	if err != nil {
		t.Fatal(err)
	}
	b[bad+40] ^= 0x10 // inside the record's payload
	if err := os.WriteFile(imgWAL, b, 0o600); err != nil {
		t.Fatal(err)
	}
	before := readFiles(t, img)

	ds := configureErr(t, img)
	msg := ds.Err().Error()
	for _, want := range []string{
		fmt.Sprintf("write-ahead log %s is damaged at offset %d", imgWAL, bad),
		fmt.Sprintf("10 intact records follow it from offset %d", bad+recLen),
		"restore the database file and its -wal files from a backup",
		fmt.Sprintf("truncate -s %d %s", bad, imgWAL),
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not say %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "newer log") {
		t.Errorf("error asks to empty the other log, which holds nothing:\n%s", msg)
	}
	if !slices.Equal(ds[0].Path, []string{"path"}) {
		t.Errorf("diagnostic path %v, want [path]", ds[0].Path)
	}
	if after := readFiles(t, img); !slices.EqualFunc(after[:], before[:], bytes.Equal) {
		t.Fatal("a refused open changed the database or its log files")
	}
	// A second attempt says the same: the evidence is still there.
	if again := configureErr(t, img).Err().Error(); again != msg {
		t.Fatalf("second open says\n%s\nfirst said\n%s", again, msg)
	}

	// Accepting the loss as the error says: the records before the damage are replayed.
	if err := os.Truncate(imgWAL, bad); err != nil {
		t.Fatal(err)
	}
	want := model{}
	for i := range 4 {
		want.put("a", fmt.Sprintf("k%02d", i), val)
	}
	checkHolds(t, openStore(t, map[string]any{"path": img}), want, "log cut at the damaged record")
}

// TestDamagedOlderLogRefused damages the older of the two log files (a crash during a
// checkpoint leaves both with records): the error also asks to empty the newer one, whose
// writes came after the lost ones, and doing both leaves the writes before the damage.
func TestDamagedOlderLogRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.db")
	var offs []int64
	for i, epoch := range []uint64{5, 9} {
		w, err := openWAL(path+walSuffix(i), true)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.reset(epoch); err != nil {
			t.Fatal(err)
		}
		for j := range 3 {
			offs = append(offs, w.off)
			k := fmt.Sprintf("e%d-%d", epoch, j)
			if err := w.append(encodeRecord(w.salt, []walOp{{ns: "a", key: []byte(k), val: []byte("v")}})); err != nil {
				t.Fatal(err)
			}
		}
		_ = w.close()
	}
	older, newer := path+"-wal", path+"-wal2"
	f, err := os.OpenFile(older, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xff}, offs[1]+4); err != nil { // the second record's checksum
		t.Fatal(err)
	}
	_ = f.Close()

	msg := configureErr(t, path).Err().Error()
	for _, want := range []string{
		fmt.Sprintf("write-ahead log %s is damaged at offset %d", older, offs[1]),
		fmt.Sprintf("truncate -s %d %s", offs[1], older),
		fmt.Sprintf("truncate -s %d %s", walHeaderSize, newer),
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not say %q:\n%s", want, msg)
		}
	}
	if err := os.Truncate(older, offs[1]); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(newer, walHeaderSize); err != nil {
		t.Fatal(err)
	}
	checkHolds(t, openStore(t, map[string]any{"path": path}), model{"a": {"e5-0": "v"}}, "logs cut as advised")
}

// TestDamageTellsFromTorn reads log files whose reading stops early, and checks that it is
// called damage exactly when an intact record of the file's current use follows: a torn
// last record stays a torn record even when what follows it looks like a record (of an
// earlier use, or with the salt but a bad checksum).
func TestDamageTellsFromTorn(t *testing.T) {
	type tearFunc func(w *walFile, offs []int64, end int64) error
	write := func(w *walFile, b []byte, at int64) error { _, err := w.f.WriteAt(b, at); return err }
	flip := func(at func(offs []int64) int64, mask byte) tearFunc {
		return func(w *walFile, offs []int64, end int64) error {
			b := make([]byte, 1)
			if _, err := w.f.ReadAt(b, at(offs)); err != nil {
				return err
			}
			return write(w, []byte{b[0] ^ mask}, at(offs))
		}
	}
	rec := func(salt uint64) []byte {
		return encodeRecord(salt, []walOp{{ns: "a", key: []byte("later"), val: []byte("value")}})
	}
	for _, tc := range []struct {
		name    string
		tear    tearFunc
		damaged bool // a *walDamageError
		recs    int  // records read
		torn    int  // index of the record reported torn, or -1
		at      int  // index of the record reported damaged
		intact  int  // intact records after it
	}{
		{"payload bit flipped", flip(func(o []int64) int64 { return o[1] + 20 }, 0x01), true, 1, -1, 1, 2},
		{"checksum bit flipped", flip(func(o []int64) int64 { return o[1] + 4 }, 0x80), true, 1, -1, 1, 2},
		{"length made longer", flip(func(o []int64) int64 { return o[0] + 1 }, 0x01), true, 0, -1, 0, 3},
		{"length zeroed", func(w *walFile, offs []int64, end int64) error { return truncateZero(w.path, offs[2], offs[2]+4) }, true, 2, -1, 2, 1},
		{"salt bit flipped", flip(func(o []int64) int64 { return o[2] + walRecordHead + 3 }, 0x04), true, 2, -1, 2, 1},
		{"last record torn", func(w *walFile, offs []int64, end int64) error { return truncateZero(w.path, end-5, end) }, false, 3, 3, 0, 0},
		{"torn, then a record of an earlier use", func(w *walFile, offs []int64, end int64) error {
			if err := truncateZero(w.path, end-5, end); err != nil {
				return err
			}
			return write(w, rec(w.salt+1), end+16)
		}, false, 3, 3, 0, 0},
		{"torn, then garbage with the salt and a bad checksum", func(w *walFile, offs []int64, end int64) error {
			if err := truncateZero(w.path, end-5, end); err != nil {
				return err
			}
			r := rec(w.salt)
			r[len(r)-1] ^= 0xff
			return write(w, r, end+16)
		}, false, 3, 3, 0, 0},
		{"control: torn, then an intact record", func(w *walFile, offs []int64, end int64) error {
			if err := truncateZero(w.path, end-5, end); err != nil {
				return err
			}
			return write(w, rec(w.salt), end+16)
		}, true, 3, -1, 3, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x.db-wal")
			w, err := openWAL(path, false)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.reset(1); err != nil {
				t.Fatal(err)
			}
			var offs []int64
			for i := range 4 {
				offs = append(offs, w.off)
				if err := w.append(encodeRecord(w.salt, []walOp{{ns: "a", key: []byte{byte('a' + i)}, val: []byte("value")}})); err != nil {
					t.Fatal(err)
				}
			}
			if err := tc.tear(w, offs, w.off); err != nil {
				t.Fatal(err)
			}
			_ = w.close()
			r, err := openWAL(path, false)
			if err != nil {
				t.Fatal(err)
			}
			defer r.close()
			_, recs, torn, err := r.read()
			if len(recs) != tc.recs {
				t.Errorf("%d records read, want %d", len(recs), tc.recs)
			}
			var d *walDamageError
			if !tc.damaged {
				if err != nil || torn != offs[tc.torn] {
					t.Errorf("read: torn at %d, %v; want torn at %d, no error", torn, err, offs[tc.torn])
				}
				return
			}
			if !errors.As(err, &d) || d.off != offs[tc.at] || d.intact != tc.intact || d.before != tc.recs || d.path != path {
				t.Fatalf("read: %#v (%v); want damage at %d with %d intact records after", d, err, offs[tc.at], tc.intact)
			}
		})
	}
}

// TestDamagedHeaderRefused: a log whose header no longer decodes (a bad sector; a crash
// cannot do it, as a reset rewrites the header in one sector) but whose records, intact,
// carry the salt the header's field holds, is refused like a damaged record: taking it for
// a file without a log would drop its acknowledged writes and then overwrite them. Files
// whose header is missing (new, zeros) still open as empty logs; doing as the error says
// (cutting the log to nothing) opens the database without those writes.
func TestDamagedHeaderRefused(t *testing.T) {
	manualCheckpoints(t)
	path := filepath.Join(t.TempDir(), "x.db")
	s := openStore(t, map[string]any{"path": path})
	ctx := context.Background()
	for i := range 6 {
		if err := s.Put(ctx, "a", fmt.Appendf(nil, "k%02d", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	e, _ := s.engine()
	for _, damage := range []struct {
		name string
		at   int
	}{{"magic", 0}, {"version", 8}, {"checksum", 28}} {
		t.Run(damage.name, func(t *testing.T) {
			img := crashImage(t, path)
			imgWAL := img + walSuffix(e.active)
			b, err := os.ReadFile(imgWAL)
			if err != nil {
				t.Fatal(err)
			}
			b[damage.at] ^= 0x04
			if err := os.WriteFile(imgWAL, b, 0o600); err != nil {
				t.Fatal(err)
			}
			before := readFiles(t, img)
			msg := configureErr(t, img).Err().Error()
			for _, want := range []string{
				fmt.Sprintf("write-ahead log %s is damaged: its header is unreadable, yet 6 intact records of it follow from offset %d", imgWAL, walHeaderSize),
				"restore the database file and its -wal files from a backup",
				fmt.Sprintf("truncate -s 0 %s", imgWAL),
			} {
				if !strings.Contains(msg, want) {
					t.Errorf("error does not say %q:\n%s", want, msg)
				}
			}
			if after := readFiles(t, img); !slices.EqualFunc(after[:], before[:], bytes.Equal) {
				t.Fatal("a refused open changed the database or its log files")
			}
			if err := os.Truncate(imgWAL, 0); err != nil {
				t.Fatal(err)
			}
			checkHolds(t, openStore(t, map[string]any{"path": img}), model{}, "log cut to nothing")
		})
	}
}
