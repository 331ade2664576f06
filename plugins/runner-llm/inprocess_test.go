package main

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/limitgraph/limit/internal/llmtest"
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/runner"
)

// TestChargedWhenLastTokensFail runs the runner in process and fails the host's stream
// at the very end of an answer, when the redactor's held-back text goes out: the answer
// was generated, so the session's spending must count it even though the execution
// returns the stream's error.
func TestChargedWhenLastTokensFail(t *testing.T) {
	srv := llmtest.NewOpenAI(t, openaiKey)
	// "s" may begin the key "sk-…", so the redactor holds it back until the answer ends.
	srv.SetDefault(llmtest.Step{Text: "hello s", InputTokens: 4, OutputTokens: 2})
	raw, _ := json.Marshal(map[string]any{"provider": "openai", "model": "gpt-test", "base_url": srv.BaseURL(), "api_key": openaiKey})
	r := newRunner(hclog.NewNullLogger())
	ctx := context.Background()
	if ds := r.Configure(ctx, base.ConfigureRequest{Config: raw}); ds.HasErrors() {
		t.Fatal(ds)
	}
	if err := r.OpenSession(ctx, runner.Session{ID: "s", AllowNetwork: true}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.CloseSession(ctx) })
	gone := errors.New("the host's stream is gone")
	_, err := r.Execute(ctx, runner.ExecuteRequest{ExecutionID: "e", Input: "hi"}, func(ev runner.Event) error {
		if ev.Token != nil && ev.Token.Text == "s" {
			return gone
		}
		return nil
	})
	if !errors.Is(err, gone) {
		t.Fatalf("execute: %v, want the stream's error", err)
	}
	r.mu.Lock()
	used := r.usedTokens
	r.mu.Unlock()
	if used != 6 {
		t.Errorf("the session was charged %d tokens for an answer of 4 + 2", used)
	}
}
