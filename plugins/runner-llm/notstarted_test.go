package main

import (
	"context"
	"encoding/json"
	"runtime"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/limitgraph/limit/internal/llmtest"
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/runner"
)

// TestCancelledBeforeStartExitCode: an execution of a session with a budget, cancelled
// while it waits for the session's running one, never reached the provider: it is
// cancelled with exit code -1, as every result of what never ran, saying so.
func TestCancelledBeforeStartExitCode(t *testing.T) {
	srv := llmtest.NewOpenAI(t, openaiKey)
	raw, _ := json.Marshal(map[string]any{"provider": "openai", "model": "gpt-test", "base_url": srv.BaseURL(), "api_key": openaiKey, "budget_tokens": 1000})
	r := newRunner(hclog.NewNullLogger())
	ctx := context.Background()
	if ds := r.Configure(ctx, base.ConfigureRequest{Config: raw}); ds.HasErrors() {
		t.Fatal(ds)
	}
	if err := r.OpenSession(ctx, runner.Session{ID: "s", AllowNetwork: true}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.CloseSession(ctx) })
	r.turn <- struct{}{} // the session's running execution
	done := make(chan runner.Result, 1)
	go func() {
		res, err := r.Execute(ctx, runner.ExecuteRequest{ExecutionID: "e2", Input: "hi"}, func(runner.Event) error { return nil })
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	for {
		if ok, _ := r.Cancel(ctx, "e2"); ok {
			break
		}
		runtime.Gosched()
	}
	res := <-done
	if res.Status != runner.StatusCancelled || res.ExitCode != -1 || res.Error != "execution cancelled before it started (the session's previous execution, under its budget, was still running)" {
		t.Fatalf("result %+v, want cancelled before it started, exit code -1", res)
	}
	if n := len(srv.Requests()); n != 0 {
		t.Fatalf("%d requests reached the provider", n)
	}
}
