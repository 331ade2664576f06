package governance_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
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
	"github.com/limitgraph/limit/sdk/governance"
)

// serveEnv makes the test binary serve a governance plugin: "test" serves testRule, "old"
// serves it as a plugin built before the fast path existed.
const serveEnv = "LIMIT_GOVERNANCE_TEST_SERVE"

func TestMain(m *testing.M) {
	switch os.Getenv(serveEnv) {
	case "test":
		governance.Serve(&testRule{})
		return
	case "old":
		base.Serve(base.KindGovernance, &oldPlugin{impl: &testRule{}})
		return
	}
	os.Exit(m.Run())
}

// testRule flags content holding "attack" at the word's offset; "fail" makes it fail,
// "beyond" fail with ErrBeyondLimits, "gave up" with a deadline of its own, "panic" panic, "bad finding" answer a finding with
// an unknown flag, "NaN finding" (and "+Inf", "-Inf") one with that score; "block" waits for the call's context to end and remembers how, which
// "seen" reports in its reason; "blocking" reports how many "block" calls are waiting;
// "deadline" reports how long its context has left; "hang" waits, ignoring its context,
// until a "release" call comes.
type testRule struct {
	mu      sync.Mutex
	seen    string
	blocked int
}

// hangRelease ends the "hang" calls of the plugin process when closed (releaseOnce).
var (
	hangRelease = make(chan struct{})
	releaseOnce sync.Once
)

func (r *testRule) PluginInfo() base.Info {
	return base.Info{Name: "fasttest", Kind: base.KindGovernance, Version: "0.1.0", ProtocolVersions: []uint32{base.ProtocolVersion}}
}
func (r *testRule) ConfigSchema() base.Schema { return base.Schema{} }
func (r *testRule) Configure(context.Context, base.ConfigureRequest) base.Diagnostics {
	return nil
}
func (r *testRule) Describe(context.Context) ([]governance.RuleDescription, error) {
	return []governance.RuleDescription{{ID: "test.attack", Flags: []string{governance.FlagMalicious}, Stages: []governance.Stage{governance.StagePre}}}, nil
}

func (r *testRule) Evaluate(ctx context.Context, req governance.EvaluateRequest) ([]governance.Finding, error) {
	finding := func(reason string) []governance.Finding {
		return []governance.Finding{{Flag: governance.FlagMalicious, Severity: 7, Score: 0.9, Reason: reason, RuleID: "test.attack"}}
	}
	switch req.Content {
	case "fail":
		return nil, errors.New("the rule broke")
	case "beyond":
		return nil, fmt.Errorf("content too big for this rule: %w", governance.ErrBeyondLimits)
	case "gave up":
		return nil, fmt.Errorf("scan given up: %w", context.DeadlineExceeded)
	case "panic":
		panic("rule bug")
	case "bad finding":
		return []governance.Finding{{Flag: "nonsense", Severity: 3, RuleID: "test.attack"}}, nil
	case "NaN finding", "+Inf finding", "-Inf finding":
		score, _ := strconv.ParseFloat(strings.TrimSuffix(req.Content, " finding"), 64)
		return []governance.Finding{{Flag: governance.FlagMalicious, Severity: 7, Score: score, Reason: "r", RuleID: "test.attack"}}, nil
	case "block":
		r.mu.Lock()
		r.blocked++
		r.mu.Unlock()
		<-ctx.Done()
		r.mu.Lock()
		r.blocked--
		r.seen = ctx.Err().Error()
		r.mu.Unlock()
		return nil, ctx.Err()
	case "hang":
		<-hangRelease
		return nil, nil
	case "release":
		releaseOnce.Do(func() { close(hangRelease) })
		return nil, nil
	case "blocking":
		r.mu.Lock()
		defer r.mu.Unlock()
		return finding(fmt.Sprint(r.blocked)), nil
	case "seen":
		r.mu.Lock()
		defer r.mu.Unlock()
		return finding(r.seen), nil
	case "deadline":
		if d, ok := ctx.Deadline(); ok {
			return finding(time.Until(d).Round(time.Second).String()), nil
		}
		return finding("none"), nil
	}
	if i := strings.Index(req.Content, "attack"); i >= 0 {
		f := finding(fmt.Sprintf("attack in %s from session %s: %s", req.Stage, req.SessionID, req.Metadata["k"]))
		f[0].Location = &governance.Location{Start: i, End: i + 6}
		return f, nil
	}
	return nil, nil
}

