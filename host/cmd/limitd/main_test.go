package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/limitgraph/limit/internal/syncbuf"
	"github.com/limitgraph/limit/internal/testbin"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// writeConfig writes an HCL file whose host block points at the test plugins.
func writeConfig(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "limit.hcl")
	src := strings.ReplaceAll(body, "PLUGINDIR", testbin.PluginDir(t))
	src = strings.ReplaceAll(src, "DATADIR", filepath.Join(dir, "data"))
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func script(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(testbin.PluginDir(t), name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestValidate(t *testing.T) {
	bolt := testbin.Plugin(t, "storage-bolt")
	script(t, "limit-storage-garbage", "echo 'this is not a handshake'; sleep 30")
	script(t, "limit-storage-hang", "sleep 30")
	b, err := os.ReadFile(bolt)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	actual := hex.EncodeToString(sum[:])
	wrong := strings.Repeat("ab", 32)

	host := "host {\n  plugin_dir = \"PLUGINDIR\"\n  data_dir = \"DATADIR\"\n  plugin_start_timeout = \"1s\"\n}\n"
	for _, tc := range []struct {
		name string
		body string
		code int
		want []string
	}{
		{"valid", host + "storage \"bolt\" {\n  sha256 = \"" + actual + "\"\n}\n", 0, []string{"configuration is valid"}},
		{"syntax error", host + "storage \"bolt\" {\n  config {\n    path = \n", 1, []string{"limit.hcl:8"}},
		{"unknown attribute", host + "storage \"bolt\" {\n  colour = \"red\"\n}\n", 1, []string{"limit.hcl:7", "colour"}},
		{"unknown block", host + "storage \"bolt\" {}\nrunnr \"x\" {}\n", 1, []string{"limit.hcl:7", "runnr"}},
		{"wrong type", host + "storage \"bolt\" {\n  env = \"x\"\n}\n", 1, []string{"limit.hcl:7", "env"}},
		{"plugin schema", host + "storage \"bolt\" {\n  config {\n    path = [1, 2]\n  }\n}\n", 1, []string{"limit.hcl:8", "path"}},
		{"plugin check", host + "storage \"bolt\" {\n  config {\n    timeout = \"soon\"\n  }\n}\n", 1, []string{"limit.hcl:8", "timeout"}},
		{"missing binary", host + "storage \"nothere\" {}\n", 1, []string{`storage "nothere"`, "limit-storage-nothere", "not found"}},
		{"sha256 mismatch", host + "storage \"bolt\" {\n  sha256 = \"" + wrong + "\"\n}\n", 1, []string{"limit.hcl:7", `storage "bolt"`, "expected " + wrong, "actual " + actual}},
		{"garbage before handshake", host + "storage \"garbage\" {}\n", 1, []string{`storage "garbage"`, "this is not a handshake"}},
		{"never answers", host + "storage \"hang\" {}\n", 1, []string{`storage "hang"`, "timeout while waiting for plugin to start"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.body)
			var stdout, stderr bytes.Buffer
			start := time.Now()
			code := run([]string{"-validate", "-config", path}, &stdout, &stderr)
			out := stdout.String() + stderr.String()
			if code != tc.code {
				t.Fatalf("exit %d, want %d\n%s", code, tc.code, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("validate took %v", d)
			}
		})
	}
}

// TestExtraArguments: limitd takes no operands; one given (a config file named without
// -config) is a usage error, not ignored while the daemon runs on the embedded default.
func TestExtraArguments(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-validate", "my.hcl"}, "run `limitd -config my.hcl`"},
		{[]string{"my.hcl"}, "run `limitd -config my.hcl`"},
		{[]string{"-validate", "-config", "limit.hcl", "extra"}, `unexpected argument "extra"`},
		{[]string{"my.hcl", "-validate"}, `unexpected arguments "my.hcl -validate"`},
	} {
		var stdout, stderr bytes.Buffer
		code := run(tc.args, &stdout, &stderr)
		if code != 2 || !strings.HasPrefix(stderr.String(), "limitd: ") || !strings.Contains(stderr.String(), tc.want) || stdout.Len() > 0 {
			t.Errorf("limitd %s: exit %d, stdout %q, stderr %q; want exit 2 saying %s", strings.Join(tc.args, " "), code, stdout.String(), stderr.String(), tc.want)
		}
	}
}

func TestVersionFlag(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-version"}, &stdout, &stderr); code != 0 || !strings.HasPrefix(stdout.String(), "limitd ") {
		t.Fatalf("-version: %d %q %q", code, stdout.String(), stderr.String())
	}
}

