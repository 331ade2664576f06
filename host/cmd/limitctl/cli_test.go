package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/limitgraph/limit/host/trace"
	"github.com/limitgraph/limit/host/trace/tracetest"
	"github.com/limitgraph/limit/sdk/storage/memstore"
)

// limitctl runs the command in-process and returns its exit status, stdout and stderr.
func limitctl(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// testBundle exports a bundle of one trace signed by a fresh key into a temporary directory
// and returns the key, the directory and the bundle's path.
func testBundle(t *testing.T) (*trace.Key, string, string) {
	t.Helper()
	s, key := tracetest.New(t, memstore.New())
	ctx := context.Background()
	session := trace.NewID()
	if _, err := s.Create(ctx, session, trace.TraceCustom, json.RawMessage(`{"prompt":"hi"}`), "api"); err != nil {
		t.Fatal(err)
	}
	var bundle bytes.Buffer
	if _, err := s.WriteBundle(ctx, &bundle, trace.BundleScope{SessionID: session}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bundlePath := filepath.Join(dir, "bundle.tar.gz")
	if err := os.WriteFile(bundlePath, bundle.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return key, dir, bundlePath
}

// TestVerifyKeyFile checks that verify --key takes a key file with whitespace around its
// one block, as `jq -r .public_key_pem > host.pem` or an editor saves it, and still
// refuses anything else.
func TestVerifyKeyFile(t *testing.T) {
	key, dir, bundlePath := testBundle(t)
	canonical := string(trace.MarshalPublicKey(key.PublicKey()))
	other, err := trace.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	// (Other key types and malformed blocks: host/trace's TestParsePublicKeyFile.)
	for i, tc := range []struct {
		name string
		file string
		code int
		want string
	}{
		{"canonical", canonical, 0, "valid"},
		{"jq adds a newline", canonical + "\n", 0, "valid"},
		{"no final newline", strings.TrimSuffix(canonical, "\n"), 0, "valid"},
		{"blank lines around", "\n\n" + canonical + "\n\n", 0, "valid"},
		{"garbage", "not a key\n", 1, "not a PEM"},
		{"text after the block", canonical + "junk\n", 1, "data after the PEM block"},
		{"second block", canonical + string(trace.MarshalPublicKey(other.PublicKey())), 1, "data after the PEM block"},
		{"another host's key", string(trace.MarshalPublicKey(other.PublicKey())) + "\n", 1, "does not verify"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keyPath := filepath.Join(dir, "host"+strconv.Itoa(i)+".pem")
			if err := os.WriteFile(keyPath, []byte(tc.file), 0o600); err != nil {
				t.Fatal(err)
			}
			code, stdout, stderr := limitctl(t, "verify", "--key", keyPath, bundlePath)
			if code != tc.code || !strings.Contains(stdout+stderr, tc.want) {
				t.Errorf("exit %d, want %d with %q\nstdout: %s\nstderr: %s", code, tc.code, tc.want, stdout, stderr)
			}
		})
	}
}

// TestHelp checks that help, -h and --help, on limitctl or any command, print the usage to
// stdout and exit 0, without the daemon (whose address here is not even valid).
func TestHelp(t *testing.T) {
	t.Setenv("LIMIT_ADDR", "ftp://nowhere")
	for _, args := range [][]string{
		{"--help"}, {"-h"}, {"-help"}, {"help"}, {"-o", "json", "--help"},
		{"exec", "--help"}, {"exec", "s", "r", "-h"}, {"health", "--help"}, {"verify", "-h"}, {"version", "--help"},
		{"sessions", "--help"}, {"sessions", "-h"}, {"sessions", "help"}, {"sessions", "create", "--help"}, {"sessions", "list", "-h"},
		{"traces", "--help"}, {"traces", "list", "--help"},
		{"governance", "--help"}, {"governance", "eval", "--help"}, {"nodes", "--help"}, {"nodes", "settle", "-h"},
		{"plugin", "--help"}, {"plugin", "check", "--help"}, {"plugin", "check", "--kind", "storage", "-h"},
	} {
		code, stdout, stderr := limitctl(t, args...)
		if code != 0 || !strings.HasPrefix(stdout, "usage:\n") || stderr != "" {
			t.Errorf("%q: exit %d, want 0 with the usage on stdout\nstdout: %s\nstderr: %s", args, code, stdout, stderr)
		}
	}
	// A subcommand's help lists its flags.
	if _, stdout, _ := limitctl(t, "exec", "--help"); !strings.Contains(stdout, "-timeout-ms") || !strings.Contains(stdout, "-params") {
		t.Errorf("exec --help does not list the flags of exec:\n%s", stdout)
	}
	// A command's help shows that command's lines of the usage, not the others'.
	for _, tc := range []struct {
		args      []string
		want, not []string
	}{
		{[]string{"sessions", "create", "-h"}, []string{"limitctl sessions create", "limitctl sessions list", "-max-concurrency"}, []string{"limitctl traces", "limitctl exec"}},
		{[]string{"session", "--help"}, []string{"limitctl sessions list"}, []string{"limitctl traces"}},
		{[]string{"traces", "-h"}, []string{"limitctl traces append", "limitctl traces merged"}, []string{"limitctl sessions"}},
		{[]string{"traces", "append", "--help"}, []string{"-agent", "default: the token's principal, operator or user:NAME"}, []string{"default: api"}},
		{[]string{"exec", "-h"}, []string{"limitctl exec", "run and stream the output", "-params"}, []string{"limitctl traces"}},
		{[]string{"plugin", "check", "-h"}, []string{"limitctl plugin check", "governance suite:", "-kind"}, []string{"limitctl exec"}},
		{[]string{"help"}, []string{"limitctl sessions", "limitctl traces", "LIMIT_TOKEN_FILE"}, nil},
	} {
		_, stdout, _ := limitctl(t, tc.args...)
		for _, w := range tc.want {
			if !strings.Contains(stdout, w) {
				t.Errorf("%q: help lacks %q:\n%s", tc.args, w, stdout)
			}
		}
		for _, n := range tc.not {
			if strings.Contains(stdout, n) {
				t.Errorf("%q: help shows another command's %q:\n%s", tc.args, n, stdout)
			}
		}
	}
	// Mistakes still go to stderr with exit 2.
	t.Setenv("LIMIT_ADDR", "")
	// A mistake in a command shows that command's usage.
	if _, _, stderr := limitctl(t, "exec", "s"); !strings.Contains(stderr, "limitctl exec [--timeout-ms N]") || strings.Contains(stderr, "limitctl traces") {
		t.Errorf("exec with one argument: want exec's usage only on stderr:\n%s", stderr)
	}
	for _, args := range [][]string{{}, {"--bogus"}, {"exec", "--bogus"}, {"plugin", "check", "--bogus"}} {
		if code, stdout, stderr := limitctl(t, args...); code != 2 || stdout != "" || !strings.Contains(stderr, "usage:") {
			t.Errorf("%q: exit %d, want 2 with the usage on stderr\nstdout: %s\nstderr: %s", args, code, stdout, stderr)
		}
	}
}

// sessionsServer answers GET and POST /v1/sessions and records the bodies of the POSTs.
func sessionsServer(t *testing.T) (*httptest.Server, *[]map[string]any) {
	t.Helper()
	var created []map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		const s = `{"id":"01M8T93BBDBZNX35WWT3BWXFZ2","name":"s1","state":"active","policy":"default","max_concurrency":4,"created_at":"2026-12-02T02:24:33Z"}`
		switch {
		case r.URL.Path == "/v1/sessions" && r.Method == http.MethodGet:
			_, _ = io.WriteString(w, `{"sessions":[`+s+`]}`)
		case r.URL.Path == "/v1/sessions" && r.Method == http.MethodPost:
			var body map[string]any
			if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
				t.Errorf("request body: %v", err)
			}
			created = append(created, body)
			w.WriteHeader(http.StatusCreated)
			_, _ = io.WriteString(w, s)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &created
}

// TestDaemonAddress checks that -addr and LIMIT_ADDR take a bare HOST:PORT, and that a
// value that is no daemon address is refused by name.
func TestDaemonAddress(t *testing.T) {
	srv, _ := sessionsServer(t)
	hostPort := strings.TrimPrefix(srv.URL, "http://")
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	for _, tc := range []struct {
		name, flag, env string
	}{
		{"flag host:port", hostPort, ""},
		{"flag localhost:port", "localhost:" + strconv.Itoa(port), ""},
		{"flag URL", srv.URL + "/", ""},
		{"env host:port", "", hostPort},
		{"flag wins over env", hostPort, "ftp://nowhere"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("LIMIT_ADDR", tc.env)
			args := []string{"sessions", "list"}
			if tc.flag != "" {
				args = append([]string{"-addr", tc.flag}, args...)
			}
			if code, stdout, stderr := limitctl(t, args...); code != 0 || !strings.Contains(stdout, "s1") {
				t.Errorf("exit %d, want 0 with the session\nstdout: %s\nstderr: %s", code, stdout, stderr)
			}
		})
	}
	for _, tc := range []struct {
		name, flag, env, want string
	}{
		{"flag scheme", "ftp://" + hostPort, "", `-addr "ftp://`},
		{"flag port", "localhost:http-ish", "", `-addr "localhost:http-ish" is not a daemon address`},
		{"flag no host", "http://", "", `-addr "http://" is not a daemon address`},
		{"flag query", srv.URL + "?x=1", "", "-addr"},
		{"env port", "", "127.0.0.1:port", `LIMIT_ADDR "127.0.0.1:port" is not a daemon address`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("LIMIT_ADDR", tc.env)
			args := []string{"sessions", "list"}
			if tc.flag != "" {
				args = append([]string{"-addr", tc.flag}, args...)
			}
			code, _, stderr := limitctl(t, args...)
			if code != 2 || !strings.Contains(stderr, tc.want) || !strings.Contains(stderr, "HOST:PORT") || strings.Contains(stderr, "parse ") {
				t.Errorf("exit %d, want 2 with %q and the forms accepted\nstderr: %s", code, tc.want, stderr)
			}
		})
	}
}

