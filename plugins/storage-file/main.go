// Command limit-storage-file is the LIMIT storage plugin that keeps one file per key in a
// directory tree.
//
// Names never reach the file system as given: a namespace becomes the directory
// ns/<hex(sha256(namespace))>, and a key becomes its lowercase hex encoding cut into
// 200-character chunks, every chunk but the last a directory "<chunk>.d" and the last a file
// "<chunk>.v" holding the value. No key, however crafted, names a path outside the root, and
// sorted file names give keys in byte order, so prefix scans walk the tree in order.
//
// Every acknowledged write is durable: values go to a temporary file that is synced and
// renamed into place, and the directory is synced after. A batch is made atomic by a redo
// journal that is committed by a rename before any of its operations is applied and replayed
// at the next start if the plugin died in between.
package main

import "github.com/limitgraph/limit/sdk/storage"

func main() {
	storage.Serve(newStore())
}
