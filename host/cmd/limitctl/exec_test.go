package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// execServer answers every execution with result, as JSON or, when the client asks for
// it, as an event stream.
func execServer(t *testing.T, result *string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Accept") == "text/event-stream" {
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "event: result\ndata: "+*result+"\n\n")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, *result)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestExecExitStatus: exec exits 0 only for an execution that ended ok, with or without
// -o json; a program that exited non-zero gives its exit code, any other failure 1.
func TestExecExitStatus(t *testing.T) {
	var result string
	srv := execServer(t, &result)
	for _, c := range []struct {
		name, result string
		code         int
	}{
		{"ok", `{"trace_id":"t1","status":"ok","exit_code":0}`, 0},
		{"exit 3", `{"trace_id":"t1","status":"error","exit_code":3,"error":"exit status 3"}`, 3},
		{"exit 1", `{"trace_id":"t1","status":"error","exit_code":1}`, 1},
		{"timeout", `{"trace_id":"t1","status":"timeout","exit_code":-1}`, 1},
		{"error without an exit code", `{"trace_id":"t1","status":"error","exit_code":0}`, 1},
		{"exit code out of range", `{"trace_id":"t1","status":"error","exit_code":300}`, 1},
	} {
		result = c.result
		for _, mode := range [][]string{nil, {"-o", "json"}} {
			args := append(append([]string{"-addr", srv.URL}, mode...), "exec", "s1", "python", "x")
			code, stdout, stderr := limitctl(t, args...)
			if code != c.code {
				t.Errorf("%s %q: exit %d, want %d\nstdout: %s\nstderr: %s", c.name, mode, code, c.code, stdout, stderr)
			}
			if mode != nil && !json.Valid([]byte(stdout)) {
				t.Errorf("%s -o json: stdout is not JSON: %s", c.name, stdout)
			}
			if c.code != 0 && !strings.Contains(stderr, "limitctl: execution ended with status") {
				t.Errorf("%s %q: stderr does not say the execution failed: %s", c.name, mode, stderr)
			}
		}
	}
}

// TestInputNotUTF8: exec, governance evaluate and traces append refuse text that is not
// valid UTF-8, naming where and at which byte, before any request (the API would run it
// with each bad byte replaced by U+FFFD).
func TestInputNotUTF8(t *testing.T) {
	srv := untouchedServer(t)
	file := filepath.Join(t.TempDir(), "latin1.py")
	if err := os.WriteFile(file, []byte("print(repr(\"caf\xe9\"))\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"exec", "s1", "python", "@" + file}, file + " is not valid UTF-8: byte 0xe9 at offset 15"},
		{[]string{"-o", "json", "exec", "s1", "python", "@" + file}, file + " is not valid UTF-8: byte 0xe9 at offset 15"},
		{[]string{"exec", "s1", "python", "ok\xff"}, "the argument is not valid UTF-8: byte 0xff at offset 2"},
		{[]string{"governance", "evaluate", "code", "@" + file}, file + " is not valid UTF-8: byte 0xe9 at offset 15"},
		{[]string{"traces", "append", "t1", "note", "\"caf\xe9\""}, "the argument is not valid UTF-8: byte 0xe9 at offset 4"},
	} {
		code, _, stderr := limitctl(t, append([]string{"-addr", srv.URL}, c.args...)...)
		if code != 2 || !strings.Contains(stderr, "limitctl: "+c.want) {
			t.Errorf("%q: exit %d, want 2 with %q\nstderr: %s", c.args, code, c.want, stderr)
		}
	}
	if got := invalidUTF8("héllo\xc3"); got != 6 {
		t.Errorf("invalidUTF8 of a cut sequence = %d, want 6", got)
	}
	if got := invalidUTF8("h\uFFFDllo"); got != -1 {
		t.Errorf("invalidUTF8 of a real U+FFFD = %d, want -1", got)
	}
}

// TestKeyFile: key -f FILE writes the PEM to FILE, with -o json as without it.
func TestKeyFile(t *testing.T) {
	const pem = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		b, _ := json.Marshal(map[string]string{"public_key_pem": pem, "fingerprint": "SHA256:abc"})
		w.Write(b)
	}))
	defer srv.Close()
	for _, mode := range [][]string{nil, {"-o", "json"}} {
		file := filepath.Join(t.TempDir(), "host.pem")
		code, stdout, stderr := limitctl(t, append(append([]string{"-addr", srv.URL}, mode...), "key", "-f", file)...)
		if code != 0 {
			t.Fatalf("%q: exit %d\nstdout: %s\nstderr: %s", mode, code, stdout, stderr)
		}
		if b, err := os.ReadFile(file); err != nil || string(b) != pem {
			t.Errorf("%q: the file holds %q, %v", mode, b, err)
		}
		if mode != nil {
			var got struct{ Fingerprint, File string }
			if err := json.Unmarshal([]byte(stdout), &got); err != nil || got.Fingerprint != "SHA256:abc" || got.File != file {
				t.Errorf("-o json: %v %s", err, stdout)
			}
		}
	}
}

