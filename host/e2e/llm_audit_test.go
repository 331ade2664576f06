package e2e

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/limitgraph/limit/internal/llmtest"
	"github.com/limitgraph/limit/internal/testbin"
	"github.com/limitgraph/limit/sdk/client"
)

// TestLLMAuditThroughAPI drives the llm runner through the real limitd: executions of
// a session started together must not all pass its budget's check; a provider that
// redirects must not get the key sent elsewhere; and neither key shows in the
// daemon's log, its answers, an exported bundle or `limitd -validate`.
func TestLLMAuditThroughAPI(t *testing.T) {
	t.Setenv(openAIKeyEnv, openAIKey)
	t.Setenv(anthropicKeyEnv, anthropicKey)
	testbin.Plugin(t, "storage-bolt")
	testbin.Plugin(t, "runner-llm")
	oa := llmtest.NewOpenAI(t, openAIKey)
	oa.SetDefault(llmtest.Step{Text: "ok", InputTokens: 10, OutputTokens: 5, Delay: 300 * time.Millisecond})
	elsewhere := llmtest.NewAnthropic(t, "")
	redir := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	t.Cleanup(redir.Close)
	dataDir := t.TempDir()
	path := writeConfig(t, fmt.Sprintf(`host {
  listen     = "127.0.0.1:0"
  data_dir   = %q
  plugin_dir = %q
  log_level  = "trace"
}
storage "bolt" {}
runner "budgeted" {
  plugin = "limit-runner-llm"
  config {
    provider      = "openai"
    base_url      = %q
    model         = "test-gpt"
    api_key       = env(%q)
    budget_tokens = 15
  }
}
runner "redirected" {
  plugin = "limit-runner-llm"
  config {
    provider = "anthropic"
    base_url = %q
    model    = "test-claude"
    api_key  = env(%q)
  }
}
`, dataDir, testbin.PluginDir(t), oa.BaseURL(), openAIKeyEnv, redir.URL, anthropicKeyEnv))
	var seen bytes.Buffer
	out, err := exec.Command(testbin.Command(t, "limitd"), "-validate", "-config", path).CombinedOutput()
	if err != nil {
		t.Fatalf("limitd -validate: %v\n%s", err, out)
	}
	seen.Write(out)
	d := start(t, path)

	s, err := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: "budget", AllowNetwork: true, MaxConcurrency: 4})
	if err != nil {
		t.Fatal(err)
	}
	// The session's runner process first, so that the executions start together.
	if _, err := d.c.Execute(ctx, s.ID, client.ExecuteRequest{Runner: "budgeted", Input: "hi", Params: map[string]any{"messages": "bad"}}); err != nil {
		t.Fatal(err)
	}
	n := len(oa.Requests())
	var mu sync.Mutex
	statuses := map[string]int{}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			r, err := d.c.Execute(ctx, s.ID, client.ExecuteRequest{Runner: "budgeted", Input: "hi"})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			statuses[r.Status]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if got := len(oa.Requests()) - n; got != 1 || statuses["ok"] != 1 || statuses["limit_exceeded"] != 3 {
		t.Errorf("4 executions at once in a session with a budget of one answer: %d reached the provider, statuses %v", got, statuses)
	}

	r, err := d.c.Execute(ctx, s.ID, client.ExecuteRequest{Runner: "redirected", Input: "hi"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != "error" || !strings.Contains(r.Error, "redirect") || len(elsewhere.Requests()) != 0 {
		t.Errorf("a redirecting provider: %d requests went elsewhere, result %+v", len(elsewhere.Requests()), r)
	}

	for _, p := range []string{"/v1/health", "/v1/sessions/" + s.ID + "/traces"} {
		status, _, body := d.raw("GET", p, "", nil)
		fmt.Fprintf(&seen, "%s %d %v\n", p, status, body)
	}
	var bundle bytes.Buffer
	if err := d.c.Export(ctx, client.ExportRequest{SessionID: s.ID}, &bundle); err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(&bundle)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(&seen, zr); err != nil {
		t.Fatal(err)
	}
	d.stop()
	seen.WriteString(d.stderr.String())
	for _, key := range []string{openAIKey, anthropicKey} {
		if i := bytes.Index(seen.Bytes(), []byte(key[len(key)-12:])); i >= 0 {
			t.Errorf("API key material found: …%s…", seen.Bytes()[max(0, i-200):i])
		}
	}
}
