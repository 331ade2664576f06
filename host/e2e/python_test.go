package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/limitgraph/limit/internal/testbin"
	"github.com/limitgraph/limit/sdk/client"
)

func pythonConfig(t testing.TB, dataDir string) string {
	t.Helper()
	return pythonConfigWith(t, dataDir, `
  config {
    timeout          = "10s"
    memory_limit     = "256MiB"
    max_output_bytes = "64KiB"
    interrupt_grace  = "1s"
  }`)
}

// pythonConfigWith writes the config of a daemon on bolt under dataDir with one runner
// "python" block of the given body.
func pythonConfigWith(t testing.TB, dataDir, runnerBody string) string {
	t.Helper()
	testbin.Plugin(t, "storage-bolt")
	testbin.Plugin(t, "runner-python")
	return writeConfig(t, fmt.Sprintf(`host {
  listen     = "127.0.0.1:0"
  data_dir   = %q
  plugin_dir = %q
}
storage "bolt" {}
runner "python" {%s
}
`, dataDir, testbin.PluginDir(t), runnerBody))
}

// TestPythonThroughAPI runs the real sandboxed Python runner behind the real daemon.
func TestPythonThroughAPI(t *testing.T) {
	t.Setenv("LIMIT_E2E_SECRET", "must-not-leak")
	d := start(t, pythonConfig(t, t.TempDir()))
	a, _ := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: "a"})
	b, _ := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: "b"})
	run := func(s *client.Session, code string, timeoutMS uint64) *client.ExecutionResult {
		t.Helper()
		r, err := d.c.Execute(ctx, s.ID, client.ExecuteRequest{Runner: "python", Input: code, TimeoutMS: timeoutMS})
		if err != nil {
			t.Fatalf("execute %q: %v", code, err)
		}
		return r
	}
	if r := run(a, "x = 41", 0); r.Status != "ok" {
		t.Fatalf("x = 41: %+v", r)
	}
	if r := run(a, "print(x + 1)", 0); r.Stdout != "42\n" {
		t.Fatalf("state not kept: %+v", r)
	}
	if r := run(b, "print('x' in globals())", 0); r.Stdout != "False\n" {
		t.Fatalf("state leaked across sessions: %+v", r)
	}
	// Files: a writes in its working directory; b cannot see a's.
	run(a, "open('secret.txt', 'w').write('a only'); import os; print(os.getcwd())", 0)
	r := run(b, "import os, glob; print(sorted(glob.glob('/**/secret.txt', recursive=True)))", 0)
	if strings.Contains(r.Stdout, "secret.txt") {
		t.Fatalf("session b found a's file: %q", r.Stdout)
	}
	// The host's environment does not reach the code.
	if r := run(a, "import os; print(os.environ.get('LIMIT_E2E_SECRET'))", 0); r.Stdout != "None\n" {
		t.Fatalf("host environment leaked: %q", r.Stdout)
	}
	// An infinite loop times out and the session keeps working.
	if r := run(a, "while True: pass", 1000); r.Status != "timeout" {
		t.Fatalf("infinite loop: %+v", r)
	}
	if r := run(a, "print(x)", 0); r.Status != "ok" || r.Stdout != "41\n" {
		t.Fatalf("after the timeout: %+v", r)
	}
	// The answer says where the time went (Server-Timing), phase by phase.
	status, hdr, body := d.raw("POST", "/v1/sessions/"+a.ID+"/executions", "application/json", []byte(`{"runner": "python", "input": "import time; time.sleep(0.05)"}`))
	if status != 200 || body["status"] != "ok" {
		t.Fatalf("execution: %d %v", status, body)
	}
	timing := parseServerTiming(t, hdr.Get("Server-Timing"))
	for _, name := range []string{"session", "pre", "run", "post", "record"} {
		if _, ok := timing[name]; !ok {
			t.Fatalf("Server-Timing %q lacks %s", hdr.Get("Server-Timing"), name)
		}
	}
	if timing["run"] < 50*time.Millisecond || timing["record"] <= 0 {
		t.Fatalf("Server-Timing %q: the run slept 50 ms and the trace was stored", hdr.Get("Server-Timing"))
	}
	// An exception comes back with its traceback.
	if r := run(a, "1/0", 0); r.Status != "error" || !strings.Contains(r.Stderr+r.Error, "ZeroDivisionError") {
		t.Fatalf("exception: %+v", r)
	}
	// Health reports the isolation each session's runner enforces.
	h, err := d.c.Health(ctx)
	if err != nil {
		t.Fatal(err)
	}
	runners := 0
	for _, p := range h.Plugins {
		if p.Kind != "runner" {
			continue
		}
		runners++
		if p.Session != a.ID && p.Session != b.ID {
			t.Fatalf("runner for unknown session %+v", p)
		}
		if p.Transport != "unix" {
			t.Fatalf("runner process %d executes over %q, want its fast path (unix)", p.PID, p.Transport)
		}
	}
	if runners != 2 {
		t.Fatalf("%d runner processes, want 2: %+v", runners, h.Plugins)
	}
	status, _, body = d.raw("GET", "/v1/health", "", nil)
	if status != 200 || !strings.Contains(fmt.Sprint(body), "landlock") {
		t.Fatalf("health does not report the isolation features: %v", body)
	}
	// A session's memory limit is bounded: 64 MiB runs code, 1 byte is refused (it made
	// every execution of the session answer 500).
	small, err := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: "small", Limits: client.Limits{MemoryBytes: 64 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	if r := run(small, "print(sum(range(10)))", 0); r.Status != "ok" || r.Stdout != "45\n" {
		t.Fatalf("64 MiB session: %+v", r)
	}
	for _, mem := range []uint64{1, 1 << 20, 1<<40 + 1, 1<<64 - 1} {
		if _, err := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: "bad", Limits: client.Limits{MemoryBytes: mem}}); client.StatusOf(err) != 400 || !strings.Contains(err.Error(), "memory_bytes") {
			t.Errorf("memory_bytes %d: %v, want 400 naming memory_bytes", mem, err)
		}
	}
}

