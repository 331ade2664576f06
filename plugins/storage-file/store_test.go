package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/limitgraph/limit/host/version"
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/storage"
)

func TestPluginInfoAndSchema(t *testing.T) {
	s := newQuietStore()
	info := s.PluginInfo()
	if info.Name != "file" || info.Kind != base.KindStorage || info.Version != version.Version {
		t.Errorf("info = %+v, want name file, kind storage, version %s", info, version.Version)
	}
	if want := []string{"batch", "cas", "scan", "durable", storage.CapBatchNamespaces}; !slices.Equal(info.Capabilities, want) {
		t.Errorf("capabilities = %v, want %v", info.Capabilities, want)
	}
	defaults := map[string]any{}
	for _, a := range s.ConfigSchema().Attributes {
		defaults[a.Name] = a.Default
		if a.Description == "" {
			t.Errorf("attribute %q has no description", a.Name)
		}
	}
	if defaults["root"] != "files" || defaults["no_sync"] != false || len(defaults) != 2 {
		t.Errorf("schema defaults = %v, want root=files, no_sync=false", defaults)
	}
}

func TestConfigure(t *testing.T) {
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name         string
		config       string
		dataDir      bool
		validateOnly bool
		wantErr      string // substring of the error; "" means no error
		wantPath     string // attribute path of the error
		wantWarning  bool
		wantCreated  string // path relative to the data dir that must exist afterwards
	}{
		{name: "default root in data dir", config: `{}`, dataDir: true, wantCreated: "files"},
		{name: "relative root in data dir", config: `{"root": "x/y"}`, dataDir: true, wantCreated: "x/y"},
		{name: "relative root without data dir", config: `{"root": "x"}`, wantErr: "no data directory", wantPath: "root"},
		{name: "empty root", config: `{"root": ""}`, dataDir: true, wantErr: "must not be empty", wantPath: "root"},
		{name: "unknown attribute", config: `{"rooot": "x"}`, dataDir: true, wantErr: "unsupported attribute", wantPath: "rooot"},
		{name: "wrong type", config: `{"no_sync": "yes"}`, dataDir: true, wantErr: "must be of type bool", wantPath: "no_sync"},
		{name: "root is a file", config: fmt.Sprintf(`{"root": %q}`, file), wantErr: "not a directory", wantPath: "root"},
		{name: "root under a file", config: fmt.Sprintf(`{"root": %q}`, file+"/sub"), validateOnly: true, wantErr: "not a directory", wantPath: "root"},
		{name: "no_sync warns", config: `{"no_sync": true}`, dataDir: true, wantWarning: true, wantCreated: "files"},
		{name: "validate only creates nothing", config: `{"root": "a/b"}`, dataDir: true, validateOnly: true},
		{name: "root where nothing can be made", config: `{"root": "/proc/limit-check/x"}`, validateOnly: true, wantErr: "cannot create", wantPath: "root"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dataDir := ""
			if tt.dataDir {
				dataDir = t.TempDir()
			}
			s := newQuietStore()
			defer s.Close()
			ds := s.Configure(context.Background(), base.ConfigureRequest{Config: []byte(tt.config), DataDir: dataDir, ValidateOnly: tt.validateOnly})
			err := ds.Err()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
			}
			if tt.wantPath != "" && (len(ds) == 0 || strings.Join(ds[0].Path, ".") != tt.wantPath) {
				t.Errorf("diagnostics %+v, want the first at path %q", ds, tt.wantPath)
			}
			warned := slices.ContainsFunc(ds, func(d base.Diagnostic) bool { return d.Severity == base.SeverityWarning })
			if warned != tt.wantWarning {
				t.Errorf("warning given = %v, want %v (%+v)", warned, tt.wantWarning, ds)
			}
			if tt.wantCreated != "" {
				fi, err := os.Stat(filepath.Join(dataDir, tt.wantCreated))
				if err != nil {
					t.Fatalf("root not created: %v", err)
				}
				if fi.Mode().Perm() != 0o700 {
					t.Errorf("root mode = %v, want 0700", fi.Mode().Perm())
				}
			}
			if tt.validateOnly && dataDir != "" {
				if names, _ := readNames(dataDir); len(names) != 0 {
					t.Errorf("validate-only configure created %v in the data dir", names)
				}
			}
		})
	}
}

