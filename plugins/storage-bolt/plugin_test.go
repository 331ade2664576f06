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
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/limitgraph/limit/host/version"
	"github.com/limitgraph/limit/internal/sysmon"
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
	if arg := os.Getenv(floorEnv); arg != "" {
		serveFloor(arg)
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

// TestConformanceSmallGroups runs the suite with max_batch 1, where every write commits
// alone, so the suite does not depend on grouping.
func TestConformanceSmallGroups(t *testing.T) {
	sdktest.RunStorage(t, openStore(t, map[string]any{"max_batch": 1}))
}

func TestConformancePlugin(t *testing.T) {
	sdktest.RunStorage(t, launchPlugin(t, filepath.Join(t.TempDir(), "x.db")))
}

func TestPluginInfoAndSchema(t *testing.T) {
	s, _ := startPlugin(t)
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "bolt" || info.Kind != base.KindStorage || info.Version != version.Version ||
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
		"path": `string "limit.db"`, "timeout": `string "5s"`, "no_sync": "bool false", "max_batch": "number 1000",
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
	for _, tt := range []struct {
		config string
		path   []string
	}{
		{`{"timeout": "soon"}`, []string{"timeout"}},
		{`{"bogus": true}`, []string{"bogus"}},
		{`{"max_batch": "many"}`, []string{"max_batch"}},
	} {
		ds := s.Configure(context.Background(), base.ConfigureRequest{Config: json.RawMessage(tt.config), DataDir: t.TempDir()})
		if len(ds) != 1 || ds[0].Severity != base.SeverityError || !slices.Equal(ds[0].Path, tt.path) {
			t.Errorf("config %s: got %v, want one error at %v", tt.config, ds, tt.path)
		}
	}
	// A failed Configure leaves the plugin unconfigured.
	if err := s.Put(context.Background(), "ns", []byte("k"), nil); !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("Put after failed Configure: got %v, want ErrUnavailable", err)
	}
}

// TestLockHeldByAnotherProcess checks both directions: a plugin process cannot open a
// file this process holds, and this process cannot open one a plugin holds. Either side
// gives up after its timeout with an error naming the file.
func TestLockHeldByAnotherProcess(t *testing.T) {
	t.Run("plugin waits for this process", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "x.db")
		openStore(t, map[string]any{"path": path})
		s, _ := startPlugin(t)
		start := time.Now()
		ds := s.Configure(context.Background(), base.ConfigureRequest{
			Config: fmt.Appendf(nil, `{"path": %q, "timeout": "300ms"}`, path),
		})
		checkLockedDiagnostic(t, ds, path)
		// Giving up, not hanging (CI machines are shared and slow).
		if elapsed := time.Since(start); elapsed > 10*time.Second {
			t.Errorf("plugin gave up after %v, want about 300ms", elapsed)
		}
	})
	t.Run("this process waits for plugin", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "x.db")
		launchPlugin(t, path)
		s := newStore()
		defer s.Close()
		start := time.Now()
		ds := s.Configure(context.Background(), base.ConfigureRequest{
			Config: fmt.Appendf(nil, `{"path": %q, "timeout": "300ms"}`, path),
		})
		checkLockedDiagnostic(t, ds, path)
		if elapsed := time.Since(start); elapsed > 10*time.Second {
			t.Errorf("gave up after %v, want about 300ms", elapsed)
		}
	})
}