// TestPythonDiskLimitThroughAPI: a session's limits.max_disk_bytes reaches the Python
// runner, whose code then cannot write more than that in all (ENOSPC), and the session's
// disk image goes when the session is deleted. Needs root, loop devices and mkfs.ext4.
func TestPythonDiskLimitThroughAPI(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the disk limit needs root")
	}
	for _, p := range []string{"/dev/loop-control", "/usr/sbin/mkfs.ext4"} {
		if _, err := os.Stat(p); err != nil {
			t.Skip(err)
		}
	}
	dataDir := t.TempDir()
	d := start(t, pythonConfig(t, dataDir))
	s, err := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: "disk", Limits: client.Limits{MaxDiskBytes: 16 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	code := "import errno\ntry:\n    for i in range(8):\n        open('f%d' % i, 'wb').write(b'x' * 2**22)\n    print('wrote 32 MiB')\nexcept OSError as e:\n    print(errno.errorcode[e.errno])"
	r, err := d.c.Execute(ctx, s.ID, client.ExecuteRequest{Runner: "python", Input: code})
	if err != nil || r.Status != "ok" || r.Stdout != "ENOSPC\n" {
		t.Fatalf("writing 32 MiB under a 16 MiB limit: %+v %v", r, err)
	}
	img := filepath.Join(dataDir, "sessions", s.ID, "work.disk.img")
	if _, err := os.Stat(img); err != nil {
		t.Fatalf("the session's disk image: %v", err)
	}
	if _, err := d.c.DeleteSession(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(img); !os.IsNotExist(err) {
		t.Errorf("the image outlived the session: %v", err)
	}
	for _, b := range []uint64{1, 1<<40 + 1} {
		if _, err := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: "bad", Limits: client.Limits{MaxDiskBytes: b}}); client.StatusOf(err) != 400 || !strings.Contains(err.Error(), "max_disk_bytes") {
			t.Errorf("max_disk_bytes %d: %v, want 400 naming max_disk_bytes", b, err)
		}
	}
}

// TestSandboxedCodeCannotUseTheAPI: a session allowed the network shares the host's
// loopback, where the API listens without authentication; its code is refused (403)
// rather than able to read another session's traces, while the operator's client on the
// same machine is served.
func TestSandboxedCodeCannotUseTheAPI(t *testing.T) {
	d := start(t, pythonConfig(t, t.TempDir()))
	other, _ := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: "other"})
	if r, err := d.c.Execute(ctx, other.ID, client.ExecuteRequest{Runner: "python", Input: "print('private')"}); err != nil || r.Status != "ok" {
		t.Fatalf("%+v %v", r, err)
	}
	netted, err := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: "netted", AllowNetwork: true})
	if err != nil {
		t.Fatal(err)
	}
	code := fmt.Sprintf(`import json, urllib.request, urllib.error
try:
    body = urllib.request.urlopen(%q, timeout=5).read()
    print('served', body[:200])
except urllib.error.HTTPError as e:
    print(e.code, e.headers.get('Content-Type'), json.load(e)['detail'])
except OSError as e:
    print('unreachable', type(e).__name__)`, d.url+"/v1/sessions/"+other.ID+"/traces")
	r, err := d.c.Execute(ctx, netted.ID, client.ExecuteRequest{Runner: "python", Input: code})
	if err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		// The plugin is not root: its code runs as the host's own uid, which no check
		// can tell apart, and the runner declares no sandbox uids.
		t.Skipf("not root: sandboxed code runs as the host's uid here (%s)", r.Stdout)
	}
	if !strings.HasPrefix(r.Stdout, "403 application/problem+json requests from code sandboxed on this machine") {
		t.Fatalf("sandboxed code reached the API: %+v", r)
	}
	// The operator's client still is served, on a fresh connection too.
	d.c.HTTP.CloseIdleConnections()
	if _, err := d.c.GetSession(ctx, other.ID); err != nil {
		t.Fatalf("the host's own client was refused: %v", err)
	}
}

