package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
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
