// Command limit-storage-sqlite is the LIMIT host's SQLite storage plugin: one database
// file (modernc.org/sqlite, pure Go, no cgo) in write-ahead-log mode with synchronous=FULL,
// a single writer connection that groups concurrent writes into one transaction and one
// fsync, and a pool of reader connections.
//
// Build it as `go build -o limit-storage-sqlite ./plugins/storage-sqlite`; the host starts
// it, it is not meant to be run by hand.
package main

import (
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/storage"
)

func main() {
	s := newStore()
	s.log = base.NewPluginLogger("storage.sqlite")
	// Serve closes the store when the host shuts the plugin down: the writes already
	// taken finish and the write-ahead log is checkpointed before the process exits.
	storage.Serve(s)
}
