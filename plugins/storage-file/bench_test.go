package main

import (
	"testing"

	"github.com/limitgraph/limit/sdk/sdktest"
)

// BenchmarkFilePlugin compares the store in-process with the same store behind the plugin
// boundary, each on a root of its own:
//
//	go test -run '^$' -bench BenchmarkFilePlugin ./plugins/storage-file/
func BenchmarkFilePlugin(b *testing.B) {
	inProc := openStore(b, b.TempDir())
	viaPlugin, _ := launchPlugin(b, b.TempDir())
	sdktest.CompareStorage(b, inProc, viaPlugin)
}
