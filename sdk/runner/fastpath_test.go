package runner_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	limitv1 "github.com/limitgraph/limit/proto/limit/v1"
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/runner"
)

// serveEnv makes the test binary serve a runner plugin: "test" serves testRunner, "old"
// serves it as a plugin built before the fast path existed.
const serveEnv = "LIMIT_RUNNER_TEST_SERVE"

func TestMain(m *testing.M) {
	switch os.Getenv(serveEnv) {
	case "test":
		runner.Serve(newTestRunner())
		return
	case "old":
		base.Serve(base.KindRunner, &oldPlugin{impl: newTestRunner()})
		return
	}
	os.Exit(m.Run())
}

// testRunner answers inputs of the form "op arg":
//   - "echo TEXT" prints TEXT on stdout, "ERR" on stderr, and returns TEXT as its output;
//   - "big N [FILE]" prints N bytes in writes of 1 MiB, writing how many it has sent to
//     FILE after each;
//   - "tokens N" emits N tokens;
//   - "fail" returns an error, "panic" panics;
//   - "block" waits for its context to end and remembers how it ended, which "seen" prints;
//     "print-block" prints "started" first;
//   - "blocking" prints how many "block" executions are waiting;
//   - "huge" returns an output larger than a message may be;
//   - "spent" returns the open session's Spent as its usage extras;
//   - "deadline" prints how long its context has left, or "none".
type testRunner struct {
	mu      sync.Mutex
	seen    string
	blocked int
	limits  runner.Limits      // the open session's
	spent   map[string]float64 // the open session's Spent
}

func newTestRunner() *testRunner { return &testRunner{} }

func (r *testRunner) PluginInfo() base.Info {
	return base.Info{Name: "fasttest", Kind: base.KindRunner, Version: "0.1.0", ProtocolVersions: []uint32{base.ProtocolVersion}}
}
func (r *testRunner) ConfigSchema() base.Schema { return base.Schema{} }
func (r *testRunner) Configure(context.Context, base.ConfigureRequest) base.Diagnostics {
	return nil
}
func (r *testRunner) OpenSession(_ context.Context, s runner.Session) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.limits = s.Limits
	r.spent = s.Spent
	return nil
}

// SessionLimits says the runner's own timeout is 7 s unless the session gives one.
func (r *testRunner) SessionLimits() runner.Limits {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.limits
	if l.Timeout == 0 {
		l.Timeout = 7 * time.Second
	}
	return l
}

func (r *testRunner) Cancel(context.Context, string) (bool, error) { return false, nil }
func (r *testRunner) Health(context.Context) (runner.Health, error) {
	return runner.Health{Healthy: true}, nil
}
func (r *testRunner) CloseSession(context.Context) error { return nil }

