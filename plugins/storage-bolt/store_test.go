package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	bolt "go.etcd.io/bbolt"

	"github.com/limitgraph/limit/internal/syncbuf"
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/storage"
)

// openStore returns a configured in-process store on a fresh file, closed at cleanup.
func openStore(t testing.TB, cfg map[string]any) *store {
	t.Helper()
	if cfg == nil {
		cfg = map[string]any{}
	}
	if _, ok := cfg["path"]; !ok {
		cfg["path"] = filepath.Join(t.TempDir(), "x.db")
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := newStore()
	if ds := s.Configure(context.Background(), base.ConfigureRequest{Config: raw}); ds.HasErrors() {
		t.Fatalf("configure: %v", ds.Err())
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestCallsBeforeConfigure(t *testing.T) {
	s := newStore()
	ctx := context.Background()
	calls := map[string]func() error{
		"get":    func() error { _, _, err := s.Get(ctx, "ns", []byte("k")); return err },
		"put":    func() error { return s.Put(ctx, "ns", []byte("k"), []byte("v")) },
		"delete": func() error { _, err := s.Delete(ctx, "ns", []byte("k")); return err },
		"scan":   func() error { _, err := s.Scan(ctx, storage.ScanRequest{Namespace: "ns"}); return err },
		"batch": func() error {
			return s.Batch(ctx, "ns", []storage.Op{{Kind: storage.OpPut, Key: []byte("k")}})
		},
		"cas": func() error {
			_, err := s.CompareAndSwap(ctx, storage.CASRequest{Namespace: "ns", Key: []byte("k")})
			return err
		},
	}
	for name, call := range calls {
		err := call()
		if !errors.Is(err, storage.ErrUnavailable) || !bytes.Contains([]byte(err.Error()), []byte("storage not configured")) {
			t.Errorf("%s before Configure: got %v, want ErrUnavailable saying \"storage not configured\"", name, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close of an unconfigured store: %v", err)
	}
}

func TestConfigureDiagnostics(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name     string
		config   string
		wantPath []string
		wantSev  base.Severity
	}{
		{"unparseable timeout", `{"timeout": "soon"}`, []string{"timeout"}, base.SeverityError},
		{"negative timeout", `{"timeout": "-1s"}`, []string{"timeout"}, base.SeverityError},
		{"timeout of wrong type", `{"timeout": 5}`, []string{"timeout"}, base.SeverityError},
		{"unknown attribute", `{"path": "a.db", "bogus": 1}`, []string{"bogus"}, base.SeverityError},
		{"empty path", `{"path": ""}`, []string{"path"}, base.SeverityError},
		{"path is a directory", fmt.Sprintf(`{"path": %q}`, dir), []string{"path"}, base.SeverityError},
		{"zero max_batch", `{"max_batch": 0}`, []string{"max_batch"}, base.SeverityError},
		{"fractional max_batch", `{"max_batch": 1.5}`, []string{"max_batch"}, base.SeverityError},
		{"no_sync warns", `{"no_sync": true}`, []string{"no_sync"}, base.SeverityWarning},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore()
			defer s.Close()
			ds := s.Configure(context.Background(), base.ConfigureRequest{
				Config: json.RawMessage(tt.config), ValidateOnly: true, DataDir: dir,
			})
			if len(ds) != 1 {
				t.Fatalf("got %d diagnostics (%v), want 1", len(ds), ds)
			}
			if !slices.Equal(ds[0].Path, tt.wantPath) || ds[0].Severity != tt.wantSev {
				t.Errorf("got %+v, want severity %d at %v", ds[0], tt.wantSev, tt.wantPath)
			}
		})
	}
}

func TestConfigureCollectsEveryProblem(t *testing.T) {
	ds := newStore().Configure(context.Background(), base.ConfigureRequest{
		Config: json.RawMessage(`{"path": "", "timeout": "x", "max_batch": -3}`), ValidateOnly: true,
	})
	var paths []string
	for _, d := range ds {
		paths = append(paths, d.Path...)
	}
	slices.Sort(paths)
	if want := []string{"max_batch", "path", "timeout"}; !slices.Equal(paths, want) {
		t.Errorf("diagnostics at %v, want one each at %v: %v", paths, want, ds)
	}
}

func TestConfigureValidateOnlyTouchesNothing(t *testing.T) {
	dir := t.TempDir()
	s := newStore()
	ds := s.Configure(context.Background(), base.ConfigureRequest{
		Config: json.RawMessage(`{"path": "sub/x.db"}`), ValidateOnly: true, DataDir: dir,
	})
	if ds.HasErrors() {
		t.Fatal(ds.Err())
	}
	if _, err := os.Stat(filepath.Join(dir, "sub")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ValidateOnly created the directory (stat: %v)", err)
	}
	if err := s.Put(context.Background(), "ns", []byte("k"), nil); !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("Put after ValidateOnly: got %v, want ErrUnavailable", err)
	}
}

func TestConfigureResolvesPathInDataDir(t *testing.T) {
	dir := t.TempDir()
	s := newStore()
	defer s.Close()
	ds := s.Configure(context.Background(), base.ConfigureRequest{
		Config: json.RawMessage(`{"path": "a/b/x.db"}`), DataDir: dir,
	})
	if ds.HasErrors() {
		t.Fatal(ds.Err())
	}
	for _, c := range []struct {
		path string
		want os.FileMode
	}{
		{filepath.Join(dir, "a"), 0o700 | os.ModeDir},
		{filepath.Join(dir, "a", "b"), 0o700 | os.ModeDir},
		{filepath.Join(dir, "a", "b", "x.db"), 0o600},
	} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != c.want {
			t.Errorf("%s has mode %v, want %v", c.path, fi.Mode(), c.want)
		}
	}
	// The same settings again are accepted; different ones are refused.
	if ds := s.Configure(context.Background(), base.ConfigureRequest{Config: json.RawMessage(`{"path": "a/b/x.db"}`), DataDir: dir}); ds.HasErrors() {
		t.Errorf("repeated identical Configure: %v", ds.Err())
	}
	if ds := s.Configure(context.Background(), base.ConfigureRequest{Config: json.RawMessage(`{"path": "other.db"}`), DataDir: dir}); !ds.HasErrors() {
		t.Error("Configure with another path on an open store succeeded")
	}
}

