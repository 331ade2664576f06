package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/limitgraph/limit/internal/testbin"
)

// TestUserLimitsThroughAPI starts limitd with the Python runner of the default config's
// limits and a token file: a user's token may lower the runner's configured limits but not
// raise them, nor turn on the host's network, while an operator's token may set anything
// within the absolute bounds. The ceilings come from the runner plugin itself, over the
// protocol (runner.LimitsReporter).
func TestUserLimitsThroughAPI(t *testing.T) {
	const (
		opTok  = "e2e-op-0123456789abcdef0123456789abcdef"
		bobTok = "e2e-bob-0123456789abcdef0123456789abcdef"
	)
	for _, network := range []bool{false, true} {
		t.Run(fmt.Sprintf("allow_user_network=%v", network), func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "tokens")
			if err := os.WriteFile(file, []byte(opTok+"\n"+bobTok+" bob\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			testbin.Plugin(t, "storage-bolt")
			testbin.Plugin(t, "runner-python")
			d := start(t, writeConfig(t, fmt.Sprintf(`host {
  listen     = "127.0.0.1:0"
  data_dir   = %q
  plugin_dir = %q
}
storage "bolt" {}
runner "python" {
  pool               = 0
  allow_user_network = %v
  config {
    timeout          = "30s"
    memory_limit     = "512MiB"
    cpu_limit        = 1
    max_processes    = 64
    max_output_bytes = "1MiB"
    max_file_bytes   = "1GiB"
    max_disk_bytes   = "1GiB"
  }
}
api {
  token_file = %q
}
`, t.TempDir(), testbin.PluginDir(t), network, file)))
			call := func(tok, method, path, body string) (int, map[string]any) {
				t.Helper()
				return tokenCall(t, d.url, tok, method, path, body)
			}
			// The audit's request: every limit far above the configured ones.
			big := `{"name":"big","limits":{"memory_bytes":1099511627776,"cpu_millis":64000,"max_processes":100000,"max_disk_bytes":1099511627776,"timeout_ms":3600000,"max_output_bytes":1073741824}}`
			if code, body := call(bobTok, "POST", "/v1/sessions", big); code != 403 || body["field"] != "limits.timeout_ms" || body["ceiling"] != 30000.0 || body["asked"] != 3600000.0 {
				t.Fatalf("bob's session above every limit: %d %v, want 403 naming limits.timeout_ms", code, body)
			}
			for _, tc := range []struct {
				limit   string
				asked   float64
				ceiling float64
			}{
				{"memory_bytes", 1 << 40, 512 << 20},
				{"cpu_millis", 64000, 1000},
				{"max_processes", 100000, 64},
				{"max_output_bytes", 1 << 30, 1 << 20},
				{"max_file_bytes", 1 << 31, 1 << 30},
				{"max_disk_bytes", 1 << 40, 1 << 30},
			} {
				code, body := call(bobTok, "POST", "/v1/sessions", fmt.Sprintf(`{"limits":{%q:%d}}`, tc.limit, int64(tc.asked)))
				detail, _ := body["detail"].(string)
				if code != 403 || body["field"] != "limits."+tc.limit || body["asked"] != tc.asked || body["ceiling"] != tc.ceiling ||
					!strings.Contains(detail, "limits."+tc.limit) || !strings.Contains(detail, fmt.Sprint(int64(tc.ceiling))) || !strings.Contains(detail, `"python"`) {
					t.Errorf("bob's session with %s %d: %d %v, want 403 naming it, the value and the ceiling %d", tc.limit, int64(tc.asked), code, body, int64(tc.ceiling))
				}
			}
			// Lower limits, and the configured ones exactly, are the user's to set.
			if code, body := call(bobTok, "POST", "/v1/sessions", `{"name":"small","limits":{"memory_bytes":134217728,"cpu_millis":500,"max_processes":16,"max_disk_bytes":536870912,"timeout_ms":30000,"max_output_bytes":1048576}}`); code != 201 || body["owner"] != "bob" {
				t.Fatalf("bob's session within the limits: %d %v", code, body)
			}
			// An execution's own timeout_ms is bounded alike.
			_, own := call(bobTok, "POST", "/v1/sessions", `{"name":"own"}`)
			id, _ := own["id"].(string)
			if code, body := call(bobTok, "POST", "/v1/sessions/"+id+"/executions", `{"runner":"python","input":"print(1)","timeout_ms":3600000}`); code != 403 || body["field"] != "timeout_ms" || body["ceiling"] != 30000.0 {
				t.Fatalf("bob's execution of an hour: %d %v, want 403 naming timeout_ms", code, body)
			}
			// The operators may set anything within the absolute bounds.
			if code, body := call(opTok, "POST", "/v1/sessions", big); code != 201 {
				t.Fatalf("an operator's session above the configured limits: %d %v", code, body)
			}
			if code, body := call(opTok, "POST", "/v1/sessions", `{"allow_network":true,"owner":"bob"}`); code != 201 || body["allow_network"] != true {
				t.Fatalf("an operator's session with the network, for bob: %d %v", code, body)
			}
			code, body := call(bobTok, "POST", "/v1/sessions", `{"allow_network":true}`)
			switch {
			case network && (code != 201 || body["allow_network"] != true):
				t.Fatalf("bob's session with the network, allowed by allow_user_network: %d %v", code, body)
			case !network && (code != 403 || body["field"] != "allow_network" || !strings.Contains(fmt.Sprint(body["detail"]), "allow_user_network")):
				t.Fatalf("bob's session with the network: %d %v, want 403 naming allow_network", code, body)
			}
		})
	}
}