func (r *testRunner) Execute(ctx context.Context, req runner.ExecuteRequest, emit func(runner.Event) error) (runner.Result, error) {
	op, arg, _ := strings.Cut(req.Input, " ")
	out := func(s runner.Stream, b []byte) error {
		return emit(runner.Event{Output: &runner.Output{Stream: s, Data: b}})
	}
	ok := runner.Result{Status: runner.StatusOK, Duration: time.Millisecond}
	switch op {
	case "echo":
		if err := out(runner.Stdout, []byte(arg)); err != nil {
			return runner.Result{}, err
		}
		if err := out(runner.Stderr, []byte("ERR")); err != nil {
			return runner.Result{}, err
		}
		ok.Output = arg
		ok.Usage = runner.Usage{TotalTokens: 7, Extra: map[string]float64{"x": 1.5}}
		return ok, nil
	case "big":
		var n int
		var progress string
		fmt.Sscan(arg, &n, &progress)
		chunk := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
		for sent := 0; sent < n; {
			b := chunk[:min(n-sent, len(chunk))]
			if err := out(runner.Stdout, b); err != nil {
				return runner.Result{}, err
			}
			sent += len(b)
			if progress != "" {
				// Written aside and renamed: os.WriteFile truncates first, so the test
				// could read an empty file in between.
				_ = os.WriteFile(progress+".tmp", []byte(fmt.Sprint(sent)), 0o600)
				_ = os.Rename(progress+".tmp", progress)
			}
		}
		return ok, nil
	case "tokens":
		var n int
		fmt.Sscan(arg, &n)
		for i := range n {
			if err := emit(runner.Event{Token: &runner.Token{Text: fmt.Sprint(i), ID: int64(i)}}); err != nil {
				return runner.Result{}, err
			}
		}
		return ok, nil
	case "fail":
		return runner.Result{}, errors.New("the runner broke")
	case "panic":
		panic("runner bug")
	case "block", "print-block":
		if op == "print-block" {
			if err := out(runner.Stdout, []byte("started")); err != nil {
				return runner.Result{}, err
			}
		}
		r.mu.Lock()
		r.blocked++
		r.mu.Unlock()
		<-ctx.Done()
		r.mu.Lock()
		r.blocked--
		r.seen = ctx.Err().Error()
		r.mu.Unlock()
		return runner.Result{}, ctx.Err()
	case "blocking":
		r.mu.Lock()
		defer r.mu.Unlock()
		ok.Output = fmt.Sprint(r.blocked)
		return ok, nil
	case "seen":
		r.mu.Lock()
		defer r.mu.Unlock()
		ok.Output = r.seen
		return ok, nil
	case "huge":
		ok.Output = strings.Repeat("x", base.MaxMessageSize+1)
		return ok, nil
	case "spent":
		r.mu.Lock()
		defer r.mu.Unlock()
		ok.Usage.Extra = r.spent
		return ok, nil
	case "deadline":
		ok.Output = "none"
		if d, has := ctx.Deadline(); has {
			ok.Output = time.Until(d).Round(time.Second).String()
		}
		return ok, nil
	}
	return runner.Result{}, fmt.Errorf("unknown input %q", req.Input)
}

// oldPlugin serves the runner service as a plugin without OpenFastPath does.
type oldPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	impl runner.Runner
}

func (p *oldPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	limitv1.RegisterPluginServer(s, &base.Server{Impl: p.impl})
	limitv1.RegisterRunnerServer(s, &oldServer{impl: p.impl})
	return nil
}

func (p *oldPlugin) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (any, error) {
	return nil, errors.New("plugin side only")
}

// oldServer implements OpenSession, and Execute for plain output only; OpenFastPath stays unimplemented.
type oldServer struct {
	limitv1.UnimplementedRunnerServer
	impl runner.Runner
}

func (s *oldServer) OpenSession(context.Context, *limitv1.OpenSessionRequest) (*limitv1.OpenSessionResponse, error) {
	return &limitv1.OpenSessionResponse{}, nil
}

func (s *oldServer) Execute(req *limitv1.ExecuteRequest, stream limitv1.Runner_ExecuteServer) error {
	res, err := s.impl.Execute(stream.Context(), runner.RequestFromProto(req), func(ev runner.Event) error {
		if ev.Output == nil {
			return nil
		}
		return stream.Send(&limitv1.ExecuteEvent{Event: &limitv1.ExecuteEvent_Output{Output: &limitv1.OutputChunk{
			Stream: limitv1.OutputStream(ev.Output.Stream), Data: ev.Output.Data,
		}}})
	})
	if err != nil {
		return err
	}
	return stream.Send(&limitv1.ExecuteEvent{Event: &limitv1.ExecuteEvent_Result{Result: runner.ResultToProto(res)}})
}

// launched is a plugin process started by a test.
type launched struct {
	*runner.Client
	plugin *plugin.Client
}

// launch starts the test binary as the runner plugin of mode, with the plugin set set, and
// kills it when the test ends.
func launch(t testing.TB, mode string, set plugin.PluginSet) launched {
	t.Helper()
	return launchSession(t, mode, set, runner.Session{ID: "s1", WorkDir: t.TempDir()})
}

