package main

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/limitgraph/limit/sdk/sdktest"
	"github.com/limitgraph/limit/sdk/storage"
)

// BenchmarkFilePlugin compares the store in-process with the same store behind the plugin
// boundary, its calls over gRPC and over the fast path, each on a root of its own:
//
//	go test -run '^$' -bench BenchmarkFilePlugin ./plugins/storage-file/
func BenchmarkFilePlugin(b *testing.B) {
	inProc := openStore(b, b.TempDir())
	viaGRPC := launchPluginGRPC(b, b.TempDir())
	viaFast, _ := launchPlugin(b, b.TempDir())
	sdktest.CompareStorageSides(b, sdktest.Side{Name: "inproc", S: inProc},
		sdktest.Side{Name: "grpc", S: viaGRPC}, sdktest.Side{Name: "unix", S: viaFast})
}

// launchPluginGRPC is launchPlugin with a client that ignores the fast path.
func launchPluginGRPC(t testing.TB, root string) storage.Storage {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, stop, err := sdktest.LaunchStorageGRPC(ctx, os.Args[0], []string{servePluginEnv + "=1"}, rootConfig(root), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return s
}