// TestExecBlocked: an execution the policy blocked (403) prints its trace and its flags
// as exec's status line does, not as raw JSON; a refused merge prints each reason.
func TestExecBlocked(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json")
		if strings.HasSuffix(r.URL.Path, "/merge") {
			w.WriteHeader(http.StatusConflict)
			fmt.Fprint(w, `{"type":"about:blank","title":"Conflict","status":409,"detail":"merge refused under policy strict: flagged; unverified",
				"trace_id":"01TRACE","policy":"strict","reasons":["flagged","unverified"]}`)
			return
		}
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, `{"type":"about:blank","title":"Forbidden","status":403,"detail":"policy \"strict\" blocks this execution: jailbreak (severity 9, rule jb)",
			"trace_id":"01TRACE","policy":"strict","flag_names":["jailbreak"],
			"flags":[{"flag":"jailbreak","severity":9,"reason":"phrase","rule_id":"jb","stage":"pre","location":{"line":1,"column":1,"start":0,"end":6}}]}`)
	}))
	defer srv.Close()
	for _, mode := range [][]string{nil, {"-o", "json"}} {
		code, _, stderr := limitctl(t, append(append([]string{"-addr", srv.URL}, mode...), "exec", "s1", "python", "x")...)
		if code != 1 || !strings.Contains(stderr, "policy \"strict\" blocks this execution") ||
			!strings.Contains(stderr, "\n-- trace=01TRACE flag=jailbreak:9\n") ||
			!strings.Contains(stderr, "   jailbreak:9 jb: pre, line 1:1, bytes 0-6\n") || strings.Contains(stderr, `"severity"`) {
			t.Errorf("%q: exit %d, want 1 with the trace and the flags\nstderr: %s", mode, code, stderr)
		}
	}
	code, _, stderr := limitctl(t, "-addr", srv.URL, "traces", "merge", "01TRACE")
	if code != 1 || !strings.Contains(stderr, "\n-- trace=01TRACE\n  reason: flagged\n  reason: unverified\n") {
		t.Errorf("merge refused: exit %d\nstderr: %s", code, stderr)
	}
}