func TestConfigureLockTimeout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.db")
	openStore(t, map[string]any{"path": path})

	s := newStore()
	defer s.Close()
	start := time.Now()
	ds := s.Configure(context.Background(), base.ConfigureRequest{
		Config: json.RawMessage(fmt.Sprintf(`{"path": %q, "timeout": "300ms"}`, path)),
	})
	elapsed := time.Since(start)
	checkLockedDiagnostic(t, ds, path)
	// The upper bound only tells giving up from hanging (CI machines are shared and slow).
	if elapsed < 200*time.Millisecond || elapsed > 10*time.Second {
		t.Errorf("Configure gave up after %v, want about the 300ms timeout", elapsed)
	}
}

// checkLockedDiagnostic asserts ds is the one error saying path is locked.
func checkLockedDiagnostic(t *testing.T, ds base.Diagnostics, path string) {
	t.Helper()
	if len(ds) != 1 || ds[0].Severity != base.SeverityError {
		t.Fatalf("got diagnostics %v, want one error", ds)
	}
	d := ds[0]
	if !slices.Equal(d.Path, []string{"path"}) || !bytes.Contains([]byte(d.Summary), []byte(path)) ||
		!bytes.Contains([]byte(d.Summary), []byte("locked")) {
		t.Errorf("got %+v, want an error at [path] saying %s is locked", d, path)
	}
}

