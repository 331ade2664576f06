package main

import (
	"path/filepath"
	"testing"

	"github.com/limitgraph/limit/sdk/sdktest"
)

// BenchmarkBoltPlugin compares the bolt backend in-process with the same backend behind
// the plugin boundary, each on its own durable file (fsync at every commit):
//
//	go test -run x -bench . ./plugins/storage-bolt/
func BenchmarkBoltPlugin(b *testing.B) {
	inProc := openStore(b, map[string]any{"path": filepath.Join(b.TempDir(), "inproc.db"), "no_sync": false})
	viaPlugin := launchPlugin(b, filepath.Join(b.TempDir(), "plugin.db"))
	sdktest.CompareStorage(b, inProc, viaPlugin)
}