// TestAppendDataNotJSON: traces append with data that is not JSON says why and where,
// quoting a few bytes around the error, never the whole input.
func TestAppendDataNotJSON(t *testing.T) {
	big := filepath.Join(t.TempDir(), "big.py")
	if err := os.WriteFile(big, []byte(strings.Repeat("print('hello world')\n", 50000)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ data, want string }{
		{"@" + big, `invalid character 'p' looking for beginning of value at byte 1, near "print('hello world')\nprint('hello world')"...`},
		{`{"a": 1,}`, `invalid character '}' looking for beginning of object key string at byte 9, near "{\"a\": 1,}"`},
		{`text`, `at byte 2, near "text"`},
	} {
		code, _, stderr := limitctl(t, "-addr", "127.0.0.1:1", "traces", "append", "t1", "note", c.data)
		line, _, _ := strings.Cut(stderr, "\n\n")
		if code != 2 || !strings.Contains(line, c.want) || len(line) > 300 {
			t.Errorf("%q: exit %d, want 2 with %q, in one short line\nstderr: %.500s", c.data, code, c.want, stderr)
		}
	}
}

// TestExtraArguments: every command refuses positional arguments it does not take,
// with exit 2 and before any request.
func TestExtraArguments(t *testing.T) {
	srv := untouchedServer(t)
	for _, args := range [][]string{
		{"health", "extra"}, {"sessions", "list", "extra"}, {"sessions", "create", "extra"}, {"sessions", "show", "s1", "extra"},
		{"exec", "s1", "python", "x", "extra"}, {"traces", "list", "s1", "extra"}, {"traces", "merged", "extra"},
		{"traces", "show", "t1", "extra"}, {"traces", "append", "t1", "note", "{}", "extra"}, {"traces", "merge", "t1", "extra"},
		{"governance", "stats", "extra"}, {"governance", "evaluate", "prompt", "x", "extra"}, {"key", "extra"},
		{"export", "--session", "s1", "-f", "-", "extra"},
	} {
		code, stdout, stderr := limitctl(t, append([]string{"-addr", srv.URL}, args...)...)
		if code != 2 || !strings.Contains(stderr, "limitctl: expected") || !strings.Contains(stderr, `extra argument "extra"`) {
			t.Errorf("%q: exit %d, want 2 refusing the argument by name\nstdout: %s\nstderr: %s", args, code, stdout, stderr)
		}
	}
}

// TestDaemonAddressForms: -addr :PORT means 127.0.0.1:PORT (not a Host header the daemon
// refuses), a URL ending in the API's /v1 works, and a port out of range is a usage error.
func TestDaemonAddressForms(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// As the daemon does, refuse a Host that names no host (DNS rebinding).
		if h, _, _ := net.SplitHostPort(r.Host); h == "" || r.URL.Path != "/v1/sessions" {
			http.Error(w, "host "+r.Host+", path "+r.URL.Path, http.StatusForbidden)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"sessions":[{"id":"x","name":"s1","state":"active"}]}`)
	}))
	defer srv.Close()
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	for _, addr := range []string{":" + strconv.Itoa(port), srv.URL + "/v1", srv.URL + "/v1/"} {
		if code, stdout, stderr := limitctl(t, "-addr", addr, "sessions", "list"); code != 0 || !strings.Contains(stdout, "s1") {
			t.Errorf("-addr %s: exit %d, want 0 with the session\nstdout: %s\nstderr: %s", addr, code, stdout, stderr)
		}
	}
	code, _, stderr := limitctl(t, "-addr", "http://127.0.0.1:99999", "sessions", "list")
	if code != 2 || !strings.Contains(stderr, `-addr "http://127.0.0.1:99999" is not a daemon address: port 99999 is not between 1 and 65535`) {
		t.Errorf("port 99999: exit %d, want 2\nstderr: %s", code, stderr)
	}
}

// TestUnauthorized: a 401 says whether limitctl sent a token, and if it did, where it
// came from; a token file that cannot be read is named with the setting that gave it.
func TestUnauthorized(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"title":"Unauthorized","status":401,"detail":"this API needs a token"}`)
	}))
	defer srv.Close()
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("wrong-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing")
	for _, c := range []struct {
		name, token, tokenFile string
		args                   []string
		code                   int
		want                   string
	}{
		{"none", "", "", nil, 1, "limitctl sent no token: give the daemon's with -token-file FILE, LIMIT_TOKEN or LIMIT_TOKEN_FILE"},
		{"LIMIT_TOKEN", "wrong", "", nil, 1, "the daemon refused the token from LIMIT_TOKEN\n"},
		{"LIMIT_TOKEN_FILE", "", file, nil, 1, "the daemon refused the token from LIMIT_TOKEN_FILE " + file + "\n"},
		{"-token-file", "wrong", "", []string{"-token-file", file}, 1, "the daemon refused the token from -token-file " + file + "\n"},
		{"LIMIT_TOKEN_FILE missing", "", missing, nil, 2, "cannot read the API token: open " + missing + ": no such file or directory (from LIMIT_TOKEN_FILE)"},
		{"-token-file missing", "", "", []string{"-token-file", missing}, 2, "no such file or directory (from -token-file)"},
	} {
		t.Setenv("LIMIT_TOKEN", c.token)
		t.Setenv("LIMIT_TOKEN_FILE", c.tokenFile)
		code, _, stderr := limitctl(t, append(append([]string{"-addr", srv.URL}, c.args...), "sessions", "list")...)
		if code != c.code || !strings.Contains(stderr, c.want) {
			t.Errorf("%s: exit %d, want %d with %q\nstderr: %s", c.name, code, c.code, c.want, stderr)
		}
	}
}