func TestSemantics(t *testing.T) {
	s := openStore(t, nil)
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}

	// An empty value is stored and read back as present and empty.
	must(s.Put(ctx, "ns", []byte("empty"), nil))
	v, ok, err := s.Get(ctx, "ns", []byte("empty"))
	if err != nil || !ok || v == nil || len(v) != 0 {
		t.Errorf("Get of an empty value: %q %v %v, want non-nil empty, true", v, ok, err)
	}

	// Namespaces do not see each other.
	must(s.Put(ctx, "a", []byte("k"), []byte("in a")))
	if _, ok, _ := s.Get(ctx, "b", []byte("k")); ok {
		t.Error("key of namespace a visible in namespace b")
	}

	// Returned slices belong to the caller: changing one changes nothing stored.
	v, _, _ = s.Get(ctx, "a", []byte("k"))
	v[0] = 'X'
	if v2, _, _ := s.Get(ctx, "a", []byte("k")); string(v2) != "in a" {
		t.Errorf("stored value changed through a returned slice: %q", v2)
	}

	// Delete reports existence, and a namespace emptied by deletes disappears.
	if existed, err := s.Delete(ctx, "a", []byte("k")); !existed || err != nil {
		t.Errorf("Delete of an existing key: %v %v", existed, err)
	}
	if existed, err := s.Delete(ctx, "a", []byte("k")); existed || err != nil {
		t.Errorf("second Delete: %v %v", existed, err)
	}
	e, _ := s.engine()
	checkpointNow(t, e)
	_ = e.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket([]byte("a")) != nil {
			t.Error("bucket of an emptied namespace remains")
		}
		return nil
	})

	// Bad input is refused with ErrInvalid when called in-process.
	bad := map[string]error{
		"empty namespace": s.Put(ctx, "", []byte("k"), nil),
		"empty key":       s.Put(ctx, "ns", nil, nil),
		"long key":        s.Put(ctx, "ns", make([]byte, storage.MaxKeySize+1), nil),
		"long value":      s.Put(ctx, "ns", []byte("k"), make([]byte, storage.MaxValueSize+1)),
		"batch op kind":   s.Batch(ctx, "ns", []storage.Op{{Kind: 9, Key: []byte("k")}}),
		"negative limit": func() error {
			_, err := s.Scan(ctx, storage.ScanRequest{Namespace: "ns", Limit: -1})
			return err
		}(),
		"get empty key": func() error { _, _, err := s.Get(ctx, "ns", nil); return err }(),
	}
	for name, err := range bad {
		if !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", name, err)
		}
	}
}

func TestScan(t *testing.T) {
	s := openStore(t, nil)
	ctx := context.Background()
	var ops []storage.Op
	for _, k := range []string{"a", "b/1", "b/2", "b/3", "b/30", "b0", "c"} {
		ops = append(ops, storage.Op{Kind: storage.OpPut, Key: []byte(k), Value: []byte("v" + k)})
	}
	if err := s.Batch(ctx, "ns", ops); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		req        storage.ScanRequest
		wantKeys   []string
		wantMore   bool
		wantValues bool
	}{
		{"all", storage.ScanRequest{}, []string{"a", "b/1", "b/2", "b/3", "b/30", "b0", "c"}, false, true},
		{"prefix", storage.ScanRequest{Prefix: []byte("b/")}, []string{"b/1", "b/2", "b/3", "b/30"}, false, true},
		{"limit sets more", storage.ScanRequest{Prefix: []byte("b/"), Limit: 2}, []string{"b/1", "b/2"}, true, true},
		{"limit exactly the rest", storage.ScanRequest{Prefix: []byte("b/"), Limit: 4}, []string{"b/1", "b/2", "b/3", "b/30"}, false, true},
		{"start after", storage.ScanRequest{Prefix: []byte("b/"), StartAfter: []byte("b/2"), Limit: 1}, []string{"b/3"}, true, true},
		{"start after a prefix of a key", storage.ScanRequest{Prefix: []byte("b/"), StartAfter: []byte("b/3")}, []string{"b/30"}, false, true},
		{"start after a missing key", storage.ScanRequest{Prefix: []byte("b/"), StartAfter: []byte("b/25")}, []string{"b/3", "b/30"}, false, true},
		{"start after before the prefix", storage.ScanRequest{Prefix: []byte("b/"), StartAfter: []byte("a")}, []string{"b/1", "b/2", "b/3", "b/30"}, false, true},
		{"start after past the prefix", storage.ScanRequest{Prefix: []byte("b/"), StartAfter: []byte("b0")}, nil, false, true},
		{"last page", storage.ScanRequest{StartAfter: []byte("b0")}, []string{"c"}, false, true},
		{"keys only", storage.ScanRequest{Prefix: []byte("c"), KeysOnly: true}, []string{"c"}, false, false},
		{"no match", storage.ScanRequest{Prefix: []byte("zz")}, nil, false, true},
		{"missing namespace", storage.ScanRequest{Namespace: "none"}, nil, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := tt.req
			if req.Namespace == "" {
				req.Namespace = "ns"
			}
			res, err := s.Scan(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			var keys []string
			for _, kv := range res.Items {
				keys = append(keys, string(kv.Key))
				if tt.wantValues && string(kv.Value) != "v"+string(kv.Key) {
					t.Errorf("value of %s is %q", kv.Key, kv.Value)
				}
				if !tt.wantValues && kv.Value != nil {
					t.Errorf("keys-only scan returned value %q", kv.Value)
				}
			}
			if !slices.Equal(keys, tt.wantKeys) || res.More != tt.wantMore {
				t.Errorf("got %q more=%v, want %q more=%v", keys, res.More, tt.wantKeys, tt.wantMore)
			}
		})
	}
}

