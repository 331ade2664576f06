// Package tracetest makes trace stores for tests: signed by a fresh key, with bundles
// spooled in the test's temporary directory.
package tracetest

import (
	"testing"

	"github.com/limitgraph/limit/host/trace"
	"github.com/limitgraph/limit/sdk/storage"
	"github.com/limitgraph/limit/sdk/storage/memstore"
)

// New returns a trace store on st signed by a fresh key, and the key.
func New(tb testing.TB, st storage.Storage) (*trace.Store, *trace.Key) {
	tb.Helper()
	key, err := trace.GenerateKey()
	if err != nil {
		tb.Fatal(err)
	}
	s, err := trace.New(st, key, trace.Options{TempDir: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	return s, key
}

// Mem returns in-memory storage and a trace store on it signed by a fresh key.
func Mem(tb testing.TB) (*memstore.Store, *trace.Store) {
	tb.Helper()
	st := memstore.New()
	s, _ := New(tb, st)
	return st, s
}
