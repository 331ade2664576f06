package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/governance"
	"github.com/limitgraph/limit/sdk/sdktest"
)

// serveEnv makes the test binary serve the plugin instead of running tests.
const serveEnv = "LIMIT_TEST_SERVE_PLUGIN"

func TestMain(m *testing.M) {
	if os.Getenv(serveEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// The suite's contents carry no execution figures, so nothing is judged; its malicious
// case does not apply (an anomaly is only an anomaly against a session's history, which
// the tests below build).
var suiteConfig = sdktest.GovernanceSuiteConfig{
	// Generous: the suite's 1 MiB case runs ~8x slower under -race, and CI machines are
	// shared (5.5 s was seen against the 5 s default); speed is measured by the benchmarks.
	CallTimeout: 30 * time.Second,
	Benign:      []string{"hello\n", "42\n", ""},
}

func configured(t testing.TB, cfg string) *rule {
	t.Helper()
	r := newRule()
	if ds := r.Configure(context.Background(), base.ConfigureRequest{Config: json.RawMessage(cfg)}); ds.HasErrors() {
		t.Fatal(ds.Err())
	}
	return r
}

func launch(t testing.TB, cfg string) governance.Rule {
	t.Helper()
	exe, _ := os.Executable()
	r, stop, err := sdktest.LaunchGovernance(context.Background(), exe, []string{serveEnv + "=1"}, []byte(cfg), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return r
}

func TestConformanceInProcess(t *testing.T) {
	sdktest.RunGovernance(t, configured(t, `{}`), suiteConfig)
}
func TestConformancePlugin(t *testing.T) { sdktest.RunGovernance(t, launch(t, `{}`), suiteConfig) }

// exec evaluates one execution of session with the given figures.
func exec(t *testing.T, r governance.Rule, session string, n int, md map[string]string) []governance.Finding {
	t.Helper()
	fs, err := r.Evaluate(context.Background(), governance.EvaluateRequest{
		Stage: governance.StagePost, SessionID: session, TraceID: fmt.Sprintf("%s-%d", session, n),
		ContentType: "text/output", Content: "out", Metadata: md,
	})
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

// normal returns ordinary figures for execution i: durations 95-105 ms, 1-2 KB, 200-220 tokens.
func normal(i int) map[string]string {
	return map[string]string{
		"duration_ms": fmt.Sprint(95 + i%11), "output_bytes": fmt.Sprint(1000 + 37*(i%29)),
		"tokens": fmt.Sprint(200 + i%21), "status": "ok", "runner": "python",
	}
}

// TestSpikes checks that a far value of each figure is flagged with its z-score, and
// ordinary values are not, through the real plugin process.
func TestSpikes(t *testing.T) {
	r := launch(t, `{}`)
	for i := 0; i < 30; i++ {
		if fs := exec(t, r, "s1", i, normal(i)); len(fs) != 0 {
			t.Fatalf("ordinary execution %d flagged: %+v", i, fs)
		}
	}
	for _, tt := range []struct {
		key, value, rule string
		positive         bool
	}{
		{"duration_ms", "5000", "anomaly.duration", true},
		{"output_bytes", "900000", "anomaly.output_size", true},
		{"tokens", "4000", "anomaly.tokens", true},
		{"duration_ms", "1", "anomaly.duration", false},
	} {
		md := normal(3)
		md[tt.key] = tt.value
		fs := exec(t, r, "s1", 100+len(tt.value)+len(tt.key), md)
		i := slices.IndexFunc(fs, func(f governance.Finding) bool { return f.RuleID == tt.rule })
		if i < 0 {
			t.Fatalf("%s=%s: no %s finding in %+v", tt.key, tt.value, tt.rule, fs)
		}
		f := fs[i]
		if f.Flag != governance.FlagAnomaly || (f.Score > 0) != tt.positive || !strings.Contains(f.Reason, "robust z-score") ||
			!strings.Contains(f.Reason, fmt.Sprintf("%.1f", f.Score)) {
			t.Errorf("%s=%s: finding %+v: want the z-score (sign %v) in the reason", tt.key, tt.value, f, tt.positive)
		}
	}
	// Near-normal values still pass after the spikes (the median is robust to them).
	if fs := exec(t, r, "s1", 200, normal(7)); len(fs) != 0 {
		t.Errorf("ordinary execution after spikes flagged: %+v", fs)
	}
}

// TestErrorRate checks that a failure in a session that never fails is flagged (worth a
// look: severity 4), and failures in a session that often fails are not.
func TestErrorRate(t *testing.T) {
	r := configured(t, `{}`)
	for i := 0; i < 20; i++ {
		exec(t, r, "clean", i, normal(i))
	}
	md := normal(1)
	md["status"] = "timeout"
	fs := exec(t, r, "clean", 100, md)
	if len(fs) != 1 || fs[0].RuleID != ruleErrorRate || !strings.Contains(fs[0].Reason, `"timeout"`) || fs[0].Severity != 4 {
		t.Fatalf("first failure after 20 successes: %+v, want one error-rate finding at severity 4", fs)
	}
	for i := 0; i < 20; i++ {
		md := normal(i)
		if i%3 == 0 {
			md["status"] = "error"
		}
		exec(t, r, "flaky", i, md)
	}
	md["status"] = "error"
	if fs := exec(t, r, "flaky", 100, md); len(fs) != 0 {
		t.Errorf("failure in a session failing a third of the time flagged: %+v", fs)
	}
}

// TestFailureBursts checks the severity of failures: one failure, however rare in its
// session, is worth a look (severity 4), never what strict quarantines; a run of them
// the session's rate makes unlikely is severity 5 or more, and says how unlikely.
// Cancelled executions between failures neither break nor dilute a run.
func TestFailureBursts(t *testing.T) {
	ok := func(i int) map[string]string { return normal(i) }
	failed := func(i int) map[string]string {
		md := normal(i)
		md["status"] = "error"
		return md
	}
	cancelled := func(i int) map[string]string {
		md := normal(i)
		md["status"] = "cancelled"
		return md
	}
	// clean is n successful executions; every33 fails the 6th of every 33 (3 %).
	clean := func(n int) []func(int) map[string]string {
		return slices.Repeat([]func(int) map[string]string{ok}, n)
	}
	every33 := func(n int) []func(int) map[string]string {
		out := clean(n)
		for i := 5; i < n; i += 33 {
			out[i] = failed
		}
		return out
	}
	for _, tt := range []struct {
		// cfg is added to the config block.
		name, cfg string
		history   []func(int) map[string]string
		// severity of the last execution's error-rate finding (0: none), and what its
		// reason says.
		severity int
		reason   []string
	}{
		{"a failure after 40 clean executions", "", append(clean(40), failed), 4,
			[]string{"failed 0 of its last 40", "severity 4 at most"}},
		{"a failure after 1000 clean executions", `, "window": 10000`, append(clean(1000), failed), 4,
			[]string{"failed 0 of its last 1000", "severity 4 at most"}},
		{"two failures in a row after 40 clean executions", "", append(clean(40), failed, failed), 4,
			[]string{"failed 1 of its last 41"}},
		{"three failures in a row after 40 clean executions", "", append(clean(40), failed, failed, failed), 5,
			[]string{"3 of the last 3 executions failed", "0 of the 40 executions before them", "probability 1.3e-05, z 4.2"}},
		{"four of five in a session failing 3 %", `, "window": 250`, append(every33(200), failed, ok, failed, failed, failed), 5,
			[]string{"4 of the last 5 executions failed", "fails 3.5 % of the time (6 of the 200 executions before them", "probability 7e-06, z 4.3"}},
		{"cancellations within a run", "", append(clean(40), failed, cancelled, failed, cancelled, cancelled, failed), 5,
			[]string{"3 of the last 3 executions failed"}},
		{"five in a row in a session failing a third of the time", "",
			append(slices.Repeat([]func(int) map[string]string{failed, ok, ok}, 15), failed, failed, failed, failed, failed), 0, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := configured(t, `{"session_graph": false`+tt.cfg+`}`)
			var fs []governance.Finding
			for i, md := range tt.history {
				fs = exec(t, r, "s", i, md(i))
			}
			i := slices.IndexFunc(fs, func(f governance.Finding) bool { return f.RuleID == ruleErrorRate })
			switch {
			case tt.severity == 0 && i >= 0:
				t.Fatalf("flagged: %+v", fs[i])
			case tt.severity == 0:
				return
			case i < 0:
				t.Fatalf("no error-rate finding in %+v, want severity %d", fs, tt.severity)
			}
			f := fs[i]
			if f.Severity != tt.severity {
				t.Errorf("severity %d, want %d (%s)", f.Severity, tt.severity, f.Reason)
			}
			for _, want := range tt.reason {
				if !strings.Contains(f.Reason, want) {
					t.Errorf("reason %q does not say %q", f.Reason, want)
				}
			}
		})
	}
}

// TestTailStatistics checks the binomial tail and its z-score against known values,
// down to probabilities math.Erfcinv cannot resolve.
func TestTailStatistics(t *testing.T) {
	for _, tt := range []struct {
		k, w int
		p    float64
		want float64
	}{
		{1, 1, 0.03, 0.03}, {5, 5, 0.1, 1e-5}, {2, 3, 0.5, 0.5}, {0, 4, 0.2, 1}, {6, 5, 0.2, 0},
		{4, 5, 0.1, 5*1e-4*0.9 + 1e-5}, {10, 10, 1e-4, 1e-40},
	} {
		if got := binomialTail(tt.k, tt.w, tt.p); math.Abs(got-tt.want) > 1e-9*tt.want {
			t.Errorf("binomialTail(%d, %d, %g) = %g, want %g", tt.k, tt.w, tt.p, got, tt.want)
		}
	}
	// Φ⁻¹(1−p), from Python's statistics.NormalDist.
	for _, tt := range []struct{ p, z float64 }{
		{0.5, 0}, {2.326e-4, 3.5000333}, {2.87e-7, 4.9997658}, {1e-10, 6.3613409}, {0.99e-10, 6.3628842},
		{1e-20, 9.2623401}, {1e-40, 13.3109214},
	} {
		if got := tailZ(tt.p); math.Abs(got-tt.z) > 1e-5 {
			t.Errorf("tailZ(%g) = %.7f, want %.7f", tt.p, got, tt.z)
		}
	}
	if z := tailZ(0); z != maxTailZ {
		t.Errorf("tailZ(0) = %g, want %g", z, maxTailZ)
	}
}

// TestTooFewSamples checks that nothing is judged before min_samples executions.
func TestTooFewSamples(t *testing.T) {
	r := configured(t, `{"min_samples": 5}`)
	for i := 0; i < 5; i++ {
		md := normal(i)
		if i == 4 {
			md["duration_ms"] = "99999"
		}
		if fs := exec(t, r, "young", i, md); len(fs) != 0 {
			t.Fatalf("execution %d of a young session flagged: %+v", i, fs)
		}
	}
}

// TestSessionsIndependentAndBounded checks that sessions do not share a baseline, and
// that the least recently used session is forgotten beyond max_sessions.
func TestSessionsIndependentAndBounded(t *testing.T) {
	r := configured(t, `{"max_sessions": 2, "min_samples": 3}`)
	for i := 0; i < 10; i++ {
		exec(t, r, "fast", i, map[string]string{"duration_ms": fmt.Sprint(10 + i%3)})
		exec(t, r, "slow", i, map[string]string{"duration_ms": fmt.Sprint(5000 + 10*(i%3))})
	}
	if fs := exec(t, r, "slow", 50, map[string]string{"duration_ms": "5005"}); len(fs) != 0 {
		t.Errorf("slow session judged against the fast one: %+v", fs)
	}
	if fs := exec(t, r, "fast", 50, map[string]string{"duration_ms": "5005"}); len(fs) != 1 {
		t.Errorf("slow execution in the fast session not flagged: %+v", fs)
	}
	exec(t, r, "third", 0, map[string]string{"duration_ms": "1"}) // evicts "slow" (least recent)
	if n := r.sessionCount(); n != 2 {
		t.Fatalf("%d sessions kept, want 2", n)
	}
	// "slow" starts over: too few samples to judge anything.
	if fs := exec(t, r, "slow", 60, map[string]string{"duration_ms": "1"}); len(fs) != 0 {
		t.Errorf("forgotten session still has a baseline: %+v", fs)
	}
}

// TestRepeatedRequest checks that evaluating the same request again returns the same
// findings and does not count the execution twice.
func TestRepeatedRequest(t *testing.T) {
	r := configured(t, `{}`)
	for i := 0; i < 20; i++ {
		exec(t, r, "s", i, normal(i))
	}
	md := normal(0)
	md["duration_ms"] = "9000"
	a := exec(t, r, "s", 99, md)
	b := exec(t, r, "s", 99, md)
	if len(a) != 1 || !slices.EqualFunc(a, b, func(x, y governance.Finding) bool { return x == y }) {
		t.Fatalf("repeated request: %+v then %+v", a, b)
	}
	if n := r.sessions["s"].Value.(*session).metrics["duration_ms"].len(); n != 21 {
		t.Errorf("history has %d durations, want 21", n)
	}
}

func TestBadMetadata(t *testing.T) {
	r := configured(t, `{}`)
	for _, v := range []string{"fast", "-3", "NaN", "Inf"} {
		_, err := r.Evaluate(context.Background(), governance.EvaluateRequest{Stage: governance.StagePost, SessionID: "s", Metadata: map[string]string{"duration_ms": v}})
		if err == nil || !strings.Contains(err.Error(), "duration_ms") {
			t.Errorf("duration_ms=%q: got %v, want an error naming duration_ms", v, err)
		}
	}
}

func TestConfigDiagnostics(t *testing.T) {
	for _, tt := range []struct {
		config string
		path   []string
	}{
		{`{"window": 2}`, []string{"window"}},
		{`{"min_samples": 2.5}`, []string{"min_samples"}},
		{`{"threshold": 0}`, []string{"threshold"}},
		{`{"max_sessions": 0}`, []string{"max_sessions"}},
		{`{"window": 5, "min_samples": 8}`, []string{"min_samples"}},
		{`{"bogus": 1}`, []string{"bogus"}},
		{`{"graph_nodes": 3}`, []string{"graph_nodes"}},
		{`{"graph_references": 5000}`, []string{"graph_references"}},
		{`{"graph_neighbours": 8, "graph_references": 8}`, []string{"graph_neighbours"}},
		{`{"graph_every": 0}`, []string{"graph_every"}},
		{`{"graph_threshold": -1}`, []string{"graph_threshold"}},
		{`{"session_graph": "yes"}`, []string{"session_graph"}},
	} {
		ds := newRule().Configure(context.Background(), base.ConfigureRequest{Config: json.RawMessage(tt.config)})
		if len(ds) != 1 || ds[0].Severity != base.SeverityError || !slices.Equal(ds[0].Path, tt.path) {
			t.Errorf("config %s: got %v, want one error at %v", tt.config, ds, tt.path)
		}
	}
}

// TestBadMetadataClipped: a huge bad metadata value is quoted in the error clipped, not
// whole.
func TestBadMetadataClipped(t *testing.T) {
	_, err := parse(map[string]string{"duration_ms": strings.Repeat("x", 1<<20)})
	if err == nil || len(err.Error()) > 300 || !strings.Contains(err.Error(), "…") {
		t.Fatalf("error of %d bytes: %.120v", len(err.Error()), err)
	}
	if got := clipValue(strings.Repeat("é", 80)); len(got) > 103 || !strings.HasSuffix(got, "…") || !utf8.ValidString(got) {
		t.Fatalf("clip: %q", got)
	}
}

// TestFlooredMADExplained: against a baseline of identical values (MAD 0) the z-score is
// taken on the least log-scale MAD; the reason says so, so that its z-score can be
// checked from what it shows (0.6745 × (ln(5+2000) − ln(5+100)) / 0.25 = 7.96), not as if
// divided by zero, and says the factor to the median in natural units. A value twice
// the median is not flagged: on a log scale, within a session's ordinary noise.
func TestFlooredMADExplained(t *testing.T) {
	r := configured(t, `{"session_graph": false}`)
	for i := 0; i < 20; i++ {
		exec(t, r, "s", i, map[string]string{"duration_ms": "100"})
	}
	if fs := exec(t, r, "s", 98, map[string]string{"duration_ms": "200"}); len(fs) != 0 {
		t.Fatalf("twice the median flagged: %+v", fs)
	}
	fs := exec(t, r, "s", 99, map[string]string{"duration_ms": "2000"})
	if len(fs) != 1 || fs[0].RuleID != "anomaly.duration" || math.Abs(fs[0].Score-7.96) > 0.01 || fs[0].Severity != 5 {
		t.Fatalf("findings %+v, want one anomaly.duration at z 8.0, severity 5", fs)
	}
	for _, want := range []string{"duration_ms 2000 ms is 20× this session's median 100 ms", "log-scale robust z-score 8.0", "ln(5+duration_ms)", "MAD 0.00, taken as 0.25"} {
		if !strings.Contains(fs[0].Reason, want) {
			t.Errorf("reason %q does not say %q", fs[0].Reason, want)
		}
	}
}

// TestHugeFigures: figures near the largest float64 (a runner reporting nonsense) keep a
// finite median and z-score: a tiny value against them is flagged with a finite score,
// not lost in a NaN.
func TestHugeFigures(t *testing.T) {
	r := configured(t, `{"session_graph": false}`)
	for i := 0; i < 10; i++ {
		exec(t, r, "s", i, map[string]string{"output_bytes": "1.5e308"})
	}
	fs := exec(t, r, "s", 99, map[string]string{"output_bytes": "1"})
	if len(fs) != 1 || math.IsNaN(fs[0].Score) || math.IsInf(fs[0].Score, 0) || fs[0].Score >= 0 ||
		strings.Contains(fs[0].Reason, "NaN") || strings.Contains(fs[0].Reason, "Inf") {
		t.Fatalf("findings %+v, want one finite negative z-score", fs)
	}
	if med := median([]float64{math.MaxFloat64, math.MaxFloat64}); med != math.MaxFloat64 {
		t.Errorf("median of two MaxFloat64 = %v", med)
	}
}

// TestCancelledIsNotAFailure: an execution its client cancelled (a streaming client that
// left) is not a failure of the session's code: it is not flagged for the error rate,
// and neither its status nor its cut-short duration enters the baseline; its output is
// still judged.
func TestCancelledIsNotAFailure(t *testing.T) {
	r := configured(t, `{"session_graph": false}`)
	for i := 0; i < 30; i++ {
		exec(t, r, "s", i, normal(i))
	}
	md := normal(30)
	md["status"], md["duration_ms"] = "cancelled", "1"
	if fs := exec(t, r, "s", 30, md); len(fs) != 0 {
		t.Fatalf("a cancelled execution was flagged: %+v", fs)
	}
	md = normal(31)
	md["status"], md["output_bytes"] = "cancelled", "90000000"
	if fs := exec(t, r, "s", 31, md); len(fs) != 1 || fs[0].RuleID != "anomaly.output_size" {
		t.Fatalf("a cancelled execution's huge output: %+v, want it flagged", fs)
	}
	// Cancellations leave no trace in the baseline: an ordinary execution after many of
	// them is not flagged, and neither is a real failure judged against them.
	for i := 32; i < 60; i++ {
		md := normal(i)
		md["status"], md["duration_ms"] = "cancelled", "2"
		exec(t, r, "s", i, md)
	}
	if fs := exec(t, r, "s", 60, normal(60)); len(fs) != 0 {
		t.Fatalf("an ordinary execution after cancellations: %+v", fs)
	}
}

// TestOutlierSeverityBelowQuarantine: in a session of sub-millisecond, few-byte
// executions (a notebook of print calls), a benign 2 s computation or a 285 kB print
// is an outlier far beyond the least log-scale MAD (z 16 and 21). It is flagged, but below
// severity 8, the default policy's quarantine level: the default policy lets anomaly
// flags merge, and a statistical outlier is a reason to look, not evidence of harm
// (found by a user journey: every slow or long-printing execution was quarantined).
func TestOutlierSeverityBelowQuarantine(t *testing.T) {
	r := configured(t, `{"session_graph": false}`)
	for i := 0; i < 23; i++ {
		exec(t, r, "s", i, map[string]string{"duration_ms": fmt.Sprint(i % 2), "output_bytes": fmt.Sprint(20 + i%30), "status": "ok"})
	}
	for n, md := range []map[string]string{
		{"duration_ms": "2004", "output_bytes": "60", "status": "ok"},
		{"duration_ms": "1", "output_bytes": "285000", "status": "ok"},
	} {
		fs := exec(t, r, "s", 100+n, md)
		if len(fs) != 1 || fs[0].Score < 10 {
			t.Fatalf("outlier %v: findings %+v, want one at z ≥ 10", md, fs)
		}
		if fs[0].Severity >= 8 {
			t.Errorf("outlier %v: severity %d, want below the default policy's quarantine level 8", md, fs[0].Severity)
		}
	}
}
