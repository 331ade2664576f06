package main

import (
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
	"strings"
)

// Names of the entries under the root directory.
const (
	// lockName is the file the running plugin holds an exclusive flock on; it holds its pid.
	lockName = "LOCK"
	// journalName is the committed redo journal of a batch being applied.
	journalName = "journal"
	// journalNewName is the journal being written, inside tmpDirName, before its commit.
	journalNewName = "journal.new"
	// tmpDirName holds temporary files; whatever is left there at start is garbage.
	tmpDirName = "tmp"
	// nsDirName holds one directory per namespace.
	nsDirName = "ns"
	// nsNameFile, inside a namespace directory, holds the namespace's raw name, for
	// people looking at the tree and for Snapshot, which lists namespaces by name (the
	// directory's name is a hash). It is durable before any key of the namespace is.
	nsNameFile = "namespace"
)

// Encoding of keys as paths.
const (
	// chunkLen is the length of the hex chunks a key is cut into. It is even, so a chunk
	// boundary never splits a byte, and short enough that "<chunk>.v" fits a 255-byte name.
	chunkLen = 200
	// valueSuffix ends the name of the file holding a value.
	valueSuffix = ".v"
	// dirSuffix ends the name of a directory holding longer keys.
	dirSuffix = ".d"
)

// nsRel returns the directory of a namespace, relative to the root.
func nsRel(ns string) string {
	sum := sha256.Sum256([]byte(ns))
	return filepath.Join(nsDirName, hex.EncodeToString(sum[:]))
}

// keyParts returns the directories (outermost first) and the file name that encode key,
// relative to its namespace directory.
func keyParts(key []byte) (dirs []string, file string) {
	h := hex.EncodeToString(key)
	for len(h) > chunkLen {
		dirs = append(dirs, h[:chunkLen]+dirSuffix)
		h = h[chunkLen:]
	}
	return dirs, h + valueSuffix
}

// keyRel returns the file of key relative to its namespace directory.
func keyRel(key []byte) string {
	dirs, file := keyParts(key)
	return filepath.Join(append(dirs, file)...)
}

// entry is a parsed name found in a namespace directory or one of its subdirectories.
type entry struct {
	name  string
	chunk string
	dir   bool
}

// parseEntry parses a directory entry name. Names the store never creates (the namespace
// name file, anything a person left there) are reported as not ok and ignored.
func parseEntry(name string) (entry, bool) {
	var e entry
	switch {
	case strings.HasSuffix(name, valueSuffix):
		e.chunk = strings.TrimSuffix(name, valueSuffix)
		if len(e.chunk) == 0 || len(e.chunk) > chunkLen || len(e.chunk)%2 != 0 {
			return e, false
		}
	case strings.HasSuffix(name, dirSuffix):
		e.chunk = strings.TrimSuffix(name, dirSuffix)
		e.dir = true
		if len(e.chunk) != chunkLen {
			return e, false
		}
	default:
		return e, false
	}
	for i := 0; i < len(e.chunk); i++ {
		c := e.chunk[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return e, false
		}
	}
	e.name = name
	return e, true
}

// entryLess orders entries by the keys they hold: by chunk text, and for equal chunks the
// value file (the shorter key) before the directory (the keys it is a prefix of).
func entryLess(a, b entry) bool {
	if a.chunk != b.chunk {
		return a.chunk < b.chunk
	}
	return !a.dir && b.dir
}
