package execution

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/limitgraph/limit/host/governance"
	"github.com/limitgraph/limit/host/plugins"
	"github.com/limitgraph/limit/host/session"
	"github.com/limitgraph/limit/host/trace"
	"github.com/limitgraph/limit/host/trace/tracetest"
	"github.com/limitgraph/limit/internal/testbin"
	"github.com/limitgraph/limit/internal/testplugins/echo"
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/runner"
	"github.com/limitgraph/limit/sdk/storage"
)

// testPluginEnv turns this test binary into the echo test runner (the test binary is its
// own plugin), so that executions run through a real plugin process.
const testPluginEnv = "LIMIT_EXECUTION_TEST_PLUGIN"

func TestMain(m *testing.M) {
	if os.Getenv(testPluginEnv) == "echo" {
		runner.Serve(&echo.Runner{})
		os.Exit(0)
	}
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// echoEngine returns an engine on in-memory storage whose "echo" runner is this test
// binary, as a plugin process, and a session that may use it.
func echoEngine(t *testing.T) (*Engine, *session.Session) {
	t.Helper()
	st, _ := tracetest.Mem(t)
	return echoEngineOn(t, st)
}

// echoEngineOn is echoEngine on st.
func echoEngineOn(t *testing.T, st storage.Storage) (*Engine, *session.Session) {
	t.Helper()
	e, s, _ := echoEngineWith(t, st, nil)
	return e, s
}

// echoEngineWith is echoEngineOn with the runner's spec changed by edit, if not nil; it
// returns the runners too.
func echoEngineWith(t *testing.T, st storage.Storage, edit func(*plugins.Spec)) (*Engine, *session.Session, *plugins.Runners) {
	t.Helper()
	ctx := context.Background()
	traces, _ := tracetest.New(t, st)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	spec := plugins.Spec{Kind: base.KindRunner, Name: "echo", Path: exe, Env: map[string]string{testPluginEnv: "echo"}, StartTimeout: 10 * time.Second}
	if edit != nil {
		edit(&spec)
	}
	runners := plugins.NewRunners(map[string]plugins.Spec{"echo": spec}, hclog.NewNullLogger())
	t.Cleanup(func() { runners.Close(context.Background()) })
	rules, err := governance.NewEvaluator(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	sessions := session.NewManager(session.Options{Store: st, Runners: runners, DataDir: t.TempDir(), Policies: governance.PolicyNames(), DefaultPolicy: "default"})
	stats := &governance.StatsStore{Store: st, Namespace: func(id string) string { return trace.SessionNamespace(trace.DefaultTenant, id) }}
	s, err := sessions.Create(ctx, session.CreateRequest{Runners: []string{"echo"}})
	if err != nil {
		t.Fatal(err)
	}
	return &Engine{Sessions: sessions, Traces: traces, Rules: rules, Stats: stats, Logger: hclog.NewNullLogger()}, s, runners
}

// executed returns the data of the trace's executed entry.
func executed(t *testing.T, e *Engine, traceID string) map[string]any {
	t.Helper()
	chain, err := e.Traces.Chain(context.Background(), traceID)
	if err != nil {
		t.Fatal(err)
	}
	for _, en := range chain {
		if en.Kind == trace.KindExecuted {
			var v map[string]any
			if err := json.Unmarshal(en.Data, &v); err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	t.Fatalf("trace %s has no executed entry", traceID)
	return nil
}

// pidOf returns the pid in the echo runner's output ("session=… pid=N n=…").
func pidOf(t *testing.T, out string) string {
	t.Helper()
	for _, f := range strings.Fields(out) {
		if p, ok := strings.CutPrefix(f, "pid="); ok {
			return p
		}
	}
	t.Fatalf("no pid in %q", out)
	return ""
}

// goneDuring runs input in the session with a caller that goes away once the runner's
// first output arrived, and returns the execution's result and how long it took.
func goneDuring(t *testing.T, e *Engine, s *session.Session, input string) (*Result, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := time.Now()
	res, err := e.Execute(ctx, s.ID, Request{Runner: "echo", Input: input, TimeoutMS: 30_000}, func(ev Event) {
		if ctx.Err() != nil {
			t.Errorf("event %q emitted to a client that went away", ev.Kind)
		}
		if ev.Kind == "token" {
			cancel() // the client goes away mid-execution
		}
	})
	if err != nil {
		t.Fatalf("%s: %v", input, err)
	}
	return res, time.Since(started)
}

// TestClientGoneKeepsRunnersResult: when the client goes away mid-execution the runner is
// asked to cancel it (it was torn down with the client's context) and its own result is
// recorded: cancelled, with what it spent and said so far. The host used to record a
// result of its own, without usage, and the tokens or CPU the runner spent were lost.
func TestClientGoneKeepsRunnersResult(t *testing.T) {
	e, s := echoEngine(t)
	first, err := e.Execute(context.Background(), s.ID, Request{Runner: "echo", Input: "x"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, took := goneDuring(t, e, s, "spend:20000")
	if took > 10*time.Second {
		t.Errorf("the execution took %v after its client went away", took)
	}
	if res.Status != "cancelled" || !strings.Contains(res.Error, "client went away") || res.Usage.TotalTokens != echo.SpentUsage.TotalTokens ||
		res.Usage.CPUTimeMS != echo.SpentUsage.CPUTimeMS || res.Output != "partial" || res.FinishReason != "cancel" || res.StateReset {
		t.Fatalf("result %+v, want the runner's cancelled result (usage %+v, output %q, finish reason cancel), saying the client went away", res, echo.SpentUsage, "partial")
	}
	ex := executed(t, e, res.TraceID)
	usage, _ := ex["usage"].(map[string]any)
	if ex["status"] != "cancelled" || ex["finish_reason"] != "cancel" || usage["total_tokens"] != float64(echo.SpentUsage.TotalTokens) ||
		usage["cpu_time_ms"] != float64(echo.SpentUsage.CPUTimeMS) || !strings.Contains(ex["error"].(string), "client went away") {
		t.Fatalf("executed entry %v, want status cancelled with the runner's usage and finish reason", ex)
	}
	after, err := e.Execute(context.Background(), s.ID, Request{Runner: "echo", Input: "y"}, nil)
	if err != nil || after.Status != "ok" || pidOf(t, after.Stdout) != pidOf(t, first.Stdout) {
		t.Fatalf("after: %+v %v, want the same process", after, err)
	}
}

// TestClientGoneRunnerIgnoresCancel: a runner that does not end an execution it was asked
// to cancel has its stream torn down after CancelGrace; the execution is recorded as
// cancelled with the state reset, its process is stopped, and the next execution gets a
// fresh one.
func TestClientGoneRunnerIgnoresCancel(t *testing.T) {
	defer func(g time.Duration) { CancelGrace = g }(CancelGrace)
	CancelGrace = time.Second
	e, s := echoEngine(t)
	first, err := e.Execute(context.Background(), s.ID, Request{Runner: "echo", Input: "x"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, took := goneDuring(t, e, s, "tokens-hang:some words")
	if took > CancelGrace+5*time.Second {
		t.Errorf("the execution took %v after its client went away, CancelGrace is %v", took, CancelGrace)
	}
	if res.Status != "cancelled" || !strings.Contains(res.Error, "client went away") || !res.StateReset || !strings.HasPrefix(res.Output, "some ") {
		t.Fatalf("result %+v, want cancelled, the client gone, state reset, the streamed token as output", res)
	}
	if ex := executed(t, e, res.TraceID); ex["status"] != "cancelled" || ex["state_reset"] != true {
		t.Fatalf("executed entry %v, want status cancelled with state_reset", ex)
	}
	after, err := e.Execute(context.Background(), s.ID, Request{Runner: "echo", Input: "y"}, nil)
	if err != nil || after.Status != "ok" || pidOf(t, after.Stdout) == pidOf(t, first.Stdout) || !strings.Contains(after.Stdout, "n=1 ") {
		t.Fatalf("after: %+v %v, want a fresh process", after, err)
	}
}
