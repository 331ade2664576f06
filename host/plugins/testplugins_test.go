package plugins

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/governance"
	"github.com/limitgraph/limit/sdk/runner"
	"github.com/limitgraph/limit/sdk/storage"
	"github.com/limitgraph/limit/sdk/storage/memstore"
)

// testPluginEnv names the variable that turns this test binary into one of the test
// plugins below (the Nomad pattern: the test binary is its own plugin).
const testPluginEnv = "LIMIT_HOST_TEST_PLUGIN"

func TestMain(m *testing.M) {
	switch os.Getenv(testPluginEnv) {
	case "":
		os.Exit(m.Run())
	case "memstore":
		storage.Serve(memstore.New())
	case "memstore-once":
		// Serves the first time only: later starts fail, as a binary replaced by a broken
		// one would, so a restart stays pending.
		startOnce()
		storage.Serve(memstore.New())
	case "rule-once":
		startOnce()
		governance.Serve(&keywordRule{})
	case "sickstore":
		storage.Serve(&sickStore{Store: memstore.New()})
	case "fullstore":
		storage.Serve(&fullStore{Store: memstore.New()})
	case "slowstore":
		storage.Serve(&slowStore{Store: memstore.New()})
	case "echo":
		runner.Serve(&echoRunner{})
	case "rule":
		governance.Serve(&keywordRule{})
	case "stray":
		storage.Serve(&strayStore{Store: memstore.New()})
	case "protocol99":
		runner.Serve(&badInfoRunner{info: base.Info{Name: "echo", Kind: base.KindRunner, Version: "1.2.3", ProtocolVersions: []uint32{99}}})
	case "noname":
		runner.Serve(&badInfoRunner{info: base.Info{Kind: base.KindRunner}})
	case "hangconfig":
		storage.Serve(&hangConfigStore{Store: memstore.New()})
	case "stderr-exit":
		// Fails before it serves, saying why on stderr only.
		fmt.Fprintln(os.Stderr, "boom: cannot open")
		os.Exit(2)
	case "fatalstore":
		// Writes to its stderr before it serves (chatter of a healthy plugin), and exits
		// through log.Fatal (which writes to the process's stderr, not to the stream
		// go-plugin carries) on a Put of the key "fatal", or panics on one of "panic".
		fmt.Fprintln(os.Stderr, "fatalstore starting")
		storage.Serve(&fatalStore{Store: memstore.New()})
	case "garbage":
		fmt.Println("hello, I am not a plugin")
		time.Sleep(time.Minute)
	case "hang":
		time.Sleep(time.Minute)
	case "host":
		// A host process for the parent-death test: it starts a plugin, prints its pid
		// and waits to be killed.
		runHostForTest()
	default:
		fmt.Fprintln(os.Stderr, "unknown test plugin")
		os.Exit(2)
	}
	os.Exit(0)
}

// fullStore is memstore whose writes outside the namespace "ctl" fail with
// storage.ErrNoSpace while the key "full" exists there, and whose health is always OK (as
// a backend whose probe finds room that the refused writes do not).
type fullStore struct{ *memstore.Store }

func (s *fullStore) refuse(ctx context.Context, ns string) error {
	if ns == "ctl" {
		return nil
	}
	if _, ok, _ := s.Store.Get(ctx, "ctl", []byte("full")); ok {
		return fmt.Errorf("write: %w: the disk holding /data/limit.db is full", storage.ErrNoSpace)
	}
	return nil
}

func (s *fullStore) Put(ctx context.Context, ns string, k, v []byte) error {
	if err := s.refuse(ctx, ns); err != nil {
		return err
	}
	return s.Store.Put(ctx, ns, k, v)
}

func (s *fullStore) Batch(ctx context.Context, ns string, ops []storage.Op) error {
	if err := s.refuse(ctx, ns); err != nil {
		return err
	}
	return s.Store.Batch(ctx, ns, ops)
}

func (s *fullStore) Health(context.Context) storage.Health { return storage.Health{OK: true} }

// sickStore is memstore reporting its health: not OK while the key "sick" exists in the
// namespace "health", with that key's value as the detail.
type sickStore struct{ *memstore.Store }

func (s *sickStore) Health(ctx context.Context) storage.Health {
	v, ok, err := s.Get(ctx, "health", []byte("sick"))
	if err != nil {
		return storage.Health{Detail: err.Error()}
	}
	return storage.Health{OK: !ok, Detail: string(v), Metrics: map[string]float64{"sick": map[bool]float64{true: 1}[ok]}}
}

// slowStore is memstore whose Get of the key "slow" gives up after its own timeout, as
// the postgres plugin does on a stalled server: it stays alive and answers pings.
type slowStore struct{ *memstore.Store }

// slowStoreTimeout is slowStore's own timeout; the tests give the host a shorter wait.
const slowStoreTimeout = 300 * time.Millisecond

