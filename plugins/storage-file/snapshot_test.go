package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/limitgraph/limit/internal/snapcheck"
	"github.com/limitgraph/limit/sdk/storage"
)

// snapshotData writes what the snapshot tests read and returns its model: keys whose
// paths list in another order than the keys' (a key of 100 bytes is "<200 hex>.v", the
// longer keys it starts "<200 hex>.d/...", which sorts first by name; keys of several
// directory levels; 0x00 and 0xff bytes), namespaces whose hashed directories list in
// another order than their names, empty values, overwrites and deletes, a namespace all
// of whose keys were deleted, and a few hundred keys more.
func snapshotData(t *testing.T, s storage.Storage) snapcheck.Model {
	t.Helper()
	ctx := t.Context()
	m := snapcheck.Model{}
	if err := snapcheck.Fill(ctx, s, m, []string{"snap/fill-1", "snap/fill-2"}, 300, 100, "first"); err != nil {
		t.Fatal(err)
	}
	if err := snapcheck.Fill(ctx, s, m, []string{"snap/fill-2"}, 100, 10, "second"); err != nil {
		t.Fatal(err)
	}
	p100 := bytes.Repeat([]byte{0xab}, 100)
	keys := [][]byte{
		p100,
		append(bytes.Clone(p100), 0x00),
		append(bytes.Clone(p100), 0xff, 0x01),
		bytes.Repeat([]byte{0xab}, 99),
		append(bytes.Repeat([]byte{0xab}, 99), 0xac),
		bytes.Repeat([]byte{0x01}, 250),
		append(bytes.Repeat([]byte{0x01}, 200), 0x00),
		{0x00}, {0x00, 0x00}, {0xff}, []byte("a"), []byte("Z"), []byte("ab"), []byte("ab\x00"),
	}
	for i := range 20 {
		ns := fmt.Sprintf("snap/ns-%02d", i)
		if i%2 == 1 {
			ns = strings.ToUpper(ns)
		}
		var ops []storage.Op
		for j, k := range keys {
			v := fmt.Appendf(nil, "%s/%d", ns, j)
			if j == 3 {
				v = []byte{}
			}
			ops = append(ops, storage.Op{Kind: storage.OpPut, Key: k, Value: v})
			m.Put(ns, k, v)
		}
		if err := s.Batch(ctx, ns, ops); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Delete(ctx, ns, keys[i%len(keys)]); err != nil {
			t.Fatal(err)
		}
		m.Delete(ns, keys[i%len(keys)])
	}
	if err := s.Put(ctx, "snap/emptied", []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Delete(ctx, "snap/emptied", []byte("k")); err != nil {
		t.Fatal(err)
	}
	return m
}

// plantStrays puts what the store never creates where a snapshot walks: a temporary file
// of a write in progress, a file a person left in a namespace directory and in a key
// directory, a directory under ns/ that is no namespace's. The snapshot skips them.
func plantStrays(t *testing.T, root string) {
	t.Helper()
	nsDir := filepath.Join(root, nsRel("snap/ns-00"))
	keyDir := filepath.Join(nsDir, strings.Repeat("ab", 100)+dirSuffix)
	for _, p := range []string{
		filepath.Join(root, tmpDirName, "v-123456"),
		filepath.Join(nsDir, "notes.txt"),
		filepath.Join(nsDir, "616263.v.tmp"),
		filepath.Join(keyDir, "README"),
		filepath.Join(root, nsDirName, "not-a-namespace", "6b.v"),
	} {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("stray"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSnapshotPlugin checks through the plugin binary that the plugin offers a snapshot
// (a plugin without one answers storage.ErrNoSnapshot, which the conformance case
// accepts) and that it yields exactly what was written, in bytewise order.
func TestSnapshotPlugin(t *testing.T) {
	root := t.TempDir()
	s, _ := launchPlugin(t, root)
	m := snapshotData(t, s)
	plantStrays(t, root)
	got, err := snapcheck.Collect(t.Context(), s, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := snapcheck.Diff(got, m.Items()); err != nil {
		t.Fatal(err)
	}
}

// TestSnapshotHoldsWritesOff starts writes of every kind while a snapshot runs, to keys
// and namespaces it has yet to reach: each waits (the store's hook sees it wait; none
// completes during the walk) while reads go on, completes once the snapshot has ended,
// and is not in it.
func TestSnapshotHoldsWritesOff(t *testing.T) {
	s := openStore(t, t.TempDir())
	ctx := t.Context()
	before := snapshotData(t, s)
	after := snapcheck.Model{}
	for ns, kv := range before {
		for k, v := range kv {
			after.Put(ns, []byte(k), v)
		}
	}
	waiting := make(chan struct{}, 10)
	s.faults = &faults{writeWaits: func() { waiting <- struct{}{} }}
	writes := []func() error{
		func() error { return s.Put(ctx, "snap/zz", []byte("late"), []byte("put")) },
		func() error {
			return s.Batch(ctx, "snap/zz", []storage.Op{
				{Kind: storage.OpPut, Key: []byte("b1"), Value: []byte("batch")},
				{Kind: storage.OpPut, Key: []byte("b2"), Value: []byte("batch")},
			})
		},
		func() error {
			_, err := s.Delete(ctx, "snap/ns-18", []byte("Z"))
			return err
		},
		func() error {
			_, err := s.CompareAndSwap(ctx, storage.CASRequest{Namespace: "snap/ns-18", Key: []byte("a"),
				ExpectPresent: true, Expected: []byte("snap/ns-18/10"), Value: []byte("swapped")})
			return err
		},
	}
	after.Put("snap/zz", []byte("late"), []byte("put"))
	after.Put("snap/zz", []byte("b1"), []byte("batch"))
	after.Put("snap/zz", []byte("b2"), []byte("batch"))
	after.Delete("snap/ns-18", []byte("Z"))
	after.Put("snap/ns-18", []byte("a"), []byte("swapped"))

	done := make(chan error, len(writes))
	got, err := snapcheck.Collect(ctx, s, func(i int, it snapcheck.Item) error {
		if i != 0 {
			return nil
		}
		for _, w := range writes {
			go func() { done <- w() }()
		}
		for range writes {
			select {
			case <-waiting:
			case err := <-done:
				return fmt.Errorf("a write completed while the snapshot ran (error %v)", err)
			}
		}
		if v, ok, err := s.Get(ctx, "snap/ns-18", []byte("a")); err != nil || !ok || string(v) != "snap/ns-18/10" {
			return fmt.Errorf("get during the snapshot: %q, found=%v, %v", v, ok, err)
		}
		if _, err := s.Scan(ctx, storage.ScanRequest{Namespace: "snap/fill-1", Limit: 10}); err != nil {
			return fmt.Errorf("scan during the snapshot: %w", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for range writes {
		if err := <-done; err != nil {
			t.Errorf("a write held off by the snapshot: %v", err)
		}
	}
	if err := snapcheck.Diff(got, before.Items()); err != nil {
		t.Fatalf("the snapshot is not of its start: %v", err)
	}
	s.faults = nil
	got, err = snapcheck.Collect(ctx, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := snapcheck.Diff(got, after.Items()); err != nil {
		t.Fatalf("second snapshot: %v", err)
	}
}

// TestSnapshotStopsAtError checks that the walk stops at fn's first error and returns it,
// and that writes go on after it.
func TestSnapshotStopsAtError(t *testing.T) {
	s := openStore(t, t.TempDir())
	snapshotData(t, s)
	stop := errors.New("stop here")
	calls := 0
	err := s.Snapshot(t.Context(), func(string, []byte, []byte) error {
		calls++
		if calls == 3 {
			return stop
		}
		return nil
	})
	if err != stop || calls != 3 {
		t.Fatalf("got %v after %d calls, want %v after 3", err, calls, stop)
	}
	if err := s.Put(t.Context(), "ns", []byte("k"), []byte("v")); err != nil {
		t.Fatalf("put after the snapshot: %v", err)
	}
}

// TestSnapshotNamespaceNameFile checks the namespace directories without their name file:
// an empty one (a crash between its creation and its name file's) is skipped, one that
// holds keys, or whose name file names another namespace, fails the snapshot.
func TestSnapshotNamespaceNameFile(t *testing.T) {
	root := t.TempDir()
	s := openStore(t, root)
	if err := s.Put(t.Context(), "ns", []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	snapshot := func() ([]snapcheck.Item, error) { return snapcheck.Collect(t.Context(), s, nil) }
	ghost := filepath.Join(root, nsRel("ghost"))
	if err := os.Mkdir(ghost, 0o700); err != nil {
		t.Fatal(err)
	}
	if got, err := snapshot(); err != nil || len(got) != 1 || got[0].NS != "ns" {
		t.Errorf("with an empty namespace directory without name: %v, %v; want ns/k only", got, err)
	}
	if err := os.WriteFile(filepath.Join(ghost, keyRel([]byte("k"))), []byte("v"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := snapshot(); err == nil || !strings.Contains(err.Error(), "holds keys but not the file") {
		t.Errorf("with keys in a namespace directory without name: got %v", err)
	}
	if err := os.WriteFile(filepath.Join(ghost, nsNameFile), []byte("other"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := snapshot(); err == nil || !strings.Contains(err.Error(), `names namespace "other"`) {
		t.Errorf("with a name file naming another namespace: got %v", err)
	}
	if err := os.WriteFile(filepath.Join(ghost, nsNameFile), []byte("ghost"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := snapshot()
	if err != nil || len(got) != 2 || got[0].NS != "ghost" || got[1].NS != "ns" {
		t.Errorf("with its name file back: %v, %v; want ghost/k then ns/k", got, err)
	}
}
