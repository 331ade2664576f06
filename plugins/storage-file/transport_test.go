package main

import (
	"testing"

	"github.com/limitgraph/limit/sdk/sdktest"
)

// TestConformancePluginGRPC runs the suite through the plugin binary with every call over
// gRPC (TestConformanceThroughPlugin covers the default, the fast path).
func TestConformancePluginGRPC(t *testing.T) {
	s := launchPluginGRPC(t, t.TempDir())
	if got := sdktest.Transport(s); got != "grpc" {
		t.Fatalf("gRPC-only transport %q, want grpc", got)
	}
	sdktest.RunStorage(t, s)
}

// TestDefaultTransportIsFastPath checks that the plugin's client uses the fast path.
func TestDefaultTransportIsFastPath(t *testing.T) {
	s, _ := launchPlugin(t, t.TempDir())
	if got := sdktest.Transport(s); got != "unix" {
		t.Fatalf("default transport %q, want unix (the fast path)", got)
	}
}
