package main

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/runner"
	"github.com/limitgraph/limit/sdk/sdktest"
)

// serveEnv makes the test binary serve the plugin instead of running tests, so the tests
// get a real plugin process without a build step.
const serveEnv = "LIMIT_EXAMPLE_RUNNER_SERVE"

func TestMain(m *testing.M) {
	if os.Getenv(serveEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// suite is what the conformance suite executes: the slow input is 300 words at 50 ms each.
var suite = sdktest.RunnerSuiteConfig{
	Input:     "hello world",
	Expect:    "HELLO WORLD",
	SlowInput: strings.Repeat("word ", 300),
}

const config = `{"delay": "50ms"}`

func TestConformanceInProcess(t *testing.T) {
	sdktest.RunRunner(t, func() (runner.Runner, func()) {
		u := &upper{}
		if ds := u.Configure(t.Context(), base.ConfigureRequest{Config: []byte(config)}); ds.HasErrors() {
			t.Fatal(ds.Err())
		}
		return u, nil
	}, suite)
}

func TestConformancePlugin(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	sdktest.RunRunner(t, sdktest.LaunchRunnerFunc(t.Context(), exe, []string{serveEnv + "=1"}, []byte(config), t.TempDir()), suite)
}

func TestConfigDiagnostics(t *testing.T) {
	ds := (&upper{}).Configure(context.Background(), base.ConfigureRequest{Config: []byte(`{"delay": "soon"}`)})
	if !ds.HasErrors() || len(ds[0].Path) != 1 || ds[0].Path[0] != "delay" {
		t.Fatalf("diagnostics %+v, want an error at delay", ds)
	}
}