// TestUnreachableDaemon checks that every command that calls the daemon says it cannot
// reach it, where, and what to do, when nothing listens there.
func TestUnreachableDaemon(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	set := filepath.Join(t.TempDir(), "set.jsonl")
	if err := os.WriteFile(set, []byte(`{"text":"hi","label":"benign"}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	want := "limitctl: cannot reach the daemon at http://" + addr + ": "
	for _, args := range [][]string{
		{"health"}, {"sessions", "list"}, {"sessions"}, {"sessions", "create"}, {"sessions", "show", "x"}, {"sessions", "delete", "x"},
		{"exec", "s", "python", "print(1)"}, {"-o", "json", "exec", "s", "python", "print(1)"},
		{"traces", "list", "s"}, {"traces", "show", "t"}, {"traces", "flag", "t", "f", "5", "why"}, {"traces", "merge", "t"}, {"traces", "verify", "t"},
		{"governance", "stats"}, {"governance", "evaluate", "prompt", "hi"}, {"governance", "eval", set},
	} {
		code, _, stderr := limitctl(t, append([]string{"-addr", addr}, args...)...)
		if code != 1 || !strings.HasPrefix(stderr, want) || !strings.Contains(stderr, "connection refused") || !strings.HasSuffix(stderr, "(is limitd running? set -addr or LIMIT_ADDR)\n") {
			t.Errorf("%q: exit %d, want 1 with %q...\nstderr: %s", args, code, want, stderr)
		}
	}
}

// TestSessionsCreateMaxConcurrency checks that an explicit --max-concurrency out of range,
// 0 included, is refused before any request, while an absent one leaves the daemon's
// default.
func TestSessionsCreateMaxConcurrency(t *testing.T) {
	srv, created := sessionsServer(t)
	for _, tc := range []struct {
		args []string
		code int
		want string
		sent any // max_concurrency in the request; nil for absent
	}{
		{[]string{"--max-concurrency", "0"}, 2, "--max-concurrency must be between 1 and 1024, got 0", nil},
		{[]string{"--max-concurrency=-1"}, 2, "--max-concurrency must be between 1 and 1024, got -1", nil},
		{[]string{"--max-concurrency", "1025"}, 2, "--max-concurrency must be between 1 and 1024, got 1025", nil},
		{[]string{"--max-concurrency", "3"}, 0, "s1", 3.0},
		{[]string{"--name", "s1"}, 0, "s1", nil},
	} {
		before := len(*created)
		code, stdout, stderr := limitctl(t, append([]string{"-addr", srv.URL, "sessions", "create"}, tc.args...)...)
		if code != tc.code || !strings.Contains(stdout+stderr, tc.want) {
			t.Errorf("%q: exit %d, want %d with %q\nstdout: %s\nstderr: %s", tc.args, code, tc.code, tc.want, stdout, stderr)
			continue
		}
		if tc.code != 0 {
			if len(*created) != before {
				t.Errorf("%q: a session was created", tc.args)
			}
			continue
		}
		if len(*created) != before+1 {
			t.Fatalf("%q: %d requests, want 1", tc.args, len(*created)-before)
		}
		if got := (*created)[before]["max_concurrency"]; got != tc.sent {
			t.Errorf("%q: request max_concurrency %v, want %v", tc.args, got, tc.sent)
		}
	}
}

// TestPluginCheckHungPlugin checks that a plugin that never completes the handshake, and
// whose child holds its stdout, fails `plugin check` once the start timeout is over and
// leaves neither process behind.
func TestPluginCheckHungPlugin(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("plugins run in their own process group on Linux only")
	}
	dir := t.TempDir()
	script := filepath.Join(dir, "hang.sh")
	pidFile, childFile := filepath.Join(dir, "pid"), filepath.Join(dir, "child")
	body := fmt.Sprintf("#!/bin/sh\necho $$ > %s\nsleep 300 &\necho $! > %s\nwait\n", pidFile, childFile)
	if err := os.WriteFile(script, []byte(body), 0o700); err != nil {
		t.Fatal(err)
	}
	pids := func() []int {
		var out []int
		for _, f := range []string{pidFile, childFile} {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Errorf("the plugin did not start: %v", err)
				continue
			}
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			out = append(out, pid)
		}
		return out
	}
	t.Cleanup(func() { // whatever happens, leave nothing behind
		for _, pid := range pids() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	type result struct {
		code           int
		stdout, stderr string
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		code, stdout, stderr := limitctl(t, "plugin", "check", "--kind", "storage", script)
		done <- result{code, stdout, stderr}
	}()
	var r result
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("plugin check still running after 30 s")
	}
	t.Logf("plugin check returned after %v", time.Since(start).Round(time.Millisecond))
	if r.code != 1 || !strings.Contains(r.stderr, "launch storage plugin "+script) || !strings.Contains(r.stderr, "timeout while waiting for plugin to start") {
		t.Errorf("exit %d, want 1 with the start timeout\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	for _, pid := range pids() {
		// Killed processes may linger a moment, and as zombies where nobody reaps them.
		deadline := time.Now().Add(5 * time.Second)
		for alive(pid) {
			if time.Now().After(deadline) {
				t.Errorf("process %d of the plugin is still running", pid)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// alive reports whether process pid exists and is not a zombie.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses.
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}

// TestVersionJSON: version answers JSON with -o json before or after it, text otherwise,
// and refuses anything else.
func TestVersionJSON(t *testing.T) {
	for _, args := range [][]string{{"-o", "json", "version"}, {"version", "-o", "json"}} {
		code, stdout, _ := limitctl(t, args...)
		var v struct{ Name, Version string }
		if code != 0 || json.Unmarshal([]byte(stdout), &v) != nil || v.Name != "limitctl" || v.Version == "" {
			t.Errorf("%q: exit %d %q", args, code, stdout)
		}
	}
	if code, stdout, _ := limitctl(t, "version"); code != 0 || !strings.HasPrefix(stdout, "limitctl ") {
		t.Errorf("version: exit %d %q", code, stdout)
	}
	if code, _, stderr := limitctl(t, "version", "extra"); code != 2 || !strings.Contains(stderr, "version takes only -o json") {
		t.Errorf("version extra: exit %d %q", code, stderr)
	}
}

// TestSessionsListAllStopsOnARepeatedToken: `sessions list --all` against a host that
// answers the same page token again stops with an error instead of looping forever.
func TestSessionsListAllStopsOnARepeatedToken(t *testing.T) {
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"sessions":[{"id":"s%d","name":"x","state":"active"}],"next_token":"same"}`, calls)
	}))
	defer srv.Close()
	code, _, stderr := limitctl(t, "-addr", srv.URL, "sessions", "list", "--all")
	if code != 1 || !strings.Contains(stderr, `page token "same" again`) || calls != 2 {
		t.Fatalf("exit %d after %d calls: %s", code, calls, stderr)
	}
}