func TestCompareAndSwap(t *testing.T) {
	s := openStore(t, nil)
	ctx := context.Background()
	k := []byte("k")
	steps := []struct {
		name string
		req  storage.CASRequest
		want storage.CASResult
	}{
		{"create when absent", storage.CASRequest{Value: []byte("1")}, storage.CASResult{Swapped: true, Present: true, Current: []byte("1")}},
		{"create when present fails", storage.CASRequest{Value: []byte("x")}, storage.CASResult{Present: true, Current: []byte("1")}},
		{"wrong expected fails", storage.CASRequest{ExpectPresent: true, Expected: []byte("0"), Value: []byte("x")}, storage.CASResult{Present: true, Current: []byte("1")}},
		{"right expected swaps", storage.CASRequest{ExpectPresent: true, Expected: []byte("1"), Value: []byte("")}, storage.CASResult{Swapped: true, Present: true, Current: []byte{}}},
		{"empty expected matches empty value", storage.CASRequest{ExpectPresent: true, Value: []byte("2")}, storage.CASResult{Swapped: true, Present: true, Current: []byte("2")}},
		{"delete with wrong expected fails", storage.CASRequest{ExpectPresent: true, Expected: []byte("1"), Delete: true}, storage.CASResult{Present: true, Current: []byte("2")}},
		{"delete with right expected", storage.CASRequest{ExpectPresent: true, Expected: []byte("2"), Delete: true}, storage.CASResult{Swapped: true}},
		{"expect present on absent fails", storage.CASRequest{ExpectPresent: true, Value: []byte("x")}, storage.CASResult{}},
		{"delete when absent as expected", storage.CASRequest{Delete: true}, storage.CASResult{Swapped: true}},
	}
	for _, st := range steps {
		req := st.req
		req.Namespace, req.Key = "ns", k
		got, err := s.CompareAndSwap(ctx, req)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got.Swapped != st.want.Swapped || got.Present != st.want.Present || !bytes.Equal(got.Current, st.want.Current) ||
			(got.Present && got.Current == nil) {
			t.Errorf("%s: got %+v, want %+v", st.name, got, st.want)
		}
	}
}

