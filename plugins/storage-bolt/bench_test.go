package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/limitgraph/limit/sdk/sdktest"
	"github.com/limitgraph/limit/sdk/storage"
)

// BenchmarkBoltPlugin compares the bolt backend in-process with the same backend behind
// the plugin boundary, its calls over gRPC and over the fast path, the latter with
// concurrent writes merged (unix, the default) and not (unmerged), each on its own durable
// file (fsync at every commit):
//
//	go test -run x -bench . ./plugins/storage-bolt/
func BenchmarkBoltPlugin(b *testing.B) {
	inProc := openStore(b, map[string]any{"path": filepath.Join(b.TempDir(), "inproc.db"), "no_sync": false})
	viaGRPC := launchPluginGRPC(b, filepath.Join(b.TempDir(), "grpc.db"))
	viaFast := launchPlugin(b, filepath.Join(b.TempDir(), "plugin.db"))
	oneByOne := launchPlugin(b, filepath.Join(b.TempDir(), "unmerged.db"))
	oneByOne.(interface{ MergeWrites(bool) }).MergeWrites(false)
	sdktest.CompareStorageSides(b, sdktest.Side{Name: "inproc", S: inProc},
		sdktest.Side{Name: "grpc", S: viaGRPC}, sdktest.Side{Name: "unmerged", S: oneByOne}, sdktest.Side{Name: "unix", S: viaFast})
	// Only concurrent writes are merged (PutParallel16 here): how many went together.
	if calls, batches := viaFast.(interface{ MergeStats() (int64, int64) }).MergeStats(); batches > 0 {
		fmt.Printf("unix merged %d writes into %d batches, %.1f a batch\n", calls, batches, float64(calls)/float64(batches))
	}
}