// TestExecPrintsStreamedOutputOnce: a model's tokens streamed as they come are not
// printed again from the result's output (a llama runner's answer showed twice); a result
// whose output was not streamed is printed, after the program's stdout when it is another
// thing (a Python runner's last expression).
func TestExecPrintsStreamedOutputOnce(t *testing.T) {
	var events, result string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, events)
		fmt.Fprint(w, "event: result\ndata: "+result+"\n\n")
	}))
	defer srv.Close()
	for _, c := range []struct{ name, events, result, want string }{
		{"tokens", "event: token\ndata: {\"data\":\"Hello\"}\n\nevent: token\ndata: {\"data\":\" world\"}\n\n",
			`{"trace_id":"t1","status":"ok","output":"Hello world"}`, "Hello world\n"},
		{"tokens, output trimmed", "event: token\ndata: {\"data\":\" Hello \"}\n\n",
			`{"trace_id":"t1","status":"ok","output":"Hello"}`, " Hello \n"},
		{"output only", "", `{"trace_id":"t1","status":"ok","output":"Hello world"}`, "Hello world\n"},
		{"stdout and a value", "event: stdout\ndata: {\"data\":\"computing\\n\"}\n\n",
			`{"trace_id":"t1","status":"ok","stdout":"computing\n","output":"42"}`, "computing\n42\n"},
		{"stdout only", "event: stdout\ndata: {\"data\":\"hi\\n\"}\n\n",
			`{"trace_id":"t1","status":"ok","stdout":"hi\n"}`, "hi\n"},
	} {
		events, result = c.events, c.result
		code, stdout, stderr := limitctl(t, "-addr", srv.URL, "exec", "s1", "llama", "hi")
		if code != 0 || stdout != c.want {
			t.Errorf("%s: exit %d stdout %q stderr %q, want %q", c.name, code, stdout, stderr, c.want)
		}
	}
}