// launchSession is launch with the session the plugin is opened for.
func launchSession(t testing.TB, mode string, set plugin.PluginSet, sess runner.Session) launched {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	pc := base.NewClient(base.LaunchConfig{Path: exe, Kind: base.KindRunner, Plugins: set, Env: []string{serveEnv + "=" + mode}})
	t.Cleanup(pc.Kill)
	raw, err := base.Dispense(t.Context(), pc, base.KindRunner)
	if err != nil {
		t.Fatal(err)
	}
	c := raw.(*runner.Client)
	t.Cleanup(c.Close)
	if ds := c.Configure(t.Context(), base.ConfigureRequest{Config: []byte("{}"), DataDir: t.TempDir()}); ds.HasErrors() {
		t.Fatal(ds.Err())
	}
	if err := c.OpenSession(t.Context(), sess); err != nil {
		t.Fatal(err)
	}
	return launched{Client: c, plugin: pc}
}

// both launches the test runner with each transport.
func both(t *testing.T) map[string]launched {
	t.Helper()
	fast, slow := launch(t, "test", runner.PluginSet()), launch(t, "test", runner.PluginSetGRPCOnly())
	if fast.Transport() != "unix" || fast.FastPathError() != nil {
		t.Fatalf("transport %q (%v), want unix", fast.Transport(), fast.FastPathError())
	}
	if slow.Transport() != "grpc" {
		t.Fatalf("gRPC-only client: transport %q", slow.Transport())
	}
	return map[string]launched{"unix": fast, "grpc": slow}
}

// recorded is what one execution produced.
type recorded struct {
	stdout, stderr bytes.Buffer
	tokens         []string
	chunks         int
	maxChunk       int
	res            runner.Result
	err            error
}

func run(ctx context.Context, r runner.Runner, input string) *recorded {
	rec := &recorded{}
	rec.res, rec.err = r.Execute(ctx, runner.ExecuteRequest{ExecutionID: "x", Input: input}, func(ev runner.Event) error {
		switch {
		case ev.Output != nil && ev.Output.Stream == runner.Stderr:
			rec.stderr.Write(ev.Output.Data)
		case ev.Output != nil:
			rec.stdout.Write(ev.Output.Data)
			rec.chunks++
			rec.maxChunk = max(rec.maxChunk, len(ev.Output.Data))
		case ev.Token != nil:
			rec.tokens = append(rec.tokens, ev.Token.Text)
		}
		return nil
	})
	return rec
}

func TestFastPathMatchesGRPC(t *testing.T) {
	got := map[string]*recorded{}
	for name, c := range both(t) {
		got[name] = run(t.Context(), c, "echo hello")
	}
	for name, r := range got {
		if r.err != nil || r.stdout.String() != "hello" || r.stderr.String() != "ERR" || r.res.Output != "hello" ||
			r.res.Status != runner.StatusOK || r.res.Usage.TotalTokens != 7 || r.res.Usage.Extra["x"] != 1.5 {
			t.Errorf("%s: stdout %q stderr %q result %+v error %v", name, r.stdout.String(), r.stderr.String(), r.res, r.err)
		}
	}
	if fmt.Sprint(got["unix"].res) != fmt.Sprint(got["grpc"].res) {
		t.Errorf("results differ: fast path %+v, gRPC %+v", got["unix"].res, got["grpc"].res)
	}
}

func TestFastPathLargeOutputAndTokens(t *testing.T) {
	const n = 5<<20 + 123
	for name, c := range both(t) {
		r := run(t.Context(), c, fmt.Sprint("big ", n))
		if r.err != nil || r.stdout.Len() != n || r.maxChunk > runner.MaxChunkSize || r.chunks < n/runner.MaxChunkSize {
			t.Fatalf("%s: %d bytes in %d chunks (largest %d), error %v; want %d bytes in chunks of at most %d",
				name, r.stdout.Len(), r.chunks, r.maxChunk, r.err, n, runner.MaxChunkSize)
		}
		want := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
		for i, b := 0, r.stdout.Bytes(); i < len(b); i += len(want) {
			if !bytes.Equal(b[i:min(i+len(want), len(b))], want[:min(len(want), len(b)-i)]) {
				t.Fatalf("%s: output differs in the MiB at %d", name, i)
			}
		}
		r = run(t.Context(), c, "tokens 1000")
		if r.err != nil || len(r.tokens) != 1000 || r.tokens[999] != "999" {
			t.Fatalf("%s: %d tokens, error %v", name, len(r.tokens), r.err)
		}
	}
}

