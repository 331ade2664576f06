package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/limitgraph/limit/internal/snapcheck"
	"github.com/limitgraph/limit/sdk/storage"
)

// snapshotData writes, in batches, what the snapshot tests read: values of 4 KiB in three
// namespaces (6 MB, past the write-ahead log's automatic checkpoint at 1000 pages of
// 4 KiB), then overwrites and deletes some, and keys and namespaces whose order is
// bytewise ("B" before "a", 0x00 and 0xff bytes) with empty values. It returns the model.
func snapshotData(t *testing.T, s storage.Storage, perNS int) snapcheck.Model {
	t.Helper()
	ctx := t.Context()
	m := snapcheck.Model{}
	nss := []string{"snap/a", "snap/b", "snap/B"}
	if err := snapcheck.Fill(ctx, s, m, nss, perNS, 4096, "first"); err != nil {
		t.Fatal(err)
	}
	if err := snapcheck.Fill(ctx, s, m, nss[1:2], perNS/2, 100, "second"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < perNS; i += 3 {
		k := fmt.Appendf(nil, "key-%06d", i)
		if _, err := s.Delete(ctx, "snap/a", k); err != nil {
			t.Fatal(err)
		}
		m.Delete("snap/a", k)
	}
	odd := []storage.Op{
		{Kind: storage.OpPut, Key: []byte{0xff}, Value: []byte{}},
		{Kind: storage.OpPut, Key: []byte{0x00}, Value: []byte{0x00}},
		{Kind: storage.OpPut, Key: []byte{0x00, 0x00}, Value: []byte("v")},
		{Kind: storage.OpPut, Key: []byte("Z"), Value: []byte("upper")},
		{Kind: storage.OpPut, Key: []byte("a"), Value: []byte("lower")},
	}
	if err := s.Batch(ctx, "snap/\x7f", odd); err != nil {
		t.Fatal(err)
	}
	for _, op := range odd {
		m.Put("snap/\x7f", op.Key, op.Value)
	}
	return m
}

// TestSnapshotPlugin checks through the plugin binary that the plugin offers a snapshot
// (a plugin without one answers storage.ErrNoSnapshot, which the conformance case
// accepts) and that it yields exactly what was written, across many pages, checkpoints
// and chunks of the stream.
func TestSnapshotPlugin(t *testing.T) {
	s := launchPlugin(t, filepath.Join(t.TempDir(), "x.sqlite"))
	m := snapshotData(t, s, 500)
	got, err := snapcheck.Collect(t.Context(), s, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := snapcheck.Diff(got, m.Items()); err != nil {
		t.Fatal(err)
	}
}

// TestSnapshotIsOnePointInTime writes, while a snapshot runs (after its first item),
// over every key it has yet to yield, deletes some and adds a namespace after the last:
// the writes complete during the walk (the snapshot holds neither the writer nor the one
// reader Get needs), more than the automatic checkpoint's worth of them, and the snapshot
// still yields the state as of its start. A second snapshot yields the new state.
func TestSnapshotIsOnePointInTime(t *testing.T) {
	s := openStore(t, map[string]any{"readers": 1})
	ctx := t.Context()
	before := snapshotData(t, s, 300)
	after := snapcheck.Model{}
	for ns, kv := range before {
		for k, v := range kv {
			after.Put(ns, []byte(k), v)
		}
	}
	got, err := snapcheck.Collect(ctx, s, func(i int, it snapcheck.Item) error {
		if i != 0 {
			return nil
		}
		if _, ok, err := s.Get(ctx, "snap/b", []byte("key-000001")); err != nil || !ok {
			return fmt.Errorf("get during the snapshot: found=%v, %v", ok, err)
		}
		if err := snapcheck.Fill(ctx, s, after, []string{"snap/B", "snap/a", "snap/b"}, 300, 4096, "during"); err != nil {
			return fmt.Errorf("writes during the snapshot: %w", err)
		}
		for _, k := range [][]byte{{0xff}, []byte("a")} {
			if _, err := s.Delete(ctx, "snap/\x7f", k); err != nil {
				return fmt.Errorf("delete during the snapshot: %w", err)
			}
			after.Delete("snap/\x7f", k)
		}
		if err := s.Put(ctx, "snap/\x7f\x7f", []byte("late"), []byte("v")); err != nil {
			return fmt.Errorf("put during the snapshot: %w", err)
		}
		after.Put("snap/\x7f\x7f", []byte("late"), []byte("v"))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := snapcheck.Diff(got, before.Items()); err != nil {
		t.Fatalf("the snapshot is not of its start: %v", err)
	}
	got, err = snapcheck.Collect(ctx, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := snapcheck.Diff(got, after.Items()); err != nil {
		t.Fatalf("second snapshot: %v", err)
	}
}

// TestSnapshotStopsAtError checks that the walk stops at fn's first error and returns it.
func TestSnapshotStopsAtError(t *testing.T) {
	s := openStore(t, nil)
	snapshotData(t, s, 10)
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
}

// TestSnapshotEndsAtClose checks that Close cancels a snapshot under way, which fails as
// unavailable, rather than wait for the host to finish copying it or leave it reading the
// file after the lock is dropped.
func TestSnapshotEndsAtClose(t *testing.T) {
	s := openStore(t, nil)
	snapshotData(t, s, 10)
	e, err := s.engine()
	if err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	calls := 0
	err = s.Snapshot(t.Context(), func(string, []byte, []byte) error {
		calls++
		if calls == 1 {
			go func() { closed <- s.Close() }()
			<-e.db.snapStopped.Done() // Close has begun and cancelled the snapshot
		}
		return nil
	})
	if !errors.Is(err, storage.ErrUnavailable) || calls != 1 {
		t.Errorf("snapshot cut by Close: got %v after %d items, want ErrUnavailable after 1", err, calls)
	}
	if err := <-closed; err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := s.Snapshot(t.Context(), func(string, []byte, []byte) error { return nil }); !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("snapshot after Close: got %v, want ErrUnavailable", err)
	}
}
