package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/sdktest"
	"github.com/limitgraph/limit/sdk/storage"
)

// serveEnv makes the test binary serve the plugin instead of running tests, so the tests
// get a real plugin process without a build step (the pattern of Nomad's plugin tests).
const serveEnv = "LIMIT_EXAMPLE_STORAGE_SERVE"

func TestMain(m *testing.M) {
	if os.Getenv(serveEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// pluginEnv is the whole environment of a plugin process the tests start.
var pluginEnv = []string{serveEnv + "=1"}

// testBinary returns the path of the running test binary.
func testBinary(t testing.TB) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// openStore configures an in-process store on the log at path and closes it at cleanup.
func openStore(t testing.TB, path string) *Store {
	t.Helper()
	s := newStore(nil)
	cfg := fmt.Appendf(nil, `{"path": %q}`, path)
	if ds := s.Configure(context.Background(), base.ConfigureRequest{Config: cfg}); ds.HasErrors() {
		t.Fatalf("configure: %v", ds.Err())
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformanceInProcess(t *testing.T) {
	sdktest.RunStorage(t, openStore(t, filepath.Join(t.TempDir(), "example.log")))
}

// TestDeclaresOnlyCapabilitiesTheHostReads: an example should not teach declaring names
// the host ignores, as if they promised something.
func TestDeclaresOnlyCapabilitiesTheHostReads(t *testing.T) {
	for _, c := range newStore(nil).PluginInfo().Capabilities {
		if c != storage.CapBatchNamespaces {
			t.Errorf("capability %q: the host reads none but %q from a storage plugin", c, storage.CapBatchNamespaces)
		}
	}
}

func TestConformancePlugin(t *testing.T) {
	// The default path, resolved against the data directory the host hands over.
	dir := t.TempDir()
	s, stop, err := sdktest.LaunchStorage(t.Context(), testBinary(t), pluginEnv, nil, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	sdktest.RunStorage(t, s)
	if _, err := os.Stat(filepath.Join(dir, defaultPath)); err != nil {
		t.Errorf("the log is not at the default path in the data directory: %v", err)
	}
}

// fill writes a mix of operations and returns what the store must hold afterwards.
func fill(t *testing.T, s storage.Storage) map[string]string {
	t.Helper()
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.Put(ctx, "a", []byte("k1"), []byte("v1")))
	must(s.Put(ctx, "a", []byte("k2"), []byte{}))
	must(s.Put(ctx, "b", []byte{0, 0xff}, []byte("binary key")))
	must(s.Batch(ctx, "a", []storage.Op{
		{Kind: storage.OpPut, Key: []byte("k3"), Value: []byte("v3")},
		{Kind: storage.OpDelete, Key: []byte("k1")},
		{Kind: storage.OpPut, Key: []byte("k4"), Value: bytes.Repeat([]byte("x"), 100000)},
	}))
	if _, err := s.Delete(ctx, "b", []byte("never")); err != nil {
		t.Fatal(err)
	}
	res, err := s.CompareAndSwap(ctx, storage.CASRequest{Namespace: "a", Key: []byte("k3"), ExpectPresent: true, Expected: []byte("v3"), Value: []byte("v3'")})
	must(err)
	if !res.Swapped {
		t.Fatal("compare-and-swap did not swap")
	}
	return map[string]string{"a/k2": "", "a/k3": "v3'", "a/k4": strings.Repeat("x", 100000), "b/\x00\xff": "binary key"}
}

// contents reads everything in namespaces a and b.
func contents(t *testing.T, s storage.Storage) map[string]string {
	t.Helper()
	got := map[string]string{}
	for _, ns := range []string{"a", "b"} {
		res, err := s.Scan(context.Background(), storage.ScanRequest{Namespace: ns, Limit: storage.MaxScanLimit})
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range res.Items {
			got[ns+"/"+string(kv.Key)] = string(kv.Value)
		}
	}
	return got
}

func wantContents(t *testing.T, s storage.Storage, want map[string]string, when string) {
	t.Helper()
	got := contents(t, s)
	if len(got) != len(want) {
		t.Errorf("%s: %d keys, want %d", when, len(got), len(want))
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s: key %q holds %.20q (present %v), want %.20q", when, k, g, ok, v)
		}
	}
}

func TestReopenReplaysTheLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "example.log")
	s := openStore(t, path)
	want := fill(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wantContents(t, openStore(t, path), want, "after reopening")
}

// logSize returns the size of the file at path.
func logSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func TestTornTailIsDropped(t *testing.T) {
	for _, tc := range []struct {
		name string
		tail func(whole []byte) []byte // what a crash left after the whole records
	}{
		{"part of a header", func([]byte) []byte { return []byte{7, 0, 0} }},
		{"header and part of the body", func(whole []byte) []byte {
			rec := appendRecord(nil, "a", []storage.Op{{Kind: storage.OpPut, Key: []byte("lost"), Value: []byte("never acknowledged")}})
			return rec[:len(rec)-5]
		}},
		{"whole record with a bad checksum", func([]byte) []byte {
			rec := appendRecord(nil, "a", []storage.Op{{Kind: storage.OpPut, Key: []byte("lost"), Value: []byte("x")}})
			rec[len(rec)-1] ^= 0xff
			return rec
		}},
		{"zeros the file system filled in", func([]byte) []byte { return make([]byte, 4096) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "example.log")
			s := openStore(t, path)
			want := fill(t, s)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			good := logSize(t, path)
			whole, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, append(whole, tc.tail(whole)...), 0o600); err != nil {
				t.Fatal(err)
			}
			s = openStore(t, path)
			wantContents(t, s, want, "after dropping the torn tail")
			if got := logSize(t, path); got != good {
				t.Errorf("log is %d bytes after replay, want the %d bytes of its whole records", got, good)
			}
			// Writes after the repair land behind the whole records and survive.
			if err := s.Put(context.Background(), "b", []byte("after"), []byte("repair")); err != nil {
				t.Fatal(err)
			}
			want["b/after"] = "repair"
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			wantContents(t, openStore(t, path), want, "after a write behind the repaired tail")
		})
	}
}

