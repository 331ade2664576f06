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

// Scan implements storage.Storage. It walks the namespace's tree in key order, entering
// only directories that can hold keys with the prefix and after StartAfter, and reads one
// key past the page to tell whether more follow.
func (s *store) Scan(ctx context.Context, req storage.ScanRequest) (storage.ScanResult, error) {
	if err := storage.NormalizeScan(&req); err != nil {
		return storage.ScanResult{}, err
	}
	if err := s.rlock(); err != nil {
		return storage.ScanResult{}, err
	}
	defer s.mu.RUnlock()
	w := &scanner{
		s: s, ctx: ctx, req: req,
		prefix: hex.EncodeToString(req.Prefix),
		after:  hex.EncodeToString(req.StartAfter),
	}
	if err := w.walk(s.nsPath(req.Namespace), ""); err != nil && !errors.Is(err, errPageFull) {
		return storage.ScanResult{}, err
	}
	res := storage.ScanResult{Items: w.items, More: w.cut}
	if len(res.Items) > req.Limit {
		res.Items, res.More = res.Items[:req.Limit], true
	}
	return res, nil
}

// errPageFull stops a walk once it has one item more than the page holds.
var errPageFull = errors.New("page full")

// scanner is the state of one scan. Keys are compared in their hex form, which orders
// them as their bytes do.
type scanner struct {
	s      *store
	ctx    context.Context
	req    storage.ScanRequest
	prefix string
	after  string
	items  []storage.KeyValue
	// size is the bytes of keys and values in items; cut tells the page was cut short at
	// storage.MaxScanBytes.
	size int
	cut  bool
}

// wanted tells whether the entry for hex key text full (a key, or for a directory the
// common start of the keys below it) can hold keys of the scan.
func (w *scanner) wanted(full string, dir bool) bool {
	if dir {
		// Below full are keys strictly longer than full.
		if !strings.HasPrefix(full, w.prefix) && !strings.HasPrefix(w.prefix, full) {
			return false
		}
		// All of them are <= after only if full is before after and not a prefix of it.
		return full >= w.after || strings.HasPrefix(w.after, full)
	}
	return strings.HasPrefix(full, w.prefix) && full > w.after
}

// walk visits dir, whose entries continue the hex key text acc, in key order.
func (w *scanner) walk(dir, acc string) error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	ents, err := keyEntries(dir, func(e entry) bool { return w.wanted(acc+e.chunk, e.dir) })
	if errors.Is(err, fs.ErrNotExist) {
		// No such namespace, or a directory a concurrent delete emptied and removed.
		return nil
	}
	if err != nil {
		return w.s.ioErr("list keys", err)
	}
	for _, e := range ents {
		full := acc + e.chunk
		path := filepath.Join(dir, e.name)
		if e.dir {
			if err := w.walk(path, full); err != nil {
				return err
			}
			continue
		}
		key, err := hex.DecodeString(full)
		if err != nil {
			return fmt.Errorf("corrupt key file name %s: %w", path, err)
		}
		kv := storage.KeyValue{Key: key}
		if !w.req.KeysOnly {
			v, err := os.ReadFile(path)
			if errors.Is(err, fs.ErrNotExist) {
				continue // deleted since the directory was listed
			}
			if err != nil {
				return w.s.ioErr("read value", err)
			}
			kv.Value = nonNil(v)
		}
		// Like the protocol's server, cut a page short once it would hold more than
		// MaxScanBytes; the item that does not fit starts the next page.
		w.size += len(kv.Key) + len(kv.Value)
		if len(w.items) > 0 && w.size > storage.MaxScanBytes {
			w.cut = true
			return errPageFull
		}
		w.items = append(w.items, kv)
		if len(w.items) > w.req.Limit {
			return errPageFull
		}
	}
	return nil
}

// keyEntries lists the entries of dir (a namespace directory or a key directory below
// it) that keep accepts, in the order of the keys they hold (entryLess), which is not the
// order of their names: "<chunk>.d" sorts before "<chunk>.v" by name, while the key of the
// value file is a prefix of those in the directory. Names the store never creates are
// left out.
func keyEntries(dir string, keep func(entry) bool) ([]entry, error) {
	names, err := readNames(dir)
	if err != nil {
		return nil, err
	}
	ents := make([]entry, 0, len(names))
	for _, n := range names {
		if e, ok := parseEntry(n); ok && (keep == nil || keep(e)) {
			ents = append(ents, e)
		}
	}
	slices.SortFunc(ents, func(a, b entry) int {
		switch {
		case entryLess(a, b):
			return -1
		case entryLess(b, a):
			return 1
		}
		return 0
	})
	return ents, nil
}
