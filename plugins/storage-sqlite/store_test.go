package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

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
		cfg["path"] = filepath.Join(t.TempDir(), "x.sqlite")
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
		if !errors.Is(err, storage.ErrUnavailable) || !strings.Contains(err.Error(), "storage not configured") {
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
	}{
		{"unparseable busy_timeout", `{"busy_timeout": "soon"}`, []string{"busy_timeout"}},
		{"zero busy_timeout", `{"busy_timeout": "0s"}`, []string{"busy_timeout"}},
		{"busy_timeout of wrong type", `{"busy_timeout": 5}`, []string{"busy_timeout"}},
		{"unknown attribute", `{"path": "a.sqlite", "bogus": 1}`, []string{"bogus"}},
		{"empty path", `{"path": ""}`, []string{"path"}},
		{"path is a directory", fmt.Sprintf(`{"path": %q}`, dir), []string{"path"}},
		{"zero max_batch", `{"max_batch": 0}`, []string{"max_batch"}},
		{"fractional max_batch", `{"max_batch": 1.5}`, []string{"max_batch"}},
		{"too many readers", `{"readers": 1000}`, []string{"readers"}},
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
			if !slices.Equal(ds[0].Path, tt.wantPath) || ds[0].Severity != base.SeverityError {
				t.Errorf("got %+v, want an error at %v", ds[0], tt.wantPath)
			}
		})
	}
}

func TestConfigureCollectsEveryProblem(t *testing.T) {
	ds := newStore().Configure(context.Background(), base.ConfigureRequest{
		Config: json.RawMessage(`{"path": "", "busy_timeout": "x", "max_batch": -3, "readers": 0.5}`), ValidateOnly: true,
	})
	var paths []string
	for _, d := range ds {
		paths = append(paths, d.Path...)
	}
	slices.Sort(paths)
	if want := []string{"busy_timeout", "max_batch", "path", "readers"}; !slices.Equal(paths, want) {
		t.Errorf("diagnostics at %v, want one each at %v: %v", paths, want, ds)
	}
}