// appendRecord frames a record the way appendLog.append does, for building test logs.
func appendRecord(b []byte, ns string, ops []storage.Op) []byte {
	body := encodeBody(ns, ops)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(body)))
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(body, castagnoli))
	return append(b, body...)
}

func TestDamageBeforeTheTailIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "example.log")
	s := openStore(t, path)
	fill(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[10] ^= 0xff // inside the first record's body: whole records follow
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	ds := newStore(nil).Configure(t.Context(), base.ConfigureRequest{Config: fmt.Appendf(nil, `{"path": %q}`, path)})
	if !ds.HasErrors() || !strings.Contains(ds.Err().Error(), "damaged at byte 0") {
		t.Fatalf("configure on a damaged log: %v, want an error saying it is damaged at byte 0", ds.Err())
	}
	if got := int64(len(b)); logSize(t, path) != got {
		t.Errorf("the damaged log was changed; it must be left for a human to look at")
	}
}

// TestKillKeepsAcknowledgedWrites kills the plugin process with SIGKILL and checks that
// every write it acknowledged is there when a new process opens the log.
func TestKillKeepsAcknowledgedWrites(t *testing.T) {
	dir := t.TempDir()
	client, cmd := base.NewClientCmd(base.LaunchConfig{Path: testBinary(t), Kind: base.KindStorage, Plugins: storage.PluginSet(), Env: pluginEnv})
	defer client.Kill()
	raw, err := base.Dispense(t.Context(), client, base.KindStorage)
	if err != nil {
		t.Fatal(err)
	}
	s := raw.(storage.Storage)
	if ds := s.Configure(t.Context(), base.ConfigureRequest{Config: []byte(`{}`), DataDir: dir}); ds.HasErrors() {
		t.Fatal(ds.Err())
	}
	want := fill(t, s)
	for i := range 50 {
		k := fmt.Sprintf("key-%02d", i)
		if err := s.Put(t.Context(), "b", []byte(k), []byte(k)); err != nil {
			t.Fatal(err)
		}
		want["b/"+k] = k
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_, _ = cmd.Process.Wait()
	// The lock died with the process, so a new one can open the log.
	s2, stop, err := sdktest.LaunchStorage(t.Context(), testBinary(t), pluginEnv, nil, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	wantContents(t, s2, want, "after kill -9 and restart")
}

func TestConfigDiagnostics(t *testing.T) {
	dir := t.TempDir()
	inUse := filepath.Join(dir, "in-use.log")
	openStore(t, inUse)
	for _, tc := range []struct {
		name, config, dataDir string
		path                  []string
		summary               string
	}{
		{"unknown attribute", `{"bogus": 1}`, dir, []string{"bogus"}, `unsupported attribute "bogus"`},
		{"wrong type", `{"path": 5}`, dir, []string{"path"}, "must be of type string"},
		{"empty path", `{"path": ""}`, dir, []string{"path"}, "must not be empty"},
		{"missing directory", `{"path": "/nonexistent/dir/x.log"}`, dir, []string{"path"}, "does not exist"},
		{"relative path without data directory", `{}`, "", []string{"path"}, "no data directory"},
		{"log in use by another store", fmt.Sprintf(`{"path": %q}`, inUse), dir, []string{"path"}, "in use by another process"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(nil)
			defer s.Close()
			ds := s.Configure(t.Context(), base.ConfigureRequest{Config: []byte(tc.config), DataDir: tc.dataDir})
			if len(ds) != 1 || !ds.HasErrors() {
				t.Fatalf("got diagnostics %v, want one error", ds)
			}
			if !slices.Equal(ds[0].Path, tc.path) || !strings.Contains(ds[0].Summary, tc.summary) {
				t.Errorf("got %q at %v, want %q at %v", ds[0].Summary, ds[0].Path, tc.summary, tc.path)
			}
		})
	}
}

func TestConfigThroughThePlugin(t *testing.T) {
	_, _, err := sdktest.LaunchStorage(t.Context(), testBinary(t), pluginEnv, []byte(`{"path": "/nonexistent/dir/x.log"}`), t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "path: directory of") {
		t.Fatalf("launch with a bad path: %v, want the diagnostic for attribute path", err)
	}
}

func TestConfigureAgain(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "example.log")
	s := openStore(t, path)
	if ds := s.Configure(t.Context(), base.ConfigureRequest{Config: fmt.Appendf(nil, `{"path": %q}`, path)}); ds.HasErrors() {
		t.Errorf("configure again with the same path: %v, want no error", ds.Err())
	}
	ds := s.Configure(t.Context(), base.ConfigureRequest{Config: []byte(`{}`), DataDir: dir + "/other"})
	if !ds.HasErrors() {
		t.Error("configure again with another path: no error, want one")
	}
	// Validation alone never opens anything.
	v := newStore(nil)
	if ds := v.Configure(t.Context(), base.ConfigureRequest{Config: []byte(`{}`), DataDir: dir, ValidateOnly: true}); ds.HasErrors() {
		t.Fatal(ds.Err())
	}
	if _, _, err := v.Get(t.Context(), "a", []byte("k")); !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("get after validation only: %v, want storage.ErrUnavailable (not configured)", err)
	}
}