// TestFastPathSlowConsumer checks flow control: two executions share the connection and
// their host-side consumers stall; the runners must be held back, not buffer their whole
// output in the plugin's memory, and everything still arrives once the consumers read.
func TestFastPathSlowConsumer(t *testing.T) {
	c := launch(t, "test", runner.PluginSet())
	const n = 64 << 20
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() {
			progress := filepath.Join(t.TempDir(), fmt.Sprint("sent", i))
			got, sentWhileStalled := 0, ""
			_, err := c.Execute(t.Context(), runner.ExecuteRequest{Input: fmt.Sprint("big ", n, " ", progress)}, func(ev runner.Event) error {
				if got == 0 {
					time.Sleep(time.Second) // unchecked, the runner would produce everything meanwhile
					b, err := os.ReadFile(progress)
					if errors.Is(err, os.ErrNotExist) {
						b = []byte("0") // the runner has not finished sending its first chunk
					}
					sentWhileStalled = string(b)
				}
				got += len(ev.Output.Data)
				return nil
			})
			if err != nil || got != n {
				t.Errorf("execution %d: got %d of %d bytes, error %v", i, got, n, err)
				return
			}
			// While the host read nothing, a runner could only fill the socket's buffer, the
			// writer's pending limit and the host's queue (a few MiB), not send it all.
			if sent, err := strconv.Atoi(sentWhileStalled); err != nil || sent >= n/2 {
				t.Errorf("execution %d had sent %q of %d bytes while the host read nothing: no flow control", i, sentWhileStalled, n)
			}
		})
	}
	wg.Wait()
}

func TestFastPathErrorsMatchGRPC(t *testing.T) {
	for _, input := range []string{"fail", "panic", "nonsense"} {
		var msgs []string
		for name, c := range both(t) {
			r := run(t.Context(), c, input)
			st, ok := status.FromError(errors.Unwrap(r.err))
			if r.err == nil || !ok {
				t.Fatalf("%s: %q: error %v, want a gRPC status", name, input, r.err)
			}
			if st.Code() != codes.Internal {
				t.Errorf("%s: %q: code %v, want Internal", name, input, st.Code())
			}
			// Told in the plugin's words, without gRPC's framing.
			if strings.Contains(r.err.Error(), "rpc error") || (input == "panic" && r.err.Error() != "runner execute: plugin panic: runner bug") {
				t.Errorf("%s: %q: %q, want the plugin's message alone", name, input, r.err)
			}
			msgs = append(msgs, r.err.Error())
		}
		if msgs[0] != msgs[1] {
			t.Errorf("%q: errors differ: %q and %q", input, msgs[0], msgs[1])
		}
	}
}

// TestFastPathOversizedMessages checks that a request or result over the message size limit
// fails its execution alone, as over gRPC, and the connection keeps working.
func TestFastPathOversizedMessages(t *testing.T) {
	for name, c := range both(t) {
		r := run(t.Context(), c, "huge")
		if status.Code(errors.Unwrap(r.err)) != codes.ResourceExhausted {
			t.Errorf("%s: a result over the limit: %v, want ResourceExhausted", name, r.err)
		}
		r = run(t.Context(), c, "echo "+strings.Repeat("y", base.MaxMessageSize))
		if status.Code(errors.Unwrap(r.err)) != codes.ResourceExhausted {
			t.Errorf("%s: a request over the limit: %v, want ResourceExhausted", name, r.err)
		}
		if r := run(t.Context(), c, "echo after"); r.err != nil || r.res.Output != "after" {
			t.Fatalf("%s: execution after the oversized ones: %+v %v", name, r.res, r.err)
		}
	}
}