func TestConfigureValidateOnlyTouchesNothing(t *testing.T) {
	dir := t.TempDir()
	s := newStore()
	ds := s.Configure(context.Background(), base.ConfigureRequest{
		Config: json.RawMessage(`{"path": "sub/x.sqlite"}`), ValidateOnly: true, DataDir: dir,
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

// TestConfigureCreatesPrivateFiles checks the layout on disk: directories 0700, the
// database and its write-ahead log 0600, WAL mode and synchronous=FULL in force, and a
// repeated Configure accepted only with the same settings.
func TestConfigureCreatesPrivateFiles(t *testing.T) {
	dir := t.TempDir()
	s := newStore()
	defer s.Close()
	ds := s.Configure(context.Background(), base.ConfigureRequest{
		Config: json.RawMessage(`{"path": "a/b/x.sqlite"}`), DataDir: dir,
	})
	if ds.HasErrors() {
		t.Fatal(ds.Err())
	}
	if err := s.Put(context.Background(), "ns", []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path string
		want os.FileMode
	}{
		{filepath.Join(dir, "a"), 0o700 | os.ModeDir},
		{filepath.Join(dir, "a", "b"), 0o700 | os.ModeDir},
		{filepath.Join(dir, "a", "b", "x.sqlite"), 0o600},
		{filepath.Join(dir, "a", "b", "x.sqlite-wal"), 0o600},
	} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != c.want {
			t.Errorf("%s has mode %v, want %v", c.path, fi.Mode(), c.want)
		}
	}
	e, _ := s.engine()
	var mode string
	var syncMode int
	if err := e.db.conn.QueryRowContext(context.Background(), "PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q (%v), want wal", mode, err)
	}
	if err := e.db.conn.QueryRowContext(context.Background(), "PRAGMA synchronous").Scan(&syncMode); err != nil || syncMode != 2 {
		t.Errorf("synchronous = %d (%v), want 2 (FULL)", syncMode, err)
	}
	if ds := s.Configure(context.Background(), base.ConfigureRequest{Config: json.RawMessage(`{"path": "a/b/x.sqlite"}`), DataDir: dir}); ds.HasErrors() {
		t.Errorf("repeated identical Configure: %v", ds.Err())
	}
	if ds := s.Configure(context.Background(), base.ConfigureRequest{Config: json.RawMessage(`{"path": "other.sqlite"}`), DataDir: dir}); !ds.HasErrors() {
		t.Error("Configure with another path on an open store succeeded")
	}
}

// TestSchemaVersion checks the migration bookkeeping: a new file gets the current
// version, reopening keeps the data, and a file from a newer plugin is refused with an
// error that says so.
func TestSchemaVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.sqlite")
	s := openStore(t, map[string]any{"path": path})
	if err := s.Put(context.Background(), "ns", []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	s.Close()

	raw, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	var v int
	if err := raw.QueryRow("PRAGMA user_version").Scan(&v); err != nil || v != schemaVersion {
		t.Fatalf("user_version = %d (%v), want %d", v, err, schemaVersion)
	}
	s2 := openStore(t, map[string]any{"path": path})
	if got, ok, err := s2.Get(context.Background(), "ns", []byte("k")); err != nil || !ok || string(got) != "v" {
		t.Errorf("after reopening: %q %v %v", got, ok, err)
	}
	s2.Close()

	if _, err := raw.Exec(fmt.Sprintf("PRAGMA user_version = %d", schemaVersion+1)); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	s3 := newStore()
	defer s3.Close()
	ds := s3.Configure(context.Background(), base.ConfigureRequest{Config: fmt.Appendf(nil, `{"path": %q}`, path)})
	if !ds.HasErrors() || !strings.Contains(ds.Err().Error(), "newer than this plugin") {
		t.Errorf("Configure on a newer schema: got %v, want an error saying it is newer", ds)
	}
}

// TestSecondStoreOnPathIsRefused opens a second store on a database file in use. flock
// locks belong to the open file description, so the second open conflicts even in the
// same process: it must fail naming the file and the holder's pid, leave the first store
// working, and succeed once the first is closed.
func TestSecondStoreOnPathIsRefused(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "x.sqlite")
	cfg := base.ConfigureRequest{Config: fmt.Appendf(nil, `{"path": %q}`, path)}
	first := openStore(t, map[string]any{"path": path})
	if err := first.Put(ctx, "ns", []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path + ".lock")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != 0o600 {
		t.Errorf("lock file has mode %v, want 0600", fi.Mode())
	}
	if b, err := os.ReadFile(path + ".lock"); err != nil || string(b) != fmt.Sprintf("%d\n", os.Getpid()) {
		t.Errorf("lock file holds %q (%v), want this process's pid", b, err)
	}

	second := newStore()
	ds := second.Configure(ctx, cfg)
	wantMsg := fmt.Sprintf("database file %s is in use by another process (pid %d)", path, os.Getpid())
	if len(ds) != 1 || ds[0].Severity != base.SeverityError || !slices.Equal(ds[0].Path, []string{"path"}) ||
		!strings.Contains(ds[0].Error(), wantMsg) {
		t.Errorf("second store on %s: got %v, want one error at path containing %q", path, ds, wantMsg)
	}
	if err := second.Put(ctx, "ns", []byte("k2"), nil); !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("Put on the refused store: got %v, want ErrUnavailable", err)
	}
	if err := second.Close(); err != nil {
		t.Errorf("Close of the refused store: %v", err)
	}
	// The refused open must not have disturbed the holder, nor taken its lock away.
	if err := first.Put(ctx, "ns", []byte("k2"), []byte("v2")); err != nil {
		t.Errorf("Put on the first store after the refused open: %v", err)
	}
	other := newStore()
	if ds := other.Configure(ctx, cfg); !ds.HasErrors() {
		t.Error("another store opened while the first still holds the file")
	}
	_ = other.Close()

	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	third := openStore(t, map[string]any{"path": path})
	for k, want := range map[string]string{"k": "v", "k2": "v2"} {
		if got, ok, err := third.Get(ctx, "ns", []byte(k)); err != nil || !ok || string(got) != want {
			t.Errorf("%s after reopening: %q %v %v, want %q", k, got, ok, err, want)
		}
	}
}

// TestStaleLockFileDoesNotBlock opens a store on a file whose lock file names a process
// that is gone, as a crash leaves it: only a held lock refuses an open, not the pid.
func TestStaleLockFileDoesNotBlock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.sqlite")
	if err := os.WriteFile(path+".lock", []byte("999999999\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := openStore(t, map[string]any{"path": path})
	if err := s.Put(context.Background(), "ns", []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(path + ".lock"); err != nil || string(b) != fmt.Sprintf("%d\n", os.Getpid()) {
		t.Errorf("lock file holds %q (%v), want this process's pid in place of the stale one", b, err)
	}
}

// TestWritesShareTransactions holds the writer while writes pile up and checks that they
// commit in fewer transactions than there are writes, each still acknowledged.
func TestWritesShareTransactions(t *testing.T) {
	s := openStore(t, nil)
	e, _ := s.engine()
	release := make(chan struct{})
	var once sync.Once
	e.HookCollect = func() { once.Do(func() { <-release }) }

	const n = 50
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			errs <- s.Put(ctx, "ns", fmt.Appendf(nil, "k%03d", i), []byte("v"))
		})
	}
	// Let the writes queue behind the held first one.
	deadline := time.Now().Add(5 * time.Second)
	for e.Queued() < n-1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if c := e.Commits(); c > 3 {
		t.Errorf("%d writes took %d commits, want them grouped into at most 3", n, c)
	}
	res, err := s.Scan(ctx, storage.ScanRequest{Namespace: "ns", Limit: 1000})
	if err != nil || len(res.Items) != n {
		t.Fatalf("scan: %d items, %v; want %d", len(res.Items), err, n)
	}
}

