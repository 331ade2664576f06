package plugins

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/limitgraph/limit/internal/syncbuf"
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/governance"
	"github.com/limitgraph/limit/sdk/runner"
	"github.com/limitgraph/limit/sdk/storage"
)

func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	// A zombie still answers kill(0); read its state to tell.
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	fields := strings.Fields(string(b))
	return len(fields) > 2 && fields[2] != "Z"
}

func waitDead(t *testing.T, pid int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still alive after %v", pid, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestLaunchInfoSchemaConfigure(t *testing.T) {
	ctx := context.Background()
	p, err := Launch(ctx, testSpec(base.KindRunner, "echo", "echo"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	if p.Info.Name != "echo" || p.Info.Version != "1.2.3" || p.PID <= 0 {
		t.Fatalf("info = %+v pid %d", p.Info, p.PID)
	}
	s, err := p.Schema(ctx)
	if err != nil || len(s.Attributes) != 1 || s.Attributes[0].Name != "greeting" {
		t.Fatalf("schema = %+v, %v", s, err)
	}
	p.Spec.Config = []byte(`{"greeting":"bad"}`)
	err = p.Configure(ctx, true)
	var ce *ConfigError
	if !errors.As(err, &ce) || len(ce.Diagnostics) != 1 || ce.Diagnostics[0].Path[0] != "greeting" {
		t.Fatalf("configure bad = %v", err)
	}
	p.Spec.Config = []byte(`{"greeting":"hello"}`)
	if err := p.Configure(ctx, false); err != nil {
		t.Fatal(err)
	}
}

// TestConfigureWarnings checks that the warnings of an accepted configuration are kept
// for the caller (limitd -validate prints them at their place) and logged when the
// configuration is applied.
func TestConfigureWarnings(t *testing.T) {
	ctx := context.Background()
	var logs syncbuf.Buffer
	p, err := Launch(ctx, testSpec(base.KindRunner, "echo", "echo"), hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Warn}))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	p.Spec.Config = []byte(`{"greeting":"hi"}`)
	if err := p.Configure(ctx, true); err != nil {
		t.Fatal(err)
	}
	if len(p.ConfigWarnings) != 1 || p.ConfigWarnings[0].Severity != base.SeverityWarning || p.ConfigWarnings[0].Path[0] != "greeting" {
		t.Fatalf("ConfigWarnings = %+v, want the plugin's warning about greeting", p.ConfigWarnings)
	}
	if strings.Contains(logs.String(), "terse") {
		t.Fatalf("a validate-only Configure logged its warning: %s", logs.String())
	}
	if err := p.Configure(ctx, false); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), `greeting: greeting \"hi\" is terse`) {
		t.Fatalf("log = %q, want the plugin's warning", logs.String())
	}
}

func TestLaunchWrongKind(t *testing.T) {
	_, err := Launch(context.Background(), testSpec(base.KindStorage, "echo", "echo"), nil)
	if err == nil {
		t.Fatal("a runner launched as storage was accepted")
	}
	// go-plugin refuses before our own check: the binary does not serve "storage".
	if !strings.Contains(err.Error(), "storage") {
		t.Fatalf("error %q does not name the kind", err)
	}
}

// TestLaunchChecksInfo: a plugin whose Info names no protocol version the host speaks,
// or has no name or version, is refused at launch with what is wrong and what to do; the
// host read neither (ProtocolVersions [99] started).
func TestLaunchChecksInfo(t *testing.T) {
	for plugin, want := range map[string][]string{
		"protocol99": {"speaks plugin protocol version 99 and this host speaks 1", "rebuild the plugin against the LIMIT SDK"},
		"noname":     {"empty name", "empty version"},
	} {
		p, err := Launch(context.Background(), testSpec(base.KindRunner, plugin, plugin), nil)
		if err == nil {
			p.Kill()
			t.Fatalf("%s: launched", plugin)
		}
		for _, w := range append(want, `runner "`+plugin+`"`) {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %v, want it to say %q", plugin, err, w)
			}
		}
	}
}

