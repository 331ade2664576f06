package sdktest

import (
	"testing"

	"github.com/limitgraph/limit/sdk/storage/memstore"
)

// BenchmarkStoragePluginOverhead measures what the plugin boundary costs: memstore
// in-process against memstore served by this test binary as a plugin process, its calls
// over gRPC and over the fast path.
func BenchmarkStoragePluginOverhead(b *testing.B) {
	viaGRPC, stop, err := LaunchStorageGRPC(b.Context(), testBinary(b), []string{serveEnv + "=1"}, []byte("{}"), b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer stop()
	CompareStorageSides(b, Side{"inproc", memstore.New()}, Side{"grpc", viaGRPC}, Side{"unix", launchMemstore(b)})
}
