package main

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/limitgraph/limit/host/plugins"
	"github.com/limitgraph/limit/internal/gguf"
	"github.com/limitgraph/limit/sdk/runner"
)

// TestTwoSessionsDifferentModels runs two sessions at once through the host's runner
// pool, each with its own model in its own process: both generate concurrently, and each
// output is the one its model gives alone, in-process.
func TestTwoSessionsDifferentModels(t *testing.T) {
	ma, mb := gguf.DefaultTinyLlama(), gguf.DefaultTinyLlama()
	ma.Name, mb.Name = "tiny-a", "tiny-b"
	mb.Seed = 2
	pa, pb := testModel(t, ma), testModel(t, mb)
	logger, _ := testLogger()
	pool := plugins.NewRunners(map[string]plugins.Spec{
		"a": spec(t, "a", map[string]any{"model": pa, "threads": 1}),
		"b": spec(t, "b", map[string]any{"model": pb, "threads": 1}),
	}, logger)
	defer pool.Close(context.Background())

	const input = "hello world"
	s := sample(3, 64)
	want := map[string]string{
		"a": inProcess(t, pa, 1).completion(t, input, s, true).text,
		"b": inProcess(t, pb, 1).completion(t, input, s, true).text,
	}
	if want["a"] == want["b"] {
		t.Fatalf("the two models give the same output %q; the test cannot tell them apart", want["a"])
	}

	ctx := context.Background()
	var wg sync.WaitGroup
	got := map[string]string{}
	pids := map[string]int{}
	var mu sync.Mutex
	start := make(chan struct{})
	for _, name := range []string{"a", "b"} {
		wg.Go(func() {
			h, err := pool.Get(ctx, runner.Session{ID: "session-" + name}, name)
			if err != nil {
				t.Error(err)
				return
			}
			<-start
			res, err := h.Execute(ctx, runner.ExecuteRequest{Input: input, Params: params("seed", 3.0, "max_tokens", 64.0, "ignore_eos", true)},
				func(runner.Event) error { return nil })
			if err != nil || res.Status != runner.StatusOK {
				t.Errorf("session %s: %v %+v", name, err, res)
				return
			}
			health, err := h.Health(ctx)
			if err != nil || !strings.Contains(health.Message, "tiny-"+name+" ") {
				t.Errorf("session %s health: %v %+v", name, err, health)
			}
			mu.Lock()
			got[name], pids[name] = res.Output, h.Process.PID
			mu.Unlock()
		})
	}
	time.Sleep(50 * time.Millisecond)
	close(start)
	wg.Wait()
	for _, name := range []string{"a", "b"} {
		if got[name] != want[name] {
			t.Errorf("session %s (model tiny-%s) gave %q, want %q", name, name, got[name], want[name])
		}
	}
	if pids["a"] == pids["b"] || pids["a"] == 0 {
		t.Errorf("sessions share a process: %v", pids)
	}
	if n := len(pool.Statuses()); n != 2 {
		t.Errorf("%d runner processes, want 2", n)
	}
}

// TestLlamaAbortEndsOnlyItsSession uses a model without byte tokens, on which llama.cpp
// aborts the whole process for text it cannot spell. Only that session's plugin process
// dies: the host's pool sees the crash, reports it, and starts a fresh process for the
// session; another session running meanwhile is untouched, and a new session works.
func TestLlamaAbortEndsOnlyItsSession(t *testing.T) {
	nb := gguf.DefaultTinyLlama()
	nb.NoByteTokens = true
	nb.Name = "tiny-no-bytes"
	logger, logs := testLogger()
	pool := plugins.NewRunners(map[string]plugins.Spec{
		"fragile": spec(t, "fragile", map[string]any{"model": testModel(t, nb), "threads": 1}),
		"good":    spec(t, "good", map[string]any{"model": tiny(t), "threads": 1}),
	}, logger)
	defer pool.Close(context.Background())
	ctx := context.Background()
	exec := func(h *plugins.Handle, input string) (runner.Result, error) {
		return h.Execute(ctx, runner.ExecuteRequest{Input: input, Params: params("max_tokens", 8.0, "seed", 1.0, "ignore_eos", true)},
			func(runner.Event) error { return nil })
	}

	fragile, err := pool.Get(ctx, runner.Session{ID: "s1"}, "fragile")
	if err != nil {
		t.Fatal(err)
	}
	good, err := pool.Get(ctx, runner.Session{ID: "s2"}, "good")
	if err != nil {
		t.Fatal(err)
	}
	// The vocabulary spells plain ASCII words: this works.
	if res, err := exec(fragile, "hello world"); err != nil || res.Status != runner.StatusOK {
		t.Fatalf("plain text on the fragile model: %v %+v", err, res)
	}
	deadPID := fragile.Process.PID
	// "é" is in no token and there is no byte fallback: llama.cpp throws from the
	// tokenizer and the C++ runtime aborts the process.
	_, err = exec(fragile, "hello é")
	if err == nil {
		t.Fatal("the execution that aborts llama.cpp returned no error")
	}
	t.Logf("host-side error of the aborted execution: %v", err)
	deadline := time.Now().Add(10 * time.Second)
	for !fragile.Process.Exited() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !fragile.Process.Exited() {
		t.Fatal("the aborted plugin process is still running")
	}

	// The other session's process lives on and answers.
	if good.Process.Exited() {
		t.Fatal("the other session's process died too")
	}
	if res, err := exec(good, "hello é"); err != nil || res.Status != runner.StatusOK {
		t.Errorf("other session after the crash: %v %+v", err, res)
	}

	// The same session gets a fresh process (its state is gone), the crash is counted,
	// and the plugin's last words reached the host's log.
	again, err := pool.Get(ctx, runner.Session{ID: "s1"}, "fragile")
	if err != nil {
		t.Fatal(err)
	}
	if !again.Fresh || again.Process.PID == deadPID {
		t.Errorf("session s1 got fresh=%v pid %d (dead pid %d)", again.Fresh, again.Process.PID, deadPID)
	}
	if pool.Crashes() != 1 {
		t.Errorf("pool counted %d crashes, want 1", pool.Crashes())
	}
	if res, err := exec(again, "hello world"); err != nil || res.Status != runner.StatusOK {
		t.Errorf("restarted session: %v %+v", err, res)
	}
	// A new session on the same runner works too.
	fresh, err := pool.Get(ctx, runner.Session{ID: "s3"}, "fragile")
	if err != nil {
		t.Fatal(err)
	}
	if res, err := exec(fresh, "the answer"); err != nil || res.Status != runner.StatusOK {
		t.Errorf("new session: %v %+v", err, res)
	}
	out := logs.String()
	for _, want := range []string{
		"runner process died; starting a fresh one",
		"std::out_of_range",
		"without the 256 byte tokens",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("host log lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("host log:\n%s", out)
	}
}