// TestKillEndsChildrenOutsideTheGroup: stopping a plugin ends the processes it started,
// also one that left its process group (setsid), which killing the group alone missed:
// it outlived a session's delete.
func TestKillEndsChildrenOutsideTheGroup(t *testing.T) {
	ctx := context.Background()
	p, err := Launch(ctx, testSpec(base.KindRunner, "echo", "echo"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	r := p.Impl.(runner.Runner)
	if err := r.OpenSession(ctx, runner.Session{ID: "s1"}); err != nil {
		t.Fatal(err)
	}
	res, err := r.Execute(ctx, runner.ExecuteRequest{ExecutionID: "x1", Input: "setsid-child"}, func(runner.Event) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	child, err := strconv.Atoi(res.Output)
	if err != nil || !alive(child) {
		t.Fatalf("child %q (%v) not running", res.Output, err)
	}
	defer syscall.Kill(child, syscall.SIGKILL)
	p.Kill()
	waitDead(t, child, 10*time.Second)
}

func TestLaunchFaults(t *testing.T) {
	for _, tc := range []struct {
		plugin string
		want   string
	}{
		{"garbage", "a plugin must write nothing to stdout before it serves"},
		{"hang", "did not serve within its start timeout, host.plugin_start_timeout"},
		{"stderr-exit", "its stderr ended with:\n  boom: cannot open"},
	} {
		t.Run(tc.plugin, func(t *testing.T) {
			spec := testSpec(base.KindStorage, tc.plugin, tc.plugin)
			spec.StartTimeout = time.Second
			start := time.Now()
			_, err := Launch(context.Background(), spec, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
			if !strings.Contains(err.Error(), `storage "`+tc.plugin+`"`) {
				t.Fatalf("err = %v does not name the plugin", err)
			}
			if d := time.Since(start); d > 8*time.Second {
				t.Fatalf("took %v: the start timeout was not honoured", d)
			}
		})
	}
}

// TestConfigureTimeout: a plugin whose Configure never returns fails its start after the
// configure timeout with an error naming it, instead of hanging limitd's start (and
// limitd -validate) for good; the process is stopped.
func TestConfigureTimeout(t *testing.T) {
	spec := testSpec(base.KindStorage, "hangconfig", "hangconfig")
	spec.ConfigureTimeout = time.Second
	p, err := Launch(context.Background(), spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	err = p.Configure(context.Background(), true)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), `storage "hangconfig" did not finish its Configure within 1s (host.plugin_configure_timeout)`) {
		t.Fatalf("configure = %v, want a timeout naming the plugin and the setting", err)
	}
	m, err := StartManaged(context.Background(), spec, nil, 0)
	if err == nil {
		m.Close()
		t.Fatal("a plugin whose Configure hangs was started")
	}
	if !strings.Contains(err.Error(), `storage "hangconfig" did not finish its Configure`) {
		t.Fatalf("start = %v, want the configure timeout", err)
	}
}

// TestLaunchLogsStrayOutput: what a plugin prints to stdout or stderr once it serves, not
// through its logger, reaches the host's log under the plugin's name instead of being
// dropped, a line split by go-plugin's 1 KiB chunks whole; what a logger made after Serve
// (base.NewPluginLogger in Configure) logs comes as a log entry at its level, not as stray
// output.
func TestLaunchLogsStrayOutput(t *testing.T) {
	var buf syncbuf.Buffer
	logger := hclog.New(&hclog.LoggerOptions{Name: "host", Output: &buf, Level: hclog.Info})
	p, err := Launch(context.Background(), testSpec(base.KindStorage, "stray", "stray"), logger)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	if err := p.Configure(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		out := buf.String()
		if strings.Contains(out, `stream=stdout line="stray line on stdout"`) && strings.Contains(out, `stream=stderr line="stray line on stderr"`) &&
			strings.Contains(out, " end\"") && strings.Contains(out, "logged by a logger made in Configure") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the plugin's stray output is not in the host log:\n%s", out)
		}
	}
	out := buf.String()
	if want := `line="long stray line ` + strings.Repeat("x", 3000) + ` end"`; strings.Count(out, "long stray line") != 1 || !strings.Contains(out, want) {
		t.Errorf("the long stray line is not logged whole, once:\n%s", out)
	}
	for l := range strings.Lines(out) {
		if strings.Contains(l, "logged by a logger made in Configure") && (!strings.Contains(l, "[INFO]") || !strings.Contains(l, "n=7") || strings.Contains(l, "outside its logger")) {
			t.Errorf("the late logger's entry came as %q, want an INFO entry with its fields", l)
		}
	}
}

// TestCrashLogsStderrAtError: when a plugin process dies unexpectedly, the plain lines it
// last wrote to its stderr, which go-plugin logs at DEBUG only, are logged at ERROR (a
// panic's own lines go-plugin logs at ERROR already: only the lines before it are added);
// a process the host stops logs none of them, and its stderr chatter stays at DEBUG.
func TestCrashLogsStderrAtError(t *testing.T) {
	for _, tc := range []struct {
		key      string
		want     string // logged at ERROR, with the kept lines
		notAgain string // not among the kept lines: go-plugin logged it at its level
	}{
		{"fatal", "boom: cannot open /data/x", "[INFO] a line with a level"},
		{"panic", "about to panic", "panic: boom"},
	} {
		t.Run(tc.key, func(t *testing.T) {
			var logs syncbuf.Buffer
			logger := hclog.New(&hclog.LoggerOptions{Name: "host", Output: &logs, Level: hclog.Info})
			m, err := StartManaged(context.Background(), testSpec(base.KindStorage, "fatal", "fatalstore"), logger, 20*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			p, err := m.Current(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Impl.(storage.Storage).Put(context.Background(), "ns", []byte(tc.key), nil); err == nil {
				t.Fatal("the deadly Put succeeded")
			}
			const head = "[ERROR] host: plugin process ended unexpectedly; the last lines of its stderr"
			for deadline := time.Now().Add(30 * time.Second); !strings.Contains(logs.String(), head); time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("no stderr logged at ERROR for the crash:\n%s", logs.String())
				}
			}
			out := logs.String()
			kept := out[strings.Index(out, head):]
			if !strings.Contains(kept, tc.want) || strings.Contains(kept, tc.notAgain) {
				t.Fatalf("kept lines logged: want %q, not %q:\n%s", tc.want, tc.notAgain, out)
			}
			// The restarted process is stopped by the host: nothing more at ERROR, and
			// its start-up line on stderr stays out of the log at INFO.
			waitStatus(t, m, func(s Status) bool { return s.Healthy && s.Restarts == 1 })
			m.Close()
			if n := strings.Count(logs.String(), "ended unexpectedly"); n != 1 {
				t.Fatalf("%d crashes logged for one:\n%s", n, logs.String())
			}
			// Each process wrote it; only the crashed one's is logged, with its crash.
			if n := strings.Count(logs.String(), "fatalstore starting"); n != 1 {
				t.Fatalf("a healthy plugin's stderr is logged above DEBUG:\n%s", logs.String())
			}
		})
	}
}

func TestResolveAndChecksum(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "limit-storage-x")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Resolve(dir, "limit-storage-missing", nil); err == nil || !strings.Contains(err.Error(), `"limit-storage-missing" not found`) {
		t.Fatalf("missing binary: %v", err)
	}
	good := sha256.Sum256([]byte("#!/bin/sh\n"))
	if p, err := Resolve(dir, "limit-storage-x", good[:]); err != nil || p != bin {
		t.Fatalf("resolve = %q, %v", p, err)
	}
	bad := sha256.Sum256([]byte("other"))
	_, err := Resolve(dir, "limit-storage-x", bad[:])
	if err == nil {
		t.Fatal("sha256 mismatch accepted")
	}
	for _, want := range []string{"limit-storage-x", "expected " + hexs(bad[:]), "actual " + hexs(good[:])} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	// Launch re-checks: a pinned spec whose binary changed is refused.
	spec := testSpec(base.KindStorage, "mem", "memstore")
	spec.SHA256 = bad[:]
	if _, err := Launch(context.Background(), spec, nil); err == nil || !strings.Contains(err.Error(), "sha256 mismatch") {
		t.Fatalf("launch with wrong pin: %v", err)
	}
}

func hexs(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

func TestManagedRestartsCrashedStorage(t *testing.T) {
	ctx := context.Background()
	m, err := StartManaged(ctx, testSpec(base.KindStorage, "mem", "memstore"), hclog.NewNullLogger(), 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	st := NewStorage(m)
	if err := st.Put(ctx, "ns", []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	pid := m.Status().PID
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitDead(t, pid, 5*time.Second)
	// The very next call waits for the restart and succeeds.
	if err := st.Put(ctx, "ns", []byte("k2"), []byte("v2")); err != nil {
		t.Fatalf("put after crash: %v", err)
	}
	s := m.Status()
	if s.PID == pid || !s.Healthy || s.Restarts != 1 || s.LastError == "" {
		t.Fatalf("status after restart = %+v (old pid %d)", s, pid)
	}
	// The error stays after the recovery, with when it happened.
	if at, err := time.Parse(time.RFC3339, s.LastErrorAt); err != nil || time.Since(at) > time.Minute || time.Until(at) > time.Second {
		t.Fatalf("last_error_at = %q (%v), want the time of the crash", s.LastErrorAt, err)
	}
}

// TestManagedReportsBackendHealth checks that a storage plugin whose process is up but
// whose backend is not (a full disk) is reported unhealthy, with its detail and figures,
// and healthy again once it recovers; and that a backend that cannot report is healthy.
func TestManagedReportsBackendHealth(t *testing.T) {
	ctx := context.Background()
	m, err := StartManaged(ctx, testSpec(base.KindStorage, "sick", "sickstore"), hclog.NewNullLogger(), 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if s := m.Status(); !s.Healthy || s.Detail != "" || s.Metrics["sick"] != 0 || s.Metrics == nil {
		t.Fatalf("status of a healthy backend = %+v", s)
	}
	st := NewStorage(m)
	if err := st.Put(ctx, "health", []byte("sick"), []byte("disk full")); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, m, func(s Status) bool { return !s.Healthy && s.Detail == "disk full" && s.Metrics["sick"] == 1 })
	if why := m.BackendDown(); why != "disk full" {
		t.Fatalf("BackendDown = %q while the backend says disk full", why)
	}
	if _, err := st.Delete(ctx, "health", []byte("sick")); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, m, func(s Status) bool { return s.Healthy && s.Detail == "" })
	if why := m.BackendDown(); why != "" {
		t.Fatalf("BackendDown = %q once the backend is healthy again", why)
	}

	plain, err := StartManaged(ctx, testSpec(base.KindStorage, "mem", "memstore"), hclog.NewNullLogger(), 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if s := plain.Status(); !s.Healthy || s.Detail != "" || s.Metrics != nil {
		t.Fatalf("status of a backend without a health report = %+v", s)
	}
}

// TestNoSpaceMarksStorageDown: a write the storage refuses for want of space
// (storage.ErrNoSpace) takes the backend as down at once (BackendDown, which the daemon
// asks before every execution, and the health status), though its last health answer was
// good and no health check ran since; a write that goes through, or a health answer asked
// for after the refusal, takes it as up again. Only the periodic health answer used to
// count, and executions ran between a refusal and the next one (or all along, when the
// backend's probe found room the refused writes did not).
func TestNoSpaceMarksStorageDown(t *testing.T) {
	ctx := context.Background()
	// No periodic check within the test: what changes is the calls' doing.
	m, err := StartManaged(ctx, testSpec(base.KindStorage, "full", "fullstore"), hclog.NewNullLogger(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	st := NewStorage(m)
	fill := func() {
		t.Helper()
		if err := st.Put(ctx, "ctl", []byte("full"), []byte("1")); err != nil {
			t.Fatal(err)
		}
		err := st.Batch(ctx, "data", []storage.Op{{Kind: storage.OpPut, Key: []byte("k"), Value: []byte("v")}})
		if !errors.Is(err, storage.ErrNoSpace) {
			t.Fatalf("batch on a full disk: %v, want storage.ErrNoSpace", err)
		}
		if why := m.BackendDown(); !strings.Contains(why, "want of space") || !strings.Contains(why, "is full") {
			t.Fatalf("BackendDown = %q after a write refused for want of space", why)
		}
		if s := m.Status(); s.Healthy || !strings.Contains(s.Detail, "want of space") {
			t.Fatalf("status after a write refused for want of space: %+v", s)
		}
	}
	if why := m.BackendDown(); why != "" {
		t.Fatalf("BackendDown = %q at start", why)
	}
	fill()
	// A read does not take it as up.
	if _, _, err := st.Get(ctx, "data", []byte("k")); err != nil || m.BackendDown() == "" {
		t.Fatalf("after a read: %v, BackendDown %q", err, m.BackendDown())
	}
	// A write that goes through does.
	if _, err := st.Delete(ctx, "ctl", []byte("full")); err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, "data", []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if why := m.BackendDown(); why != "" || !m.Status().Healthy {
		t.Fatalf("BackendDown = %q, status %+v after a write went through", why, m.Status())
	}
	// So does a good health answer asked for after the refusal.
	fill()
	m.mu.Lock()
	p := m.proc
	m.mu.Unlock()
	m.checkBackend(p)
	if why := m.BackendDown(); why != "" {
		t.Fatalf("BackendDown = %q after a good health answer", why)
	}
}

// waitStatus waits until m's status satisfies ok.
func waitStatus(t *testing.T, m *Managed, ok func(Status) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok(m.Status()) {
		if time.Now().After(deadline) {
			t.Fatalf("status never came: %+v", m.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestManagedCloseKillsProcess(t *testing.T) {
	m, err := StartManaged(context.Background(), testSpec(base.KindStorage, "mem", "memstore"), hclog.NewNullLogger(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	pid := m.Status().PID
	m.Close()
	waitDead(t, pid, 5*time.Second)
	if _, _, err := NewStorage(m).Get(context.Background(), "ns", []byte("k")); err == nil {
		t.Fatal("storage call after Close succeeded")
	}
}

func TestBackoff(t *testing.T) {
	want := []time.Duration{MinBackoff, MinBackoff, 2 * MinBackoff, 4 * MinBackoff}
	for n, w := range want {
		if got := backoff(n); got != w {
			t.Errorf("backoff(%d) = %v, want %v", n, got, w)
		}
	}
	if got := backoff(100); got != MaxBackoff {
		t.Errorf("backoff(100) = %v, want %v", got, MaxBackoff)
	}
}

func echoOutput(t *testing.T, h *Handle, input string) string {
	t.Helper()
	var got strings.Builder
	res, err := h.Execute(context.Background(), runner.ExecuteRequest{ExecutionID: "x", Input: input}, func(ev runner.Event) error {
		if ev.Output != nil {
			got.Write(ev.Output.Data)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != runner.StatusOK || res.Output != got.String() {
		t.Fatalf("result %+v, streamed %q", res, got.String())
	}
	return got.String()
}

func TestRunnersPerSession(t *testing.T) {
	ctx := context.Background()
	t.Setenv("LIMIT_HOST_SECRET", "do-not-leak")
	spec := testSpec(base.KindRunner, "echo", "echo")
	spec.Env["VISIBLE"] = "yes"
	rs := NewRunners(map[string]Spec{"echo": spec}, nil)
	defer rs.Close(ctx)

	a, err := rs.Get(ctx, runner.Session{ID: "A"}, "echo")
	if err != nil {
		t.Fatal(err)
	}
	b, err := rs.Get(ctx, runner.Session{ID: "B"}, "echo")
	if err != nil {
		t.Fatal(err)
	}
	if a.Process.PID == b.Process.PID || !a.Fresh || !b.Fresh {
		t.Fatalf("sessions share a process: %d %d", a.Process.PID, b.Process.PID)
	}
	if got := echoOutput(t, a, "1"); !strings.Contains(got, "session=A") || !strings.Contains(got, "n=1") {
		t.Fatalf("A: %q", got)
	}
	a2, err := rs.Get(ctx, runner.Session{ID: "A"}, "echo")
	if err != nil || a2.Process.PID != a.Process.PID || a2.Fresh {
		t.Fatalf("second Get for A: pid %d fresh %v err %v", a2.Process.PID, a2.Fresh, err)
	}
	if got := echoOutput(t, a2, "2"); !strings.Contains(got, "n=2") {
		t.Fatalf("state not kept within session A: %q", got)
	}
	if got := echoOutput(t, b, "1"); !strings.Contains(got, "session=B") || !strings.Contains(got, "n=1") {
		t.Fatalf("state leaked into B: %q", got)
	}
	// The plugin sees only the environment its config names.
	res, err := b.Execute(ctx, runner.ExecuteRequest{Input: "env"}, func(runner.Event) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	env := res.Output
	if strings.Contains(env, "do-not-leak") || !strings.Contains(env, "VISIBLE=yes") {
		t.Fatalf("plugin environment:\n%s", env)
	}
	if _, err := rs.Get(ctx, runner.Session{ID: "A"}, "nope"); err == nil {
		t.Fatal("unknown runner accepted")
	}
	if n := len(rs.Statuses()); n != 2 {
		t.Fatalf("statuses: %d, want 2", n)
	}
	rs.Release(ctx, "A")
	waitDead(t, a.Process.PID, 5*time.Second)
	if !alive(b.Process.PID) {
		t.Fatal("releasing A killed B's process")
	}
}

func TestRunnerCrashGivesFreshProcess(t *testing.T) {
	ctx := context.Background()
	rs := NewRunners(map[string]Spec{"echo": testSpec(base.KindRunner, "echo", "echo")}, nil)
	defer rs.Close(ctx)
	h, err := rs.Get(ctx, runner.Session{ID: "S"}, "echo")
	if err != nil {
		t.Fatal(err)
	}
	echoOutput(t, h, "1")
	if _, err := h.Execute(ctx, runner.ExecuteRequest{Input: "crash"}, func(runner.Event) error { return nil }); err == nil {
		t.Fatal("execute in a crashing plugin returned no error")
	}
	waitDead(t, h.Process.PID, 5*time.Second)
	for deadline := time.Now().Add(5 * time.Second); !h.Process.Exited(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the supervisor did not notice the exit")
		}
	}
	h2, err := rs.Get(ctx, runner.Session{ID: "S"}, "echo")
	if err != nil {
		t.Fatal(err)
	}
	if !h2.Fresh || !h2.Replaced || h2.Process.PID == h.Process.PID || rs.Crashes() != 1 {
		t.Fatalf("after crash: fresh %v pid %d (old %d) crashes %d", h2.Fresh, h2.Process.PID, h.Process.PID, rs.Crashes())
	}
	if got := echoOutput(t, h2, "again"); !strings.Contains(got, "n=1") {
		t.Fatalf("fresh process output %q", got)
	}
}

// TestRunnerRetire: a retired process is stopped and the session's next Get starts a fresh
// one; retiring it again, or through a stale handle, does nothing.
func TestRunnerRetire(t *testing.T) {
	ctx := context.Background()
	rs := NewRunners(map[string]Spec{"echo": testSpec(base.KindRunner, "echo", "echo")}, nil)
	defer rs.Close(ctx)
	h, err := rs.Get(ctx, runner.Session{ID: "S"}, "echo")
	if err != nil {
		t.Fatal(err)
	}
	h.Retire()
	h2, err := rs.Get(ctx, runner.Session{ID: "S"}, "echo")
	if err != nil {
		t.Fatal(err)
	}
	if !h2.Fresh || h2.Process.PID == h.Process.PID {
		t.Fatalf("after Retire: fresh %v pid %d (old %d)", h2.Fresh, h2.Process.PID, h.Process.PID)
	}
	waitDead(t, h.Process.PID, 10*time.Second)
	h.Retire() // stale: must not touch the fresh process
	if h3, err := rs.Get(ctx, runner.Session{ID: "S"}, "echo"); err != nil || h3.Process != h2.Process {
		t.Fatalf("a stale Retire replaced the session's process: %v", err)
	}
	if got := echoOutput(t, h2, "x"); !strings.Contains(got, "n=1") {
		t.Fatalf("fresh process output %q", got)
	}
}

func TestRunnerLargeOutputIsChunked(t *testing.T) {
	ctx := context.Background()
	rs := NewRunners(map[string]Spec{"echo": testSpec(base.KindRunner, "echo", "echo")}, nil)
	defer rs.Close(ctx)
	h, err := rs.Get(ctx, runner.Session{ID: "S"}, "echo")
	if err != nil {
		t.Fatal(err)
	}
	const n = 10 << 20
	chunks, total := 0, 0
	res, err := h.Execute(ctx, runner.ExecuteRequest{Input: "big:" + strconv.Itoa(n)}, func(ev runner.Event) error {
		if len(ev.Output.Data) > runner.MaxChunkSize {
			t.Errorf("chunk of %d bytes", len(ev.Output.Data))
		}
		chunks++
		total += len(ev.Output.Data)
		return nil
	})
	if err != nil || res.Status != runner.StatusOK || total != n || chunks != n/runner.MaxChunkSize {
		t.Fatalf("res %+v err %v total %d chunks %d", res, err, total, chunks)
	}
}

func TestGovernancePlugin(t *testing.T) {
	ctx := context.Background()
	p, err := Launch(ctx, testSpec(base.KindGovernance, "keyword", "rule"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	if err := p.Configure(ctx, false); err != nil {
		t.Fatal(err)
	}
	rule := p.Impl.(governance.Rule)
	ds, err := rule.Describe(ctx)
	if err != nil || len(ds) != 1 || ds[0].Stages[0] != governance.StagePre {
		t.Fatalf("describe = %+v, %v", ds, err)
	}
	fs, err := rule.Evaluate(ctx, governance.EvaluateRequest{Stage: governance.StagePre, Content: "a forbidden word"})
	if err != nil || len(fs) != 1 || fs[0].Flag != governance.FlagJailbreak || fs[0].Location.Start != 2 {
		t.Fatalf("evaluate = %+v, %v", fs, err)
	}
	fs, err = rule.Evaluate(ctx, governance.EvaluateRequest{Stage: governance.StagePre, Content: "fine"})
	if err != nil || len(fs) != 0 {
		t.Fatalf("evaluate clean = %+v, %v", fs, err)
	}
}

// TestPluginDiesWithHost kills a host process with SIGKILL (no chance to clean up) and
// checks that its plugin does not outlive it.
func TestPluginDiesWithHost(t *testing.T) {
	exe, _ := os.Executable()
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), testPluginEnv+"=host")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	if _, err := fmtSscan(line, &pid); err != nil {
		t.Fatalf("host said %q", line)
	}
	if !alive(pid) {
		t.Fatal("plugin not running")
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	waitDead(t, pid, 5*time.Second)
}

func fmtSscan(line string, pid *int) (int, error) {
	f := strings.Fields(line)
	if len(f) != 2 || f[0] != "pid" {
		return 0, errors.New("unexpected line")
	}
	n, err := strconv.Atoi(f[1])
	*pid = n
	return 1, err
}

var _ storage.Storage = (*Storage)(nil)

// TestManagedCloseWakesWaiters: a caller waiting for a crashed plugin's restart is told
// the plugin is shut down when Close comes, rather than left waiting for a restart that
// will never come until its own deadline (for ever without one).
func TestManagedCloseWakesWaiters(t *testing.T) {
	spec := testSpec(base.KindStorage, "once", "memstore-once")
	spec.Env[onceMarkerEnv] = filepath.Join(t.TempDir(), "started")
	m, err := StartManaged(context.Background(), spec, hclog.NewNullLogger(), 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	pid := m.Status().PID
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The watcher has seen the crash once the status has no process; its restarts fail.
	waitStatus(t, m, func(s Status) bool { return s.PID == 0 })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := m.Current(ctx)
		done <- err
	}()
	waitBlocked(t, "(*Managed).Current")
	m.Close()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "shut down") {
			t.Fatalf("Current after Close: %v, want the plugin shut down", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Current still waits for a restart after Close")
	}
}

// TestManagedFailsFastWhileRestartsFail: while a crashed plugin's restarts fail (its
// binary gone), a caller is told at once that it is unavailable, by an error the API
// answers with 503 (storage.ErrUnavailable for storage) and that does not name the binary
// (the start error, with its path, is in Status and the log), rather than wait out its
// deadline; and a storage call fails the same way.
func TestManagedFailsFastWhileRestartsFail(t *testing.T) {
	for _, tc := range []struct{ kind, plugin string }{
		{base.KindStorage, "memstore-once"},
		{base.KindGovernance, "rule-once"},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			spec := testSpec(tc.kind, "once", tc.plugin)
			spec.Env[onceMarkerEnv] = filepath.Join(t.TempDir(), "started")
			m, err := StartManaged(context.Background(), spec, hclog.NewNullLogger(), 20*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if err := syscall.Kill(m.Status().PID, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			// A restart attempt failed once the status names the start error.
			waitStatus(t, m, func(s Status) bool { return s.PID == 0 && strings.Contains(s.LastError, spec.Path) })
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, err = m.Current(ctx)
			check := func(what string, err error) {
				t.Helper()
				switch {
				case err == nil:
					t.Fatalf("%s: no error while the plugin cannot restart", what)
				case errors.Is(err, context.DeadlineExceeded):
					t.Fatalf("%s waited out its deadline: %v", what, err)
				case !errors.Is(err, ErrUnavailable):
					t.Fatalf("%s: %v, want ErrUnavailable", what, err)
				case tc.kind == base.KindStorage && !errors.Is(err, storage.ErrUnavailable):
					t.Fatalf("%s: %v, want storage.ErrUnavailable", what, err)
				case tc.kind != base.KindStorage && errors.Is(err, storage.ErrUnavailable):
					t.Fatalf("%s: %v is a storage.ErrUnavailable for a %s plugin", what, err, tc.kind)
				case strings.Contains(err.Error(), spec.Path) || strings.Contains(err.Error(), "started once already"):
					t.Fatalf("%s: %q names the start error", what, err)
				}
			}
			check("Current", err)
			if tc.kind == base.KindStorage {
				err := NewStorage(m).Put(ctx, "ns", []byte("k"), []byte("v"))
				check("Put", err)
			}
		})
	}
}

// waitBlocked waits until a goroutine is blocked in a select inside fn.
func waitBlocked(t *testing.T, fn string) {
	t.Helper()
	buf := make([]byte, 1<<20)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			if strings.Contains(g, "[select") && strings.Contains(g, fn) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no goroutine blocked in %s", fn)
		}
	}
}

// TestStorageSlowBackendIsNotLost: a call the plugin gives up on after its own timeout,
// longer than the host's restart wait, fails with the plugin's own reason; the plugin,
// alive throughout, is not said to be lost or restarted.
func TestStorageSlowBackendIsNotLost(t *testing.T) {
	ctx := context.Background()
	m, err := StartManaged(ctx, testSpec(base.KindStorage, "slow", "slowstore"), hclog.NewNullLogger(), 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	st := NewStorage(m)
	st.wait = slowStoreTimeout / 6
	_, _, err = st.Get(ctx, "ns", []byte("slow"))
	if !storage.IsUnavailable(err) {
		t.Fatalf("err = %v, want unavailable", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "did not answer within") || strings.Contains(msg, "restart") || strings.Contains(msg, "lost") {
		t.Errorf("err = %q, want the plugin's own reason and no word of a restart", msg)
	}
	if s := m.Status(); s.Restarts != 0 {
		t.Errorf("restarts = %d", s.Restarts)
	}
}
