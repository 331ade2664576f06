package main

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/limitgraph/limit/host/plugins"
	"github.com/limitgraph/limit/internal/syncbuf"
	"github.com/limitgraph/limit/internal/testbin"
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/runner"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// plugin is a started llm runner process with an open session.
type plugin struct {
	runner.Runner
	proc *plugins.Process
	logs *syncbuf.Buffer
}

// start launches the real plugin binary with cfg and env (its whole environment),
// logging at trace level into a buffer, without configuring it.
func start(t testing.TB, cfg map[string]any, env map[string]string) *plugin {
	t.Helper()
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncbuf.Buffer{}
	logger := hclog.New(&hclog.LoggerOptions{Name: "host", Output: logs, Level: hclog.Trace})
	spec := plugins.Spec{
		Kind: base.KindRunner, Name: "llm", Path: testbin.Plugin(t, "runner-llm"),
		Config: raw, Env: env, DataDir: t.TempDir(), StartTimeout: 20 * time.Second, LogLevel: "trace",
	}
	p, err := plugins.Launch(context.Background(), spec, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	return &plugin{Runner: p.Impl.(runner.Runner), proc: p, logs: logs}
}

// launch starts the plugin, configures it and opens a session.
func launch(t testing.TB, cfg map[string]any, env map[string]string) *plugin {
	t.Helper()
	p := start(t, cfg, env)
	ctx := context.Background()
	if err := p.proc.Configure(ctx, false); err != nil {
		t.Fatalf("configure: %v", err)
	}
	if err := p.OpenSession(ctx, runner.Session{ID: "s-" + t.Name(), AllowNetwork: true}); err != nil {
		t.Fatalf("open session: %v", err)
	}
	return p
}

// run executes req and collects the token events.
func run(t testing.TB, r runner.Runner, req runner.ExecuteRequest) (runner.Result, []string) {
	t.Helper()
	var toks []string
	res, err := r.Execute(context.Background(), req, func(ev runner.Event) error {
		if ev.Token != nil {
			toks = append(toks, ev.Token.Text)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("execute: %v", err)
	}
	return res, toks
}

// ask runs a plain input.
func ask(t testing.TB, r runner.Runner, input string) (runner.Result, []string) {
	t.Helper()
	return run(t, r, runner.ExecuteRequest{ExecutionID: "e", Input: input})
}

// cfg builds a config map; kv pairs override the base.
func cfg(base map[string]any, kv ...any) map[string]any {
	out := map[string]any{}
	for k, v := range base {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}

// expectErr checks that a result failed with a given status and an error containing
// every part.
func expectErr(t testing.TB, res runner.Result, status runner.Status, parts ...string) {
	t.Helper()
	t.Logf("%v: %s", res.Status, res.Error)
	if res.Status != status {
		t.Errorf("status %v, want %v (error %q)", res.Status, status, res.Error)
	}
	for _, p := range parts {
		if !strings.Contains(res.Error, p) {
			t.Errorf("error %q lacks %q", res.Error, p)
		}
	}
}