// TestGroupCommit checks that concurrent writes share transactions: 64 concurrent Puts
// must take far fewer than 64 commits.
func TestGroupCommit(t *testing.T) {
	s := openStore(t, nil)
	e, _ := s.engine()
	const writers = 64
	before := e.Commits()
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, writers)
	for i := range writers {
		wg.Go(func() {
			<-start
			errs <- s.Put(context.Background(), "ns", []byte(strconv.Itoa(i)), []byte("v"))
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	commits := e.Commits() - before
	t.Logf("%d concurrent puts took %d commits", writers, commits)
	if commits >= writers {
		t.Errorf("%d concurrent puts took %d commits, want fewer than %d", writers, commits, writers)
	}
	res, err := s.Scan(context.Background(), storage.ScanRequest{Namespace: "ns", Limit: 1000})
	if err != nil || len(res.Items) != writers {
		t.Errorf("scan after the puts: %d items, %v; want %d", len(res.Items), err, writers)
	}
}

// holdWriter makes the writer wait, after taking its next request, until release is
// called, so tests can queue requests behind it deterministically.
func holdWriter(t *testing.T, e *engine) (taken <-chan struct{}, release func()) {
	t.Helper()
	tk := make(chan struct{})
	rel := make(chan struct{})
	var once sync.Once
	e.HookCollect = func() {
		once.Do(func() {
			close(tk)
			<-rel
		})
	}
	return tk, sync.OnceFunc(func() { close(rel) })
}

// waitQueued waits until n requests are queued for the writer.
func waitQueued(t *testing.T, e *engine, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for e.Queued() < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d requests queued", e.Queued(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestGroupRequestsSeeEachOther checks that requests of one group apply in arrival order:
// a CAS queued behind a Put of the same key sees the Put.
func TestGroupRequestsSeeEachOther(t *testing.T) {
	s := newStore()
	dir := t.TempDir()
	if ds := s.Configure(context.Background(), base.ConfigureRequest{Config: json.RawMessage(`{}`), DataDir: dir}); ds.HasErrors() {
		t.Fatal(ds.Err())
	}
	defer s.Close()
	e, _ := s.engine()
	taken, release := holdWriter(t, e)
	defer release()
	ctx := context.Background()

	first := make(chan error, 1)
	go func() { first <- s.Put(ctx, "ns", []byte("first"), nil) }()
	<-taken // the writer holds "first" and waits

	put := make(chan error, 1)
	go func() { put <- s.Put(ctx, "ns", []byte("k"), []byte("1")) }()
	waitQueued(t, e, 1)
	cas := make(chan storage.CASResult, 1)
	go func() {
		r, err := s.CompareAndSwap(ctx, storage.CASRequest{Namespace: "ns", Key: []byte("k"), ExpectPresent: true, Expected: []byte("1"), Value: []byte("2")})
		if err != nil {
			t.Error(err)
		}
		cas <- r
	}()
	waitQueued(t, e, 2)
	before := e.Commits()
	release()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err := <-put; err != nil {
		t.Fatal(err)
	}
	if r := <-cas; !r.Swapped || string(r.Current) != "2" {
		t.Errorf("CAS behind a Put in the same group: %+v, want swapped to 2", r)
	}
	if n := e.Commits() - before; n != 1 {
		t.Errorf("three requests took %d commits, want 1", n)
	}
}

// TestGroupFailureIsolated checks that one failing request does not fail the others of
// its group: the group is retried request by request.
func TestGroupFailureIsolated(t *testing.T) {
	s := openStore(t, nil)
	e, _ := s.engine()
	taken, release := holdWriter(t, e)
	defer release()
	ctx := context.Background()

	go func() { _ = s.Put(ctx, "ns", []byte("first"), nil) }()
	<-taken

	const good = 5
	errs := make(chan error, good)
	for i := range good {
		go func() { errs <- s.Put(ctx, "ns", []byte{'k', byte('0' + i)}, []byte("v")) }()
	}
	boom := errors.New("boom")
	bad := make(chan error, 1)
	go func() {
		bad <- e.write(ctx, 1, func(tx *wtx) (bool, error) {
			tx.put("ns", []byte("poison"), []byte("x"))
			return true, boom
		})
	}()
	go func() {
		_ = e.write(ctx, 1, func(*wtx) (bool, error) { panic("bug in a request") })
	}()
	waitQueued(t, e, good+2)
	release()

	if err := <-bad; !errors.Is(err, boom) {
		t.Errorf("failing request: got %v, want boom", err)
	}
	for range good {
		if err := <-errs; err != nil {
			t.Errorf("good request of a failed group: %v", err)
		}
	}
	if _, ok, _ := s.Get(ctx, "ns", []byte("poison")); ok {
		t.Error("write of the failed request is visible")
	}
	res, _ := s.Scan(ctx, storage.ScanRequest{Namespace: "ns", Prefix: []byte("k")})
	if len(res.Items) != good {
		t.Errorf("%d good writes stored, want %d", len(res.Items), good)
	}
}

// TestCanceledWhileQueued checks that a write whose context ends while it waits in the
// queue returns the context's error and is never applied.
func TestCanceledWhileQueued(t *testing.T) {
	s := openStore(t, nil)
	e, _ := s.engine()
	taken, release := holdWriter(t, e)
	defer release()

	go func() { _ = s.Put(context.Background(), "ns", []byte("first"), nil) }()
	<-taken

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Put(ctx, "ns", []byte("canceled"), []byte("v")) }()
	waitQueued(t, e, 1)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("got %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a canceled write kept waiting for the busy writer")
	}
	release()
	// A later write goes through; the canceled one never appears.
	if err := s.Put(context.Background(), "ns", []byte("later"), nil); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Get(context.Background(), "ns", []byte("canceled")); ok {
		t.Error("a write canceled while queued was applied")
	}
}

// TestCASCounter increments one counter from many goroutines by CAS loops: every
// increment must land exactly once.
func TestCASCounter(t *testing.T) {
	s := openStore(t, nil)
	ctx := context.Background()
	const workers, each = 16, 20
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				for {
					cur, ok, err := s.Get(ctx, "ns", []byte("n"))
					if err != nil {
						t.Error(err)
						return
					}
					n := 0
					if ok {
						n, _ = strconv.Atoi(string(cur))
					}
					r, err := s.CompareAndSwap(ctx, storage.CASRequest{
						Namespace: "ns", Key: []byte("n"), ExpectPresent: ok, Expected: cur,
						Value: []byte(strconv.Itoa(n + 1)),
					})
					if err != nil {
						t.Error(err)
						return
					}
					if r.Swapped {
						break
					}
				}
			}
		})
	}
	wg.Wait()
	v, _, _ := s.Get(ctx, "ns", []byte("n"))
	if string(v) != strconv.Itoa(workers*each) {
		t.Errorf("counter is %s, want %d", v, workers*each)
	}
}

