package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hybridgroup/yzma/pkg/llama"

	"github.com/limitgraph/limit/host/plugins"
	"github.com/limitgraph/limit/internal/gguf"
	"github.com/limitgraph/limit/internal/syncbuf"
	"github.com/limitgraph/limit/internal/testbin"
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/runner"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	if modelsDir != "" {
		os.RemoveAll(modelsDir)
	}
	os.Exit(code)
}

// testLibDir returns the llama.cpp library directory `make llama-deps` fills, failing
// the test with what to run when it is missing.
func testLibDir(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "..", repoLibDir)
	if d := os.Getenv(LibDirEnv); d != "" {
		dir = d
	}
	dir, _ = filepath.Abs(dir)
	if err := checkLibDir(dir); err != nil {
		t.Fatalf("%v: run `make llama-deps` (npm pack of @node-llama-cpp/linux-x64@3.21.1) first", err)
	}
	return dir
}

var (
	modelsMu  sync.Mutex
	modelsDir string
	models    = map[string]string{}
)

// testModel writes the tiny model described by m once per test process and returns
// its path.
func testModel(t testing.TB, m gguf.TinyLlama) string {
	t.Helper()
	key, _ := json.Marshal(m)
	modelsMu.Lock()
	defer modelsMu.Unlock()
	if p, ok := models[string(key)]; ok {
		return p
	}
	if modelsDir == "" {
		d, err := os.MkdirTemp("", "limit-llama-models-")
		if err != nil {
			t.Fatal(err)
		}
		modelsDir = d
	}
	p := filepath.Join(modelsDir, fmt.Sprintf("model-%d.gguf", len(models)))
	if err := gguf.WriteTinyLlama(p, m); err != nil {
		t.Fatal(err)
	}
	models[string(key)] = p
	return p
}

// tiny returns the default tiny model's path.
func tiny(t testing.TB) string { return testModel(t, gguf.DefaultTinyLlama()) }

// testLogger returns a host-side logger that keeps every line.
func testLogger() (hclog.Logger, *syncbuf.Buffer) {
	buf := &syncbuf.Buffer{}
	return hclog.New(&hclog.LoggerOptions{Name: "host", Output: buf, Level: hclog.Trace}), buf
}

// spec returns a spec that runs the real plugin binary with config cfg.
func spec(t testing.TB, name string, cfg map[string]any) plugins.Spec {
	t.Helper()
	if _, ok := cfg["library_dir"]; !ok {
		cfg["library_dir"] = testLibDir(t)
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return plugins.Spec{
		Kind: base.KindRunner, Name: name, Path: testbin.Plugin(t, "runner-llama"),
		Config: raw, DataDir: t.TempDir(), StartTimeout: 20 * time.Second, LogLevel: "debug",
	}
}

// launched is a started, configured plugin process with an open session.
type launched struct {
	runner.Runner
	proc *plugins.Process
	logs *syncbuf.Buffer
}

// launch starts the plugin binary, configures it with cfg and opens a session; the
// process is stopped at cleanup.
func launch(t testing.TB, cfg map[string]any) *launched {
	t.Helper()
	logger, logs := testLogger()
	ctx := context.Background()
	p, err := plugins.Launch(ctx, spec(t, "llama", cfg), logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	if err := p.Configure(ctx, false); err != nil {
		t.Fatalf("configure: %v\nplugin log:\n%s", err, logs)
	}
	r := p.Impl.(runner.Runner)
	if err := r.OpenSession(ctx, runner.Session{ID: "s-" + t.Name(), WorkDir: t.TempDir()}); err != nil {
		t.Fatalf("open session: %v\nplugin log:\n%s", err, logs)
	}
	return &launched{Runner: r, proc: p, logs: logs}
}

// run executes req, collecting the streamed tokens.
func run(t testing.TB, r runner.Runner, req runner.ExecuteRequest) (runner.Result, []runner.Token) {
	t.Helper()
	var toks []runner.Token
	res, err := r.Execute(context.Background(), req, func(ev runner.Event) error {
		if ev.Token != nil {
			toks = append(toks, *ev.Token)
		}
		if ev.Output != nil {
			t.Errorf("unexpected output event %q", ev.Output.Data)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("execute: %v", err)
	}
	return res, toks
}

// joined concatenates the tokens' text.
func joined(toks []runner.Token) string {
	var b strings.Builder
	for _, tk := range toks {
		b.WriteString(tk.Text)
	}
	return b.String()
}

// params is a shorthand for request params.
func params(kv ...any) map[string]any {
	m := map[string]any{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	return m
}

// inProcessEngine is the model driven in this test process through yzma directly, with
// the same code the plugin runs, as the reference for outputs and speeds.
type inProcessEngine struct {
	model *model
	lctx  *llamaContext
}

var (
	inprocMu sync.Mutex
	inproc   = map[string]*inProcessEngine{}
)

// inProcess loads path into llama.cpp in this process (once per path and settings).
func inProcess(t testing.TB, path string, threads int) *inProcessEngine {
	t.Helper()
	inprocMu.Lock()
	defer inprocMu.Unlock()
	key := fmt.Sprintf("%s/%d", path, threads)
	if e, ok := inproc[key]; ok {
		return e
	}
	if err := loadLibrary(testLibDir(t), hclog.NewNullLogger()); err != nil {
		t.Fatal(err)
	}
	info, err := inspectModel(path, "")
	if err != nil {
		t.Fatal(err)
	}
	md, err := loadModel(path, info)
	if err != nil {
		t.Fatal(err)
	}
	lc, err := newContext(md, settings{contextSize: defaultContextSize, batchSize: defaultBatchSize, threads: threads})
	if err != nil {
		t.Fatal(err)
	}
	e := &inProcessEngine{model: md, lctx: lc}
	inproc[key] = e
	return e
}

// generate runs one generation of prompt tokens in this process.
func (e *inProcessEngine) generate(t testing.TB, prompt []llama.Token, s sampling, ignoreEOS bool) genResult {
	t.Helper()
	res, err := e.lctx.generate(context.Background(), e.model, genRequest{prompt: prompt, sampling: s, ignoreEOS: ignoreEOS},
		func(string, llama.Token) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// completion returns the in-process output for a plain input.
func (e *inProcessEngine) completion(t testing.TB, input string, s sampling, ignoreEOS bool) genResult {
	t.Helper()
	return e.generate(t, e.model.tokenize(input, true, false), s, ignoreEOS)
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func itoa(i int) string { return fmt.Sprint(i) }