// TestExecStreamLost: a daemon that goes away during an execution's stream, after its
// output began, leaves limitctl saying the connection was lost and the outcome is
// unknown, and where to look it up, not a bare "unexpected EOF".
func TestExecStreamLost(t *testing.T) {
	for name, body := range map[string]string{
		"connection cut":   "event: stdout\ndata: {\"data\":\"partial\\n\"}\n\n",
		"ended, no result": "",
	} {
		cut := name == "connection cut"
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			if !cut {
				fmt.Fprint(w, ": running\n\n")
				return
			}
			conn, buf, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			// A chunked body cut off mid-stream, as a daemon killed mid-execution leaves it.
			fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n", len(body), body)
			buf.Flush()
		}))
		code, stdout, stderr := limitctl(t, "-addr", srv.URL, "exec", "s1", "python", "x")
		srv.Close()
		want := "limitctl: the connection to the daemon at " + srv.URL + " was lost during the execution: its outcome is unknown; once the daemon is back, its trace shows it (limitctl traces list s1)"
		if code != 1 || !strings.HasPrefix(stderr, want) {
			t.Errorf("%s: exit %d, want 1 with %q\nstdout: %s\nstderr: %s", name, code, want, stdout, stderr)
		}
		if cut && stdout != "partial\n" {
			t.Errorf("%s: the output streamed before is not shown: %q", name, stdout)
		}
	}
}

