package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
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
			 "last_error":"health ping: plugin process exited",
			 "detail":"checkpoints failing: no space left on device","metrics":{"log_pending_bytes":5}}]}`))
	}))
	defer srv.Close()
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"-addr", srv.URL, "health"}, &out, &errOut)
	if code != 1 {
		t.Errorf("exit code %d, want 1 (stderr %q)", code, errOut.String())
	}
	for _, want := range []string{"status degraded", "bolt", "backend: checkpoints failing: no space left on device", "last error: health ping: plugin process exited"} {
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