// startLimitd runs the built limitd binary (with its plugins beside it) and waits until
// it listens.
func startLimitd(t *testing.T, config string) (*exec.Cmd, string) {
	t.Helper()
	cmd, url, _ := startLimitdLogs(t, config)
	return cmd, url
}

// startLimitdLogs is startLimitd that also returns what limitd writes to its stderr.
func startLimitdLogs(t *testing.T, config string) (*exec.Cmd, string, *syncbuf.Buffer) {
	t.Helper()
	bin := testbin.Command(t, "limitd")
	testbin.Plugin(t, "storage-bolt")
	cmd := exec.Command(bin, "-config", config)
	cmd.Env = append(os.Environ(), "API_PORT=0")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &syncbuf.Buffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("limitd did not start: %v\n%s", err, stderr.String())
	}
	i := strings.Index(line, "http://")
	if i < 0 {
		t.Fatalf("unexpected first line %q", line)
	}
	return cmd, strings.TrimSpace(line[i:]), stderr
}

func pluginPIDs(t *testing.T, url string) []int {
	t.Helper()
	res, err := http.Get(url + "/v1/health")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var h struct {
		Status  string
		Plugins []struct{ PID int }
	}
	if err := json.NewDecoder(res.Body).Decode(&h); err != nil {
		t.Fatal(err)
	}
	if h.Status != "ok" || len(h.Plugins) == 0 {
		t.Fatalf("health %+v", h)
	}
	var pids []int
	for _, p := range h.Plugins {
		pids = append(pids, p.PID)
	}
	return pids
}

func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] != "Z"
}

func waitGone(t *testing.T, pids []int) {
	t.Helper()
	// Plugins also notice a dead parent by polling; on a loaded machine that takes a while.
	deadline := time.Now().Add(30 * time.Second)
	for _, pid := range pids {
		for alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("plugin process %d outlived limitd", pid)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// TestDaemonProcess starts the real limitd, checks health, and stops it with SIGTERM and
// with SIGKILL: in both cases no plugin process is left behind.
func TestDaemonProcess(t *testing.T) {
	config := writeConfig(t, "host {\n  listen = \"127.0.0.1:0\"\n  data_dir = \"DATADIR\"\n}\nstorage \"bolt\" {}\n")
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			cmd, url := startLimitd(t, config)
			pids := pluginPIDs(t, url)
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			err := cmd.Wait()
			if sig != syscall.SIGKILL && err != nil {
				t.Fatalf("limitd exited with %v after %v", err, sig)
			}
			waitGone(t, pids)
		})
	}
}

