package e2e

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/limitgraph/limit/internal/llmtest"
	"github.com/limitgraph/limit/internal/testbin"
	"github.com/limitgraph/limit/sdk/client"
)

// TestLLMBudgetOutlivesItsProcess: a session's budget with the llm runner is not reset
// when its runner process is replaced, whether the process is killed or the daemon
// restarts: the next execution is refused as over budget, without reaching the provider,
// and a budget partly spent leaves only the rest.
func TestLLMBudgetOutlivesItsProcess(t *testing.T) {
	t.Setenv(openAIKeyEnv, openAIKey)
	testbin.Plugin(t, "storage-bolt")
	testbin.Plugin(t, "runner-llm")
	oa := llmtest.NewOpenAI(t, openAIKey)
	oa.SetDefault(llmtest.Step{Text: "ok", InputTokens: 10, OutputTokens: 5}) // 15 tokens an answer
	path := writeConfig(t, fmt.Sprintf(`host {
  listen     = "127.0.0.1:0"
  data_dir   = %q
  plugin_dir = %q
}
storage "bolt" {}
runner "budgeted" {
  plugin = "limit-runner-llm"
  config {
    provider      = "openai"
    base_url      = %q
    model         = "test-gpt"
    api_key       = env(%q)
    budget_tokens = 30
    retries       = 0
  }
}
`, t.TempDir(), testbin.PluginDir(t), oa.BaseURL(), openAIKeyEnv))
	d := start(t, path)

	exec := func(d *daemon, s *client.Session) *client.ExecutionResult {
		t.Helper()
		r, err := d.c.Execute(ctx, s.ID, client.ExecuteRequest{Runner: "budgeted", Input: "hi"})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	// refused checks that the session's next execution is refused as over budget without
	// a request to the provider.
	refused := func(d *daemon, s *client.Session, when string) {
		t.Helper()
		n := len(oa.Requests())
		r := exec(d, s)
		if r.Status != "limit_exceeded" || !strings.Contains(r.Error, "the session's token budget is spent: 30 of 30 tokens used") {
			t.Errorf("%s: %s %q (session_tokens %v), want it refused as over budget", when, r.Status, r.Error, r.Usage.Extra["session_tokens"])
		}
		if got := len(oa.Requests()) - n; got != 0 {
			t.Errorf("%s: %d requests reached the provider", when, got)
		}
	}
	newSession := func(name string) *client.Session {
		t.Helper()
		s, err := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: name, AllowNetwork: true})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	spent, partly := newSession("spent"), newSession("partly")
	for i := 1; i <= 2; i++ {
		if r := exec(d, spent); r.Status != "ok" || r.Usage.Extra["session_tokens"] != float64(15*i) {
			t.Fatalf("execution %d: %+v", i, r)
		}
	}
	refused(d, spent, "in the same process")
	if r := exec(d, partly); r.Status != "ok" || r.Usage.Extra["session_tokens"] != 15 {
		t.Fatalf("partly: %+v", r)
	}

	// The session's runner process is killed: the one that replaces it still refuses.
	pid := runnerPID(t, d, spent.ID, "budgeted")
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); runnerPID(t, d, spent.ID, "budgeted") == pid; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the daemon did not notice its runner process was killed")
		}
	}
	refused(d, spent, "after the runner process was killed")
	if p := runnerPID(t, d, spent.ID, "budgeted"); p == pid || p == 0 {
		t.Fatalf("the session's runner process was not replaced: pid %d, was %d", p, pid)
	}

	// The daemon restarts: the session's new process still refuses, and the session that
	// spent half its budget has the other half left.
	d.stop()
	d2 := start(t, path)
	refused(d2, spent, "after a restart")
	n := len(oa.Requests())
	if r := exec(d2, partly); r.Status != "ok" || r.Usage.Extra["session_tokens"] != 30 {
		t.Errorf("partly spent, after a restart: %s %q session_tokens %v, want ok at 30", r.Status, r.Error, r.Usage.Extra["session_tokens"])
	}
	if got := len(oa.Requests()) - n; got != 1 {
		t.Errorf("partly spent, after a restart: %d requests reached the provider, want 1", got)
	}
	refused(d2, partly, "partly spent, then spent, after a restart")
}

// runnerPID returns the pid of the session's healthy process of the named runner from
// /v1/health, or 0 when it has none.
func runnerPID(t *testing.T, d *daemon, session, name string) int {
	t.Helper()
	h, err := d.c.Health(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range h.Plugins {
		if p.Session == session && p.Name == name && p.Healthy {
			return p.PID
		}
	}
	return 0
}
