package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/limitgraph/limit/sdk/storage"
)

// Snapshot implements storage.Snapshotter. The file system offers no view of one point
// in time, so the snapshot holds every write off (s.writes) for the whole walk: a write
// called meanwhile waits, then completes, and is not in the snapshot; reads go on. A
// batch is never half in it: the snapshot starts once the writes under way, batches
// included, are done. Namespaces come in the bytewise order of their names, read from
// their name files (their directories are named by a hash), and keys in the bytewise
// order of the keys their paths encode.
func (s *store) Snapshot(ctx context.Context, fn func(ns string, key, value []byte) error) error {
	s.writes.Lock()
	defer s.writes.Unlock()
	if err := s.rlock(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	spaces, err := s.namespaces()
	if err != nil {
		return err
	}
	for _, sp := range spaces {
		err := s.snapshotKeys(ctx, sp.dir, "", func(key, value []byte) error { return fn(sp.name, key, value) })
		if err != nil {
			return err
		}
	}
	return nil
}

// namespaceDir is a namespace and its directory.
type namespaceDir struct {
	name string
	dir  string
}

// namespaces returns the namespaces that have a directory, sorted by name. A directory
// without its name file is left out when it holds no key (a crash between its creation
// and its name file's; no key is written before the name file is durable), and is an
// error when it does, as is a name file whose name does not hash to its directory.
func (s *store) namespaces() ([]namespaceDir, error) {
	top := filepath.Join(s.root, nsDirName)
	names, err := readNames(top)
	if err != nil {
		return nil, s.ioErr("list namespaces", err)
	}
	var out []namespaceDir
	for _, n := range names {
		if !isHashName(n) {
			continue // not made by the store
		}
		dir := filepath.Join(top, n)
		b, err := os.ReadFile(filepath.Join(dir, nsNameFile))
		if errors.Is(err, fs.ErrNotExist) {
			ents, lerr := keyEntries(dir, nil)
			if lerr != nil {
				return nil, s.ioErr("list keys", lerr)
			}
			if len(ents) == 0 {
				continue
			}
			return nil, fmt.Errorf("namespace directory %s holds keys but not the file %q naming its namespace; restore it from a backup", dir, nsNameFile)
		}
		if err != nil {
			return nil, s.ioErr("read namespace name", err)
		}
		name := string(b)
		if filepath.Base(nsRel(name)) != n {
			return nil, fmt.Errorf("the file %s names namespace %q, whose directory is %s, not %s; restore it from a backup",
				filepath.Join(dir, nsNameFile), name, nsRel(name), filepath.Join(nsDirName, n))
		}
		out = append(out, namespaceDir{name: name, dir: dir})
	}
	slices.SortFunc(out, func(a, b namespaceDir) int { return strings.Compare(a.name, b.name) })
	return out, nil
}

// isHashName tells whether n is the name of a namespace directory: a SHA-256 in
// lowercase hex.
func isHashName(n string) bool {
	if len(n) != 64 {
		return false
	}
	_, err := hex.DecodeString(n)
	return err == nil && strings.ToLower(n) == n
}

// snapshotKeys yields every key below dir, whose entries continue the hex key text acc,
// with its value, in key order. With writes held off nothing changes under it, so a file
// or directory that disappears between its listing and its reading is an error.
func (s *store) snapshotKeys(ctx context.Context, dir, acc string, yield func(key, value []byte) error) error {
	ents, err := keyEntries(dir, nil)
	if err != nil {
		return s.ioErr("list keys", err)
	}
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return err
		}
		full := acc + e.chunk
		path := filepath.Join(dir, e.name)
		if e.dir {
			if err := s.snapshotKeys(ctx, path, full, yield); err != nil {
				return err
			}
			continue
		}
		key, err := hex.DecodeString(full)
		if err != nil {
			return fmt.Errorf("corrupt key file name %s: %w", path, err)
		}
		v, err := os.ReadFile(path)
		if err != nil {
			return s.ioErr("read value", err)
		}
		if err := yield(key, nonNil(v)); err != nil {
			return err
		}
	}
	return nil
}

var _ storage.Snapshotter = (*store)(nil)
