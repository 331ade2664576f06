package governance

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/limitgraph/limit/host/plugins"
	"github.com/limitgraph/limit/host/trace"
	"github.com/limitgraph/limit/host/trace/tracetest"
	"github.com/limitgraph/limit/internal/testplugins/echo"
	"github.com/limitgraph/limit/sdk/base"
	sdkgov "github.com/limitgraph/limit/sdk/governance"
)

// testPluginEnv turns this test binary into the keyword test rule (the test binary is its
// own plugin).
const testPluginEnv = "LIMIT_GOVERNANCE_TEST_PLUGIN"

func TestMain(m *testing.M) {
	switch os.Getenv(testPluginEnv) {
	case "keyword":
		sdkgov.Serve(echo.Rule{})
		os.Exit(0)
	case "typed":
		sdkgov.Serve(typedRule{})
		os.Exit(0)
	case "sleepy":
		sdkgov.Serve(sleepyRule{})
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// typedRule is the keyword rule saying it reads Python code only (by content type or
// runner); it still flags "forbidden" in whatever it is sent.
type typedRule struct{ echo.Rule }

func (typedRule) Describe(ctx context.Context) ([]sdkgov.RuleDescription, error) {
	ds, err := echo.Rule{}.Describe(ctx)
	for i := range ds {
		ds[i].ContentTypes = []string{"code/python"}
		ds[i].Runners = []string{"python"}
	}
	return ds, err
}

// sleepyRule is the keyword rule taking a minute over "sleep", its context ignored.
type sleepyRule struct{ echo.Rule }

func (r sleepyRule) Evaluate(ctx context.Context, req sdkgov.EvaluateRequest) ([]sdkgov.Finding, error) {
	if req.Content == "sleep" {
		time.Sleep(time.Minute)
	}
	return r.Rule.Evaluate(ctx, req)
}

// TestRuleTimeoutSaysSo: a rule that does not answer within the evaluation's bound is
// reported as such, naming the bound, not with gRPC's "rpc error: code =
// DeadlineExceeded desc = context deadline exceeded"; the code is still there.
func TestRuleTimeoutSaysSo(t *testing.T) {
	e := testEvaluator(t, "sleepy")
	e.timeout = 500 * time.Millisecond
	_, errs := e.Evaluate(context.Background(), sdkgov.EvaluateRequest{Stage: sdkgov.StagePre, Content: "sleep"})
	if len(errs) != 1 {
		t.Fatalf("errors %v, want the rule's", errs)
	}
	if err := errs[0]; err.Error() != `governance rule "sleepy": did not answer within 500ms` || status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("%q (code %v), want it to say the rule did not answer in time", err, status.Code(err))
	}
}

// keywordEvaluator runs the keyword test rule as a plugin process.
func keywordEvaluator(t *testing.T) *Evaluator {
	t.Helper()
	return testEvaluator(t, "keyword")
}

// testEvaluator runs a test rule of this binary ("keyword", "typed") as a plugin process.
func testEvaluator(t *testing.T, kind string) *Evaluator {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	spec := plugins.Spec{Kind: base.KindGovernance, Name: kind, Path: exe, Env: map[string]string{testPluginEnv: kind}, StartTimeout: 10 * time.Second}
	m, err := plugins.StartManaged(ctx, spec, hclog.NewNullLogger(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	e, err := NewEvaluator(ctx, []*plugins.Managed{m})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestFindingLocationOnTrace: a rule's finding with a location becomes a flag whose stage,
// score and location are structured fields, kept as such by the trace store, and whose
// reason still summarizes them.
func TestFindingLocationOnTrace(t *testing.T) {
	ctx := context.Background()
	e := keywordEvaluator(t)
	content := "import os\nprint('hi')\n    lowrisk()\n"
	flags, errs := e.Evaluate(ctx, sdkgov.EvaluateRequest{Stage: sdkgov.StagePre, ContentType: "code/python", Content: content})
	if len(errs) > 0 || len(flags) != 1 {
		t.Fatalf("Evaluate = %+v, %v", flags, errs)
	}
	start := strings.Index(content, "lowrisk")
	want := trace.Location{Line: 3, Column: 5, Start: start, End: start + len("lowrisk")}
	f := flags[0]
	if f.Stage != trace.StagePre || f.Score != 1 || f.Location == nil || *f.Location != want || f.RuleID != "keyword" {
		t.Fatalf("flag %+v (location %+v), want stage pre, score 1, rule keyword, location %+v", f, f.Location, want)
	}
	if !strings.Contains(f.Reason, "line 3:5") || !strings.Contains(f.Reason, "[pre") {
		t.Errorf("reason %q lost its summary", f.Reason)
	}

	_, traces := tracetest.Mem(t)
	rec, err := traces.Create(ctx, trace.NewID(), trace.TraceExecution, json.RawMessage(`{}`), "api")
	if err != nil {
		t.Fatal(err)
	}
	if rec, err = traces.AddFlag(ctx, rec.ID, f, "governance"); err != nil {
		t.Fatal(err)
	}
	got := rec.Flags[0]
	if got.Stage != trace.StagePre || got.Score != 1 || got.Location == nil || *got.Location != want {
		t.Fatalf("flag on the trace %+v (location %+v)", got, got.Location)
	}
	if v, err := traces.Verify(ctx, rec.ID); err != nil || !v.Valid {
		t.Fatalf("Verify = %+v, %v", v, err)
	}

	// The output stage names itself.
	flags, _ = e.Evaluate(ctx, sdkgov.EvaluateRequest{Stage: sdkgov.StagePost, ContentType: "text/output", Content: "a secret"})
	if len(flags) != 1 || flags[0].Stage != trace.StagePost || flags[0].Location == nil || flags[0].Location.Start != 2 {
		t.Fatalf("post-stage flags %+v", flags)
	}
}

// TestRulesReadOnlyWhatTheySay: a rule plugin is sent only the requests one of its rules
// reads, by content type (its media type, in any case) or runner, and every request
// without a content type; the test rule flags "forbidden" in whatever reaches it.
func TestRulesReadOnlyWhatTheySay(t *testing.T) {
	ctx := context.Background()
	e := testEvaluator(t, "typed")
	if got := e.Rules()[0].Rules[0]; !reflect.DeepEqual(got.ContentTypes, []string{"code/python"}) || !reflect.DeepEqual(got.Runners, []string{"python"}) {
		t.Fatalf("the rule's description over the protocol: %+v", got)
	}
	for _, c := range []struct {
		ctype, runner string
		sent          bool
	}{
		{"code/python", "", true},
		{"Code/Python; charset=utf-8", "", true},
		{"text/prompt", "python", true},
		{"", "", true},
		{"text/prompt", "", false},
		{"text/prompt", "llm", false},
		{"code/javascript", "node", false},
	} {
		flags, errs := e.Evaluate(ctx, sdkgov.EvaluateRequest{Stage: sdkgov.StagePre, ContentType: c.ctype, Runner: c.runner, Content: "forbidden"})
		if len(errs) > 0 {
			t.Fatal(errs[0])
		}
		if sent := len(flags) > 0; sent != c.sent {
			t.Errorf("content type %q, runner %q: sent to the rule %v, want %v", c.ctype, c.runner, sent, c.sent)
		}
	}
}

func TestRuleInfoReads(t *testing.T) {
	py := sdkgov.RuleDescription{ContentTypes: []string{"code/python"}, Runners: []string{"python"}}
	text := sdkgov.RuleDescription{ContentTypes: []string{"text/plain", "text/prompt"}}
	for _, c := range []struct {
		rules []sdkgov.RuleDescription
		want  string
	}{
		{nil, "nothing"},
		{[]sdkgov.RuleDescription{{}}, "everything"},
		{[]sdkgov.RuleDescription{py, {}}, "everything"},
		{[]sdkgov.RuleDescription{py, py}, "code/python; the input of runners python"},
		{[]sdkgov.RuleDescription{text, py}, "text/plain, text/prompt, code/python; the input of runners python"},
		{[]sdkgov.RuleDescription{{Runners: []string{"python"}}}, "the input of runners python"},
	} {
		if got := (RuleInfo{Rules: c.rules}).Reads(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.rules, got, c.want)
		}
	}
}

// TestFlagOf: what a rule says that the trace store would refuse is left out of the
// structured fields (the reason keeps it), so that a careless rule cannot fail the write
// of its flag.
func TestFlagOf(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		f     sdkgov.Finding
		stage sdkgov.Stage
		score float64
		loc   *trace.Location
	}{
		{"full", sdkgov.Finding{Score: 0.93, Location: &sdkgov.Location{Line: 4, Column: 7, Start: 12, End: 40}}, sdkgov.StagePre,
			0.93, &trace.Location{Line: 4, Column: 7, Start: 12, End: 40}},
		{"no location", sdkgov.Finding{Score: 0.5}, sdkgov.StagePost, 0.5, nil},
		{"NaN score", sdkgov.Finding{Score: math.NaN()}, sdkgov.StagePre, 0, nil},
		{"infinite score", sdkgov.Finding{Score: math.Inf(1)}, sdkgov.StagePre, 0, nil},
		{"span only", sdkgov.Finding{Location: &sdkgov.Location{Start: 3, End: 9}}, sdkgov.StagePre, 0, &trace.Location{Start: 3, End: 9}},
		{"column without line", sdkgov.Finding{Location: &sdkgov.Location{Column: 2, Start: 3, End: 9}}, sdkgov.StagePre, 0, &trace.Location{Start: 3, End: 9}},
		{"empty location", sdkgov.Finding{Location: &sdkgov.Location{}}, sdkgov.StagePre, 0, nil},
		{"reversed span", sdkgov.Finding{Location: &sdkgov.Location{Line: 1, Start: 9, End: 3}}, sdkgov.StagePre, 0, nil},
		{"negative offset", sdkgov.Finding{Location: &sdkgov.Location{Start: -5, End: 3}}, sdkgov.StagePre, 0, nil},
	} {
		tc.f.Flag, tc.f.Severity, tc.f.RuleID, tc.f.Reason = sdkgov.FlagAnomaly, 2, "r", "why"
		got := flagOf("plugin", tc.f, tc.stage, now)
		want := Flag{Flag: sdkgov.FlagAnomaly, Severity: 2, RuleID: "r", Reason: explain(tc.f, tc.stage), AutoDetected: true, Timestamp: now,
			Stage: tc.stage.String(), Score: tc.score, Location: tc.loc}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: flagOf = %+v (location %+v), want %+v (location %+v)", tc.name, got, got.Location, want, want.Location)
		}
	}
}

// TestFlagOfStorable: a rule's reason too long for the trace store (or made so by the
// bracketed summary), not UTF-8, or a rule id that is missing or not a name, still makes a
// flag the trace store takes, with the rule named: the trace of the execution is written,
// not refused with the whole write.
func TestFlagOfStorable(t *testing.T) {
	ctx := context.Background()
	_, traces := tracetest.Mem(t)
	now := time.Now().UTC()
	for _, tc := range []struct {
		name   string
		reason string
		ruleID string
		want   string // the flag's rule id
	}{
		{"reason at the limit", strings.Repeat("r", trace.MaxReasonSize), "r1", "r1"},
		{"huge reason", strings.Repeat("é", 1<<16), "r1", "r1"},
		{"reason not UTF-8", "bad \xff\xfe byte", "r1", "r1"},
		{"no rule id", "why", "", "keyword"},
		{"rule id with a newline", "why", "a\nb", "keyword"},
		{"rule id too long", "why", strings.Repeat("x", trace.MaxNameSize+1), "keyword"},
	} {
		f := flagOf("keyword", sdkgov.Finding{Flag: sdkgov.FlagUnsafe, Severity: 5, Score: 0.5, Reason: tc.reason, RuleID: tc.ruleID}, sdkgov.StagePost, now)
		if f.RuleID != tc.want || len(f.Reason) > trace.MaxReasonSize || !strings.HasSuffix(f.Reason, "[post, score 0.5]") {
			t.Errorf("%s: flag rule %q, reason of %d bytes ending %q", tc.name, f.RuleID, len(f.Reason), f.Reason[max(0, len(f.Reason)-40):])
		}
		rec, err := traces.Create(ctx, trace.NewID(), trace.TraceExecution, json.RawMessage(`{}`), "api")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := traces.AddFlag(ctx, rec.ID, f, "governance"); err != nil {
			t.Errorf("%s: the trace store refuses the flag: %v", tc.name, err)
		}
	}
}