// TestEvaluateWithoutFindings says so, rather than printing a table's header alone, and
// says which rules read the text, or that none did.
func TestEvaluateWithoutFindings(t *testing.T) {
	for _, c := range []struct{ rules, want string }{
		{`[]`, "no findings: no configured rule reads prompt texts\n"},
		{`[{"plugin":"jailbreak","rules":[]},{"plugin":"wordflag","rules":[]}]`, "no findings: read by jailbreak, wordflag, flagged by none\n"},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"findings":[],"rules":%s}`, c.rules)
		}))
		code, stdout, stderr := limitctl(t, "-addr", srv.URL, "governance", "evaluate", "prompt", "hello")
		srv.Close()
		if code != 0 || stdout != c.want {
			t.Errorf("rules %s: exit %d stdout %q stderr %q, want %q", c.rules, code, stdout, stderr, c.want)
		}
	}
}

// TestGovernanceStatsBySeverity: the stats table shows the counts by severity, in order.
func TestGovernanceStatsBySeverity(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"overall":{"flags":3,"by_flag":{"anomaly":3},"by_severity":{"10":1,"9":2}},"sessions":{}}`)
	}))
	defer srv.Close()
	code, stdout, stderr := limitctl(t, "-addr", srv.URL, "governance", "stats")
	if code != 0 || !strings.Contains(stdout, "BY SEVERITY") || !strings.Contains(stdout, "9=2 10=1") {
		t.Fatalf("exit %d stdout %q stderr %q", code, stdout, stderr)
	}
}

