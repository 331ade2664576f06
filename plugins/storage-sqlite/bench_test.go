package main

import (
	"path/filepath"
	"testing"

	"github.com/limitgraph/limit/sdk/sdktest"
)

// BenchmarkSQLitePlugin compares the SQLite backend in-process with the same backend
// behind the plugin boundary, each on its own durable database (synchronous=FULL):
//
//	go test -run x -bench . ./plugins/storage-sqlite/
func BenchmarkSQLitePlugin(b *testing.B) {
	inProc := openStore(b, map[string]any{"path": filepath.Join(b.TempDir(), "inproc.sqlite")})
	viaPlugin := launchPlugin(b, filepath.Join(b.TempDir(), "plugin.sqlite"))
	sdktest.CompareStorage(b, inProc, viaPlugin)
}
