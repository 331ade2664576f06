package main

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/limitgraph/limit/sdk/sdktest"
	"github.com/limitgraph/limit/sdk/storage"
)

// BenchmarkBoltPlugin compares the bolt backend in-process with the same backend behind
// the plugin boundary, its calls over gRPC and over the fast path, each on its own durable
// file (fsync at every commit):
//
//	go test -run x -bench . ./plugins/storage-bolt/
func BenchmarkBoltPlugin(b *testing.B) {
	inProc := openStore(b, map[string]any{"path": filepath.Join(b.TempDir(), "inproc.db"), "no_sync": false})
	viaGRPC := launchPluginGRPC(b, filepath.Join(b.TempDir(), "grpc.db"))
	viaFast := launchPlugin(b, filepath.Join(b.TempDir(), "plugin.db"))
	sdktest.CompareStorageSides(b, sdktest.Side{Name: "inproc", S: inProc},
		sdktest.Side{Name: "grpc", S: viaGRPC}, sdktest.Side{Name: "unix", S: viaFast})
}

// launchPluginGRPC is launchPlugin with a client that ignores the fast path.
func launchPluginGRPC(t testing.TB, path string) storage.Storage {
	t.Helper()
	cfg := fmt.Appendf(nil, `{"path": %q}`, path)
	s, stop, err := sdktest.LaunchStorageGRPC(context.Background(), testBinary(t), pluginEnv, cfg, filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return s
}