// TestEvalRetriesWhenAsked: governance eval makes an evaluation again after the daemon's
// Retry-After when it answers 503 so (a large text that waited for others' share of
// api.max_body_bytes_in_flight), and still fails on a 503 without one, or after
// evalRetries tries.
func TestEvalRetriesWhenAsked(t *testing.T) {
	var mu sync.Mutex
	refuse := map[string]int{} // text -> 503s left to answer
	retryAfter := "1"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Text string }
		_ = json.NewDecoder(r.Body).Decode(&req)
		mu.Lock()
		left := refuse[req.Text]
		if left > 0 {
			refuse[req.Text] = left - 1
		}
		ra := retryAfter
		mu.Unlock()
		if left > 0 {
			if ra != "" {
				w.Header().Set("Retry-After", ra)
			}
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(503)
			fmt.Fprint(w, `{"type":"about:blank","title":"Service Unavailable","status":503,"detail":"a body waited"}`)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		rules := `"rules":[{"plugin":"jailbreak","rules":[{"id":"jailbreak.model","flags":["jailbreak"]}]}]`
		if strings.Contains(req.Text, "attack") {
			fmt.Fprint(w, `{"findings":[{"flag":"jailbreak","severity":8,"rule_id":"jailbreak.model"}],"scores":{"jailbreak":{"jailbreak.model":0.9}},`+rules+`}`)
			return
		}
		fmt.Fprint(w, `{"findings":[],"scores":{"jailbreak":{"jailbreak.model":0.1}},`+rules+`}`)
	}))
	defer srv.Close()
	set := filepath.Join(t.TempDir(), "set.jsonl")
	if err := os.WriteFile(set, []byte(`{"text":"an attack","label":"jailbreak"}`+"\n"+`{"text":"hello","label":"benign"}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	refuse["hello"] = 2
	code, stdout, stderr := limitctl(t, "-addr", srv.URL, "-o", "json", "governance", "eval", "--preset", "default", set)
	if code != 0 || !strings.Contains(stdout, `"tpr": 1`) || !strings.Contains(stdout, `"fpr": 0`) {
		t.Fatalf("two 503s with Retry-After, then answers: exit %d stdout %s stderr %s", code, stdout, stderr)
	}
	mu.Lock()
	refuse["hello"], retryAfter = 1, ""
	mu.Unlock()
	if code, _, stderr := limitctl(t, "-addr", srv.URL, "governance", "eval", "--preset", "default", set); code == 0 || !strings.Contains(stderr, "503") {
		t.Fatalf("a 503 without Retry-After: exit %d stderr %s, want the measurement to fail", code, stderr)
	}
}

// TestSessionsListShowsOwner: the sessions table has an OWNER column: the user whose token
// created the session, "-" for the operators'.
func TestSessionsListShowsOwner(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"sessions":[`+
			`{"id":"01M8T93BBDBZNX35WWT3BWXFZ2","name":"mine","owner":"alice","state":"active","policy":"default","max_concurrency":4,"created_at":"2026-12-02T02:24:33Z"},`+
			`{"id":"01M8T93BBDBZNX35WWT3BWXFZ3","name":"ops","state":"active","policy":"default","max_concurrency":4,"created_at":"2026-12-02T02:24:33Z"}]}`)
	}))
	defer srv.Close()
	code, stdout, stderr := limitctl(t, "-addr", srv.URL, "sessions", "list")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) < 3 || !slices.Equal(strings.Fields(lines[0])[:3], []string{"ID", "NAME", "OWNER"}) ||
		strings.Fields(lines[1])[2] != "alice" || strings.Fields(lines[2])[2] != "-" {
		t.Fatalf("sessions table:\n%s", stdout)
	}
}

