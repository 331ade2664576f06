package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/limitgraph/limit/host/version"
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/sdktest"
	"github.com/limitgraph/limit/sdk/storage"
)

// serveEnv makes the test binary serve the plugin instead of running tests, so tests get a
// real plugin process without building one.
const serveEnv = "LIMIT_TEST_SERVE_PLUGIN"

func TestMain(m *testing.M) {
	if os.Getenv(serveEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// pluginEnv is the whole environment of a plugin process started by the tests.
var pluginEnv = []string{serveEnv + "=1"}

// testBinary returns the absolute path of the running test binary.
func testBinary(t testing.TB) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// launchPlugin starts the plugin with sdktest.LaunchStorage on a database at path and
// stops it at cleanup.
func launchPlugin(t testing.TB, path string) storage.Storage {
	t.Helper()
	cfg := fmt.Appendf(nil, `{"path": %q}`, path)
	s, stop, err := sdktest.LaunchStorage(context.Background(), testBinary(t), pluginEnv, cfg, filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return s
}

// startPlugin starts the plugin without configuring it and returns its client together
// with the go-plugin client, which knows the process.
func startPlugin(t testing.TB) (*storage.Client, *plugin.Client) {
	t.Helper()
	pc := base.NewClient(base.LaunchConfig{
		Path: testBinary(t), Kind: base.KindStorage, Plugins: storage.PluginSet(), Env: pluginEnv,
	})
	t.Cleanup(pc.Kill)
	raw, err := base.Dispense(context.Background(), pc, base.KindStorage)
	if err != nil {
		t.Fatal(err)
	}
	return raw.(*storage.Client), pc
}

func TestConformanceInProcess(t *testing.T) {
	sdktest.RunStorage(t, openStore(t, nil))
}

// TestConformanceSmallGroups runs the suite with max_batch 1 and one reader, where every
// write commits alone and reads queue for one connection, so the suite depends on neither
// grouping nor a reader pool.
func TestConformanceSmallGroups(t *testing.T) {
	sdktest.RunStorage(t, openStore(t, map[string]any{"max_batch": 1, "readers": 1}))
}

func TestConformancePlugin(t *testing.T) {
	sdktest.RunStorage(t, launchPlugin(t, filepath.Join(t.TempDir(), "x.sqlite")))
}

func TestPluginInfoAndSchema(t *testing.T) {
	s, _ := startPlugin(t)
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "sqlite" || info.Kind != base.KindStorage || info.Version != version.Version ||
		!slices.Equal(info.Capabilities, []string{"batch", "cas", "scan", "durable", storage.CapBatchNamespaces}) {
		t.Errorf("info: %+v", info)
	}
	schema, err := s.Client.ConfigSchema(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, a := range schema.Attributes {
		def, _ := a.Default.(json.RawMessage)
		got[a.Name] = a.Type + " " + string(def)
	}
	want := map[string]string{
		"path": `string "limit.sqlite"`, "busy_timeout": `string "5s"`, "max_batch": "number 1000", "readers": "number 4",
	}
	if len(got) != len(want) {
		t.Errorf("schema has attributes %v, want %v", got, want)
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("attribute %s: got %q, want %q", name, got[name], w)
		}
	}
}

// TestPluginConfigDiagnostics checks that configuration problems come back through the
// plugin boundary with the attribute at fault.
func TestPluginConfigDiagnostics(t *testing.T) {
	s, _ := startPlugin(t)
	notDB := filepath.Join(t.TempDir(), "text.sqlite")
	if err := os.WriteFile(notDB, []byte(strings.Repeat("not a database\n", 400)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		config string
		path   []string
		says   string
	}{
		{`{"busy_timeout": "soon"}`, []string{"busy_timeout"}, "invalid duration"},
		{`{"bogus": true}`, []string{"bogus"}, "bogus"},
		{`{"readers": 0}`, []string{"readers"}, "readers"},
		{fmt.Sprintf(`{"path": %q}`, notDB), []string{"path"}, "not an SQLite database"},
	} {
		ds := s.Configure(context.Background(), base.ConfigureRequest{Config: json.RawMessage(tt.config), DataDir: t.TempDir()})
		if len(ds) != 1 || ds[0].Severity != base.SeverityError || !slices.Equal(ds[0].Path, tt.path) ||
			!strings.Contains(ds[0].Error(), tt.says) {
			t.Errorf("config %s: got %v, want one error at %v saying %q", tt.config, ds, tt.path, tt.says)
		}
	}
	// A failed Configure leaves the plugin unconfigured.
	if err := s.Put(context.Background(), "ns", []byte("k"), nil); !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("Put after failed Configure: got %v, want ErrUnavailable", err)
	}
}

// TestDurableAcrossKill writes through the plugin from several goroutines, kills the
// plugin process with SIGKILL in the middle of it, restarts it on the same file, and
// checks that every write that was acknowledged is there. (internal/crashtest does this
// hundreds of times, with checksummed values and batches.)
func TestDurableAcrossKill(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.sqlite")
	s, pc := startPlugin(t)
	if ds := s.Configure(context.Background(), base.ConfigureRequest{Config: fmt.Appendf(nil, `{"path": %q}`, path)}); ds.HasErrors() {
		t.Fatal(ds.Err())
	}
	pid := pc.ReattachConfig().Pid

	var (
		mu    sync.Mutex
		acked = map[string]string{}
		count atomic.Int64
	)
	ack := func(kv ...string) {
		mu.Lock()
		for i := 0; i < len(kv); i += 2 {
			acked[kv[i]] = kv[i+1]
		}
		mu.Unlock()
		count.Add(int64(len(kv) / 2))
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				k := fmt.Sprintf("w%d/%06d", w, i)
				v := "value of " + k
				var err error
				switch i % 3 {
				case 0:
					if err = s.Put(ctx, "ns", []byte(k), []byte(v)); err == nil {
						ack(k, v)
					}
				case 1:
					if err = s.Batch(ctx, "ns", []storage.Op{
						{Kind: storage.OpPut, Key: []byte(k), Value: []byte(v)},
						{Kind: storage.OpPut, Key: []byte(k + "/b"), Value: []byte(v + "/b")},
					}); err == nil {
						ack(k, v, k+"/b", v+"/b")
					}
				case 2:
					var r storage.CASResult
					if r, err = s.CompareAndSwap(ctx, storage.CASRequest{Namespace: "ns", Key: []byte(k), Value: []byte(v)}); err == nil {
						if !r.Swapped {
							t.Errorf("CAS create of new key %s did not swap", k)
							return
						}
						ack(k, v)
					}
				}
				if err != nil {
					return // the plugin is gone
				}
			}
		})
	}
	deadline := time.Now().Add(10 * time.Second)
	for count.Load() < 500 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill plugin %d: %v", pid, err)
	}
	wg.Wait()
	pc.Kill()
	if len(acked) == 0 {
		t.Fatal("no write was acknowledged before the kill")
	}

	s2 := launchPlugin(t, path)
	for k, want := range acked {
		v, ok, err := s2.Get(ctx, "ns", []byte(k))
		if err != nil {
			t.Fatal(err)
		}
		if !ok || string(v) != want {
			t.Errorf("acknowledged write of %s lost after SIGKILL: found=%v value=%q", k, ok, v)
		}
	}
	t.Logf("%d acknowledged writes survived SIGKILL of the plugin", len(acked))
}