// TestCloseDrainsQueue checks that writes queued when Close is called are written, and
// that calls after Close fail with ErrUnavailable.
func TestCloseDrainsQueue(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.db")
	s := openStore(t, map[string]any{"path": path})
	e, _ := s.engine()
	taken, release := holdWriter(t, e)
	ctx := context.Background()

	go func() { _ = s.Put(ctx, "ns", []byte("first"), nil) }()
	<-taken
	const n = 10
	errs := make(chan error, n)
	for i := range n {
		go func() { errs <- s.Put(ctx, "ns", []byte{'k', byte('0' + i)}, nil) }()
	}
	waitQueued(t, e, n)
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	release()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("write queued before Close: %v", err)
		}
	}
	if err := s.Put(ctx, "ns", []byte("late"), nil); !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("Put after Close: got %v, want ErrUnavailable", err)
	}
	if _, _, err := s.Get(ctx, "ns", []byte("k0")); !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("Get after Close: got %v, want ErrUnavailable", err)
	}

	s2 := openStore(t, map[string]any{"path": path})
	res, err := s2.Scan(ctx, storage.ScanRequest{Namespace: "ns", Prefix: []byte("k")})
	if err != nil || len(res.Items) != n {
		t.Errorf("after reopening: %d queued writes found (%v), want %d", len(res.Items), err, n)
	}
}

func TestMapErrNoSpace(t *testing.T) {
	for _, err := range []error{
		&os.PathError{Op: "write", Path: "x.db", Err: syscall.ENOSPC},
		fmt.Errorf("file resize error: %s", syscall.ENOSPC), // how bbolt wraps growth errors
		syscall.EDQUOT,
	} {
		got := mapErr("put", err)
		if !errors.Is(got, storage.ErrNoSpace) {
			t.Errorf("mapErr(%v) = %v, want ErrNoSpace", err, got)
		}
	}
	if got := mapErr("put", errors.New("other")); errors.Is(got, storage.ErrNoSpace) {
		t.Errorf("an unrelated error mapped to ErrNoSpace: %v", got)
	}
}