// TestSessionsListOwner: --owner asks the host for that user's sessions alone (the API's
// ?owner=), on every page --all follows.
func TestSessionsListOwner(t *testing.T) {
	var mu sync.Mutex
	var queries []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		queries = append(queries, r.URL.RawQuery)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		next := "p2"
		if r.URL.Query().Get("next_token") == "p2" {
			next = ""
		}
		_, _ = io.WriteString(w, `{"sessions":[{"id":"01M8T93BBDBZNX35WWT3BWXFZ2","name":"mine","owner":"alice","state":"active","policy":"default","max_concurrency":4,"created_at":"2026-12-02T02:24:33Z"}],"next_token":"`+next+`"}`)
	}))
	defer srv.Close()
	code, stdout, stderr := limitctl(t, "-addr", srv.URL, "sessions", "list", "--owner", "alice", "--all")
	if code != 0 || strings.Count(stdout, "alice") != 2 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(queries) != 2 || !strings.Contains(queries[0], "owner=alice") || !strings.Contains(queries[1], "owner=alice") || !strings.Contains(queries[1], "next_token=p2") {
		t.Fatalf("queries sent: %q", queries)
	}
}

// TestOwnerGoneAndSettle: sessions delete --owner-gone sends the API's ?owner_gone=true
// (a plain delete does not), and nodes settle NODE posts to /v1/nodes/NODE/settle and
// prints what was settled.
func TestOwnerGoneAndSettle(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Method+" "+r.URL.RequestURI())
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if r.Method == http.MethodPost {
			_, _ = io.WriteString(w, `{"node":"vm-a","settled":2}`)
			return
		}
		_, _ = io.WriteString(w, `{"id":"01M8T93BBDBZNX35WWT3BWXFZ2","name":"s","state":"deleted","policy":"default","max_concurrency":4,"owner_node":"vm-a","created_at":"2026-12-02T02:24:33Z"}`)
	}))
	defer srv.Close()
	for _, args := range [][]string{
		{"sessions", "delete", "01M8T93BBDBZNX35WWT3BWXFZ2"},
		{"sessions", "delete", "--owner-gone", "01M8T93BBDBZNX35WWT3BWXFZ2"},
	} {
		if code, _, stderr := limitctl(t, append([]string{"-addr", srv.URL}, args...)...); code != 0 {
			t.Fatalf("%q: exit %d: %s", args, code, stderr)
		}
	}
	code, stdout, stderr := limitctl(t, "-addr", srv.URL, "nodes", "settle", "vm-a")
	if code != 0 || strings.TrimSpace(stdout) != "node vm-a: 2 execution(s) recorded as interrupted" {
		t.Fatalf("nodes settle: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{
		"DELETE /v1/sessions/01M8T93BBDBZNX35WWT3BWXFZ2",
		"DELETE /v1/sessions/01M8T93BBDBZNX35WWT3BWXFZ2?owner_gone=true",
		"POST /v1/nodes/vm-a/settle",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("requests %q, want %q", got, want)
	}
	if code, _, stderr := limitctl(t, "-addr", srv.URL, "nodes", "settle"); code != 2 || !strings.Contains(stderr, "node id") {
		t.Errorf("nodes settle without a node: exit %d: %s", code, stderr)
	}
}