// EvaluateScores makes testRule a ScoringRule: its "model" scores a text by its length
// (a hundredth per byte); "bad score" scores NaN, which the SDK must refuse.
func (r *testRule) EvaluateScores(ctx context.Context, req governance.EvaluateRequest) (governance.Evaluation, error) {
	fs, err := r.Evaluate(ctx, req)
	if err != nil {
		return governance.Evaluation{}, err
	}
	score := float64(len(req.Content)) / 100
	if req.Content == "bad score" {
		score = math.NaN()
	}
	return governance.Evaluation{Findings: fs, Scores: map[string]float64{"test.attack": score}}, nil
}

// oldPlugin serves the governance service as a plugin without OpenFastPath does.
type oldPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	impl governance.Rule
}

func (p *oldPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	limitv1.RegisterPluginServer(s, &base.Server{Impl: p.impl})
	limitv1.RegisterGovernanceServer(s, &oldServer{impl: p.impl})
	return nil
}

func (p *oldPlugin) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (any, error) {
	return nil, errors.New("plugin side only")
}

// oldServer implements Evaluate; OpenFastPath stays unimplemented.
type oldServer struct {
	limitv1.UnimplementedGovernanceServer
	impl governance.Rule
}

func (s *oldServer) Evaluate(ctx context.Context, req *limitv1.EvaluateRequest) (*limitv1.EvaluateResponse, error) {
	fs, err := s.impl.Evaluate(ctx, governance.RequestFromProto(req))
	resp := &limitv1.EvaluateResponse{}
	for _, f := range fs {
		resp.Findings = append(resp.Findings, governance.FindingToProto(f))
	}
	return resp, err
}

type launched struct {
	*governance.Client
	plugin *plugin.Client
}

func launch(t testing.TB, mode string, set plugin.PluginSet) launched {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	pc := base.NewClient(base.LaunchConfig{Path: exe, Kind: base.KindGovernance, Plugins: set, Env: []string{serveEnv + "=" + mode}})
	t.Cleanup(pc.Kill)
	raw, err := base.Dispense(t.Context(), pc, base.KindGovernance)
	if err != nil {
		t.Fatal(err)
	}
	c := raw.(*governance.Client)
	t.Cleanup(c.Close)
	if ds := c.Configure(t.Context(), base.ConfigureRequest{Config: []byte("{}"), DataDir: t.TempDir()}); ds.HasErrors() {
		t.Fatal(ds.Err())
	}
	return launched{Client: c, plugin: pc}
}

func both(t *testing.T) map[string]launched {
	t.Helper()
	fast, slow := launch(t, "test", governance.PluginSet()), launch(t, "test", governance.PluginSetGRPCOnly())
	if fast.Transport() != "unix" || fast.FastPathError() != nil {
		t.Fatalf("transport %q (%v), want unix", fast.Transport(), fast.FastPathError())
	}
	if slow.Transport() != "grpc" {
		t.Fatalf("gRPC-only client: transport %q", slow.Transport())
	}
	return map[string]launched{"unix": fast, "grpc": slow}
}

func eval(ctx context.Context, c governance.Rule, content string) ([]governance.Finding, error) {
	return c.Evaluate(ctx, governance.EvaluateRequest{
		Stage: governance.StagePre, SessionID: "s1", Runner: "python", ContentType: "text/plain", Content: content,
		Metadata: map[string]string{"k": "v"},
	})
}

