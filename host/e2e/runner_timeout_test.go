package e2e

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/limitgraph/limit/internal/llmtest"
	"github.com/limitgraph/limit/internal/testbin"
	"github.com/limitgraph/limit/sdk/client"
)

// TestRunnerConfiguredTimeout: an execution that names no timeout, in a session that names
// none, gets the runner's configured timeout (here 1 s), not the host's default of 60 s;
// the session's limits.timeout_ms and the request's timeout_ms still come first. The
// trace records the timeout that applied.
func TestRunnerConfiguredTimeout(t *testing.T) {
	d := start(t, pythonConfigWith(t, t.TempDir(), `
  config {
    timeout         = "1s"
    interrupt_grace = "1s"
  }`))
	plain, err := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: "plain"})
	if err != nil {
		t.Fatal(err)
	}
	limited, err := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: "limited", Limits: client.Limits{TimeoutMS: 1500}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		session   *client.Session
		code      string
		timeoutMS uint64
		status    string
		applied   float64
	}{
		{"runner's timeout", plain, "while True: pass", 0, "timeout", 1000},
		{"runner's timeout, code within it", plain, "print(1)", 0, "ok", 1000},
		{"session's timeout", limited, "import time; time.sleep(1.2); print('slept')", 0, "ok", 1500},
		{"request's timeout", plain, "import time; time.sleep(1.2); print('slept')", 3000, "ok", 3000},
		{"request's timeout, shorter", limited, "while True: pass", 500, "timeout", 500},
	} {
		r, err := d.c.Execute(ctx, c.session.ID, client.ExecuteRequest{Runner: "python", Input: c.code, TimeoutMS: c.timeoutMS})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if r.Status != c.status {
			t.Errorf("%s: status %q, want %q (%+v)", c.name, r.Status, c.status, r)
		}
		tr, err := d.c.GetTrace(ctx, r.TraceID)
		if err != nil {
			t.Fatal(err)
		}
		var data struct {
			TimeoutMS float64 `json:"timeout_ms"`
		}
		if err := json.Unmarshal(tr.Data, &data); err != nil {
			t.Fatal(err)
		}
		if data.TimeoutMS != c.applied {
			t.Errorf("%s: trace says timeout_ms %v, want %v", c.name, data.TimeoutMS, c.applied)
		}
	}
}

// TestRunnerTimeoutCap: a runner that ends executions at a cap of its own (the llm
// runner's configured timeout, here 1 s) says so when its session opens; an execution
// asking for longer gets the cap, and its trace records the timeout that bound it
// (timeout_ms) beside the one asked for (requested_timeout_ms). One within the cap is
// recorded as asked.
func TestRunnerTimeoutCap(t *testing.T) {
	t.Setenv(openAIKeyEnv, openAIKey)
	testbin.Plugin(t, "storage-bolt")
	testbin.Plugin(t, "runner-llm")
	oa := llmtest.NewOpenAI(t, openAIKey)
	oa.SetDefault(llmtest.Step{Text: "late", Delay: 3 * time.Second})
	d := start(t, writeConfig(t, fmt.Sprintf(`host {
  listen     = "127.0.0.1:0"
  data_dir   = %q
  plugin_dir = %q
}
storage "bolt" {}
runner "llm" {
  config {
    provider = "openai"
    base_url = %q
    model    = "test-gpt"
    api_key  = env(%q)
    retries  = 0
    timeout  = "1s"
  }
}
`, t.TempDir(), testbin.PluginDir(t), oa.BaseURL(), openAIKeyEnv)))
	s, err := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: "capped", AllowNetwork: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		timeoutMS          uint64
		applied, requested float64
	}{
		{20000, 1000, 20000},
		{500, 500, 0},
	} {
		r, err := d.c.Execute(ctx, s.ID, client.ExecuteRequest{Runner: "llm", Input: "hi", TimeoutMS: c.timeoutMS})
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != "timeout" {
			t.Errorf("timeout_ms %d: status %q, want timeout (%+v)", c.timeoutMS, r.Status, r)
		}
		tr, err := d.c.GetTrace(ctx, r.TraceID)
		if err != nil {
			t.Fatal(err)
		}
		var data struct {
			TimeoutMS          float64 `json:"timeout_ms"`
			RequestedTimeoutMS float64 `json:"requested_timeout_ms"`
		}
		if err := json.Unmarshal(tr.Data, &data); err != nil {
			t.Fatal(err)
		}
		if data.TimeoutMS != c.applied || data.RequestedTimeoutMS != c.requested {
			t.Errorf("timeout_ms %d: trace says timeout_ms %v, requested_timeout_ms %v; want %v, %v", c.timeoutMS, data.TimeoutMS, data.RequestedTimeoutMS, c.applied, c.requested)
		}
	}
}