func TestFastPathCancelAndDeadline(t *testing.T) {
	for name, c := range both(t) {
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan *recorded)
		go func() { done <- run(ctx, c, "block") }()
		waitBlocking(t, c, 1) // cancelled before it reached the runner, it would never be seen
		cancel()
		select {
		case r := <-done:
			if status.Code(errors.Unwrap(r.err)) != codes.Canceled {
				t.Fatalf("%s: cancelled execution: %v, want Canceled", name, r.err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: a cancelled execution did not return", name)
		}
		var seen string
		for deadline := time.Now().Add(30 * time.Second); seen == "" && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			seen = run(t.Context(), c, "seen").res.Output
		}
		if seen != context.Canceled.Error() {
			t.Fatalf("%s: the runner's context ended with %q, want %q", name, seen, context.Canceled)
		}
		dctx, dcancel := context.WithTimeout(t.Context(), 60*time.Second)
		r := run(dctx, c, "deadline")
		dcancel()
		if r.res.Output != "1m0s" {
			t.Fatalf("%s: the runner saw a deadline %q ahead, want 1m0s", name, r.res.Output)
		}
		if r := run(t.Context(), c, "deadline"); r.res.Output != "none" {
			t.Fatalf("%s: without a deadline the runner saw %q", name, r.res.Output)
		}
	}
}

// waitBlocking waits until n "block" executions are waiting in the runner: on a loaded
// machine a call takes a while to get there.
func waitBlocking(t *testing.T, c launched, n int) {
	t.Helper()
	want := fmt.Sprint(n)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		r := run(t.Context(), c, "blocking")
		if r.err == nil && r.res.Output == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s blocking executions reached the runner in 30 s (%v), want %d", r.res.Output, r.err, n)
		}
	}
}

// TestEmitErrorStopsTheExecution checks that an execution whose emit fails is stopped in
// the runner, over either transport: the host no longer listens, and a runner left running
// would hold the session's interpreter (its next executions wait for it) until the
// caller's context ends, which for a caller without a deadline is never.
func TestEmitErrorStopsTheExecution(t *testing.T) {
	for name, c := range both(t) {
		stop := errors.New("the consumer went away")
		_, err := c.Execute(t.Context(), runner.ExecuteRequest{ExecutionID: "x", Input: "print-block"}, func(runner.Event) error {
			return stop
		})
		if !errors.Is(err, stop) {
			t.Fatalf("%s: Execute returned %v, want emit's error", name, err)
		}
		// The runner blocks after its output until its context ends: it must end now.
		// (Execute may return before the runner got as far as blocking, so "blocking"
		// alone can read 0 too early: wait for how the block ended.)
		var seen string
		for deadline := time.Now().Add(30 * time.Second); seen == "" && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			seen = run(t.Context(), c, "seen").res.Output
		}
		if seen != context.Canceled.Error() {
			t.Fatalf("%s: the runner's context ended with %q, want %q", name, seen, context.Canceled)
		}
		waitBlocking(t, c, 0)
	}
}