// TestDurableAcrossKill writes through the plugin from several goroutines, kills the
// plugin process with SIGKILL in the middle of it, restarts it on the same file, and
// checks that every write that was acknowledged is there.
func TestDurableAcrossKill(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.db")
	cfg := fmt.Appendf(nil, `{"path": %q}`, path)
	s, pc := startPlugin(t)
	if ds := s.Configure(context.Background(), base.ConfigureRequest{Config: cfg, DataDir: dir}); ds.HasErrors() {
		t.Fatal(ds.Err())
	}
	pid := pc.ReattachConfig().Pid

	// acked[key] = value of each acknowledged write. Writers use different keys, and each
	// key is written once, so the expected value of a key is never in doubt.
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
				v := fmt.Sprintf("value of %s", k)
				var err error
				switch i % 3 {
				case 0:
					if err = s.Put(ctx, "ns", []byte(k), []byte(v)); err == nil {
						ack(k, v)
					}
				case 1:
					k2 := k + "/b"
					if err = s.Batch(ctx, "ns", []storage.Op{
						{Kind: storage.OpPut, Key: []byte(k), Value: []byte(v)},
						{Kind: storage.OpPut, Key: []byte(k2), Value: []byte(v + "/b")},
					}); err == nil {
						ack(k, v, k2, v+"/b")
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

// TestPluginStartsWithGODEBUG checks that the plugin process runs with the runtime setting
// the host gives storage plugins (base.NewClientCmd), which keeps its sysmon from deep
// sleep between group commits, and with the configured environment beside it.
func TestPluginStartsWithGODEBUG(t *testing.T) {
	s, pc := startPlugin(t)
	if _, err := s.Info(context.Background()); err != nil {
		t.Fatal(err)
	}
	rc := pc.ReattachConfig()
	if rc == nil || rc.Pid == 0 {
		t.Fatal("no plugin process")
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", rc.Pid))
	if err != nil {
		t.Fatal(err)
	}
	env := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
	if !slices.Contains(env, "GODEBUG="+sysmon.Setting) {
		t.Errorf("plugin environment %q lacks the storage plugins' GODEBUG", env)
	}
	for _, kv := range pluginEnv {
		if !slices.Contains(env, kv) {
			t.Errorf("plugin environment %q lacks the configured %q", env, kv)
		}
	}
}

// TestOpenDamagedDatabase opens database files cut short or with pages zeroed (as a bad
// copy or restore, or a lost write-back, leaves them) in a plugin process. bbolt crashed
// the plugin on them (an assertion or a fault in the goroutine that rebuilds its free-page
// list), and the host could only say the plugin went away; the plugin must instead answer
// with an error that names the file, says what is wrong with it and what to do, and leave
// it as it is. An intact copy (the control) opens.
func TestOpenDamagedDatabase(t *testing.T) {
	src := filepath.Join(t.TempDir(), "x.db")
	s := openStore(t, map[string]any{"path": src})
	ctx := context.Background()
	for i := range 3000 {
		if err := s.Put(ctx, fmt.Sprintf("ns%d", i%7), fmt.Appendf(nil, "k%05d", i), []byte(strings.Repeat("v", 1000))); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	intact, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	m0, ok := readMeta(f, 0)
	m1, ok1 := readMeta(f, int64(m0.pageSize))
	_ = f.Close()
	if !ok || !ok1 {
		t.Fatal("the test's database has no valid meta pages")
	}
	if m1.txid > m0.txid {
		m0 = m1
	}
	pageSize, end := int(m0.pageSize), int(m0.pgid)*int(m0.pageSize)

	for _, tc := range []struct {
		name   string
		damage func([]byte) []byte
		want   string // in the error; "" for none
	}{
		{"control: intact", func(b []byte) []byte { return b }, ""},
		{"cut in half", func(b []byte) []byte { return b[:len(b)/2] }, "is truncated: it is"},
		{"one byte short of the last page", func(b []byte) []byte { return b[:end-1] }, fmt.Sprintf("(%d bytes)", end)},
		{"pages zeroed", func(b []byte) []byte {
			clear(b[2*pageSize : end])
			return b
		}, "is damaged: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "limit.db")
			content := tc.damage(bytes.Clone(intact))
			if err := os.WriteFile(path, content, 0o600); err != nil {
				t.Fatal(err)
			}
			s, _ := startPlugin(t)
			ds := s.Configure(ctx, base.ConfigureRequest{Config: fmt.Appendf(nil, `{"path": %q}`, path)})
			if tc.want == "" {
				if ds.HasErrors() {
					t.Fatal(ds.Err())
				}
				if v, ok, err := s.Get(ctx, "ns3", []byte("k00003")); err != nil || !ok || len(v) != 1000 {
					t.Fatalf("Get = %d bytes, %v, %v", len(v), ok, err)
				}
				return
			}
			if !ds.HasErrors() {
				t.Fatal("configure succeeded")
			}
			msg := ds.Err().Error()
			for _, want := range []string{"database file " + path, tc.want, "Restore the file and its -wal files from a backup", "nothing was changed"} {
				if !strings.Contains(msg, want) {
					t.Errorf("error does not say %q:\n%s", want, msg)
				}
			}
			if !slices.Equal(ds[0].Path, []string{"path"}) {
				t.Errorf("diagnostic path %v, want [path]", ds[0].Path)
			}
			if b, _ := os.ReadFile(path); !bytes.Equal(b, content) {
				t.Error("the file was changed")
			}
			// The plugin is still there and answers.
			if ds := s.Configure(ctx, base.ConfigureRequest{Config: fmt.Appendf(nil, `{"path": %q}`, path)}); !ds.HasErrors() || ds.Err().Error() != msg {
				t.Errorf("second configure: %v", ds.Err())
			}
		})
	}
}