// TestDashDash: every argument after "--" is positional, even one that looks like a flag
// and comes after the first positional argument.
func TestDashDash(t *testing.T) {
	var input string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Input string }
		_ = json.NewDecoder(r.Body).Decode(&req)
		input = req.Input
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"trace_id":"t1","status":"ok"}`)
	}))
	defer srv.Close()
	for _, args := range [][]string{
		{"exec", "-o", "json", "--", "s1", "python", "-1"},
		{"exec", "-o", "json", "s1", "--", "python", "-1"},
		{"exec", "-o", "json", "s1", "python", "--", "-1"},
	} {
		input = ""
		code, stdout, stderr := limitctl(t, append([]string{"-addr", srv.URL}, args...)...)
		if code != 0 || input != "-1" {
			t.Errorf("%q: exit %d, input %q, want 0 with input -1\nstdout: %s\nstderr: %s", args, code, input, stdout, stderr)
		}
	}
	// Flags before "--" still count.
	if code, _, stderr := limitctl(t, "-addr", srv.URL, "exec", "--bogus", "--", "s1", "python", "-1"); code != 2 || !strings.Contains(stderr, "-bogus") {
		t.Errorf("a bad flag before --: exit %d\nstderr: %s", code, stderr)
	}
	if got := afterDashDash([]string{"-x", "--", "a", "-b"}, 2); !got {
		t.Error("afterDashDash: the parse did stop at --")
	}
	if got := afterDashDash([]string{"a", "-b"}, 2); got {
		t.Error("afterDashDash: no -- there")
	}
}

// TestLesserMessages: a command without its subcommand lists them; a bad flag before the
// command is prefixed "limitctl: "; a truncated output is marked on exec's status line.
func TestLesserMessages(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"traces"}, "limitctl: traces needs a subcommand: list, show, append, flag, merge, merged, verify\n"},
		{[]string{"governance"}, "limitctl: governance needs a subcommand: stats, evaluate, eval\n"},
		{[]string{"governance", "bogus"}, `limitctl: unknown governance command "bogus" (want stats, evaluate, eval)`},
		{[]string{"-x"}, "limitctl: flag provided but not defined: -x\n"},
	} {
		code, _, stderr := limitctl(t, c.args...)
		if code != 2 || !strings.HasPrefix(stderr, c.want) {
			t.Errorf("%q: exit %d, want 2 with %q\nstderr: %s", c.args, code, c.want, stderr)
		}
	}
	result := `{"trace_id":"t1","status":"ok","stdout":"xxx","truncated":true}`
	srv := execServer(t, &result)
	if code, _, stderr := limitctl(t, "-addr", srv.URL, "exec", "s1", "python", "x"); code != 0 || !strings.HasPrefix(stderr, "-- ok exit=0 0ms trace=t1 truncated\n") {
		t.Errorf("truncated output: exit %d\nstderr: %s", code, stderr)
	}
	_, _, bundle := testBundle(t)
	if code, stdout, stderr := limitctl(t, "verify", bundle); code != 0 || !strings.Contains(stdout, ": valid — 1 trace, ") {
		t.Errorf("verify of a bundle of one trace: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	if got := plural(2, "text", "texts") + ", " + plural(int64(1), "entry", "entries"); got != "2 texts, 1 entry" {
		t.Errorf("plural: %q", got)
	}
}

// untouchedServer is a daemon address the test expects no request at: each one fails the
// test (and is answered 404).
func untouchedServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("a request was sent: %s %s", r.Method, r.URL.Path)
		http.NotFound(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestExecInterrupted: Ctrl-C during an execution (the context limitctl's main cancels on
// SIGINT) says the execution was interrupted and ends as cancelled, not that the daemon's
// connection was lost, and exits 130, in both output modes; the daemon sees the client
// leave.
func TestExecInterrupted(t *testing.T) {
	for _, mode := range []string{"table", "json"} {
		left := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Query().Get("stream") != "" || strings.Contains(r.Header.Get("Accept"), "event-stream") {
				w.Header().Set("Content-Type", "text/event-stream")
				fmt.Fprint(w, "event: stdout\ndata: {\"data\":\"partial\\n\"}\n\n")
			} else {
				w.Header().Set("Content-Type", "application/json")
			}
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			close(left)
		}))
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(200*time.Millisecond, cancel)
		var stdout, stderr bytes.Buffer
		code := run(ctx, []string{"-addr", srv.URL, "-o", mode, "exec", "s1", "python", "x"}, &stdout, &stderr)
		<-left
		srv.Close()
		if code != 130 || !strings.HasPrefix(stderr.String(), "limitctl: interrupted: the daemon cancels the execution") || strings.Contains(stderr.String(), "lost") {
			t.Errorf("%s: exit %d, want 130\nstdout: %s\nstderr: %s", mode, code, stdout.String(), stderr.String())
		}
	}
}

// TestExecRecordPending: an execution that ran but whose trace is not stored yet (a 503
// with record_pending), whether it comes as the answer or as the stream's error event
// once output began, prints its detail and its trace, as exec's status line names it.
func TestExecRecordPending(t *testing.T) {
	const problem = `{"type":"about:blank","title":"Service Unavailable","status":503,"instance":"/v1/sessions/s1/executions",` +
		`"detail":"the execution ran (status ok) but its trace could not be stored yet; it will be recorded when storage is back: do not run it again (disk full)",` +
		`"trace_id":"01TRACE","execution_status":"ok","record_pending":true}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Accept") == "text/event-stream" {
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "event: stdout\ndata: {\"data\":\"done\\n\"}\n\nevent: error\ndata: "+problem+"\n\n")
			return
		}
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, problem)
	}))
	defer srv.Close()
	for _, mode := range [][]string{nil, {"-o", "json"}} {
		code, _, stderr := limitctl(t, append(append([]string{"-addr", srv.URL}, mode...), "exec", "s1", "python", "x")...)
		if code != 1 || !strings.Contains(stderr, "do not run it again") || !strings.Contains(stderr, "\n-- trace=01TRACE\n") {
			t.Errorf("%q: exit %d, want 1 with the detail and the trace\nstderr: %s", mode, code, stderr)
		}
	}
}

// TestExecErrorLines: an execution's error of several lines (Python's traceback) is
// printed a line to each, not as one line of escaped newlines; what a terminal would act
// on is still escaped.
func TestExecErrorLines(t *testing.T) {
	result := `{"trace_id":"t1","status":"error","exit_code":1,"error":"Traceback (most recent call last):\n  File \"<exec>\", line 1, in <module>\nValueError: x\u001b[2J\n"}`
	srv := execServer(t, &result)
	code, _, stderr := limitctl(t, "-addr", srv.URL, "exec", "s1", "python", `raise ValueError("x")`)
	want := "error: Traceback (most recent call last):\n  File \"<exec>\", line 1, in <module>\nValueError: x\\x1b[2J\n"
	if code != 1 || !strings.Contains(stderr, want) {
		t.Errorf("exit %d, stderr:\n%s\nwant it to hold:\n%s", code, stderr, want)
	}
}