// TestSIGHUP: SIGHUP (which would otherwise end limitd at once, without a graceful
// shutdown) reloads api.token_file: a token added works and one removed is refused from
// then on, without a restart; a file that does not parse keeps the tokens in use; without
// a token file it is logged and ignored. limitd goes on serving, and a SIGTERM after it
// still starts a graceful shutdown.
func TestSIGHUP(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "tokens")
	oldOp, newOp, alice := strings.Repeat("a", 32), strings.Repeat("b", 32), strings.Repeat("c", 32)
	writeTokens := func(body string) {
		t.Helper()
		if err := os.WriteFile(tokenFile, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeTokens(oldOp + "\n" + alice + " alice\n")
	withTokens := writeConfig(t, "host {\n  listen = \"127.0.0.1:0\"\n  data_dir = \"DATADIR\"\n}\nstorage \"bolt\" {}\napi {\n  token_file = \""+tokenFile+"\"\n}\n")
	open := writeConfig(t, "host {\n  listen = \"127.0.0.1:0\"\n  data_dir = \"DATADIR\"\n}\nstorage \"bolt\" {}\n")
	for _, c := range []struct {
		name, config string
	}{{"tokens", withTokens}, {"open", open}} {
		t.Run(c.name, func(t *testing.T) {
			cmd, url, logs := startLimitdLogs(t, c.config)
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			hup := func(want string) {
				t.Helper()
				n := strings.Count(logs.String(), want)
				if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
					t.Fatal(err)
				}
				for deadline := time.Now().Add(30 * time.Second); strings.Count(logs.String(), want) == n; time.Sleep(10 * time.Millisecond) {
					select {
					case err := <-exited:
						t.Fatalf("limitd exited on SIGHUP: %v\n%s", err, logs.String())
					default:
					}
					if time.Now().After(deadline) {
						t.Fatalf("no log line %q for SIGHUP:\n%s", want, logs.String())
					}
				}
			}
			status := func(token string) int {
				t.Helper()
				req, _ := http.NewRequest("GET", url+"/v1/sessions", nil)
				req.Header.Set("Authorization", "Bearer "+token)
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				res.Body.Close()
				return res.StatusCode
			}
			if c.config == withTokens {
				if a, b, u := status(oldOp), status(newOp), status(alice); a != 200 || b != 401 || u != 200 {
					t.Fatalf("before the reload: old %d, new %d, alice %d", a, b, u)
				}
				writeTokens(newOp + "\n")
				hup("api.token_file reloaded")
				if a, b, u := status(oldOp), status(newOp), status(alice); a != 401 || b != 200 || u != 401 {
					t.Fatalf("after the reload: old %d, new %d, alice %d", a, b, u)
				}
				writeTokens("zqbadtoken\n")
				hup("not reloaded, the tokens in use stay")
				if b := status(newOp); b != 200 {
					t.Fatalf("after a reload of a bad file: new %d", b)
				}
				if strings.Contains(logs.String(), "zqbadtoken") || strings.Contains(logs.String(), newOp) {
					t.Fatalf("the log quotes the token file:\n%s", logs.String())
				}
			} else {
				hup("no tokens to reload")
			}
			pids := pluginPIDs(t, url) // still serving, healthy
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-exited:
				if err != nil {
					t.Fatalf("limitd exited with %v after SIGHUP and SIGTERM\n%s", err, logs.String())
				}
			case <-time.After(30 * time.Second):
				t.Fatal("limitd did not stop on SIGTERM after a SIGHUP")
			}
			if !strings.Contains(logs.String(), "limitd stopped") {
				t.Fatalf("no graceful shutdown after SIGTERM:\n%s", logs.String())
			}
			waitGone(t, pids)
		})
	}
}