func TestFastPathMatchesGRPC(t *testing.T) {
	got := map[string]string{}
	for name, c := range both(t) {
		var out []string
		for _, content := range []string{"an attack here", "benign", "fail", "beyond", "gave up", "panic", "bad finding"} {
			fs, err := eval(t.Context(), c, content)
			var shown []string
			for _, f := range fs {
				loc := ""
				if f.Location != nil {
					loc = fmt.Sprintf("%+v", *f.Location)
				}
				shown = append(shown, fmt.Sprintf("%s/%d/%g/%s/%s/%s", f.Flag, f.Severity, f.Score, f.Reason, f.RuleID, loc))
			}
			out = append(out, fmt.Sprintf("%q: %v %v", content, shown, err))
			if content == "an attack here" && (err != nil || len(fs) != 1 || fs[0].Location == nil || fs[0].Location.Start != 3 ||
				fs[0].Reason != "attack in pre from session s1: v") {
				t.Fatalf("%s: findings %+v, error %v", name, fs, err)
			}
			if (content == "fail" || content == "panic") && (status.Code(errors.Unwrap(err)) != codes.Internal || errors.Is(err, governance.ErrBeyondLimits)) {
				t.Fatalf("%s: %q: %v, want Internal", name, content, err)
			}
			// Told in the rule's words, without gRPC's framing.
			if content == "panic" && err.Error() != "governance evaluate: plugin panic: rule bug" {
				t.Fatalf("%s: %q: %q, want the plugin's message alone", name, content, err)
			}
			// Content beyond the rule's limits is told apart across the boundary, in the
			// rule's own words.
			if content == "beyond" && (!errors.Is(err, governance.ErrBeyondLimits) || status.Code(err) != codes.OutOfRange ||
				err.Error() != "governance evaluate: content too big for this rule: content beyond the rule's limits") {
				t.Fatalf("%s: %q: %v, want ErrBeyondLimits", name, content, err)
			}
			// A rule whose own context ended says so as gRPC does, not as a rule that broke.
			if content == "gave up" && status.Code(errors.Unwrap(err)) != codes.DeadlineExceeded {
				t.Fatalf("%s: %q: %v, want DeadlineExceeded", name, content, err)
			}
		}
		// A stage the service refuses is refused the same way.
		_, err := c.Evaluate(t.Context(), governance.EvaluateRequest{Stage: 9, Content: "x"})
		out = append(out, fmt.Sprint(err))
		if status.Code(errors.Unwrap(err)) != codes.InvalidArgument {
			t.Fatalf("%s: unknown stage: %v, want InvalidArgument", name, err)
		}
		got[name] = strings.Join(out, "\n")
	}
	if got["unix"] != got["grpc"] {
		t.Fatalf("the transports answer differently:\nfast path:\n%s\ngRPC:\n%s", got["unix"], got["grpc"])
	}
}