// TestDiskFull fills a small tmpfs and checks the write fails with ErrNoSpace while the
// store stays usable. It needs permission to mount, so it is skipped elsewhere.
func TestDiskFull(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=512k"); err != nil {
		t.Skipf("cannot mount a small tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	s := openStore(t, map[string]any{"path": filepath.Join(dir, "x.db")})
	ctx := context.Background()
	var err error
	for i := 0; i < 1000 && err == nil; i++ {
		err = s.Put(ctx, "ns", []byte(strconv.Itoa(i)), bytes.Repeat([]byte{'x'}, 64<<10))
	}
	if !errors.Is(err, storage.ErrNoSpace) {
		t.Fatalf("filling the disk: got %v, want ErrNoSpace", err)
	}
	t.Logf("disk full: %v", err)
	if _, _, err := s.Get(ctx, "ns", []byte("0")); err != nil {
		t.Errorf("Get on a full disk: %v", err)
	}
	if _, err := s.Delete(ctx, "ns", []byte("0")); err != nil && !errors.Is(err, storage.ErrNoSpace) {
		t.Errorf("Delete on a full disk: %v", err)
	}
}

// checkpointNow copies every logged write into the database file, as the checkpointer
// does, so a test can look at the file.
func checkpointNow(t testing.TB, e *engine) {
	t.Helper()
	for range 2 {
		e.freeze()
		if err := e.checkpoint(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestValidateOnlyChecksTheDirectory: checking a configuration whose file lies where no
// directory can be made (under /proc) fails at path, as the start would, and makes nothing.
func TestValidateOnlyChecksTheDirectory(t *testing.T) {
	ds := newStore().Configure(context.Background(), base.ConfigureRequest{
		Config: json.RawMessage(`{"path": "/proc/limit-check/x/db"}`), ValidateOnly: true, DataDir: t.TempDir(),
	})
	if !ds.HasErrors() || len(ds[0].Path) != 1 || ds[0].Path[0] != "path" || !strings.Contains(ds.Err().Error(), "cannot create the directory") {
		t.Fatalf("validate-only of a path under /proc: %v", ds)
	}
}

// TestNoSyncWarns: no_sync is logged at WARN when the database opens, and every health
// answer says so (healthy, with a detail and a no_sync figure); without it, neither.
func TestNoSyncWarns(t *testing.T) {
	for _, noSync := range []bool{true, false} {
		var logs syncbuf.Buffer
		s := newStore()
		s.log = hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Info})
		raw, _ := json.Marshal(map[string]any{"path": filepath.Join(t.TempDir(), "x.db"), "no_sync": noSync})
		if ds := s.Configure(context.Background(), base.ConfigureRequest{Config: raw}); ds.HasErrors() {
			t.Fatal(ds.Err())
		}
		h := s.Health(context.Background())
		warned := strings.Contains(logs.String(), "[WARN]") && strings.Contains(logs.String(), "no_sync is enabled")
		if !h.OK || warned != noSync || strings.Contains(h.Detail, "no_sync") != noSync || (h.Metrics["no_sync"] == 1) != noSync {
			t.Errorf("no_sync %v: health %+v, log:\n%s", noSync, h, logs.String())
		}
		_ = s.Close()
	}
}

// TestOpenNotADatabase: a path naming a file that is not a bbolt database is refused with
// a message that says so and what to do, not bbolt's bare "invalid database".
func TestOpenNotADatabase(t *testing.T) {
	for name, content := range map[string][]byte{
		"text":  []byte("hello, I am a text file\n"),
		"pages": bytes.Repeat([]byte("not a database. "), 4096),
	} {
		path := filepath.Join(t.TempDir(), "limit.db")
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		raw, _ := json.Marshal(map[string]any{"path": path})
		s := newStore()
		ds := s.Configure(context.Background(), base.ConfigureRequest{Config: raw})
		if !ds.HasErrors() || !slices.Equal(ds[0].Path, []string{"path"}) ||
			!strings.Contains(ds[0].Error(), "is not a bbolt database") || !strings.Contains(ds[0].Error(), "move this one away") {
			t.Errorf("%s: %v", name, ds)
		}
		if b, _ := os.ReadFile(path); !bytes.Equal(b, content) {
			t.Errorf("%s: the file was changed", name)
		}
	}
}