func TestUnconfiguredAndClosed(t *testing.T) {
	ctx := context.Background()
	s := newQuietStore()
	calls := func() map[string]error {
		_, _, gerr := s.Get(ctx, "ns", []byte("k"))
		_, derr := s.Delete(ctx, "ns", []byte("k"))
		_, serr := s.Scan(ctx, storage.ScanRequest{Namespace: "ns"})
		_, cerr := s.CompareAndSwap(ctx, storage.CASRequest{Namespace: "ns", Key: []byte("k")})
		return map[string]error{
			"get": gerr, "put": s.Put(ctx, "ns", []byte("k"), nil), "delete": derr, "scan": serr,
			"batch": s.Batch(ctx, "ns", []storage.Op{{Kind: storage.OpPut, Key: []byte("k")}}), "cas": cerr,
		}
	}
	for name, err := range calls() {
		if !errors.Is(err, storage.ErrUnavailable) || !strings.Contains(err.Error(), "not configured") {
			t.Errorf("%s before configure: error %v, want ErrUnavailable saying it is not configured", name, err)
		}
	}
	if ds := s.Configure(ctx, base.ConfigureRequest{Config: rootConfig(t.TempDir())}); ds.HasErrors() {
		t.Fatal(ds.Err())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for name, err := range calls() {
		if !errors.Is(err, storage.ErrUnavailable) || !strings.Contains(err.Error(), "closed") {
			t.Errorf("%s after close: error %v, want ErrUnavailable saying it is closed", name, err)
		}
	}
}

func TestValidatesInProcess(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	long := bytes.Repeat([]byte("k"), storage.MaxKeySize+1)
	errs := map[string]error{
		"empty namespace": s.Put(ctx, "", []byte("k"), nil),
		"long namespace":  s.Put(ctx, strings.Repeat("n", storage.MaxNamespaceSize+1), []byte("k"), nil),
		"empty key":       s.Put(ctx, "ns", nil, nil),
		"long key":        s.Put(ctx, "ns", long, nil),
		"large value":     s.Put(ctx, "ns", []byte("k"), make([]byte, storage.MaxValueSize+1)),
		"batch long key":  s.Batch(ctx, "ns", []storage.Op{{Kind: storage.OpPut, Key: long}}),
	}
	_, _, errs["get long key"] = s.Get(ctx, "ns", long)
	_, errs["delete empty key"] = s.Delete(ctx, "ns", nil)
	_, errs["scan negative limit"] = s.Scan(ctx, storage.ScanRequest{Namespace: "ns", Limit: -1})
	for name, err := range errs {
		if !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("%s: error %v, want ErrInvalid", name, err)
		}
	}
}

func TestEmptyValueIsNotAbsent(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	if err := s.Put(ctx, "ns", []byte("empty"), nil); err != nil {
		t.Fatal(err)
	}
	v, ok, err := s.Get(ctx, "ns", []byte("empty"))
	if err != nil || !ok || v == nil || len(v) != 0 {
		t.Errorf("get empty value = %q, %v, %v; want empty non-nil, true", v, ok, err)
	}
	v, ok, err = s.Get(ctx, "ns", []byte("absent"))
	if err != nil || ok || v != nil {
		t.Errorf("get absent = %q, %v, %v; want nil, false", v, ok, err)
	}
}