func TestFastPathCancelAndDeadline(t *testing.T) {
	for name, c := range both(t) {
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { _, err := eval(ctx, c, "block"); done <- err }()
		waitBlocking(t, c, 1) // cancelled before it reached the rule, it would never be seen
		cancel()
		select {
		case err := <-done:
			if status.Code(errors.Unwrap(err)) != codes.Canceled {
				t.Fatalf("%s: cancelled call: %v, want Canceled", name, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: a cancelled call did not return", name)
		}
		var seen string
		for deadline := time.Now().Add(30 * time.Second); seen == "" && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if fs, err := eval(t.Context(), c, "seen"); err == nil && len(fs) == 1 {
				seen = fs[0].Reason
			}
		}
		if seen != context.Canceled.Error() {
			t.Fatalf("%s: the rule's context ended with %q, want %q", name, seen, context.Canceled)
		}
		dctx, dcancel := context.WithTimeout(t.Context(), 60*time.Second)
		fs, err := eval(dctx, c, "deadline")
		dcancel()
		if err != nil || len(fs) != 1 || fs[0].Reason != "1m0s" {
			t.Fatalf("%s: the rule saw a deadline %+v ahead (%v), want 1m0s", name, fs, err)
		}
	}
}

// TestFastPathHungRuleDoesNotBlockLaterCalls: an evaluation that hangs past its deadline,
// its rule ignoring the context, keeps the plugin's reader of its connection busy (it was
// served inline). The calls made after it must go elsewhere and succeed, not wait behind
// it until their own deadline (each then failed at 10 s while the rule slept).
func TestFastPathHungRuleDoesNotBlockLaterCalls(t *testing.T) {
	c := launch(t, "test", governance.PluginSet())
	defer func() {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		_, _ = eval(ctx, c, "release")
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	_, err := eval(ctx, c, "hang")
	cancel()
	if status.Code(errors.Unwrap(err)) != codes.DeadlineExceeded {
		t.Fatalf("hung evaluation: %v, want DeadlineExceeded", err)
	}
	for i := range 8 {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		fs, err := eval(ctx, c, "an attack")
		cancel()
		if err != nil || len(fs) != 1 {
			t.Fatalf("evaluation %d after the hung one: %+v, %v", i, fs, err)
		}
	}
	if c.Transport() != "unix" {
		t.Errorf("transport %q after a hung call, want unix", c.Transport())
	}
}

// waitBlocking waits until n "block" calls are waiting in the rule: on a loaded machine a
// call takes a while to get there.
func waitBlocking(t *testing.T, c launched, n int) {
	t.Helper()
	want := fmt.Sprint(n)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		fs, err := eval(t.Context(), c, "blocking")
		if err == nil && len(fs) == 1 && fs[0].Reason == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("blocking calls in the rule after 30 s: %+v %v, want %d", fs, err, n)
		}
	}
}

