package main

import (
	"context"
	"encoding/json"
	"os"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/storage"
)

// servePluginEnv, set to "1", makes the test binary serve the plugin instead of running
// tests, so tests can launch a real plugin process from os.Args[0].
const servePluginEnv = "LIMIT_TEST_SERVE_PLUGIN"

func TestMain(m *testing.M) {
	if os.Getenv(servePluginEnv) == "1" {
		storage.Serve(newStore())
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// rootConfig returns the config JSON naming root.
func rootConfig(root string) json.RawMessage {
	b, err := json.Marshal(map[string]any{"root": root})
	if err != nil {
		panic(err)
	}
	return b
}

// newQuietStore returns an unconfigured store that logs nowhere.
func newQuietStore() *store {
	s := newStore()
	s.logger = hclog.NewNullLogger()
	return s
}

// openStore returns a store configured on root, closed when the test ends.
func openStore(t testing.TB, root string) *store {
	t.Helper()
	s := newQuietStore()
	if ds := s.Configure(context.Background(), base.ConfigureRequest{Config: rootConfig(root)}); ds.HasErrors() {
		t.Fatalf("configure on %s: %v", root, ds.Err())
	}
	t.Cleanup(func() { s.Close() })
	return s
}