// TestFailedRequestFailsAlone puts a request that fails into a group with good ones: the
// good ones still commit, the bad one gets its error.
func TestFailedRequestFailsAlone(t *testing.T) {
	s := openStore(t, nil)
	e, _ := s.engine()
	release := make(chan struct{})
	var once sync.Once
	e.HookCollect = func() { once.Do(func() { <-release }) }
	ctx := context.Background()
	boom := errors.New("boom")
	var wg sync.WaitGroup
	results := make([]error, 4)
	for i := range results {
		wg.Go(func() {
			results[i] = e.write(ctx, 1, func(t *wtx) (bool, error) {
				if i == 2 {
					if err := t.put("ns", []byte("bad"), []byte("x")); err != nil {
						return false, err
					}
					return true, boom
				}
				return true, t.put("ns", fmt.Appendf(nil, "k%d", i), []byte("v"))
			})
		})
	}
	deadline := time.Now().Add(5 * time.Second)
	for e.Queued() < 3 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	for i, err := range results {
		if (i == 2) != errors.Is(err, boom) || (i != 2 && err != nil) {
			t.Errorf("request %d: got %v", i, err)
		}
	}
	if _, ok, _ := s.Get(ctx, "ns", []byte("bad")); ok {
		t.Error("the failed request's partial write is visible")
	}
	for _, i := range []int{0, 1, 3} {
		if _, ok, err := s.Get(ctx, "ns", fmt.Appendf(nil, "k%d", i)); !ok || err != nil {
			t.Errorf("k%d missing after its group failed and was retried: %v", i, err)
		}
	}
}

// TestCanceledWriteIsNotApplied checks that a write whose context ends while it waits in
// the queue is withdrawn: the caller's error means "not written".
func TestCanceledWriteIsNotApplied(t *testing.T) {
	s := openStore(t, nil)
	e, _ := s.engine()
	release := make(chan struct{})
	var once sync.Once
	e.HookCollect = func() { once.Do(func() { <-release }) }
	bg := context.Background()
	first := make(chan error, 1)
	go func() { first <- s.Put(bg, "ns", []byte("first"), nil) }()
	ctx, cancel := context.WithTimeout(bg, 50*time.Millisecond)
	defer cancel()
	err := s.Put(ctx, "ns", []byte("late"), []byte("v"))
	close(release)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Put with an expiring context: got %v, want DeadlineExceeded", err)
	}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Get(bg, "ns", []byte("late")); ok {
		t.Error("a write that returned DeadlineExceeded was applied")
	}
}

// TestCloseFinishesQueuedWrites checks that Close writes what was queued before it and
// refuses what comes after.
func TestCloseFinishesQueuedWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.sqlite")
	s := openStore(t, map[string]any{"path": path})
	ctx := context.Background()
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := 0
	for i := range 20 {
		wg.Go(func() {
			if err := s.Put(ctx, "ns", fmt.Appendf(nil, "k%02d", i), []byte("v")); err == nil {
				mu.Lock()
				acked++
				mu.Unlock()
			} else if !errors.Is(err, storage.ErrUnavailable) {
				t.Errorf("put during close: %v", err)
			}
		})
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := s.Put(ctx, "ns", []byte("after"), nil); !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("Put after Close: got %v, want ErrUnavailable", err)
	}
	s2 := openStore(t, map[string]any{"path": path})
	res, err := s2.Scan(ctx, storage.ScanRequest{Namespace: "ns", Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Items) != acked {
		t.Errorf("%d keys after reopening, %d writes were acknowledged", len(res.Items), acked)
	}
	// Close checkpoints the log into the database file and removes it.
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + "-wal"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("write-ahead log left after Close: %v", err)
	}
}