func TestFastPathConcurrentCalls(t *testing.T) {
	c := launch(t, "test", governance.PluginSet())
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 64 {
		wg.Go(func() {
			content := strings.Repeat("x", i*100) + "attack"
			fs, err := eval(t.Context(), c, content)
			if err != nil || len(fs) != 1 || fs[0].Location.Start != i*100 {
				errs <- fmt.Errorf("call %d: %+v %v", i, fs, err)
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
	c := launch(t, "test", governance.PluginSet())
	done := make(chan error)
	go func() { _, err := eval(t.Context(), c, "block"); done <- err }()
	waitBlocking(t, c, 1)
	if err := syscall.Kill(c.plugin.ReattachConfig().Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if status.Code(errors.Unwrap(err)) != codes.Unavailable {
			t.Fatalf("call in flight when the plugin died: %v, want Unavailable", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a call in flight when the plugin died did not return")
	}
}

func TestOldRuleFallsBackToGRPC(t *testing.T) {
	c := launch(t, "old", governance.PluginSet())
	if c.Transport() != "grpc" || status.Code(errors.Unwrap(c.FastPathError())) != codes.Unimplemented {
		t.Fatalf("transport %q, fast path error %v; want grpc after UNIMPLEMENTED", c.Transport(), c.FastPathError())
	}
	if fs, err := eval(t.Context(), c, "attack"); err != nil || len(fs) != 1 {
		t.Fatalf("evaluate over gRPC: %+v %v", fs, err)
	}
}

// TestScoresCrossBothTransports: a ScoringRule's scores reach the host over the fast path
// and over gRPC, flagged or not; a score that is not a finite number is refused; a plugin
// that reports none (built before scores existed) still answers its findings.
func TestScoresCrossBothTransports(t *testing.T) {
	for name, c := range both(t) {
		for _, content := range []string{"an attack here", "benign"} {
			ev, err := c.EvaluateScores(t.Context(), governance.EvaluateRequest{Stage: governance.StagePre, Content: content})
			if want := float64(len(content)) / 100; err != nil || len(ev.Scores) != 1 || ev.Scores["test.attack"] != want {
				t.Fatalf("%s: %q: scores %v (%v), want test.attack %v", name, content, ev.Scores, err, want)
			}
			if flagged := len(ev.Findings) == 1; flagged != strings.Contains(content, "attack") {
				t.Fatalf("%s: %q: findings %+v", name, content, ev.Findings)
			}
		}
		if _, err := c.EvaluateScores(t.Context(), governance.EvaluateRequest{Stage: governance.StagePre, Content: "bad score"}); status.Code(errors.Unwrap(err)) != codes.Internal || !strings.Contains(err.Error(), "finite") {
			t.Fatalf("%s: a NaN score: %v, want Internal naming it", name, err)
		}
	}
	old := launch(t, "old", governance.PluginSet())
	ev, err := old.EvaluateScores(t.Context(), governance.EvaluateRequest{Stage: governance.StagePre, Content: "attack"})
	if err != nil || len(ev.Findings) != 1 || len(ev.Scores) != 0 {
		t.Fatalf("a plugin without scores: %+v %v", ev, err)
	}
}

// TestFindingScoreMustBeFinite: a finding whose score is NaN or infinite is refused by the
// host's client, from a plugin that checks its findings (the SDK's server refuses it
// first) and from one that does not (the client's own check), with an error naming the
// rule and the score; the plugin keeps answering.
func TestFindingScoreMustBeFinite(t *testing.T) {
	clients := both(t)
	clients["old"] = launch(t, "old", governance.PluginSet())
	for name, c := range clients {
		for _, content := range []string{"NaN finding", "+Inf finding", "-Inf finding"} {
			fs, err := eval(t.Context(), c, content)
			score := strings.TrimSuffix(content, " finding")
			want := fmt.Sprintf(`finding of rule "test.attack" has score %s, want a finite number`, score)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: %q: findings %+v, error %v; want an error saying %q", name, content, fs, err, want)
			}
		}
		if fs, err := eval(t.Context(), c, "an attack"); err != nil || len(fs) != 1 {
			t.Fatalf("%s: after the refused findings: %+v %v", name, fs, err)
		}
	}
}

// TestFindingValidate: what Finding.Validate accepts: a known flag, a severity of 1 to
// 10 and any finite score, negative (a z-score below the mean) or zero (none) included.
func TestFindingValidate(t *testing.T) {
	ok := governance.Finding{Flag: governance.FlagAnomaly, Severity: 5, RuleID: "r"}
	for _, tc := range []struct {
		name    string
		edit    func(*governance.Finding)
		wantErr string
	}{
		{"valid", func(*governance.Finding) {}, ""},
		{"score 1", func(f *governance.Finding) { f.Score = 1 }, ""},
		{"negative score", func(f *governance.Finding) { f.Score = -3.5 }, ""},
		{"largest score", func(f *governance.Finding) { f.Score = math.MaxFloat64 }, ""},
		{"NaN score", func(f *governance.Finding) { f.Score = math.NaN() }, "score NaN, want a finite number"},
		{"+Inf score", func(f *governance.Finding) { f.Score = math.Inf(1) }, "score +Inf, want a finite number"},
		{"-Inf score", func(f *governance.Finding) { f.Score = math.Inf(-1) }, "score -Inf, want a finite number"},
		{"unknown flag", func(f *governance.Finding) { f.Flag = "nonsense" }, `unknown flag "nonsense"`},
		{"severity 0", func(f *governance.Finding) { f.Severity = 0 }, "severity 0, want 1-10"},
		{"severity 11", func(f *governance.Finding) { f.Severity = 11 }, "severity 11, want 1-10"},
	} {
		f := ok
		tc.edit(&f)
		err := f.Validate()
		if (err == nil) != (tc.wantErr == "") || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: Validate() = %v, want %q", tc.name, err, tc.wantErr)
		}
	}
}

// BenchmarkEvaluate measures one small Evaluate over each transport.
func BenchmarkEvaluate(b *testing.B) {
	for _, tc := range []struct {
		name string
		set  plugin.PluginSet
	}{{"grpc", governance.PluginSetGRPCOnly()}, {"unix", governance.PluginSet()}} {
		b.Run(tc.name, func(b *testing.B) {
			c := launch(b, "test", tc.set)
			for b.Loop() {
				if _, err := eval(b.Context(), c, "an attack"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