func (s *slowStore) Get(ctx context.Context, ns string, key []byte) ([]byte, bool, error) {
	if string(key) == "slow" {
		time.Sleep(slowStoreTimeout)
		return nil, false, fmt.Errorf("%w: the backend did not answer within %s", storage.ErrUnavailable, slowStoreTimeout)
	}
	return s.Store.Get(ctx, ns, key)
}

// fatalStore is memstore that dies on a Put of the key "fatal" or "panic".
type fatalStore struct{ *memstore.Store }

func (s *fatalStore) Put(ctx context.Context, ns string, key, value []byte) error {
	switch string(key) {
	case "fatal":
		log.SetFlags(0)
		log.Print("[INFO] a line with a level, logged at it")
		log.Fatal("boom: cannot open /data/x")
	case "panic":
		log.SetFlags(0)
		log.Print("about to panic")
		go panic("boom: the test asked for it") // not recovered by the RPC server
		select {}
	}
	return s.Store.Put(ctx, ns, key, value)
}

// hangConfigStore is memstore whose Configure never returns, its context ignored (a
// plugin stuck in its setup).
type hangConfigStore struct{ *memstore.Store }

func (s *hangConfigStore) Configure(context.Context, base.ConfigureRequest) base.Diagnostics {
	select {}
}

// strayStore is memstore writing to its stdout and stderr, not through its logger, when
// configured: the mistake of a plugin author debugging with fmt.Println; one line of
// 3000 bytes, which go-plugin carries in pieces. It also logs through a logger made
// then, after Serve.
type strayStore struct{ *memstore.Store }

func (s *strayStore) Configure(ctx context.Context, req base.ConfigureRequest) base.Diagnostics {
	fmt.Println("stray line on stdout")
	fmt.Fprintln(os.Stderr, "stray line on stderr")
	fmt.Fprintln(os.Stderr, "long stray line "+strings.Repeat("x", 3000)+" end")
	base.NewPluginLogger("late").Info("logged by a logger made in Configure", "n", 7)
	return s.Store.Configure(ctx, req)
}

// startOnce exits with an error if the file named by onceMarkerEnv exists, and creates
// it otherwise: the "-once" test plugins start the first time only.
func startOnce() {
	marker := os.Getenv(onceMarkerEnv)
	if _, err := os.Stat(marker); err == nil {
		fmt.Fprintln(os.Stderr, "started once already")
		os.Exit(1)
	}
	if err := os.WriteFile(marker, nil, 0o600); err != nil {
		os.Exit(1)
	}
}

// onceMarkerEnv names the file by which the memstore-once test plugin knows it started.
const onceMarkerEnv = "LIMIT_HOST_TEST_ONCE"

// testSpec returns a spec that runs this test binary as the named test plugin.
func testSpec(kind, name, plugin string) Spec {
	exe, err := os.Executable()
	if err != nil {
		panic(err)
	}
	return Spec{
		Kind: kind, Name: name, Path: exe,
		Env:          map[string]string{testPluginEnv: plugin},
		StartTimeout: 10 * time.Second,
	}
}

func runHostForTest() {
	p, err := Launch(context.Background(), testSpec(base.KindStorage, "mem", "memstore"), nil)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println("pid", p.PID)
	time.Sleep(time.Minute)
}

// badInfoRunner is echoRunner with another Info.
type badInfoRunner struct {
	echoRunner
	info base.Info
}

func (r *badInfoRunner) PluginInfo() base.Info { return r.info }

// echoRunner is a test runner: it echoes its input with the session id, the process id
// and a per-process execution count (its "state"), and dies on "crash". "spend:N" spends N
// tokens of a budget counted from the session's Spent["session_tokens"], and reports the
// total as session_tokens.
// echoLog is the echo runner's logger, made before it serves (go-plugin then takes over
// the process's stderr, whose lines it would relay as stray output).
var echoLog = base.NewPluginLogger("runner.echo")

type echoRunner struct {
	mu       sync.Mutex
	greeting string
	session  runner.Session
	count    int
	spent    float64
}

func (e *echoRunner) PluginInfo() base.Info {
	return base.Info{Name: "echo", Kind: base.KindRunner, Version: "1.2.3"}
}

func (e *echoRunner) ConfigSchema() base.Schema {
	return base.Schema{Attributes: []base.Attribute{{Name: "greeting", Type: "string", Default: "hi"}}}
}

