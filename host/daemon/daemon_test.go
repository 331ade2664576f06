package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2"

	"github.com/limitgraph/limit/host/config"
	"github.com/limitgraph/limit/host/session"
	"github.com/limitgraph/limit/host/trace"
	"github.com/limitgraph/limit/internal/syncbuf"
	"github.com/limitgraph/limit/internal/testbin"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

func parse(t *testing.T, src string) *config.Config {
	t.Helper()
	cfg, diags := config.Parse("test.hcl", []byte(src), func(string) (string, bool) { return "", false })
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	return cfg
}

func startDaemon(t *testing.T, src string) *Daemon {
	t.Helper()
	testbin.Plugin(t, "storage-bolt")
	testbin.Plugin(t, "storage-file")
	cfg := parse(t, src)
	d, diags := Start(context.Background(), Options{
		Config: cfg, Version: "test", Logger: hclog.NewNullLogger(), DefaultPluginDir: testbin.PluginDir(t),
		HealthInterval: 50 * time.Millisecond,
	})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		d.Shutdown(ctx)
	})
	return d
}

func TestHealthOverHTTP(t *testing.T) {
	dir := t.TempDir()
	d := startDaemon(t, fmt.Sprintf(`host {
  listen = "127.0.0.1:0"
  data_dir = %q
}
storage "bolt" {}
`, dir))
	res, err := http.Get("http://" + d.Addr() + "/v1/health")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var h struct {
		Status  string
		Version string
		Plugins []struct {
			Name, Kind, Version string
			PID                 int
			Healthy             bool
		}
	}
	if err := json.NewDecoder(res.Body).Decode(&h); err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 200 || h.Status != "ok" || h.Version != "test" || len(h.Plugins) != 1 {
		t.Fatalf("health: %d %+v", res.StatusCode, h)
	}
	p := h.Plugins[0]
	if p.Name != "bolt" || p.Kind != "storage" || p.Version == "" || p.PID <= 0 || !p.Healthy {
		t.Fatalf("plugin: %+v", p)
	}
	if _, err := os.Stat(dir + "/limit.db"); err != nil {
		t.Fatalf("bolt file not created under data_dir: %v", err)
	}
	// The journal of pending outcomes is made at start, not first when an execution's
	// trace cannot be stored (on a full disk, by then, it could not be).
	if fi, err := os.Stat(filepath.Join(dir, "pending-outcomes")); err != nil || !fi.IsDir() {
		t.Fatalf("the journal's directory is not made at start: %v", err)
	}
}

// TestDrainRefusesNewRequests: once Drain returns, a new request is answered 503 with a
// problem (limitd drains before it logs "shutting down", so no request sent after that
// line is served).
func TestDrainRefusesNewRequests(t *testing.T) {
	d := startDaemon(t, fmt.Sprintf(`host {
  listen = "127.0.0.1:0"
  data_dir = %q
}
storage "bolt" {}
`, t.TempDir()))
	d.Drain()
	res, err := http.Get("http://" + d.Addr() + "/v1/health")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("health after Drain: %d %s, want 503 problem+json", res.StatusCode, res.Header.Get("Content-Type"))
	}
}

