// Command storage-plugin is an example third-party storage plugin for the LIMIT host,
// written only against the public SDK (github.com/limitgraph/limit/sdk/...). Read it as a
// tutorial: it is short on purpose, and every part of a plugin is in a file of its own.
//
//   - main.go   the entry point: one call to storage.Serve.
//   - config.go the config block: its schema (what the host validates HCL against) and
//     Configure, which reports mistakes as diagnostics naming the attribute at fault.
//   - store.go  the storage.Storage methods: each namespace is a sorted slice of entries
//     in memory, guarded by a sync.RWMutex.
//   - log.go    durability: every write is appended to a log file and fsynced before it is
//     acknowledged; the log is replayed when the plugin starts.
//
// The host starts the plugin, not you: build it with
//
//	go build -o limit-storage-example ./examples/storage-plugin
//
// check it with `limitctl plugin check --kind storage ./limit-storage-example`, and
// declare it in the host's HCL (see README.md).
package main

import (
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/storage"
)

func main() {
	// A plugin logs through hclog on stderr; the host forwards the lines under the
	// plugin's name. storage.Serve blocks until the host stops the plugin, then closes
	// the store, which closes the log file and releases its lock.
	storage.Serve(newStore(base.NewPluginLogger("storage.example")))
}
