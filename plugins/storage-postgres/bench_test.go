package main

import (
	"context"
	"testing"

	"github.com/limitgraph/limit/sdk/sdktest"
)

// BenchmarkPostgresPlugin compares the PostgreSQL backend in-process with the same
// backend behind the plugin boundary, on one schema of the LIMIT_TEST_POSTGRES_URL
// database:
//
//	go test -run x -bench . ./plugins/storage-postgres/
func BenchmarkPostgresPlugin(b *testing.B) {
	u, _, _ := freshSchema(b)
	inProc := openStore(b, u)
	viaPlugin, stop, err := sdktest.LaunchStorage(context.Background(), testBinary(b),
		[]string{serveEnv + "=1", "DATABASE_URL=" + u}, []byte(`{}`), b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(stop)
	sdktest.CompareStorage(b, inProc, viaPlugin)
}