// launchPluginGRPC is launchPlugin with a client that ignores the fast path.
func launchPluginGRPC(t testing.TB, path string) storage.Storage {
	t.Helper()
	cfg := fmt.Appendf(nil, `{"path": %q}`, path)
	s, stop, err := sdktest.LaunchStorageGRPC(context.Background(), testBinary(t), pluginEnv, cfg, filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return s
}

// BenchmarkSyncCost measures, on the disk of the test's temporary directory, why the
// bolt backend writes ahead: a bbolt transaction of a trace-like write (five keys, ~2 KiB,
// in two buckets) committed with its syncs, against the same keys appended as one
// write-ahead log record and synced; and the raw patterns behind them: 14 scattered 4 KiB
// pages overwritten and synced, 2 KiB appended into zero-filled space and synced, 2 KiB
// appended to a growing file and synced. b.N rounds of each, interleaved:
//
//	go test -run '^$' -bench SyncCost -benchtime 500x ./plugins/storage-bolt
func BenchmarkSyncCost(b *testing.B) {
	dir := b.TempDir()
	db, err := bolt.Open(filepath.Join(dir, "bbolt.db"), 0o600, &bolt.Options{NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	wal, err := openWAL(filepath.Join(dir, "x.db-wal"), true)
	if err != nil {
		b.Fatal(err)
	}
	defer wal.close()
	if err := wal.reset(1); err != nil {
		b.Fatal(err)
	}
	pre, err := os.OpenFile(filepath.Join(dir, "prezeroed"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	defer pre.Close()
	const preSize = 64 << 20
	if _, err := pre.WriteAt(make([]byte, preSize), 0); err != nil {
		b.Fatal(err)
	}
	grow, err := os.OpenFile(filepath.Join(dir, "growing"), os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	defer grow.Close()
	if err := errors.Join(pre.Sync(), grow.Sync()); err != nil {
		b.Fatal(err)
	}

	val := bytes.Repeat([]byte{'v'}, 400)
	ops := func(i int) []walOp {
		ops := make([]walOp, 5)
		for j := range ops {
			ns := "traces"
			if j == 4 {
				ns = "index"
			}
			ops[j] = walOp{ns: ns, key: fmt.Appendf(nil, "t%08d/%d", i, j), val: val}
		}
		return ops
	}
	rec2k := make([]byte, 2048)
	page := make([]byte, 4096)
	preOff := int64(0)
	cases := []struct {
		name string
		run  func(i int) error
	}{
		{"bbolt commit, 5 keys in 2 buckets", func(i int) error {
			return db.Update(func(tx *bolt.Tx) error {
				for _, op := range ops(i) {
					bk, err := tx.CreateBucketIfNotExists([]byte(op.ns))
					if err != nil {
						return err
					}
					if err := bk.Put(op.key, op.val); err != nil {
						return err
					}
				}
				return nil
			})
		}},
		{"log record, same 5 keys", func(i int) error { return wal.append(encodeRecord(wal.salt, ops(i))) }},
		{"14 scattered pages + fdatasync", func(i int) error {
			for j := range 14 {
				if _, err := pre.WriteAt(page, int64((i*37+j*997)%(preSize/4096))*4096); err != nil {
					return err
				}
			}
			return unix.Fdatasync(int(pre.Fd()))
		}},
		{"2 KiB into zero-filled space + fdatasync", func(int) error {
			if _, err := pre.WriteAt(rec2k, preOff%preSize); err != nil {
				return err
			}
			preOff += int64(len(rec2k))
			return unix.Fdatasync(int(pre.Fd()))
		}},
		{"2 KiB appended, file grows + fdatasync", func(int) error {
			if _, err := grow.Write(rec2k); err != nil {
				return err
			}
			return unix.Fdatasync(int(grow.Fd()))
		}},
	}
	took := make([][]time.Duration, len(cases))
	for i := 0; b.Loop(); i++ {
		for c, tc := range cases {
			start := time.Now()
			if err := tc.run(i); err != nil {
				b.Fatalf("%s: %v", tc.name, err)
			}
			took[c] = append(took[c], time.Since(start))
		}
	}
	b.StopTimer()
	p50 := func(d []time.Duration) time.Duration {
		d = slices.Clone(d)
		slices.Sort(d)
		return d[len(d)/2]
	}
	base := p50(took[0])
	for c, tc := range cases {
		m := p50(took[c])
		b.Logf("%-42s p50 %8.3f ms  (%.2f× the bbolt commit)", tc.name, float64(m.Microseconds())/1000, float64(m)/float64(base))
	}
	b.ReportMetric(float64(base.Microseconds())/1000, "bbolt-commit-p50-ms")
	b.ReportMetric(float64(p50(took[1]).Microseconds())/1000, "log-record-p50-ms")
}

// BenchmarkPutAfterBurst measures the first durable Put after a burst of 16 concurrent
// ones and an idle pause: the group commit (in-process) and the host's merging (through
// the plugin) expect 16 writers once a round had 16, and would linger for them; a write
// that comes after they left should go alone, as quick as one after a lone write (the
// reference, measured the same way in the same run). b.N rounds of each side:
//
//	go test -run '^$' -bench PutAfterBurst -benchtime 300x ./plugins/storage-bolt
func BenchmarkPutAfterBurst(b *testing.B) {
	const idle = 5 * time.Millisecond
	sides := []struct {
		name string
		s    storage.Storage
	}{
		{"inproc", openStore(b, map[string]any{"path": filepath.Join(b.TempDir(), "inproc.db"), "no_sync": false})},
		{"plugin", launchPlugin(b, filepath.Join(b.TempDir(), "plugin.db"))},
	}
	ctx := context.Background()
	value := bytes.Repeat([]byte("v"), 100)
	type times struct{ afterBurst, afterLone []time.Duration }
	got := make([]times, len(sides))
	timed := func(s storage.Storage, key string) time.Duration {
		t0 := time.Now()
		if err := s.Put(ctx, "bench", []byte(key), value); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0)
	}
	b.ResetTimer()
	for i := range b.N {
		for j, sd := range sides {
			errs := make(chan error, 16)
			for w := range 16 {
				go func() { errs <- sd.s.Put(ctx, "bench", fmt.Appendf(nil, "burst-%d-%d", i, w), value) }()
			}
			for range 16 {
				if err := <-errs; err != nil {
					b.Fatal(err)
				}
			}
			time.Sleep(idle)
			got[j].afterBurst = append(got[j].afterBurst, timed(sd.s, fmt.Sprint("after-burst-", i)))
			time.Sleep(idle)
			got[j].afterLone = append(got[j].afterLone, timed(sd.s, fmt.Sprint("after-lone-", i)))
		}
	}
	b.StopTimer()
	p50 := func(d []time.Duration) time.Duration {
		s := slices.Clone(d)
		slices.Sort(s)
		return s[len(s)/2]
	}
	fmt.Printf("\nA durable Put after %s idle, p50 of %d:\n", idle, b.N)
	for j, sd := range sides {
		burst, lone := p50(got[j].afterBurst), p50(got[j].afterLone)
		fmt.Printf("  %-7s after a burst of 16 %8.1f µs   after a lone Put %8.1f µs   %.2fx\n", sd.name,
			float64(burst.Nanoseconds())/1e3, float64(lone.Nanoseconds())/1e3, float64(burst)/float64(lone))
		b.ReportMetric(float64(burst)/float64(lone), sd.name+"-burst/lone")
	}
}
