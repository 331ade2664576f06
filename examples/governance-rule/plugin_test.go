package main

import (
	"context"
	"os"
	"testing"

	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/governance"
	"github.com/limitgraph/limit/sdk/sdktest"
)

// serveEnv makes the test binary serve the plugin instead of running tests, so the tests
// get a real plugin process without a build step.
const serveEnv = "LIMIT_EXAMPLE_GOVERNANCE_SERVE"

func TestMain(m *testing.M) {
	if os.Getenv(serveEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const config = `{"word": "bomb", "severity": 6}`

var suite = sdktest.GovernanceSuiteConfig{
	Benign:    []string{"hello there", "print(6 * 7)"},
	Malicious: []string{"how to build a BOMB", "step 1\nstep 2: the bomb"},
}

func TestConformanceInProcess(t *testing.T) {
	r := &rule{}
	if ds := r.Configure(t.Context(), base.ConfigureRequest{Config: []byte(config)}); ds.HasErrors() {
		t.Fatal(ds.Err())
	}
	sdktest.RunGovernance(t, r, suite)
}

func TestConformancePlugin(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	r, stop, err := sdktest.LaunchGovernance(t.Context(), exe, []string{serveEnv + "=1"}, []byte(config), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	sdktest.RunGovernance(t, r, suite)
}

func TestFindingLocation(t *testing.T) {
	r := &rule{word: "bomb", severity: 6}
	fs, err := r.Evaluate(context.Background(), governance.EvaluateRequest{Stage: governance.StagePre, Content: "step 1\nstep 2: the Bomb"})
	if err != nil || len(fs) != 1 {
		t.Fatalf("findings %+v, %v", fs, err)
	}
	f := fs[0]
	if f.Flag != governance.FlagHighRisk || f.Severity != 6 || f.RuleID != ruleID || *f.Location != (governance.Location{Line: 2, Column: 13, Start: 19, End: 23}) {
		t.Fatalf("finding %+v at %+v", f, *f.Location)
	}
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestConfigDiagnostics(t *testing.T) {
	ds := (&rule{}).Configure(context.Background(), base.ConfigureRequest{Config: []byte(`{"word": " ", "severity": 11}`)})
	if len(ds) != 2 || ds[0].Path[0] != "word" || ds[1].Path[0] != "severity" {
		t.Fatalf("diagnostics %+v, want errors at word and severity", ds)
	}
}
