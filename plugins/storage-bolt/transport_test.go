package main

import (
	"path/filepath"
	"testing"

	"github.com/limitgraph/limit/sdk/sdktest"
)

// TestConformancePluginTransports runs the suite through the plugin binary over each
// transport, checking that the default one is the fast path.
func TestConformancePluginTransports(t *testing.T) {
	fast := launchPlugin(t, filepath.Join(t.TempDir(), "fast.db"))
	if got := sdktest.Transport(fast); got != "unix" {
		t.Fatalf("default transport %q, want unix (the fast path)", got)
	}
	t.Run("unix", func(t *testing.T) { sdktest.RunStorage(t, fast) })
	slow := launchPluginGRPC(t, filepath.Join(t.TempDir(), "grpc.db"))
	if got := sdktest.Transport(slow); got != "grpc" {
		t.Fatalf("gRPC-only transport %q, want grpc", got)
	}
	t.Run("grpc", func(t *testing.T) { sdktest.RunStorage(t, slow) })
}