// TestScanAcrossHighBytes checks that keys of 0xff bytes, which have no prefix end, are
// scanned in byte order and within their prefix.
func TestScanAcrossHighBytes(t *testing.T) {
	s := openStore(t, nil)
	ctx := context.Background()
	keys := [][]byte{{0xff}, {0xff, 0x00}, {0xff, 0xff}, {0xff, 0xff, 0x01}, {0xfe, 0xff}, {0x00}}
	for _, k := range keys {
		if err := s.Put(ctx, "ns", k, k); err != nil {
			t.Fatal(err)
		}
	}
	res, err := s.Scan(ctx, storage.ScanRequest{Namespace: "ns", Prefix: []byte{0xff, 0xff}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Items) != 2 || !bytes.Equal(res.Items[0].Key, []byte{0xff, 0xff}) || !bytes.Equal(res.Items[1].Key, []byte{0xff, 0xff, 0x01}) {
		t.Errorf("scan of prefix ff ff: %v", res.Items)
	}
	res, err = s.Scan(ctx, storage.ScanRequest{Namespace: "ns", StartAfter: []byte{0xfe, 0xff}, Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Items) != 2 || !res.More || !bytes.Equal(res.Items[0].Key, []byte{0xff}) {
		t.Errorf("scan after fe ff: %v more=%v", res.Items, res.More)
	}
}

// TestBatchEdgeCases checks batches the conformance suite leaves out: empty and nil
// values, a key put twice, and a key put then deleted in one batch.
func TestBatchEdgeCases(t *testing.T) {
	s := openStore(t, nil)
	ctx := context.Background()
	if err := s.Put(ctx, "ns", []byte("e"), []byte("old")); err != nil {
		t.Fatal(err)
	}
	ops := []storage.Op{
		{Kind: storage.OpPut, Key: []byte("a"), Value: []byte{}},
		{Kind: storage.OpPut, Key: []byte("b"), Value: nil},
		{Kind: storage.OpPut, Key: []byte("c"), Value: []byte("1")},
		{Kind: storage.OpPut, Key: []byte("c"), Value: []byte("2")},
		{Kind: storage.OpDelete, Key: []byte("d")},
		{Kind: storage.OpPut, Key: []byte("d"), Value: []byte("x")},
		{Kind: storage.OpDelete, Key: []byte("d")},
		{Kind: storage.OpDelete, Key: []byte("e")},
		{Kind: storage.OpPut, Key: []byte("e"), Value: []byte("new")},
	}
	if err := s.Batch(ctx, "ns", ops); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"a": "", "b": "", "c": "2", "e": "new"}
	res, err := s.Scan(ctx, storage.ScanRequest{Namespace: "ns"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, kv := range res.Items {
		got[string(kv.Key)] = string(kv.Value)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after the batch: %v, want %v", got, want)
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

// TestHealthAfterFullDisk: a write refused for a full database (SQLITE_FULL, here from
// max_page_count) makes the backend report itself unhealthy, with the reason, so the host
// refuses executions before they run; once there is room, health's probe commits and it
// is healthy again.
func TestHealthAfterFullDisk(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, nil)
	if h := s.Health(ctx); !h.OK {
		t.Fatalf("fresh store: %+v", h)
	}
	e, err := s.engine()
	if err != nil {
		t.Fatal(err)
	}
	var pages int
	if err := e.db.conn.QueryRowContext(ctx, "PRAGMA page_count").Scan(&pages); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.conn.ExecContext(ctx, fmt.Sprintf("PRAGMA max_page_count = %d", pages)); err != nil {
		t.Fatal(err)
	}
	err = s.Put(ctx, "ns", []byte("k"), bytes.Repeat([]byte("v"), 1<<16))
	if !errors.Is(err, storage.ErrNoSpace) {
		t.Fatalf("put into a full database: %v", err)
	}
	if h := s.Health(ctx); h.OK || !strings.Contains(h.Detail, "full") {
		t.Errorf("after a write failed for a full database: %+v", h)
	}
	if h := s.Health(ctx); h.OK { // the probe fails too while it is full
		t.Errorf("still full: %+v", h)
	}
	// Room for a small write, not for the one refused: still unhealthy. Its probe, of
	// 4 KiB whatever was refused, used to find room and report it healthy while every
	// trace write was refused.
	if _, err := e.db.conn.ExecContext(ctx, fmt.Sprintf("PRAGMA max_page_count = %d", pages+4)); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "ns", []byte("small"), []byte("v")); err != nil {
		t.Fatalf("a small write with room for it: %v", err)
	}
	if err := s.Put(ctx, "ns", []byte("k"), bytes.Repeat([]byte("v"), 1<<16)); !errors.Is(err, storage.ErrNoSpace) {
		t.Fatalf("put with room for a small write only: %v", err)
	}
	if h := s.Health(ctx); h.OK {
		t.Errorf("room for a small write only: %+v", h)
	}
	if _, err := e.db.conn.ExecContext(ctx, "PRAGMA max_page_count = 1073741823"); err != nil {
		t.Fatal(err)
	}
	if h := s.Health(ctx); !h.OK || h.Detail != "" {
		t.Errorf("room again: %+v", h)
	}
	if _, ok, _ := s.Get(ctx, "ns", []byte("k")); ok {
		t.Error("the refused value is there")
	}
}
