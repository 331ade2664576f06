// Command limit-storage-bolt is the LIMIT host's default storage plugin: an embedded,
// durable key-value store on bbolt (go.etcd.io/bbolt), one bucket per namespace, with
// concurrent writes grouped into shared transactions so they share one fsync.
//
// Build it as `go build -o limit-storage-bolt ./plugins/storage-bolt`; the host starts
// it, it is not meant to be run by hand.
package main

import (
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/storage"
)

func main() {
	s := newStore()
	s.log = base.NewPluginLogger("storage.bolt")
	// Serve closes the store when the host shuts the plugin down: the writes already
	// taken finish and the file's lock is released before the process exits.
	storage.Serve(s)
}