// TestStorageKillNineLosesNothing kills the storage plugin with SIGKILL while writes are
// acknowledged, and checks that the next call succeeds and every acknowledged write is
// there, for each durable backend.
func TestStorageKillNineLosesNothing(t *testing.T) {
	for _, backend := range []string{"bolt", "file"} {
		t.Run(backend, func(t *testing.T) {
			d := startDaemon(t, fmt.Sprintf(`host {
  listen = "127.0.0.1:0"
  data_dir = %q
}
storage %q {}
`, t.TempDir(), backend))
			ctx := context.Background()
			// Writers run while the plugin is killed; each remembers what was acknowledged.
			acked := make(chan string, 1<<20)
			var count atomic.Int64
			stop := make(chan struct{})
			errs := make(chan error, 4)
			for w := range 4 {
				go func() {
					for i := 0; ; i++ {
						select {
						case <-stop:
							errs <- nil
							return
						default:
						}
						k := fmt.Sprintf("w%d-%06d", w, i)
						if err := d.Store.Put(ctx, "t/default", []byte(k), []byte("v-"+k)); err != nil {
							errs <- fmt.Errorf("put %s: %w", k, err)
							return
						}
						acked <- k
						count.Add(1)
					}
				}()
			}
			// Conditions rather than fixed sleeps, so a loaded machine only makes it slower:
			// some writes acknowledged before the kill, and some after the restart.
			waitFor := func(what string, ok func() bool) {
				t.Helper()
				for deadline := time.Now().Add(60 * time.Second); !ok(); time.Sleep(5 * time.Millisecond) {
					if time.Now().After(deadline) {
						close(stop)
						t.Fatalf("waited 60 s for %s", what)
					}
				}
			}
			waitFor("20 acknowledged writes", func() bool { return count.Load() >= 20 })
			pid := d.storage.Status().PID
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			var after int64
			waitFor("the restarted plugin", func() bool {
				st := d.storage.Status()
				after = count.Load()
				return st.PID != pid && st.Healthy
			})
			waitFor("10 writes acknowledged by the restarted plugin", func() bool { return count.Load() >= after+10 })
			close(stop)
			for range 4 {
				if err := <-errs; err != nil {
					t.Fatalf("a write failed across the restart: %v", err)
				}
			}
			close(acked)
			n := 0
			for k := range acked {
				v, ok, err := d.Store.Get(ctx, "t/default", []byte(k))
				if err != nil || !ok || string(v) != "v-"+k {
					t.Fatalf("acknowledged %s: got %q found=%v err=%v", k, v, ok, err)
				}
				n++
			}
			st := d.storage.Status()
			if st.PID == pid || st.Restarts < 1 || !st.Healthy {
				t.Fatalf("status after kill: %+v (old pid %d)", st, pid)
			}
			if n < 10 {
				t.Fatalf("only %d writes acknowledged; the test did not exercise the backend", n)
			}
			t.Logf("%d acknowledged writes survived SIGKILL of pid %d", n, pid)
		})
	}
}

func TestPrepareReportsPluginConfigErrors(t *testing.T) {
	testbin.Plugin(t, "storage-bolt")
	src := `host {
  data_dir = "` + t.TempDir() + `"
}
storage "bolt" {
  config {
    path    = "x.db"
    timeout = "soon"
    colour  = "blue"
  }
}
`
	cfg := parse(t, src)
	_, diags := Prepare(context.Background(), cfg, testbin.PluginDir(t), t.TempDir(), hclog.NewNullLogger())
	if !diags.HasErrors() {
		t.Fatal("bad plugin config accepted")
	}
	got := diags.Error()
	// The unknown attribute is caught by the schema (line 8); hcldec stops there, so the
	// plugin's own check of timeout comes in a second test below.
	if !strings.Contains(got, "test.hcl:8") || !strings.Contains(got, "colour") {
		t.Fatalf("diagnostics: %s", got)
	}
	cfg = parse(t, strings.Replace(src, `    colour  = "blue"`+"\n", "", 1))
	_, diags = Prepare(context.Background(), cfg, testbin.PluginDir(t), t.TempDir(), hclog.NewNullLogger())
	if got := diags.Error(); !diags.HasErrors() || !strings.Contains(got, "test.hcl:7") || !strings.Contains(got, `storage "bolt"`) {
		t.Fatalf("diagnostics for timeout: %s", got)
	}
}

func TestSameHost(t *testing.T) {
	lo, lan := net.ParseIP("127.0.0.1"), net.ParseIP("192.0.2.10")
	for _, c := range []struct {
		local, remote net.IP
		want          bool
	}{
		{lo, lo, true},
		{lo, net.ParseIP("127.0.0.2"), true},
		{net.ParseIP("::1"), net.ParseIP("::1"), true},
		{lan, lan, true}, // a local process dialling the host's own address
		{lan, net.ParseIP("192.0.2.77"), false},
		{lan, net.ParseIP("203.0.113.5"), false},
	} {
		if got := sameHost(c.local, c.remote); got != c.want {
			t.Errorf("sameHost(%v, %v) = %v, want %v", c.local, c.remote, got, c.want)
		}
	}
}

