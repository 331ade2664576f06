package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/limitgraph/limit/internal/snapcheck"
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/sdktest"
	"github.com/limitgraph/limit/sdk/storage"
)

// snapshotData writes what the snapshot tests read and returns its model: perNS values
// of size bytes in three namespaces, some overwritten and some deleted, and namespaces
// and keys whose bytewise order is not a collation's ("B" before "a", "é" after "z",
// 0x00 and 0xff bytes) with empty values.
func snapshotData(t *testing.T, s storage.Storage, perNS, size int) snapcheck.Model {
	t.Helper()
	ctx := t.Context()
	m := snapcheck.Model{}
	nss := []string{"snap/a", "snap/b", "snap/B"}
	if err := snapcheck.Fill(ctx, s, m, nss, perNS, size, "first"); err != nil {
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
	for _, ns := range []string{"snap/é", "snap/z", "snap/Z", "snap/_"} {
		odd := []storage.Op{
			{Kind: storage.OpPut, Key: []byte{0xff}, Value: []byte{}},
			{Kind: storage.OpPut, Key: []byte{0x00}, Value: []byte{0x00}},
			{Kind: storage.OpPut, Key: []byte("é"), Value: []byte("v")},
			{Kind: storage.OpPut, Key: []byte("Z"), Value: []byte("upper")},
			{Kind: storage.OpPut, Key: []byte("a"), Value: []byte("lower")},
		}
		if err := s.Batch(ctx, ns, odd); err != nil {
			t.Fatal(err)
		}
		for _, op := range odd {
			m.Put(ns, op.Key, op.Value)
		}
	}
	return m
}

// TestSnapshotPlugin checks through the plugin binary that the plugin offers a snapshot
// (a plugin without one answers storage.ErrNoSnapshot, which the conformance case
// accepts) and that it yields exactly what was written, in bytewise order, across
// several chunks of the stream.
func TestSnapshotPlugin(t *testing.T) {
	u, _, _ := freshSchema(t)
	s, stop, err := sdktest.LaunchStorage(t.Context(), testBinary(t),
		[]string{serveEnv + "=1", "DATABASE_URL=" + u}, []byte(`{}`), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	m := snapshotData(t, s, 500, 2048)
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
// the writes complete during the walk, and the snapshot still yields the state as of its
// start. A second snapshot yields the new state.
func TestSnapshotIsOnePointInTime(t *testing.T) {
	u, _, _ := freshSchema(t)
	s := openStore(t, u)
	ctx := t.Context()
	before := snapshotData(t, s, 300, 1024)
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
		if it.NS != "snap/B" {
			return fmt.Errorf("the snapshot begins with namespace %q, want snap/B", it.NS)
		}
		if err := snapcheck.Fill(ctx, s, after, []string{"snap/B", "snap/a", "snap/b"}, 300, 1024, "during"); err != nil {
			return fmt.Errorf("writes during the snapshot: %w", err)
		}
		for _, k := range [][]byte{{0xff}, []byte("a")} {
			if _, err := s.Delete(ctx, "snap/é", k); err != nil {
				return fmt.Errorf("delete during the snapshot: %w", err)
			}
			after.Delete("snap/é", k)
		}
		if err := s.Put(ctx, "snap/\u00ff", []byte("late"), []byte("v")); err != nil {
			return fmt.Errorf("put during the snapshot: %w", err)
		}
		after.Put("snap/\u00ff", []byte("late"), []byte("v"))
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

// TestSnapshotOutlastsStatementTimeout checks that a snapshot taken slowly, as a host
// copying it to a slow disk would, is not cut by statement_timeout: it stops at fn's
// pace, for longer than the timeout, with more data than the connection buffers (so the
// server's statement is still running). The pause cannot fail the test when the
// snapshot is right; it only gives a wrong one time to fail.
func TestSnapshotOutlastsStatementTimeout(t *testing.T) {
	u, _, _ := freshSchema(t)
	s := newStore()
	s.getenv = envOf(nil)
	t.Cleanup(func() { _ = s.Close() })
	const timeout = 100 * time.Millisecond
	cfg, _ := json.Marshal(map[string]any{"url": u, "statement_timeout": timeout.String()})
	if ds := s.Configure(t.Context(), base.ConfigureRequest{Config: cfg}); ds.HasErrors() {
		t.Fatal(ds.Err())
	}
	m := snapcheck.Model{}
	if err := snapcheck.Fill(t.Context(), s, m, []string{"a", "b", "c", "d"}, 1000, 4096, "big"); err != nil {
		t.Fatal(err)
	}
	got, err := snapcheck.Collect(t.Context(), s, func(i int, _ snapcheck.Item) error {
		if i == 0 {
			time.Sleep(5 * timeout)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("a snapshot slower than statement_timeout: %v", err)
	}
	if err := snapcheck.Diff(got, m.Items()); err != nil {
		t.Fatal(err)
	}
}

// TestSnapshotStopsAtError checks that the walk stops at fn's first error and returns it,
// and that the store goes on serving after it.
func TestSnapshotStopsAtError(t *testing.T) {
	u, _, _ := freshSchema(t)
	s := openStore(t, u)
	snapshotData(t, s, 10, 10)
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
