package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
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