// TestStartLogsNoExitOfCheckedPlugins: the processes started to check each plugin's
// configuration exit before the daemon starts; their exit is not logged at INFO, where it
// read like a crash, but at DEBUG, saying why.
func TestStartLogsNoExitOfCheckedPlugins(t *testing.T) {
	testbin.Plugin(t, "storage-bolt")
	var logs syncbuf.Buffer
	logger := hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Debug})
	cfg := parse(t, fmt.Sprintf("host {\n  listen = \"127.0.0.1:0\"\n  data_dir = %q\n}\nstorage \"bolt\" {}\n", t.TempDir()))
	d, diags := Start(context.Background(), Options{Config: cfg, Version: "test", Logger: logger, DefaultPluginDir: testbin.PluginDir(t)})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	started := logs.String()
	d.Shutdown(ctx)
	if strings.Contains(started, "[INFO]  storage.bolt: plugin process exited") || !strings.Contains(started, "[DEBUG] storage.bolt: plugin process exited after its configuration was checked") {
		t.Fatalf("start logs:\n%s", started)
	}
}

// TestForeignHostRefused: the daemon's API refuses a request naming a host name it does
// not know (DNS rebinding) or sent by a browser from another site, and serves one naming
// its address.
func TestForeignHostRefused(t *testing.T) {
	d := startDaemon(t, fmt.Sprintf("host {\n  listen = \"127.0.0.1:0\"\n  data_dir = %q\n}\nstorage \"bolt\" {}\n", t.TempDir()))
	get := func(host, origin string) int {
		req, _ := http.NewRequest("GET", "http://"+d.Addr()+"/v1/health", nil)
		if host != "" {
			req.Host = host
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if code := get("", ""); code != 200 {
		t.Fatalf("its own address: %d", code)
	}
	if code := get("rebound.example", ""); code != 403 {
		t.Fatalf("a rebound host name: %d, want 403", code)
	}
	if code := get("", "https://evil.example"); code != 403 {
		t.Fatalf("a cross-site page: %d, want 403", code)
	}
}

// TestStorageThatCannotRestartAnswers503: while the storage plugin cannot be restarted
// (its binary removed after it was killed), storage-backed requests are answered at once
// with 503, Retry-After and a detail that does not name the binary (the start error is in
// the log and in health, which reports the daemon degraded).
func TestStorageThatCannotRestartAnswers503(t *testing.T) {
	plugins := t.TempDir()
	bin := filepath.Join(plugins, "limit-storage-bolt")
	src, err := os.ReadFile(testbin.Plugin(t, "storage-bolt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, src, 0o755); err != nil {
		t.Fatal(err)
	}
	py, err := os.ReadFile(testbin.Plugin(t, "runner-python"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(plugins, "limit-runner-python"), py, 0o755); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, fmt.Sprintf("host {\n  listen = \"127.0.0.1:0\"\n  data_dir = %q\n  plugin_dir = %q\n}\nstorage \"bolt\" {}\nrunner \"python\" {\n  pool = 0\n}\n", t.TempDir(), plugins))
	url := "http://" + d.Addr()
	do := func(method, path, body string) (*http.Response, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, url+path, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var p map[string]any
		json.NewDecoder(res.Body).Decode(&p)
		return res, p
	}
	res, sess := do("POST", "/v1/sessions", "{}")
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("create session: %d %v", res.StatusCode, sess)
	}
	execPath := fmt.Sprintf("/v1/sessions/%s/executions", sess["id"])
	// The session's runner process is open, as in a session that ran code before.
	if res, p := do("POST", execPath, `{"runner": "python", "input": "print(1)"}`); res.StatusCode != http.StatusOK {
		t.Fatalf("execution: %d %v", res.StatusCode, p)
	}
	if err := os.Rename(bin, bin+".gone"); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(d.storage.Status().PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// A restart attempt has failed once health names the missing binary.
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(d.storage.Status().LastError, bin); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no failed restart reported: %+v", d.storage.Status())
		}
	}
	for _, r := range []struct{ method, path, body string }{
		{"POST", "/v1/sessions", "{}"},
		{"GET", "/v1/sessions", ""},
	} {
		res, p := do(r.method, r.path, r.body)
		detail, _ := p["detail"].(string)
		if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" {
			t.Errorf("%s %s: %d Retry-After %q %v, want 503 with Retry-After", r.method, r.path, res.StatusCode, res.Header.Get("Retry-After"), p)
		}
		if strings.Contains(detail, plugins) || strings.Contains(detail, "deadline") || !strings.Contains(detail, "storage.bolt") {
			t.Errorf("%s %s: detail %q names the server's paths or a timeout, or not the plugin", r.method, r.path, detail)
		}
	}
	// Code that could not be recorded is not run: refused before it runs, to retry, not
	// run and kept pending.
	res, p := do("POST", execPath, `{"runner": "python", "input": "print(1)"}`)
	if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" || p["record_pending"] != nil || p["stdout"] != nil {
		t.Errorf("execution while storage cannot restart: %d Retry-After %q %v, want 503 with Retry-After, not run", res.StatusCode, res.Header.Get("Retry-After"), p)
	}
	res, _ = do("GET", "/v1/health", "")
	if res.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("health while storage is down: %d, want 503", res.StatusCode)
	}
}