// TestUserLimitsUnreportedThroughAPI starts limitd with the test echo runner, which does
// not report its configured limits (no runner.LimitsReporter): a user's token may create
// sessions and run executions on it, but set none of their limits nor an execution's
// timeout_ms (403 naming the field and saying the runner does not report its limits, with
// no ceiling), since the host cannot tell a lower limit from a higher one; an operator's
// token may set them within the absolute bounds.
func TestUserLimitsUnreportedThroughAPI(t *testing.T) {
	const (
		opTok  = "e2e-op-0123456789abcdef0123456789abcdef"
		bobTok = "e2e-bob-0123456789abcdef0123456789abcdef"
	)
	file := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(file, []byte(opTok+"\n"+bobTok+" bob\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	testbin.Plugin(t, "storage-bolt")
	testbin.TestPlugin(t, "runner-echo")
	d := start(t, writeConfig(t, fmt.Sprintf(`host {
  listen     = "127.0.0.1:0"
  data_dir   = %q
  plugin_dir = %q
}
storage "bolt" {}
runner "echo" {}
api {
  token_file = %q
}
`, t.TempDir(), testbin.PluginDir(t), file)))
	call := func(tok, method, path, body string) (int, map[string]any) {
		t.Helper()
		return tokenCall(t, d.url, tok, method, path, body)
	}
	unreported := func(what string, code int, body map[string]any, field string, asked float64) {
		t.Helper()
		detail, _ := body["detail"].(string)
		_, hasCeiling := body["ceiling"]
		if code != 403 || body["field"] != field || body["runner"] != "echo" || body["asked"] != asked || hasCeiling ||
			!strings.Contains(detail, field) || !strings.Contains(detail, "does not report the limits") || !strings.Contains(detail, "ask an operator") {
			t.Errorf("%s: %d %v, want 403 naming %s, saying runner echo does not report its limits", what, code, body, field)
		}
	}
	for _, tc := range []struct {
		limit string
		asked int64
	}{
		{"timeout_ms", 1000}, // lower than the host's default: still refused
		{"memory_bytes", 64 << 20},
		{"cpu_millis", 100},
		{"max_processes", 1},
		{"max_output_bytes", 1024},
		{"max_file_bytes", 1024},
		{"max_disk_bytes", 8 << 20},
	} {
		code, body := call(bobTok, "POST", "/v1/sessions", fmt.Sprintf(`{"runners":["echo"],"limits":{%q:%d}}`, tc.limit, tc.asked))
		unreported("bob's session with "+tc.limit, code, body, "limits."+tc.limit, float64(tc.asked))
		// Naming no runner is naming every one.
		code, body = call(bobTok, "POST", "/v1/sessions", fmt.Sprintf(`{"limits":{%q:%d}}`, tc.limit, tc.asked))
		unreported("bob's session of every runner with "+tc.limit, code, body, "limits."+tc.limit, float64(tc.asked))
		if code, body := call(opTok, "POST", "/v1/sessions", fmt.Sprintf(`{"owner":"bob","limits":{%q:%d}}`, tc.limit, tc.asked)); code != 201 {
			t.Errorf("an operator's session with %s: %d %v", tc.limit, code, body)
		}
	}
	if code, body := call(bobTok, "POST", "/v1/sessions", `{"allow_network":true}`); code != 403 || body["field"] != "allow_network" {
		t.Errorf("bob's session with the network: %d %v, want 403 naming allow_network", code, body)
	}
	// Without limits a user's session runs, at the runner's own.
	code, own := call(bobTok, "POST", "/v1/sessions", `{"name":"own"}`)
	if code != 201 {
		t.Fatalf("bob's session without limits: %d %v", code, own)
	}
	id, _ := own["id"].(string)
	if code, body := call(bobTok, "POST", "/v1/sessions/"+id+"/executions", `{"runner":"echo","input":"hi"}`); code != 200 || body["status"] != "ok" {
		t.Fatalf("bob's execution: %d %v", code, body)
	}
	code, body := call(bobTok, "POST", "/v1/sessions/"+id+"/executions", `{"runner":"echo","input":"hi","timeout_ms":1000}`)
	unreported("bob's execution with timeout_ms", code, body, "timeout_ms", 1000)
	if code, body := call(opTok, "POST", "/v1/sessions/"+id+"/executions", `{"runner":"echo","input":"hi","timeout_ms":1000}`); code != 200 || body["status"] != "ok" {
		t.Fatalf("an operator's execution with timeout_ms in bob's session: %d %v", code, body)
	}
}

// tokenCall sends body to url+path with tok as its bearer token, and returns the status
// and the decoded JSON answer; an error answer must be problem+json.
func tokenCall(t *testing.T, url, tok, method, path, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url+path, bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	if res.StatusCode >= 400 && res.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("%s %s: %d as %q, want problem+json", method, path, res.StatusCode, res.Header.Get("Content-Type"))
	}
	return res.StatusCode, m
}
