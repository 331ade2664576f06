package sdktest

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/storage"
	"github.com/limitgraph/limit/sdk/storage/memstore"
)

// serveEnv makes the test binary serve a storage plugin instead of running tests, so
// tests can launch a real plugin process without building one: "1" serves memstore,
// "wrong-kind" serves a storage plugin that claims to be a runner.
const serveEnv = "LIMIT_SDKTEST_SERVE_MEMSTORE"

func TestMain(m *testing.M) {
	switch os.Getenv(serveEnv) {
	case "1":
		storage.Serve(memstore.New())
		return
	case "wrong-kind":
		storage.Serve(wrongKind{memstore.New()})
		return
	}
	os.Exit(m.Run())
}

// wrongKind is a storage plugin whose Info claims another kind.
type wrongKind struct{ *memstore.Store }

func (w wrongKind) PluginInfo() base.Info {
	i := w.Store.PluginInfo()
	i.Kind = base.KindRunner
	return i
}

// testBinary returns the path of the running test binary, to launch it as a plugin.
func testBinary(t testing.TB) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("find test binary: %v", err)
	}
	return exe
}

// launchMemstore starts the test binary as a memstore plugin and stops it when t ends.
func launchMemstore(t testing.TB) storage.Storage {
	t.Helper()
	s, stop, err := LaunchStorage(context.Background(), testBinary(t), []string{serveEnv + "=1"}, []byte("{}"), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return s
}

func TestRunStorageMemstore(t *testing.T) {
	start := time.Now()
	RunStorage(t, memstore.New())
	t.Logf("storage suite against memstore in-process: %v", time.Since(start))
}

func TestRunStorageMemstoreShared(t *testing.T) {
	// Cases use namespaces of their own, so two runs may share one store at the same time.
	s := memstore.New()
	for range 2 {
		t.Run("run", func(t *testing.T) {
			t.Parallel()
			RunStorage(t, s)
		})
	}
}

func TestCheckStorageMemstore(t *testing.T) {
	seen := map[string]int{}
	passed, failed := CheckStorage(t.Context(), memstore.New(), func(name string, err error, elapsed time.Duration) {
		seen[name]++
		if err != nil {
			t.Errorf("case %s failed after %v: %v", name, elapsed, err)
		}
	})
	if want := len(StorageCases()); passed != want || failed != 0 {
		t.Fatalf("CheckStorage: %d passed, %d failed; want %d passed, 0 failed", passed, failed, want)
	}
	for _, c := range StorageCases() {
		if seen[c.Name] != 1 {
			t.Errorf("case %s reported %d times, want once", c.Name, seen[c.Name])
		}
	}
}

func TestCaseNamesUnique(t *testing.T) {
	names := map[string]bool{}
	for _, c := range StorageCases() {
		if names[c.Name] {
			t.Errorf("case name %q is used twice", c.Name)
		}
		names[c.Name] = true
	}
}

func TestCheckStorageNil(t *testing.T) {
	passed, failed := CheckStorage(t.Context(), nil, nil)
	if passed != 0 || failed != len(StorageCases()) {
		t.Fatalf("CheckStorage(nil): %d passed, %d failed; want every case failed", passed, failed)
	}
}

// Deliberately broken stores: each must fail at least the cases named beside it, and
// still pass "put-get", so the failure is the bug's and not a broken wrapper's.

// scanIgnoresStartAfter always scans from the start of the prefix.
type scanIgnoresStartAfter struct{ *memstore.Store }

func (s scanIgnoresStartAfter) Scan(ctx context.Context, req storage.ScanRequest) (storage.ScanResult, error) {
	req.StartAfter = nil
	return s.Store.Scan(ctx, req)
}

// scanNeverMore never reports that more keys follow.
type scanNeverMore struct{ *memstore.Store }

func (s scanNeverMore) Scan(ctx context.Context, req storage.ScanRequest) (storage.ScanResult, error) {
	res, err := s.Store.Scan(ctx, req)
	res.More = false
	return res, err
}

// partialBatch applies a batch one operation at a time and stops at the first bad one.
type partialBatch struct{ *memstore.Store }

func (s partialBatch) Batch(ctx context.Context, ns string, ops []storage.Op) error {
	for _, op := range ops {
		var err error
		switch op.Kind {
		case storage.OpPut:
			err = s.Put(ctx, ns, op.Key, op.Value)
		case storage.OpDelete:
			_, err = s.Delete(ctx, ns, op.Key)
		default:
			err = storage.ErrInvalid
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// racyCAS reads and then writes without holding anything in between.
type racyCAS struct{ *memstore.Store }

func (s racyCAS) CompareAndSwap(ctx context.Context, req storage.CASRequest) (storage.CASResult, error) {
	cur, present, err := s.Get(ctx, req.Namespace, req.Key)
	if err != nil {
		return storage.CASResult{}, err
	}
	if present != req.ExpectPresent || (present && string(cur) != string(req.Expected)) {
		return storage.CASResult{Present: present, Current: cur}, nil
	}
	time.Sleep(200 * time.Microsecond) // widen the window a real race would leave open
	if req.Delete {
		_, err := s.Delete(ctx, req.Namespace, req.Key)
		return storage.CASResult{Swapped: true}, err
	}
	return storage.CASResult{Swapped: true, Present: true, Current: req.Value}, s.Put(ctx, req.Namespace, req.Key, req.Value)
}

// casIgnoresExpected swaps whenever the key's presence is as expected, whatever it holds.
type casIgnoresExpected struct{ *memstore.Store }

func (s casIgnoresExpected) CompareAndSwap(ctx context.Context, req storage.CASRequest) (storage.CASResult, error) {
	if cur, present, err := s.Get(ctx, req.Namespace, req.Key); err == nil && present {
		req.Expected = cur
	}
	return s.Store.CompareAndSwap(ctx, req)
}

// emptyIsMissing reports keys holding an empty value as missing.
type emptyIsMissing struct{ *memstore.Store }

func (s emptyIsMissing) Get(ctx context.Context, ns string, key []byte) ([]byte, bool, error) {
	v, ok, err := s.Store.Get(ctx, ns, key)
	return v, ok && len(v) > 0, err
}

// truncatesKeys cuts long keys to MaxKeySize instead of rejecting them.
type truncatesKeys struct{ *memstore.Store }

func (s truncatesKeys) Put(ctx context.Context, ns string, key, value []byte) error {
	return s.Store.Put(ctx, ns, key[:min(len(key), storage.MaxKeySize)], value)
}

func TestSuiteCatchesBrokenStores(t *testing.T) {
	for _, tc := range []struct {
		name     string
		store    storage.Storage
		mustFail []string
		// says maps a case to what its failure must say, when that matters.
		says map[string]string
	}{
		{"scan ignores start_after", scanIgnoresStartAfter{memstore.New()}, []string{"scan-pagination", "scan-start-after", "scan-prefix"}, nil},
		{"scan never reports more", scanNeverMore{memstore.New()}, []string{"scan-pagination", "scan-prefix"}, nil},
		{"batch applied in part", partialBatch{memstore.New()}, []string{"batch-invalid-rejected-whole", "batch-readers-see-all-or-nothing"}, nil},
		{"compare-and-swap not atomic", racyCAS{memstore.New()}, []string{"cas-race"}, map[string]string{"cas-race": "compare-and-swap is not atomic"}},
		{"compare-and-swap ignores Expected", casIgnoresExpected{memstore.New()}, []string{"cas-swap", "cas-race"},
			map[string]string{"cas-race": "compare-and-swap ignores Expected: it swapped although the current value differs"}},
		{"empty value reported missing", emptyIsMissing{memstore.New()}, []string{"empty-value"}, nil},
		{"long keys cut short", truncatesKeys{memstore.New()}, []string{"key-size-limit"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errs := map[string]error{}
			CheckStorage(t.Context(), tc.store, func(name string, err error, _ time.Duration) { errs[name] = err })
			for _, name := range tc.mustFail {
				if errs[name] == nil {
					t.Errorf("case %s passed against a store whose %s; want it to fail", name, tc.name)
				} else if want := tc.says[name]; !strings.Contains(errs[name].Error(), want) {
					t.Errorf("case %s: %v; want it to say %q", name, errs[name], want)
				} else {
					t.Logf("case %s failed as it should: %v", name, errs[name])
				}
			}
			if err := errs["put-get"]; err != nil {
				t.Errorf("case put-get failed: %v; the wrapper should break only one thing", err)
			}
		})
	}
}

func TestLaunchStorage(t *testing.T) {
	for _, tc := range []struct {
		transport string
		launch    func(ctx context.Context, path string, env []string, configJSON []byte, dataDir string, opts ...LaunchOption) (storage.Storage, func(), error)
	}{
		{"unix", LaunchStorage},
		{"grpc", LaunchStorageGRPC},
	} {
		t.Run(tc.transport, func(t *testing.T) {
			s, stop, err := tc.launch(t.Context(), testBinary(t), []string{serveEnv + "=1"}, []byte("{}"), t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(stop)
			if got := Transport(s); got != tc.transport {
				t.Fatalf("transport of the storage calls: %q, want %q", got, tc.transport)
			}
			if info := s.PluginInfo(); info.Name != "memory" || info.Kind != base.KindStorage {
				t.Fatalf("plugin info: got name %q kind %q, want %q %q", info.Name, info.Kind, "memory", base.KindStorage)
			}
			start := time.Now()
			RunStorage(t, s)
			t.Logf("storage suite through the plugin boundary (%s): %v", tc.transport, time.Since(start))
		})
	}
}

func TestLaunchStorageErrors(t *testing.T) {
	exe := testBinary(t)
	for _, tc := range []struct {
		name    string
		path    string
		env     []string
		config  string
		wantErr string
	}{
		{"unknown config attribute", exe, []string{serveEnv + "=1"}, `{"path": "x"}`, `unsupported attribute "path"`},
		{"config not JSON", exe, []string{serveEnv + "=1"}, `{`, "not valid JSON"},
		{"plugin of another kind", exe, []string{serveEnv + "=wrong-kind"}, `{}`, `kind "runner"`},
		{"no such binary", "/nonexistent/storage-plugin", nil, `{}`, "/nonexistent/storage-plugin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, stop, err := LaunchStorage(t.Context(), tc.path, tc.env, []byte(tc.config), t.TempDir())
			if err == nil {
				stop()
				t.Fatalf("LaunchStorage: got %T and no error, want an error containing %q", s, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("LaunchStorage: got error %q, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestLaunchStorageStop(t *testing.T) {
	s, stop, err := LaunchStorage(t.Context(), testBinary(t), []string{serveEnv + "=1"}, nil, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(t.Context(), "ns", []byte("k"), []byte("v")); err != nil {
		t.Fatalf("put before stop: %v", err)
	}
	stop()
	_, _, err = s.Get(t.Context(), "ns", []byte("k"))
	// What the host's handle treats as a lost plugin: unreachable, or cancelled by the
	// connection closing under the call.
	if !storage.IsUnavailable(err) && !errors.Is(err, context.Canceled) {
		t.Fatalf("get after stop: %v, want storage.ErrUnavailable or context.Canceled", err)
	}
}

// slowDisk serializes writes and sleeps in each, like a backend with one writer that syncs
// every write to disk; it counts the writes.
type slowDisk struct {
	*memstore.Store
	mu     sync.Mutex
	delay  time.Duration
	writes atomic.Int64
}

func (s *slowDisk) sync() func() {
	s.mu.Lock()
	s.writes.Add(1)
	time.Sleep(s.delay)
	return s.mu.Unlock
}

func (s *slowDisk) Put(ctx context.Context, ns string, k, v []byte) error {
	defer s.sync()()
	return s.Store.Put(ctx, ns, k, v)
}

func (s *slowDisk) Delete(ctx context.Context, ns string, k []byte) (bool, error) {
	defer s.sync()()
	return s.Store.Delete(ctx, ns, k)
}

func (s *slowDisk) Batch(ctx context.Context, ns string, ops []storage.Op) error {
	defer s.sync()()
	return s.Store.Batch(ctx, ns, ops)
}

func (s *slowDisk) CompareAndSwap(ctx context.Context, r storage.CASRequest) (storage.CASResult, error) {
	defer s.sync()()
	return s.Store.CompareAndSwap(ctx, r)
}

// TestSuiteWriteBudget keeps the suite affordable for durable backends: at 5 ms a synced
// write, 2,500 writes are 12.5 s.
func TestSuiteWriteBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("simulates a slow disk")
	}
	const budget = 2500
	s := &slowDisk{Store: memstore.New(), delay: time.Millisecond}
	start := time.Now()
	passed, failed := CheckStorage(t.Context(), s, func(name string, err error, _ time.Duration) {
		if err != nil {
			t.Errorf("case %s: %v", name, err)
		}
	})
	t.Logf("%d passed, %d failed, %d writes at %v each, %v in all", passed, failed, s.writes.Load(), s.delay, time.Since(start))
	if n := s.writes.Load(); n > budget {
		t.Errorf("the suite made %d writes; keep it under %d so it stays quick against a disk that syncs every write", n, budget)
	}
}