// TestPluginSecondProcessIsRefused starts plugin processes on one database file, as two
// LIMIT hosts on one data directory would: a second process's Configure fails naming the
// file and the holder's pid, and succeeds once the holder is gone, whether it shut down
// or was killed with SIGKILL (the kernel drops a dead process's flock; the pid it left in
// the lock file does not block).
func TestPluginSecondProcessIsRefused(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "x.sqlite")
	cfg := base.ConfigureRequest{Config: fmt.Appendf(nil, `{"path": %q}`, path)}
	refused := func(s *storage.Client, holder int) {
		t.Helper()
		ds := s.Configure(ctx, cfg)
		want := fmt.Sprintf("database file %s is in use by another process (pid %d)", path, holder)
		if len(ds) != 1 || ds[0].Severity != base.SeverityError || !slices.Equal(ds[0].Path, []string{"path"}) ||
			!strings.Contains(ds[0].Error(), want) {
			t.Errorf("second plugin on %s: got %v, want one error at path containing %q", path, ds, want)
		}
		if err := s.Put(ctx, "ns", []byte("refused"), nil); !errors.Is(err, storage.ErrUnavailable) {
			t.Errorf("Put on the refused plugin: got %v, want ErrUnavailable", err)
		}
	}
	configure := func(s *storage.Client, key string) {
		t.Helper()
		if ds := s.Configure(ctx, cfg); ds.HasErrors() {
			t.Fatal(ds.Err())
		}
		if err := s.Put(ctx, "ns", []byte(key), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}

	a, pa := startPlugin(t)
	configure(a, "a")
	b, pb := startPlugin(t)
	refused(b, pa.ReattachConfig().Pid)
	pa.Kill() // shuts the plugin down: it closes the store and exits
	configure(b, "b")

	c, _ := startPlugin(t)
	pidB := pb.ReattachConfig().Pid
	refused(c, pidB)
	if err := syscall.Kill(pidB, syscall.SIGKILL); err != nil {
		t.Fatalf("kill plugin %d: %v", pidB, err)
	}
	pb.Kill() // waits for the process to be gone
	configure(c, "c")
	for _, k := range []string{"a", "b", "c"} {
		if v, ok, err := c.Get(ctx, "ns", []byte(k)); err != nil || !ok || string(v) != "v" {
			t.Errorf("%s in the last plugin: %q %v %v", k, v, ok, err)
		}
	}
}

// TestPluginErrorsKeepTheirMeaning checks that the backend's errors keep their sentinel
// across the plugin boundary.
func TestPluginErrorsKeepTheirMeaning(t *testing.T) {
	s, _ := startPlugin(t)
	ctx := context.Background()
	if err := s.Put(ctx, "ns", []byte("k"), nil); !errors.Is(err, storage.ErrUnavailable) ||
		!strings.Contains(err.Error(), "storage not configured") {
		t.Errorf("Put before Configure: got %v, want ErrUnavailable saying \"storage not configured\"", err)
	}
	if ds := s.Configure(ctx, base.ConfigureRequest{Config: json.RawMessage(`{}`), DataDir: t.TempDir()}); ds.HasErrors() {
		t.Fatal(ds.Err())
	}
	if _, err := s.Scan(ctx, storage.ScanRequest{Namespace: "ns", Prefix: make([]byte, storage.MaxKeySize+1)}); !errors.Is(err, storage.ErrInvalid) {
		t.Errorf("Scan with an oversized prefix: got %v, want ErrInvalid", err)
	}
}