// TestStartConfigErrorPointsAtFile: a plugin configuration that passes the check but
// fails when the plugin starts for real (a directory it cannot create) is reported at its
// place in the file, as -validate reports the errors it finds.
func TestStartConfigErrorPointsAtFile(t *testing.T) {
	testbin.Plugin(t, "storage-file")
	cfg := parse(t, fmt.Sprintf("host {\n  listen = \"127.0.0.1:0\"\n  data_dir = %q\n}\nstorage \"file\" {\n  config {\n    root = \"/proc/x\"\n  }\n}\n", t.TempDir()))
	d, diags := Start(context.Background(), Options{Config: cfg, Version: "test", Logger: hclog.NewNullLogger(), DefaultPluginDir: testbin.PluginDir(t)})
	if d != nil {
		d.Shutdown(context.Background())
		t.Skip("the file plugin could create /proc/x")
	}
	if !diags.HasErrors() || diags[0].Subject == nil || diags[0].Subject.Filename != "test.hcl" || diags[0].Subject.Start.Line != 7 ||
		!strings.HasPrefix(diags[0].Summary, `storage "file": `) {
		t.Fatalf("diagnostics %v (subject %v), want one at test.hcl:7", diags, diags[0].Subject)
	}
}

// TestProvenanceKeyMustMatchStorage: the start logs the provenance key's fingerprint (WARN
// when it was just created); a start whose key file is missing (so a new key would be made)
// or replaced, while storage holds provenance signed by the old key, is refused with an
// error naming the file, both keys and what to do, and keeps no new key; the old key put
// back, the host starts.
func TestProvenanceKeyMustMatchStorage(t *testing.T) {
	testbin.Plugin(t, "storage-bolt")
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "provenance.ed25519")
	cfg := parse(t, fmt.Sprintf("host {\n  listen = \"127.0.0.1:0\"\n  data_dir = %q\n}\nstorage \"bolt\" {}\n", dir))
	start := func() (string, hcl.Diagnostics) {
		t.Helper()
		return startLogged(t, cfg, func(ctx context.Context, d *Daemon) {
			if _, err := d.Traces.Create(ctx, session.NewID(), trace.TraceCustom, nil, "api"); err != nil {
				t.Fatal(err)
			}
		})
	}
	logs, diags := start()
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	key, err := trace.LoadOrCreateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	fp := key.Fingerprint()
	if !strings.Contains(logs, "[WARN]  created a new provenance key: path="+keyPath+" fingerprint="+fp) {
		t.Fatalf("first start logs:\n%s", logs)
	}
	if logs, diags = start(); diags.HasErrors() || !strings.Contains(logs, "[INFO]  provenance key loaded: path="+keyPath+" fingerprint="+fp) {
		t.Fatalf("second start: %v, logs:\n%s", diags, logs)
	}
	seed, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}

	// The key file lost: the host would make a new key.
	if err := os.Remove(keyPath); err != nil {
		t.Fatal(err)
	}
	_, diags = start()
	if !diags.HasErrors() {
		t.Fatal("started with a new key over provenance signed by the lost one")
	}
	msg := diags.Error()
	for _, want := range []string{"provenance key file " + keyPath + " is missing", "signed by key " + fp, "Restore the key file", "move the old storage data aside"} {
		if !strings.Contains(msg, want) {
			t.Errorf("refusal %q does not say %q", msg, want)
		}
	}
	if _, err := os.Stat(keyPath); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the refused new key was kept: %v", err)
	}

	// The key file replaced by another key.
	if err := os.WriteFile(keyPath, make([]byte, 32), 0o600); err != nil {
		t.Fatal(err)
	}
	_, diags = start()
	if msg := diags.Error(); !diags.HasErrors() || !strings.Contains(msg, "was replaced") || !strings.Contains(msg, fp) {
		t.Errorf("a replaced key file: %v", diags)
	}

	// Put back, the key is the host's again.
	if err := os.WriteFile(keyPath, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, diags = start(); diags.HasErrors() {
		t.Fatalf("the restored key: %v", diags)
	}
}

