package backup

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/limitgraph/limit/sdk/storage"
	"github.com/limitgraph/limit/sdk/storage/memstore"
)

type kv struct{ ns, k, v string }

// makeBackup fills a memory store and a data_dir, and writes their backup to a file.
func makeBackup(t *testing.T) (path string, items []kv, dataDir string) {
	t.Helper()
	ctx := context.Background()
	st := memstore.New()
	items = []kv{{"a", "\x00\xff", "bin"}, {"a", "e", ""}, {"a", "k", "v"}, {"t/default/index", "meta/format", "2"}, {"z", "big", strings.Repeat("x", 3<<20)}}
	for _, it := range items {
		if err := st.Put(ctx, it.ns, []byte(it.k), []byte(it.v)); err != nil {
			t.Fatal(err)
		}
	}
	dataDir = t.TempDir()
	must(t, os.WriteFile(filepath.Join(dataDir, "key"), []byte("secret key"), 0o600))
	must(t, os.WriteFile(filepath.Join(dataDir, "node_id"), []byte("node-1\n"), 0o600))
	must(t, os.MkdirAll(filepath.Join(dataDir, "journal", "sub"), 0o700))
	must(t, os.WriteFile(filepath.Join(dataDir, "journal", "p1.json"), []byte(`{"pending":1}`), 0o600))
	b, err := Prepare(ctx, Source{DataDir: dataDir, Files: []string{"key", "node_id"}, Dirs: []string{"journal", "missing"}, Store: st,
		Manifest: Manifest{Version: "test", Node: "node-1", StorageFormat: 2, Storage: StorageInfo{Plugin: "memory"}}})
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(t.TempDir(), "b.tar.gz")
	f, err := os.Create(path)
	must(t, err)
	if _, err := b.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	must(t, f.Close())
	must(t, b.Close())
	if n, _ := SweepTemp(dataDir); n != 0 {
		t.Errorf("Close left %d backup folders", n)
	}
	return path, items, dataDir
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestRoundTrip(t *testing.T) {
	path, items, _ := makeBackup(t)
	a, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := a.Manifest
	if m.Format != Format || m.Node != "node-1" || m.Storage.Keys != 5 || m.Storage.Namespaces != 3 || len(m.Files) != 3 {
		t.Errorf("manifest %+v", m)
	}
	if string(a.Files["key"]) != "secret key" || string(a.Files["journal/p1.json"]) != `{"pending":1}` || string(a.Files["node_id"]) != "node-1\n" {
		t.Errorf("files %q", a.Files)
	}
	var got []kv
	err = a.Items(context.Background(), func(ns string, k, v []byte) error {
		got = append(got, kv{ns, string(k), string(v)})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(items) {
		t.Errorf("items differ:\n got %.200v\nwant %.200v", got, items)
	}
}

// rewrite copies the archive at path, letting change alter (or drop, returning nil) each
// member's content.
func rewrite(t *testing.T, path string, change func(name string, b []byte) []byte) string {
	t.Helper()
	f, err := os.Open(path)
	must(t, err)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	must(t, err)
	tr := tar.NewReader(zr)
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	tw := tar.NewWriter(zw)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(t, err)
		b, err := io.ReadAll(tr)
		must(t, err)
		b = change(hdr.Name, b)
		if b == nil {
			continue
		}
		hdr.Size = int64(len(b))
		must(t, tw.WriteHeader(hdr))
		_, err = tw.Write(b)
		must(t, err)
	}
	must(t, tw.Close())
	must(t, zw.Close())
	p := filepath.Join(t.TempDir(), "changed.tar.gz")
	must(t, os.WriteFile(p, out.Bytes(), 0o600))
	return p
}

func TestDamageRefused(t *testing.T) {
	path, _, _ := makeBackup(t)
	raw, err := os.ReadFile(path)
	must(t, err)
	cut := filepath.Join(t.TempDir(), "cut.tar.gz")
	must(t, os.WriteFile(cut, raw[:len(raw)/2], 0o600))
	cases := map[string]struct {
		path string
		want string
	}{
		"cut short": {cut, "cut short"},
		"a value changed": {rewrite(t, path, func(name string, b []byte) []byte {
			if name == StorageName {
				return bytes.Replace(b, []byte(`"v":"dg=="`), []byte(`"v":"dw=="`), 1)
			}
			return b
		}), "SHA-256"},
		"a key dropped": {rewrite(t, path, func(name string, b []byte) []byte {
			if name == StorageName {
				i := bytes.IndexByte(b, '\n')
				return b[i+1:]
			}
			return b
		}), "bytes"},
		"the key file changed": {rewrite(t, path, func(name string, b []byte) []byte {
			if name == "data/key" {
				return []byte("other key!")
			}
			return b
		}), "SHA-256"},
		"a journal file dropped": {rewrite(t, path, func(name string, b []byte) []byte {
			if name == "data/journal/p1.json" {
				return nil
			}
			return b
		}), "does not hold"},
		"no manifest": {rewrite(t, path, func(name string, b []byte) []byte {
			if name == ManifestName {
				return nil
			}
			return b
		}), "first member"},
		"another format": {rewrite(t, path, func(name string, b []byte) []byte {
			if name == ManifestName {
				return bytes.Replace(b, []byte(Format), []byte("limit-backup/9"), 1)
			}
			return b
		}), "limit-backup/9"},
		"an unsafe path": {rewrite(t, path, func(name string, b []byte) []byte {
			if name == ManifestName {
				return bytes.Replace(b, []byte(`"path": "key"`), []byte(`"path": "../key"`), 1)
			}
			return b
		}), "not in its manifest"},
		"not gzip": {func() string {
			p := filepath.Join(t.TempDir(), "x")
			must(t, os.WriteFile(p, []byte("hello"), 0o600))
			return p
		}(), "not gzip"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Open(c.path, nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Open: %v, want an error saying %q", err, c.want)
			}
		})
	}
}

// A snapshot that fails leaves no folder behind, and the error is the backend's.
func TestPrepareFails(t *testing.T) {
	dir := t.TempDir()
	st := memstore.New()
	must(t, st.Put(context.Background(), "a", []byte("k"), []byte("v")))
	must(t, st.Close())
	_, err := Prepare(context.Background(), Source{DataDir: dir, Store: st})
	if err == nil || !storage.IsUnavailable(err) {
		t.Fatalf("Prepare on a closed store: %v, want unavailable", err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 0 {
		t.Errorf("left %v", ents)
	}
	_, err = Prepare(context.Background(), Source{DataDir: dir, Files: []string{"absent"}, Store: memstore.New()})
	if err == nil {
		t.Fatal("a missing listed file: no error")
	}
}

// TestOpenAllowed: a manifest listing a path the caller does not allow, or one path
// twice, is refused before any member is written anywhere.
func TestOpenAllowed(t *testing.T) {
	path, _, _ := makeBackup(t)
	only := func(rel string) bool { return rel == "key" || rel == "node_id" || strings.HasPrefix(rel, "journal/") }
	if _, err := Open(path, only); err != nil {
		t.Fatalf("allowed paths: %v", err)
	}
	if _, err := Open(path, func(rel string) bool { return rel != "journal/p1.json" }); err == nil || !strings.Contains(err.Error(), `"journal/p1.json", which is not a file a backup holds`) {
		t.Errorf("a path not allowed: %v", err)
	}
	dup := rewrite(t, path, func(name string, b []byte) []byte {
		if name == ManifestName {
			return bytes.Replace(b, []byte(`"path": "node_id"`), []byte(`"path": "key"`), 1)
		}
		return b
	})
	if _, err := Open(dup, nil); err == nil || !strings.Contains(err.Error(), "lists key twice") {
		t.Errorf("a path listed twice: %v", err)
	}
}

// TestPrepareStopsAboveReserve: the copy of the storage stops before it would take the
// disk below the reserve (host.min_free_disk), with ErrNoRoom, and leaves nothing.
func TestPrepareStopsAboveReserve(t *testing.T) {
	dir := t.TempDir()
	st := memstore.New()
	for i := range 64 {
		must(t, st.Put(context.Background(), "a", []byte(fmt.Sprint(i)), bytes.Repeat([]byte{'x'}, 1<<20)))
	}
	// The disk's free space goes down as the copy is written.
	const total = 200 << 20
	free := func() uint64 {
		var used int64
		_ = filepath.WalkDir(dir, func(_ string, d os.DirEntry, _ error) error {
			if fi, err := d.Info(); err == nil && !d.IsDir() {
				used += fi.Size()
			}
			return nil
		})
		return uint64(total - used)
	}
	room := func() (uint64, uint64, bool) { return free(), total - 40<<20, true }
	_, err := Prepare(context.Background(), Source{DataDir: dir, Store: st, Room: room})
	if !errors.Is(err, ErrNoRoom) {
		t.Fatalf("Prepare with 40 MiB above the reserve, 64 MiB to copy: %v, want ErrNoRoom", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("left %v", ents)
	}
	room = func() (uint64, uint64, bool) { return free(), total - 150<<20, true }
	b, err := Prepare(context.Background(), Source{DataDir: dir, Store: st, Room: room})
	if err != nil {
		t.Fatalf("Prepare with room: %v", err)
	}
	b.Close()
}