// TestSecondSignalStopsAtOnce: while a graceful shutdown waits for a request still being
// sent, a second SIGTERM ends limitd without waiting, and no plugin is left behind.
func TestSecondSignalStopsAtOnce(t *testing.T) {
	config := writeConfig(t, "host {\n  listen = \"127.0.0.1:0\"\n  data_dir = \"DATADIR\"\n}\nstorage \"bolt\" {}\n")
	cmd, url := startLimitd(t, config)
	pids := pluginPIDs(t, url)
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A first request answered on the connection: limitd has accepted it (on a loaded
	// machine, a connection still in the listen queue at the signal would just be reset).
	fmt.Fprint(conn, "GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, res.Body); err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	// A request whose body never finishes arriving: the handler waits on it, and so does
	// a graceful shutdown (up to api.read_timeout, 30 s).
	fmt.Fprint(conn, "POST /v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
	time.Sleep(200 * time.Millisecond)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		t.Fatalf("limitd did not wait for the request in flight: %v", err)
	case <-time.After(time.Second):
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("a second SIGTERM did not stop limitd")
	}
	waitGone(t, pids)
}

func TestEmbeddedDefaultRuns(t *testing.T) {
	// limitd with no -config uses the embedded default (bolt under ./data); run it in a
	// temporary working directory.
	bin := testbin.Command(t, "limitd")
	// Every plugin the embedded default names.
	for _, p := range []string{"storage-bolt", "runner-python", "governance-jailbreak", "governance-codesafety", "governance-anomaly"} {
		testbin.Plugin(t, p)
	}
	dir := t.TempDir()
	cmd := exec.Command(bin)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "API_PORT=0")
	out, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.Contains(line, "listening on http://127.0.0.1:") {
		cmd.Process.Kill()
		cmd.Wait() // stderr is complete, and no longer written, once Wait returns
		t.Fatalf("first line %q, %v\n%s", line, err, stderr.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "limit.db")); err != nil {
		t.Fatalf("default data dir not used: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = ctx
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, stderr.String())
	}
	fmt.Fprint(os.Stderr, "")
}

// TestDiagnosticsReadable: each problem is said once (file:line:column and summary, then
// the snippet and the detail, without HCL's "Error: summary" line again), and a quote left
// open, which makes dozens of problems downstream, prints the first ten and a count.
func TestDiagnosticsReadable(t *testing.T) {
	dir := t.TempDir()
	var body strings.Builder
	body.WriteString("host {\n  listen = \"127.0.0.1:8080\n}\n")
	for i := range 30 {
		fmt.Fprintf(&body, "runner \"r%d\" {\n  plugin = \"x\"\n}\n", i)
	}
	p := filepath.Join(dir, "bad.hcl")
	if err := os.WriteFile(p, []byte(body.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"-validate", "-config", p}, &out, &errb); code != 1 {
		t.Fatalf("exit %d", code)
	}
	got := errb.String()
	if n := strings.Count(got, ": error: "); n != maxDiags {
		t.Errorf("%d problems printed, want %d:\n%s", n, maxDiags, got)
	}
	if !strings.HasPrefix(got, p+":2:") || !strings.Contains(got, "more problems not shown") || strings.Contains(got, "Error: ") {
		t.Errorf("diagnostics:\n%s", got)
	}
	// A single problem is printed whole: place, summary, snippet, detail.
	p2 := filepath.Join(dir, "typo.hcl")
	if err := os.WriteFile(p2, []byte("host {\n  listn = \"127.0.0.1:8080\"\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	errb.Reset()
	if code := run([]string{"-validate", "-config", p2}, &out, &errb); code != 1 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{p2 + ":2:3: error: Unsupported argument", `2:   listn = "127.0.0.1:8080"`, `Did you mean "listen"?`} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("diagnostic lacks %q:\n%s", want, errb.String())
		}
	}
	if strings.Count(errb.String(), "Unsupported argument") != 1 {
		t.Errorf("summary said more than once:\n%s", errb.String())
	}
}

// TestDiagnosticsHideSecrets: a diagnostic about a line that holds a password (here the
// postgres plugin's url, which cannot be reached) says where and what, but its source
// snippet is not printed, at -validate and at start alike.
func TestDiagnosticsHideSecrets(t *testing.T) {
	testbin.Plugin(t, "storage-postgres")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: connection refused
	conf := func(hostport string) string {
		return writeConfig(t, "host {\n  plugin_dir = \"PLUGINDIR\"\n  data_dir = \"DATADIR\"\n  listen = \"127.0.0.1:0\"\n}\n"+
			"storage \"postgres\" {\n  config {\n    url = \"postgres://limit_test:SECRETPW@"+hostport+"/limit_test?sslmode=disable\"\n    connect_timeout = \"2s\"\n  }\n}\n")
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		// -validate contacts no server: a URL it cannot parse is its error on that line.
		{"validate", []string{"-validate", "-config", conf("127.0.0.1:notaport")}, "invalid PostgreSQL URL"},
		{"start", []string{"-config", conf(addr)}, "cannot connect to PostgreSQL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(tc.args, &stdout, &stderr); code != 1 {
				t.Fatalf("exit %d, want 1\n%s%s", code, stdout.String(), stderr.String())
			}
			out := stderr.String()
			if strings.Contains(out, "SECRETPW") {
				t.Errorf("output shows the password:\n%s", out)
			}
			for _, want := range []string{tc.args[len(tc.args)-1] + ":8:", tc.want, "the source line is not shown"} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
		})
	}
}

// TestDatabaseURLOverridesConfigURL: the seed's DATABASE_URL wins over the postgres
// block's config url (here one that cannot work), and the log says the variable was used,
// never the URL. Needs LIMIT_TEST_POSTGRES_URL.
func TestDatabaseURLOverridesConfigURL(t *testing.T) {
	dbURL := os.Getenv("LIMIT_TEST_POSTGRES_URL")
	if dbURL == "" {
		t.Skip("LIMIT_TEST_POSTGRES_URL is not set")
	}
	testbin.Plugin(t, "storage-postgres")
	t.Setenv("DATABASE_URL", dbURL)
	config := writeConfig(t, "host {\n  listen = \"127.0.0.1:0\"\n  data_dir = \"DATADIR\"\n}\n"+
		"storage \"postgres\" {\n  config {\n    url = \"postgres://nobody:FILEPW@127.0.0.1:1/none?sslmode=disable\"\n    connect_timeout = \"2s\"\n  }\n}\n")
	_, url, logs := startLimitdLogs(t, config)
	resp, err := http.Get(url + "/v1/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("health %d", resp.StatusCode)
	}
	u, _ := neturl.Parse(dbURL)
	if out := logs.String(); !strings.Contains(out, "taken from the environment variable DATABASE_URL") ||
		strings.Contains(out, u.User.String()+"@") || strings.Contains(out, "FILEPW") {
		t.Errorf("log:\n%s", out)
	}
}