// startLogged starts the daemon on cfg with its log at INFO kept, runs f on it (if not
// nil) when it started, stops it, and returns the log and the start's diagnostics.
func startLogged(t *testing.T, cfg *config.Config, f func(context.Context, *Daemon)) (string, hcl.Diagnostics) {
	t.Helper()
	var logs syncbuf.Buffer
	logger := hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Info})
	d, diags := Start(context.Background(), Options{Config: cfg, Version: "test", Logger: logger, DefaultPluginDir: testbin.PluginDir(t)})
	if d != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if f != nil {
			f(ctx, d)
		}
		d.Shutdown(ctx)
	}
	return logs.String(), diags
}

// TestDiskReserveRefusesExecutions: with less free space on the data_dir's disk than
// host.min_free_disk, the daemon answers an execution 503 with a Retry-After before it
// runs, and its health is degraded with the free bytes.
func TestDiskReserveRefusesExecutions(t *testing.T) {
	// No disk this test runs on is 99.999 % free.
	d := startDaemon(t, fmt.Sprintf(`host {
  listen = "127.0.0.1:0"
  data_dir = %q
  min_free_disk = "99.999%%"
}
storage "bolt" {}
`, t.TempDir()))
	res, err := http.Post("http://"+d.Addr()+"/v1/sessions", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	var sess struct{ ID string }
	_ = json.NewDecoder(res.Body).Decode(&sess)
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("create session: %d", res.StatusCode)
	}
	res, err = http.Post("http://"+d.Addr()+"/v1/sessions/"+sess.ID+"/executions", "application/json", strings.NewReader(`{"runner":"python","input":"1"}`))
	if err != nil {
		t.Fatal(err)
	}
	var p struct{ Detail string }
	_ = json.NewDecoder(res.Body).Decode(&p)
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" || !strings.Contains(p.Detail, "the host's disk is nearly full") {
		t.Fatalf("execution: %d, Retry-After %q, %q", res.StatusCode, res.Header.Get("Retry-After"), p.Detail)
	}
	res, err = http.Get("http://" + d.Addr() + "/v1/health")
	if err != nil {
		t.Fatal(err)
	}
	var h struct {
		Status string
		Disk   *struct {
			Healthy   bool
			FreeBytes uint64 `json:"free_bytes"`
		}
	}
	_ = json.NewDecoder(res.Body).Decode(&h)
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable || h.Status != "degraded" || h.Disk == nil || h.Disk.Healthy || h.Disk.FreeBytes == 0 {
		t.Fatalf("health: %d %+v", res.StatusCode, h)
	}
}