// TestSandboxedCodeCannotUseAnotherHost: the sandbox uids are the machine's, not one
// host's, so a second host on the machine refuses code sandboxed by the first from its
// start: one that has no Python runner at all, before any session of its own opened one
// (it once learned the uids only from a runner process it opened itself, and served
// such code until then).
func TestSandboxedCodeCannotUseAnotherHost(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("not root: the Python runner runs code as the host's uid and declares no sandbox uids")
	}
	d := start(t, pythonConfig(t, t.TempDir()))
	other := start(t, config(t, t.TempDir(), "default"))
	netted, err := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: "netted", AllowNetwork: true})
	if err != nil {
		t.Fatal(err)
	}
	code := fmt.Sprintf(`import json, urllib.request, urllib.error
req = urllib.request.Request(%q, data=b'{"name":"from-a-sandbox"}', method='POST')
try:
    body = urllib.request.urlopen(req, timeout=5).read()
    print('served', body[:200])
except urllib.error.HTTPError as e:
    print(e.code, e.headers.get('Content-Type'), json.load(e)['detail'])
except OSError as e:
    print('unreachable', type(e).__name__)`, other.url+"/v1/sessions")
	r, err := d.c.Execute(ctx, netted.ID, client.ExecuteRequest{Runner: "python", Input: code})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(r.Stdout, "403 application/problem+json requests from code sandboxed on this machine") {
		t.Fatalf("code sandboxed by another host reached this one: %+v", r)
	}
	list, err := other.c.ListSessions(ctx, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Sessions) != 0 {
		t.Fatalf("a session was created from the other host's sandbox: %+v", list.Sessions)
	}
}

// TestPythonNoPoolHealthBeforeSessions: with pool = 0 the Python runner's isolation is
// still checked when limitd starts, not at the first session: a runner whose sandbox lacks
// a baseline feature (pid_ns, disabled under allow_weak_isolation, on any machine) makes
// the host degraded with a detail naming it before any session exists, and no process is
// kept for it. What the check found is what the first session's process then reports.
func TestPythonNoPoolHealthBeforeSessions(t *testing.T) {
	d := start(t, pythonConfigWith(t, t.TempDir(), `
  pool = 0
  config {
    disable_isolation    = ["pid_ns"]
    allow_weak_isolation = true
  }`))
	var entry client.PluginStatus
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		h, err := d.c.Health(ctx)
		found := false
		if h != nil {
			for _, p := range h.Plugins {
				if p.Kind == "pool" && p.Name == "python" && !p.Healthy {
					entry, found = p, true
				}
			}
		}
		if found {
			if h.Status != "degraded" || client.StatusOf(err) != 503 {
				t.Fatalf("health with the runner unhealthy: %s, %v; want degraded, 503", h.Status, err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no session yet, pool = 0: the runner's weak isolation is not reported: %+v %v", h, err)
		}
	}
	if !strings.HasPrefix(entry.Detail, "WEAK ISOLATION") || !strings.Contains(entry.Detail, "pid_ns") || entry.PID != 0 {
		t.Fatalf("the runner's entry before any session: %+v, want WEAK ISOLATION naming pid_ns, no process", entry)
	}
	probed := map[string]bool{}
	for _, f := range entry.Isolation {
		probed[f.Name] = f.Enforced
	}
	if enforced, ok := probed["pid_ns"]; !ok || enforced {
		t.Fatalf("the check's isolation report: %+v, want pid_ns not enforced", entry.Isolation)
	}

	// The first session's process enforces what the check found.
	s, err := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: "first"})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := d.c.Execute(ctx, s.ID, client.ExecuteRequest{Runner: "python", Input: "print(1)"}); err != nil || r.Status != "ok" {
		t.Fatalf("execution: %+v %v", r, err)
	}
	h, _ := d.c.Health(ctx)
	var sess *client.PluginStatus
	for i, p := range h.Plugins {
		if p.Kind == "runner" && p.Session == s.ID {
			sess = &h.Plugins[i]
		}
	}
	if sess == nil {
		t.Fatalf("no runner process for the session: %+v", h.Plugins)
	}
	for _, f := range sess.Isolation {
		if enforced, ok := probed[f.Name]; ok && enforced != f.Enforced {
			t.Errorf("%s: enforced %v in the session, %v in the check before it", f.Name, f.Enforced, enforced)
		}
	}
}
