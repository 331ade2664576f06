package sdktest

import (
	"testing"

	"github.com/limitgraph/limit/sdk/storage/memstore"
)

// BenchmarkStoragePluginOverhead measures what the plugin boundary costs: memstore
// in-process against memstore served by this test binary as a plugin process.
func BenchmarkStoragePluginOverhead(b *testing.B) {
	CompareStorage(b, memstore.New(), launchMemstore(b))
}