// TestKeysCannotEscapeRoot writes keys and namespaces that would be dangerous as paths
// and checks that every file the store created is under its root, that the root's
// parent holds nothing else, and that every value reads back.
func TestKeysCannotEscapeRoot(t *testing.T) {
	ctx := context.Background()
	parent := t.TempDir()
	root := filepath.Join(parent, "root")
	s := openStore(t, root)
	keys := []string{
		"../../etc/passwd", "/abs", "/etc/shadow", "a/../../b", "\x00", "..", ".", "./x",
		"a\x00b", "a/b/c/d", "~", "$HOME", "*", "LOCK", "journal", "tmp", "ns", "namespace",
		"\\..\\..\\windows", "\xff\xfe", strings.Repeat("../", 300), strings.Repeat("/", 1024),
	}
	namespaces := []string{"ns", "../..", "/", "..", "\x00", "a/../../b"}
	for _, ns := range namespaces {
		for i, k := range keys {
			if err := s.Put(ctx, ns, []byte(k), []byte(fmt.Sprintf("%s|%d", ns, i))); err != nil {
				t.Fatalf("put %q in %q: %v", k, ns, err)
			}
		}
	}
	if names, _ := readNames(parent); !slices.Equal(names, []string{"root"}) {
		t.Errorf("the root's parent holds %v, want only the root", names)
	}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil || !filepath.IsLocal(rel) && rel != "." {
			t.Errorf("%s is outside the root", path)
		}
		if d.Type()&fs.ModeSymlink != 0 {
			t.Errorf("%s is a symbolic link", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range namespaces {
		for i, k := range keys {
			want := fmt.Sprintf("%s|%d", ns, i)
			got, ok, err := s.Get(ctx, ns, []byte(k))
			if err != nil || !ok || string(got) != want {
				t.Errorf("get %q in %q = %q, %v, %v; want %q", k, ns, got, ok, err, want)
			}
		}
		res, err := s.Scan(ctx, storage.ScanRequest{Namespace: ns, Limit: 1000, KeysOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Items) != len(keys) {
			t.Errorf("scan of %q found %d keys, want %d", ns, len(res.Items), len(keys))
		}
	}
	// The namespace's directory names it, for people looking at the tree.
	name, err := os.ReadFile(filepath.Join(root, nsRel("../.."), nsNameFile))
	if err != nil || string(name) != "../.." {
		t.Errorf("namespace name file = %q, %v; want %q", name, err, "../..")
	}
}

// TestScanOrderMatchesModel writes keys around the chunk boundaries (100 bytes of key is
// one 200-character chunk) and checks full, paged, prefix and start-after scans against a
// sorted model.
func TestScanOrderMatchesModel(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte{0x00, 0x01, 'a', 'b', 0x7f, 0x80, 0xff}
	randBytes := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return b
	}
	model := map[string][]byte{}
	stems := [][]byte{randBytes(100), randBytes(99), randBytes(200)}
	for range 400 {
		var k []byte
		switch rng.IntN(4) {
		case 0:
			k = randBytes(1 + rng.IntN(4))
		case 1:
			stem := stems[rng.IntN(len(stems))]
			k = append(slices.Clone(stem[:rng.IntN(len(stem))+1]), randBytes(rng.IntN(3))...)
		case 2:
			k = append(slices.Clone(stems[rng.IntN(len(stems))]), randBytes(rng.IntN(120))...)
		default:
			k = randBytes(1 + rng.IntN(storage.MaxKeySize))
		}
		if len(k) == 0 || len(k) > storage.MaxKeySize {
			continue
		}
		v := randBytes(rng.IntN(8))
		model[string(k)] = v
	}
	// Write half with Put and half in batches.
	var ops []storage.Op
	i := 0
	for k, v := range model {
		if i%2 == 0 {
			if err := s.Put(ctx, "ns", []byte(k), v); err != nil {
				t.Fatal(err)
			}
		} else {
			ops = append(ops, storage.Op{Kind: storage.OpPut, Key: []byte(k), Value: v})
		}
		i++
	}
	if err := s.Batch(ctx, "ns", ops); err != nil {
		t.Fatal(err)
	}
	keys := make([]string, 0, len(model))
	for k := range model {
		keys = append(keys, k)
	}
	slices.Sort(keys)

	expect := func(prefix, after []byte, limit int) ([]string, bool) {
		var out []string
		for _, k := range keys {
			if strings.HasPrefix(k, string(prefix)) && k > string(after) {
				out = append(out, k)
			}
		}
		if len(out) > limit {
			return out[:limit], true
		}
		return out, false
	}
	check := func(prefix, after []byte, limit int, keysOnly bool) {
		t.Helper()
		res, err := s.Scan(ctx, storage.ScanRequest{Namespace: "ns", Prefix: prefix, StartAfter: after, Limit: limit, KeysOnly: keysOnly})
		if err != nil {
			t.Fatal(err)
		}
		want, more := expect(prefix, after, limit)
		got := make([]string, len(res.Items))
		for i, kv := range res.Items {
			got[i] = string(kv.Key)
			if keysOnly && kv.Value != nil {
				t.Errorf("keys-only scan returned a value for %x", kv.Key)
			}
			if !keysOnly && !bytes.Equal(kv.Value, model[got[i]]) {
				t.Errorf("value of %x = %x, want %x", kv.Key, kv.Value, model[got[i]])
			}
		}
		if !slices.Equal(got, want) || res.More != more {
			t.Fatalf("scan prefix %x (%d bytes) after %x (%d bytes) limit %d: got %d keys more=%v, want %d keys more=%v",
				prefix, len(prefix), after, len(after), limit, len(got), res.More, len(want), more)
		}
	}
	check(nil, nil, storage.MaxScanLimit, false)
	// Page through everything with small pages.
	var after []byte
	var seen []string
	for {
		res, err := s.Scan(ctx, storage.ScanRequest{Namespace: "ns", StartAfter: after, Limit: 7, KeysOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range res.Items {
			seen = append(seen, string(kv.Key))
		}
		if !res.More {
			break
		}
		after = res.Items[len(res.Items)-1].Key
	}
	if !slices.Equal(seen, keys) {
		t.Fatalf("paging saw %d keys, want %d in order", len(seen), len(keys))
	}
	for range 300 {
		var prefix, after []byte
		if rng.IntN(3) > 0 {
			k := keys[rng.IntN(len(keys))]
			prefix = []byte(k[:rng.IntN(len(k)+1)])
		}
		switch rng.IntN(3) {
		case 0:
			after = []byte(keys[rng.IntN(len(keys))])
		case 1:
			after = randBytes(rng.IntN(150))
		}
		check(prefix, after, 1+rng.IntN(50), rng.IntN(2) == 0)
	}
}

func TestDeleteRemovesEmptiedDirectories(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	s := openStore(t, root)
	long := bytes.Repeat([]byte{0xab}, 250) // three chunks: two directories and a file
	if err := s.Put(ctx, "ns", long, []byte("v")); err != nil {
		t.Fatal(err)
	}
	dirs, _ := keyParts(long)
	if len(dirs) != 2 {
		t.Fatalf("a 250-byte key has %d directories, want 2", len(dirs))
	}
	if existed, err := s.Delete(ctx, "ns", long); err != nil || !existed {
		t.Fatalf("delete = %v, %v", existed, err)
	}
	if _, err := os.Stat(filepath.Join(root, nsRel("ns"), dirs[0])); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("emptied key directory still there: %v", err)
	}
	if existed, err := s.Delete(ctx, "ns", long); err != nil || existed {
		t.Errorf("second delete = %v, %v; want false, nil", existed, err)
	}
}

// TestConcurrentCAS increments one counter from 16 goroutines with compare-and-swap and
// checks that no increment is lost, while other goroutines write and delete keys of the
// same directory.
func TestConcurrentCAS(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	const workers, perWorker = 16, 25
	key := []byte("counter")
	var wg sync.WaitGroup
	errc := make(chan error, workers+4)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perWorker {
				for {
					cur, ok, err := s.Get(ctx, "ns", key)
					if err != nil {
						errc <- err
						return
					}
					n := 0
					if ok {
						fmt.Sscan(string(cur), &n)
					}
					res, err := s.CompareAndSwap(ctx, storage.CASRequest{
						Namespace: "ns", Key: key, ExpectPresent: ok, Expected: cur, Value: []byte(fmt.Sprint(n + 1)),
					})
					if err != nil {
						errc <- err
						return
					}
					if res.Swapped {
						break
					}
				}
			}
			_ = w
		}()
	}
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				k := []byte(fmt.Sprintf("other-%d-%d", w, i%5))
				if err := s.Put(ctx, "ns", k, []byte("x")); err != nil {
					errc <- err
					return
				}
				if _, err := s.Delete(ctx, "ns", k); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	got, _, _ := s.Get(ctx, "ns", key)
	if want := fmt.Sprint(workers * perWorker); string(got) != want {
		t.Errorf("counter = %s, want %s", got, want)
	}
}

// TestBatchAtomicForReaders flips a set of keys between two values with batches while
// readers scan them: no scan may see a mix.
func TestBatchAtomicForReaders(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	const n = 20
	batch := func(v string) []storage.Op {
		ops := make([]storage.Op, n)
		for i := range ops {
			ops[i] = storage.Op{Kind: storage.OpPut, Key: []byte(fmt.Sprintf("k%02d", i)), Value: []byte(v)}
		}
		return ops
	}
	if err := s.Batch(ctx, "ns", batch("a")); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				res, err := s.Scan(ctx, storage.ScanRequest{Namespace: "ns"})
				if err != nil {
					t.Error(err)
					return
				}
				if len(res.Items) != n {
					t.Errorf("scan saw %d keys, want %d", len(res.Items), n)
					return
				}
				for _, kv := range res.Items {
					if !bytes.Equal(kv.Value, res.Items[0].Value) {
						t.Errorf("scan saw a half-applied batch: %s=%s but %s=%s", res.Items[0].Key, res.Items[0].Value, kv.Key, kv.Value)
						return
					}
				}
			}
		}()
	}
	for i := range 30 {
		if err := s.Batch(ctx, "ns", batch(string(rune('a'+i%2)))); err != nil {
			t.Error(err)
			break
		}
	}
	close(done)
	wg.Wait()
}

