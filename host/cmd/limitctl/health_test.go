package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestHealthShowsWhyAPluginIsUnhealthy checks that `limitctl health` prints a degraded
// storage backend's reason and a plugin's last error, and exits non-zero.
func TestHealthShowsWhyAPluginIsUnhealthy(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"status":"degraded","version":"x","plugins":[
			{"name":"bolt","kind":"storage","version":"0.1.0","pid":7,"healthy":false,"restarts":1,
			 "last_error":"health ping: plugin process exited","last_error_at":"2020-01-02T03:04:05Z",
			 "detail":"checkpoints failing: no space left on device","metrics":{"log_pending_bytes":5}}]}`))
	}))
	defer srv.Close()
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"-addr", srv.URL, "health"}, &out, &errOut)
	if code != 1 {
		t.Errorf("exit code %d, want 1 (stderr %q)", code, errOut.String())
	}
	for _, want := range []string{"status degraded", "bolt", "backend: checkpoints failing: no space left on device", "last error at 20", ": health ping: plugin process exited"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

// TestOutputFlagBeforeOrAfterTheCommand checks that -o json works before the command
// (limitctl -o json sessions list) as after it, that after wins, and that health prints
// JSON too.
func TestOutputFlagBeforeOrAfterTheCommand(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/v1/health":
			_, _ = w.Write([]byte(`{"status":"ok","version":"x","plugins":[]}`))
		case "/v1/sessions":
			_, _ = w.Write([]byte(`{"sessions":[{"id":"01M8T93BBDBZNX35WWT3BWXFZ2","name":"s1","state":"active","policy":"default","max_concurrency":4,"created_at":"2026-12-02T02:24:33Z"}]}`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	for _, tc := range []struct {
		args []string
		json bool
	}{
		{[]string{"-o", "json", "sessions", "list"}, true},
		{[]string{"sessions", "list", "-o", "json"}, true},
		{[]string{"-o", "json", "sessions", "list", "-o", "table"}, false},
		{[]string{"sessions", "list"}, false},
		{[]string{"-o", "json", "health"}, true},
		{[]string{"health", "-o", "json"}, true},
		{[]string{"health"}, false},
	} {
		var out, errOut bytes.Buffer
		code := run(context.Background(), append([]string{"-addr", srv.URL}, tc.args...), &out, &errOut)
		if code != 0 {
			t.Errorf("%v: exit %d, stderr %q", tc.args, code, errOut.String())
			continue
		}
		if isJSON := json.Valid(out.Bytes()); isJSON != tc.json {
			t.Errorf("%v: JSON output %v, want %v:\n%s", tc.args, isJSON, tc.json, out.String())
		}
		if slices.Contains(tc.args, "sessions") && !strings.Contains(out.String(), "s1") {
			t.Errorf("%v: the session is missing from the output:\n%s", tc.args, out.String())
		}
		var page struct {
			Sessions []map[string]any `json:"sessions"`
		}
		if tc.json && slices.Contains(tc.args, "sessions") && (json.Unmarshal(out.Bytes(), &page) != nil || len(page.Sessions) != 1) {
			t.Errorf("%v: want the page object {\"sessions\": [one]}:\n%s", tc.args, out.String())
		}
	}
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"-addr", srv.URL, "-o", "yaml", "health"}, &out, &errOut); code != 2 {
		t.Errorf("-o yaml: exit %d, want 2", code)
	}
}

// TestToken: limitctl sends the token in -token-file, else LIMIT_TOKEN, else the token in
// LIMIT_TOKEN_FILE, as a bearer token, never as part of the address it prints.
func TestToken(t *testing.T) {
	const tok = "0123456789abcdef0123456789abcdef"
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Header.Get("Authorization"))
		if _, _, ok := r.BasicAuth(); ok {
			t.Errorf("basic auth sent")
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"sessions":[]}`))
	}))
	defer srv.Close()
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("# the API token\n\n  "+tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	runArgs := func(args ...string) (int, string) {
		var out, errOut bytes.Buffer
		code := run(context.Background(), append([]string{"-addr", srv.URL}, args...), &out, &errOut)
		return code, errOut.String()
	}
	t.Setenv("LIMIT_TOKEN", "")
	t.Setenv("LIMIT_TOKEN_FILE", "")
	if code, e := runArgs("sessions", "list"); code != 0 || got[len(got)-1] != "" {
		t.Fatalf("no token: exit %d %s, Authorization %q", code, e, got)
	}
	if code, e := runArgs("-token-file", file, "sessions", "list"); code != 0 || got[len(got)-1] != "Bearer "+tok {
		t.Fatalf("-token-file: exit %d %s, Authorization %q", code, e, got)
	}
	t.Setenv("LIMIT_TOKEN_FILE", file)
	if code, e := runArgs("sessions", "list"); code != 0 || got[len(got)-1] != "Bearer "+tok {
		t.Fatalf("LIMIT_TOKEN_FILE: exit %d %s, Authorization %q", code, e, got)
	}
	t.Setenv("LIMIT_TOKEN", "other-token-from-the-environment")
	if code, e := runArgs("sessions", "list"); code != 0 || got[len(got)-1] != "Bearer other-token-from-the-environment" {
		t.Fatalf("LIMIT_TOKEN over LIMIT_TOKEN_FILE: exit %d %s, Authorization %q", code, e, got)
	}
	if code, e := runArgs("-token-file", file, "sessions", "list"); code != 0 || got[len(got)-1] != "Bearer "+tok {
		t.Fatalf("-token-file over LIMIT_TOKEN: exit %d %s, Authorization %q", code, e, got)
	}
	t.Setenv("LIMIT_TOKEN", "")
	if code, e := runArgs("-token-file", filepath.Join(t.TempDir(), "missing"), "sessions", "list"); code != 2 || !strings.Contains(e, "cannot read the API token") {
		t.Fatalf("missing token file: exit %d %q", code, e)
	}
	// An unreachable daemon's message names the address, not the token.
	srv.Close()
	if code, e := runArgs("sessions", "list"); code == 0 || strings.Contains(e, tok) || !strings.Contains(e, "cannot reach the daemon") {
		t.Fatalf("unreachable: exit %d %q", code, e)
	}
}