// TestEvalSeveralFlags: governance eval --flag takes a comma-separated list, a text
// counting as detected when any listed flag is raised on it (codesafety spreads its
// findings over unsafe, high_risk and malicious); -o json lists each flagged text with the
// findings that flagged it; a listed flag no rule raises is refused by name.
func TestEvalSeveralFlags(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Text string }
		_ = json.NewDecoder(r.Body).Decode(&req)
		w.Header().Set("Content-Type", "application/json")
		rules := `"rules":[{"plugin":"codesafety","rules":[{"id":"codesafety.B605","flags":["unsafe"]},{"id":"codesafety.B104","flags":["high_risk"]},{"id":"codesafety.reverse-shell","flags":["malicious"]}]}]`
		finding := map[string]string{
			"shell":  `{"flag":"unsafe","severity":7,"rule_id":"codesafety.B605","reason":"os.system starts a process through a shell"}`,
			"bind":   `{"flag":"high_risk","severity":4,"rule_id":"codesafety.B104","reason":"binds to all network interfaces"}`,
			"revsh":  `{"flag":"malicious","severity":10,"rule_id":"codesafety.reverse-shell","reason":"a socket handed to a shell"}`,
			"benign": ``,
		}[req.Text]
		fmt.Fprint(w, `{"findings":[`+finding+`],`+rules+`}`)
	}))
	defer srv.Close()
	set := filepath.Join(t.TempDir(), "set.jsonl")
	lines := `{"text":"shell","label":"jailbreak"}` + "\n" + `{"text":"bind","label":"jailbreak"}` + "\n" +
		`{"text":"revsh","label":"jailbreak"}` + "\n" + `{"text":"benign","label":"benign"}` + "\n"
	if err := os.WriteFile(set, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := limitctl(t, "-addr", srv.URL, "-o", "json", "governance", "eval", "--kind", "code", "--preset", "default", "--flag", "malicious,unsafe", set)
	if code != 0 {
		t.Fatalf("exit %d stderr %s", code, stderr)
	}
	var rep struct {
		Flags   []string `json:"flags"`
		Presets []struct {
			Confusion struct {
				TP int `json:"tp"`
				FN int `json:"fn"`
			} `json:"confusion"`
			Misses []int `json:"misses"`
			Hits   []struct {
				Line     int    `json:"line"`
				Label    string `json:"label"`
				Findings []struct {
					RuleID string `json:"rule_id"`
					Reason string `json:"reason"`
				} `json:"findings"`
			} `json:"hits"`
		} `json:"presets"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("%v: %s", err, stdout)
	}
	p := rep.Presets[0]
	if !slices.Equal(rep.Flags, []string{"malicious", "unsafe"}) || p.Confusion.TP != 2 || p.Confusion.FN != 1 || !slices.Equal(p.Misses, []int{2}) {
		t.Fatalf("--flag malicious,unsafe: flags %v confusion %+v misses %v, want the high_risk line alone missed", rep.Flags, p.Confusion, p.Misses)
	}
	if len(p.Hits) != 2 || p.Hits[0].Line != 1 || p.Hits[1].Line != 3 || p.Hits[1].Label != "jailbreak" ||
		len(p.Hits[1].Findings) != 1 || p.Hits[1].Findings[0].RuleID != "codesafety.reverse-shell" || p.Hits[1].Findings[0].Reason != "a socket handed to a shell" {
		t.Fatalf("hits %+v, want lines 1 and 3 with their findings and reasons", p.Hits)
	}
	code, stdout, stderr = limitctl(t, "-addr", srv.URL, "governance", "eval", "--kind", "code", "--preset", "default", "--flag", "malicious, unsafe,high_risk", set)
	if code != 0 || !strings.Contains(stdout, "100.0%") || !strings.Contains(stdout, "any of malicious, unsafe, high_risk") {
		t.Fatalf("three flags: exit %d stdout %s stderr %s, want TPR 100%% and the flags named", code, stdout, stderr)
	}
	code, _, stderr = limitctl(t, "-addr", srv.URL, "governance", "eval", "--kind", "code", "--flag", "malicious,jailbreak", set)
	if code != 1 || !strings.Contains(stderr, `raises "jailbreak"`) || strings.Contains(stderr, `"malicious"`) {
		t.Fatalf("a flag no rule raises: exit %d stderr %s, want 1 naming jailbreak alone", code, stderr)
	}
	if code, _, stderr = limitctl(t, "-addr", srv.URL, "governance", "eval", "--flag", "malicious,,unsafe", set); code != 2 || !strings.HasPrefix(stderr, "limitctl: --flag") {
		t.Fatalf("an empty flag: exit %d stderr %s, want a usage error", code, stderr)
	}
}