func (e *echoRunner) Configure(_ context.Context, req base.ConfigureRequest) base.Diagnostics {
	var cfg struct {
		Greeting string `json:"greeting"`
	}
	if ds := base.DecodeConfig(req.Config, &cfg); ds.HasErrors() {
		return ds
	}
	if cfg.Greeting == "bad" {
		return base.Diagnostics{base.Errorf([]string{"greeting"}, "greeting must not be %q", cfg.Greeting)}
	}
	e.mu.Lock()
	e.greeting = cfg.Greeting
	e.mu.Unlock()
	if cfg.Greeting == "hi" {
		return base.Diagnostics{base.Warningf([]string{"greeting"}, "greeting %q is terse", cfg.Greeting)}
	}
	return nil
}

func (e *echoRunner) OpenSession(_ context.Context, s runner.Session) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.session = s
	// As the first-party runners do: the host's logger for the process names the session too.
	echoLog.Info("session opened", "session", s.ID, "greeting", "hi")
	return nil
}

func (e *echoRunner) Execute(ctx context.Context, req runner.ExecuteRequest, emit func(runner.Event) error) (runner.Result, error) {
	switch {
	case req.Input == "crash":
		os.Exit(7)
	case req.Input == "stray":
		fmt.Println("stray line of an execution")
		return runner.Result{Status: runner.StatusOK}, nil
	case req.Input == "setsid-child":
		// Starts a child in a session (and process group) of its own, and answers its pid.
		child := exec.Command("/bin/sleep", "60")
		child.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := child.Start(); err != nil {
			return runner.Result{}, err
		}
		go func() { _ = child.Wait() }()
		return runner.Result{Status: runner.StatusOK, Output: strconv.Itoa(child.Process.Pid)}, nil
	case req.Input == "env":
		env := os.Environ()
		return runner.Result{Status: runner.StatusOK, Output: strings.Join(env, "\n")}, nil
	case strings.HasPrefix(req.Input, "big:"):
		var n int
		fmt.Sscanf(req.Input, "big:%d", &n)
		if err := emit(runner.Event{Output: &runner.Output{Stream: runner.Stdout, Data: []byte(strings.Repeat("x", n))}}); err != nil {
			return runner.Result{}, err
		}
		return runner.Result{Status: runner.StatusOK}, nil
	case strings.HasPrefix(req.Input, "spend:"):
		var n float64
		fmt.Sscanf(req.Input, "spend:%g", &n)
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.spent == 0 {
			e.spent = e.session.Spent["session_tokens"]
		}
		e.spent += n
		return runner.Result{Status: runner.StatusOK, Usage: runner.Usage{TotalTokens: uint64(n), Extra: map[string]float64{
			"session_tokens": e.spent, "tokens_per_second": 3,
		}}}, nil
	}
	e.mu.Lock()
	e.count++
	out := fmt.Sprintf("session=%s pid=%d n=%d input=%s", e.session.ID, os.Getpid(), e.count, req.Input)
	e.mu.Unlock()
	if err := emit(runner.Event{Output: &runner.Output{Stream: runner.Stdout, Data: []byte(out)}}); err != nil {
		return runner.Result{}, err
	}
	return runner.Result{Status: runner.StatusOK, Output: out}, nil
}

func (e *echoRunner) Cancel(context.Context, string) (bool, error) { return false, nil }

// Health is healthy but with the greeting "sick", which makes the runner say, as the Python
// runner does on a machine where it cannot isolate code, that it would refuse sessions.
func (e *echoRunner) Health(context.Context) (runner.Health, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	h := runner.Health{Healthy: true, Isolation: []runner.IsolationFeature{{Name: "none", Enforced: false, Detail: "test runner"}}}
	if e.greeting == "sick" && e.session.ID == "" {
		h.Healthy, h.Message = false, "sessions are refused: sick on purpose"
	}
	return h, nil
}

func (e *echoRunner) CloseSession(context.Context) error { return nil }

// keywordRule flags content containing "forbidden".
type keywordRule struct{}

func (keywordRule) PluginInfo() base.Info {
	return base.Info{Name: "keyword", Kind: base.KindGovernance, Version: "0.0.1"}
}
func (keywordRule) ConfigSchema() base.Schema { return base.Schema{} }
func (keywordRule) Configure(_ context.Context, req base.ConfigureRequest) base.Diagnostics {
	var cfg struct{}
	return base.DecodeConfig(req.Config, &cfg)
}
func (keywordRule) Describe(context.Context) ([]governance.RuleDescription, error) {
	return []governance.RuleDescription{{ID: "keyword", Flags: []string{governance.FlagJailbreak}, Stages: []governance.Stage{governance.StagePre}}}, nil
}
func (keywordRule) Evaluate(_ context.Context, req governance.EvaluateRequest) ([]governance.Finding, error) {
	if i := strings.Index(req.Content, "forbidden"); i >= 0 {
		return []governance.Finding{{Flag: governance.FlagJailbreak, Severity: 8, Score: 1, Reason: "keyword", RuleID: "keyword",
			Location: &governance.Location{Start: i, End: i + len("forbidden")}}}, nil
	}
	return nil, nil
}
