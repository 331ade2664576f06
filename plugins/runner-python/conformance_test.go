package main

import (
	"context"
	"testing"

	"github.com/limitgraph/limit/sdk/sdktest"
)

// TestConformance runs the SDK's runner conformance suite against the plugin binary.
func TestConformance(t *testing.T) {
	t.Parallel()
	sdktest.RunRunner(t, sdktest.LaunchRunnerFunc(context.Background(), pluginBinary(t), nil, []byte(`{}`), t.TempDir()),
		sdktest.RunnerSuiteConfig{
			Input:      "print('hello from the sandbox')",
			Expect:     "hello from the sandbox",
			ErrorInput: "1/0",
			SlowInput:  "import time; time.sleep(60)",
		})
}