func TestClosedStoreRefusesCalls(t *testing.T) {
	s := openStore(t, filepath.Join(t.TempDir(), "example.log"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(t.Context(), "a", []byte("k"), nil); !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("put after close: %v, want storage.ErrUnavailable", err)
	}
	if _, err := s.Scan(t.Context(), storage.ScanRequest{Namespace: "a"}); !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("scan after close: %v, want storage.ErrUnavailable", err)
	}
}

func TestDecodeBodyRejectsGarbage(t *testing.T) {
	good := encodeBody("ns", []storage.Op{{Kind: storage.OpPut, Key: []byte("k"), Value: []byte("v")}, {Kind: storage.OpDelete, Key: []byte("d")}})
	ns, ops, err := decodeBody(good)
	if err != nil || ns != "ns" || len(ops) != 2 || string(ops[0].Value) != "v" || ops[1].Kind != storage.OpDelete {
		t.Fatalf("decode a good body: %q %+v %v", ns, ops, err)
	}
	for _, b := range [][]byte{
		good[:len(good)-1],
		append(slices.Clone(good), 0),
		{2, 'n', 's', 0xff, 0xff, 0xff, 0xff, 0x0f},
		{0, 1, 9, 1, 'k'},
	} {
		if _, _, err := decodeBody(b); err == nil {
			t.Errorf("decode %x: no error, want one", b)
		}
	}
}
