package main

import (
	"context"
	"math"
	"strings"
	"testing"

	"github.com/limitgraph/limit/internal/llmtest"
	"github.com/limitgraph/limit/sdk/runner"
)

// openWithSpent starts the plugin with cfg, configures it and opens a session that had
// already spent spent in earlier processes.
func openWithSpent(t *testing.T, cfg map[string]any, spent map[string]float64) *plugin {
	t.Helper()
	p := start(t, cfg, nil)
	ctx := context.Background()
	if err := p.proc.Configure(ctx, false); err != nil {
		t.Fatalf("configure: %v", err)
	}
	if err := p.OpenSession(ctx, runner.Session{ID: "s-" + t.Name(), AllowNetwork: true, Spent: spent}); err != nil {
		t.Fatalf("open session: %v", err)
	}
	return p
}

// TestBudgetSpentBefore checks that a session opened in a new process starts from what
// the host says it spent in earlier ones: a budget already spent refuses the first
// execution, and a budget partly spent leaves only the rest.
func TestBudgetSpentBefore(t *testing.T) {
	srv := llmtest.NewOpenAI(t, openaiKey)
	srv.SetDefault(llmtest.Step{Text: "ok", InputTokens: 10, OutputTokens: 5})
	base := map[string]any{"provider": "openai", "model": "gpt-test", "base_url": srv.BaseURL(), "api_key": openaiKey}
	priced := cfg(base, "budget_cost", 0.0001, "prices", map[string]any{"gpt-test": map[string]any{"input": 2.0, "output": 10.0}})

	t.Run("tokens spent", func(t *testing.T) {
		p := openWithSpent(t, cfg(base, "budget_tokens", 30), map[string]float64{"session_tokens": 30})
		n := len(srv.Requests())
		res, _ := ask(t, p, "hi")
		expectErr(t, res, runner.StatusLimitExceeded, "the session's token budget is spent: 30 of 30 tokens used (budget_tokens)")
		if len(srv.Requests()) != n {
			t.Error("a refused execution reached the provider")
		}
		if res.Usage.Extra["session_tokens"] != 30 {
			t.Errorf("a refused execution reports session_tokens %v, want 30", res.Usage.Extra["session_tokens"])
		}
	})
	t.Run("tokens over", func(t *testing.T) {
		p := openWithSpent(t, cfg(base, "budget_tokens", 30), map[string]float64{"session_tokens": 45})
		res, _ := ask(t, p, "hi")
		expectErr(t, res, runner.StatusLimitExceeded, "the session's token budget is spent: 45 of 30 tokens used")
	})
	t.Run("cost spent", func(t *testing.T) {
		p := openWithSpent(t, priced, map[string]float64{"session_cost_usd": 0.0001, "session_tokens": 30})
		res, _ := ask(t, p, "hi")
		expectErr(t, res, runner.StatusLimitExceeded, "the session's cost budget is spent: $0.0001 of $0.0001 used (budget_cost)")
	})
	t.Run("tokens partly spent", func(t *testing.T) {
		p := openWithSpent(t, cfg(base, "budget_tokens", 30, "max_tokens", 100), map[string]float64{"session_tokens": 20})
		n := len(srv.Requests())
		res, _ := ask(t, p, "hi")
		if res.Status != runner.StatusOK || res.Usage.Extra["session_tokens"] != 35 {
			t.Fatalf("first execution: %+v, want OK with session_tokens 20+15", res)
		}
		reqs := srv.Requests()[n:]
		if len(reqs) != 1 {
			t.Fatalf("%d requests reached the provider", len(reqs))
		}
		// Only the 9 tokens left of the budget after the prompt (1 token) may be generated.
		if got := reqs[0].JSON["max_completion_tokens"]; got != 9.0 {
			t.Errorf("max_completion_tokens %v, want the 9 left of the budget after the prompt (body %s)", got, reqs[0].Body)
		}
		res, _ = ask(t, p, "hi")
		expectErr(t, res, runner.StatusLimitExceeded, "35 of 30 tokens used")
	})
	t.Run("cost partly spent", func(t *testing.T) {
		// Each answer costs $0.00007: one more fits in $0.0001 after $0.00002. The
		// $0.00001 then left, less the prompt's $0.000002, pays for no token of answer.
		p := openWithSpent(t, priced, map[string]float64{"session_cost_usd": 0.00002})
		res, _ := ask(t, p, "hi")
		if want := 0.00009; res.Status != runner.StatusOK || math.Abs(res.Usage.Extra["session_cost_usd"]-want) > 1e-12 {
			t.Fatalf("first execution: %+v, want OK with session_cost_usd %v", res, want)
		}
		res, _ = ask(t, p, "hi")
		expectErr(t, res, runner.StatusLimitExceeded, "leaves too little of the session's cost budget for one token of answer")
	})
	t.Run("bad values ignored", func(t *testing.T) {
		p := openWithSpent(t, cfg(base, "budget_tokens", 30), map[string]float64{
			"session_tokens": math.NaN(), "session_cost_usd": -1, "session_other": 7,
		})
		res, _ := ask(t, p, "hi")
		if res.Status != runner.StatusOK || res.Usage.Extra["session_tokens"] != 15 || res.Usage.Extra["session_cost_usd"] != 0 {
			t.Fatalf("execution: %+v, want OK counted from zero", res)
		}
		if !strings.Contains(p.logs.String(), "ignoring what the host says the session spent") {
			t.Errorf("no log line on the bad values:\n%s", p.logs.String())
		}
		q := openWithSpent(t, cfg(base, "budget_tokens", 30), map[string]float64{"session_tokens": math.Inf(1)})
		if res, _ := ask(t, q, "hi"); res.Status != runner.StatusOK {
			t.Fatalf("spent +Inf: %+v, want it ignored", res)
		}
	})
}