func TestFastPathConcurrentExecutions(t *testing.T) {
	c := launch(t, "test", runner.PluginSet())
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for i := range 32 {
		wg.Go(func() {
			want := fmt.Sprint("n", i, strings.Repeat("x", i*1000))
			r := run(t.Context(), c, "echo "+want)
			if r.err != nil || r.stdout.String() != want || r.res.Output != want {
				errs <- fmt.Errorf("execution %d: %d bytes out, error %v", i, r.stdout.Len(), r.err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestFastPathPluginKilled(t *testing.T) {
	c := launch(t, "test", runner.PluginSet())
	done := make(chan *recorded)
	go func() { done <- run(t.Context(), c, "block") }()
	waitBlocking(t, c, 1)
	if err := syscall.Kill(c.plugin.ReattachConfig().Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if status.Code(errors.Unwrap(r.err)) != codes.Unavailable {
			t.Fatalf("execution in flight when the plugin died: %v, want Unavailable", r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("an execution in flight when the plugin died did not return")
	}
	if c.Transport() != "grpc" {
		t.Fatalf("transport %q after the plugin died, want grpc", c.Transport())
	}
}

func TestOldRunnerFallsBackToGRPC(t *testing.T) {
	c := launch(t, "old", runner.PluginSet())
	if c.Transport() != "grpc" || c.FastPathError() == nil || status.Code(errors.Unwrap(c.FastPathError())) != codes.Unimplemented {
		t.Fatalf("transport %q, fast path error %v; want grpc after UNIMPLEMENTED", c.Transport(), c.FastPathError())
	}
	if r := run(t.Context(), c, "echo old"); r.err != nil || r.stdout.String() != "old" || r.res.Output != "old" {
		t.Fatalf("execution over gRPC: %q %+v %v", r.stdout.String(), r.res, r.err)
	}
}

// BenchmarkExecute measures a small execution over each transport.
func BenchmarkExecute(b *testing.B) {
	for _, tc := range []struct {
		name string
		set  plugin.PluginSet
	}{{"grpc", runner.PluginSetGRPCOnly()}, {"unix", runner.PluginSet()}} {
		b.Run(tc.name, func(b *testing.B) {
			c := launch(b, "test", tc.set)
			for b.Loop() {
				if r := run(b.Context(), c, "echo 1"); r.err != nil {
					b.Fatal(r.err)
				}
			}
		})
	}
}

// TestSessionLimits: the limits a runner says it applies reach the host's client when
// the session opens; a plugin that says nothing gives zero limits.
func TestSessionLimits(t *testing.T) {
	for mode, l := range both(t) {
		if got := l.SessionLimits(); got.Timeout != 7*time.Second {
			t.Errorf("%s: session limits %+v, want the runner's timeout of 7s", mode, got)
		}
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	pc := base.NewClient(base.LaunchConfig{Path: exe, Kind: base.KindRunner, Plugins: runner.PluginSet(), Env: []string{serveEnv + "=test"}})
	t.Cleanup(pc.Kill)
	raw, err := base.Dispense(t.Context(), pc, base.KindRunner)
	if err != nil {
		t.Fatal(err)
	}
	c := raw.(*runner.Client)
	t.Cleanup(c.Close)
	if ds := c.Configure(t.Context(), base.ConfigureRequest{Config: []byte("{}"), DataDir: t.TempDir()}); ds.HasErrors() {
		t.Fatal(ds.Err())
	}
	want := runner.Limits{Timeout: 2500 * time.Millisecond, MaxOutputBytes: 1234}
	if err := c.OpenSession(t.Context(), runner.Session{ID: "s2", WorkDir: t.TempDir(), Limits: want}); err != nil {
		t.Fatal(err)
	}
	if got := c.SessionLimits(); got != want {
		t.Errorf("session limits %+v, want the session's %+v", got, want)
	}
	if got := launch(t, "old", runner.PluginSet()).SessionLimits(); got != (runner.Limits{}) {
		t.Errorf("a plugin that says nothing: session limits %+v, want none", got)
	}
}

// TestSessionSpent: what the host says a session already spent reaches the runner when
// the session opens, over either transport.
func TestSessionSpent(t *testing.T) {
	want := map[string]float64{"session_tokens": 120, "session_cost_usd": 0.25}
	for _, set := range []plugin.PluginSet{runner.PluginSet(), runner.PluginSetGRPCOnly()} {
		c := launchSession(t, "test", set, runner.Session{ID: "s3", WorkDir: t.TempDir(), Spent: want})
		r := run(t.Context(), c, "spent")
		if r.err != nil || !maps.Equal(r.res.Usage.Extra, want) {
			t.Errorf("%s: the runner saw spent %v (%v), want %v", c.Transport(), r.res.Usage.Extra, r.err, want)
		}
	}
	// A session opened without Spent: the runner sees none.
	if r := run(t.Context(), launch(t, "test", runner.PluginSet()), "spent"); r.err != nil || len(r.res.Usage.Extra) != 0 {
		t.Errorf("no spent: the runner saw %v (%v)", r.res.Usage.Extra, r.err)
	}
}