func TestBatchLastOpOnAKeyWins(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	if err := s.Put(ctx, "ns", []byte("gone"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	err := s.Batch(ctx, "ns", []storage.Op{
		{Kind: storage.OpPut, Key: []byte("a"), Value: []byte("1")},
		{Kind: storage.OpDelete, Key: []byte("a")},
		{Kind: storage.OpPut, Key: []byte("a"), Value: []byte("2")},
		{Kind: storage.OpPut, Key: []byte("gone"), Value: []byte("y")},
		{Kind: storage.OpDelete, Key: []byte("gone")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if v, ok, _ := s.Get(ctx, "ns", []byte("a")); !ok || string(v) != "2" {
		t.Errorf("a = %q, %v; want 2", v, ok)
	}
	if _, ok, _ := s.Get(ctx, "ns", []byte("gone")); ok {
		t.Error("gone still present")
	}
	assertTmpEmpty(t, s.root)
}

// TestNoSpace makes writing values fail with ENOSPC: the error wraps storage.ErrNoSpace,
// says the disk is full, and neither a value nor a temporary file is left behind.
func TestNoSpace(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	s := openStore(t, root)
	if err := s.Put(ctx, "ns", []byte("k"), []byte("old")); err != nil {
		t.Fatal(err)
	}
	// The batch's second value is half written when the disk fills up; after the batch,
	// every write fails.
	var full atomic.Bool
	s.faults = &faults{write: func(f *os.File, b []byte) (int, error) {
		if full.Load() {
			return 0, &fs.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
		}
		if string(b) == "two" {
			n, _ := f.Write(b[:len(b)/2])
			return n, &fs.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
		}
		return f.Write(b)
	}}
	err := s.Batch(ctx, "ns", []storage.Op{
		{Kind: storage.OpPut, Key: []byte("b1"), Value: []byte("one")},
		{Kind: storage.OpPut, Key: []byte("b2"), Value: []byte("two")},
	})
	checkNoSpace(t, "batch", err)
	full.Store(true)
	err = s.Put(ctx, "ns", []byte("k"), []byte("new value"))
	checkNoSpace(t, "put", err)
	_, err = s.CompareAndSwap(ctx, storage.CASRequest{Namespace: "ns", Key: []byte("k"), ExpectPresent: true, Expected: []byte("old"), Value: []byte("x")})
	checkNoSpace(t, "cas", err)
	s.faults = nil
	if v, _, _ := s.Get(ctx, "ns", []byte("k")); string(v) != "old" {
		t.Errorf("k = %q after failed writes, want old", v)
	}
	for _, k := range []string{"b1", "b2"} {
		if _, ok, _ := s.Get(ctx, "ns", []byte(k)); ok {
			t.Errorf("%s of the failed batch is visible", k)
		}
	}
	assertTmpEmpty(t, root)
}

func checkNoSpace(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, storage.ErrNoSpace) || !strings.Contains(err.Error(), "disk") || !strings.Contains(err.Error(), "full") {
		t.Errorf("%s on a full disk: error %v, want ErrNoSpace saying the disk is full", what, err)
	}
}

func TestSecondStoreOnRootIsRefused(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	first := openStore(t, root)
	wantMsg := fmt.Sprintf("root %s is in use by another process (pid %d)", root, os.Getpid())
	for _, validateOnly := range []bool{true, false} {
		second := newQuietStore()
		ds := second.Configure(ctx, base.ConfigureRequest{Config: rootConfig(root), ValidateOnly: validateOnly})
		if err := ds.Err(); err == nil || !strings.Contains(err.Error(), wantMsg) {
			t.Errorf("second store (validate only %v): error %v, want one containing %q", validateOnly, err, wantMsg)
		}
		second.Close()
	}
	// The holder itself may validate its own root.
	if ds := first.Configure(ctx, base.ConfigureRequest{Config: rootConfig(root), ValidateOnly: true}); ds.HasErrors() {
		t.Errorf("validate-only configure by the holder: %v", ds.Err())
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	third := openStore(t, root)
	if err := third.Put(ctx, "ns", []byte("k"), nil); err != nil {
		t.Errorf("put after the first store closed: %v", err)
	}
}

// assertTmpEmpty checks that root/tmp holds no temporary file.
func assertTmpEmpty(t *testing.T, root string) {
	t.Helper()
	names, err := readNames(filepath.Join(root, tmpDirName))
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 0 {
		t.Errorf("tmp/ holds %v, want nothing", names)
	}
}

func TestLongestKeyPathFits(t *testing.T) {
	key := bytes.Repeat([]byte{0xff}, storage.MaxKeySize)
	rel := filepath.Join(nsRel(strings.Repeat("n", storage.MaxNamespaceSize)), keyRel(key))
	if got := len("/") + len(rel); got != 4095-maxRootLen {
		t.Errorf("longest key path below the root is %d bytes, maxRootLen assumes %d", got, 4095-maxRootLen)
	}
	ds := newQuietStore().Configure(context.Background(), base.ConfigureRequest{
		Config: rootConfig("/" + strings.Repeat("d", maxRootLen)), ValidateOnly: true,
	})
	if err := ds.Err(); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Errorf("a root too long for the longest key: %v, want an error", err)
	}
	// The longest key works at a root near the limit.
	root := t.TempDir()
	for len(root) < maxRootLen-250 {
		root = filepath.Join(root, strings.Repeat("r", 200))
	}
	s := openStore(t, root)
	if err := s.Put(context.Background(), "ns", key, []byte("v")); err != nil {
		t.Fatalf("longest key under a %d-byte root: %v", len(root), err)
	}
}

// TestScanCutsLargePages checks that a page stops before its values pass MaxScanBytes.
func TestScanCutsLargePages(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	big := make([]byte, storage.MaxValueSize)
	for _, k := range []string{"a", "b", "c"} {
		if err := s.Put(ctx, "ns", []byte(k), big); err != nil {
			t.Fatal(err)
		}
	}
	res, err := s.Scan(ctx, storage.ScanRequest{Namespace: "ns", Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Items) != 1 || !res.More {
		t.Errorf("scan of three 16 MiB values: %d items, more=%v; want 1 item and more", len(res.Items), res.More)
	}
	res, err = s.Scan(ctx, storage.ScanRequest{Namespace: "ns", Limit: 10, KeysOnly: true})
	if err != nil || len(res.Items) != 3 || res.More {
		t.Errorf("keys-only scan: %d items, more=%v, %v; want 3 items, no more", len(res.Items), res.More, err)
	}
}