// TestJSONLogFormat: with host.log_format = "json" every line limitd writes to its stderr
// is a JSON object, the lines its plugins send (relayed by go-plugin) and the access lines
// included.
func TestJSONLogFormat(t *testing.T) {
	config := writeConfig(t, "host {\n  listen = \"127.0.0.1:0\"\n  data_dir = \"DATADIR\"\n  log_level = \"debug\"\n  log_format = \"json\"\n}\nstorage \"bolt\" {}\n")
	cmd, url, logs := startLimitdLogs(t, config)
	res, err := http.Get(url + "/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("limitd: %v\n%s", err, logs.String())
	}
	modules := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q is not JSON: %v", line, err)
		}
		if m["@message"] == nil || m["@level"] == nil || m["@timestamp"] == nil {
			t.Fatalf("line %q lacks hclog's keys", line)
		}
		mod, _ := m["@module"].(string)
		modules[mod] = true
		if m["@message"] == "request" && m["route"] != "GET /v1/openapi.json" {
			t.Errorf("access line %q", line)
		}
	}
	plugin := false
	for mod := range modules {
		// A plugin's own lines come under its go-plugin name, beside the host's lines
		// about the plugin process.
		if strings.HasPrefix(mod, "limitd.storage.bolt.limit-storage-bolt") {
			plugin = true
		}
		if !strings.HasPrefix(mod, "limitd") {
			t.Errorf("a line of module %q: the relayed lines keep the host's module", mod)
		}
	}
	if !plugin || !modules["limitd.api"] {
		t.Fatalf("modules %v: want a plugin's relayed lines and the API's\n%s", modules, logs.String())
	}
}

// TestDrainDelay: with api.drain_delay, after SIGTERM the listener stays open: a new
// connection's readiness check is answered 503 (a load balancer takes the host out), its
// liveness check 200, and then limitd stops gracefully.
func TestDrainDelay(t *testing.T) {
	config := writeConfig(t, "host {\n  listen = \"127.0.0.1:0\"\n  data_dir = \"DATADIR\"\n}\nstorage \"bolt\" {}\napi {\n  drain_delay = \"10s\"\n}\n")
	cmd, url, logs := startLimitdLogs(t, config)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}} // a new connection each time
	get := func(path string) int {
		t.Helper()
		res, err := client.Get(url + path)
		if err != nil {
			t.Fatalf("GET %s while draining: %v\n%s", path, err, logs.String())
		}
		res.Body.Close()
		return res.StatusCode
	}
	if code := get("/v1/health/ready"); code != 200 {
		t.Fatalf("ready before the signal: %d", code)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for get("/v1/health/ready") != 503 {
		select {
		case err := <-exited:
			t.Fatalf("limitd exited (%v) without answering readiness 503\n%s", err, logs.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	if code := get("/v1/health/live"); code != 200 {
		t.Errorf("live while draining: %d", code)
	}
	if code := get("/v1/health"); code != 503 {
		t.Errorf("health while draining: %d", code)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("limitd exited with %v\n%s", err, logs.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("limitd did not stop after its drain delay")
	}
	if !strings.Contains(logs.String(), "draining") || !strings.Contains(logs.String(), "limitd stopped") {
		t.Fatalf("log:\n%s", logs.String())
	}
}

// TestSystemdNotify: under systemd's Type=notify, limitd sends READY=1 to $NOTIFY_SOCKET
// once it listens and STOPPING=1 when a SIGTERM begins its shutdown.
func TestSystemdNotify(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	t.Setenv("NOTIFY_SOCKET", path)
	config := writeConfig(t, "host {\n  listen = \"127.0.0.1:0\"\n  data_dir = \"DATADIR\"\n}\nstorage \"bolt\" {}\n")
	cmd, url, logs := startLimitdLogs(t, config)
	read := func() string {
		t.Helper()
		_ = sock.SetReadDeadline(time.Now().Add(time.Minute))
		buf := make([]byte, 256)
		n, err := sock.Read(buf)
		if err != nil {
			t.Fatalf("no notification: %v\n%s", err, logs.String())
		}
		return string(buf[:n])
	}
	if got := read(); got != "READY=1" {
		t.Fatalf("first notification %q, want READY=1", got)
	}
	pluginPIDs(t, url) // serving
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != "STOPPING=1" {
		t.Fatalf("notification at SIGTERM %q, want STOPPING=1", got)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("limitd: %v\n%s", err, logs.String())
	}
}
