// Package snapcheck helps the storage plugins' tests check what a storage.Snapshotter
// yields: a model of what was written, data sets larger than one page or chunk, and a
// comparison that names the first difference.
package snapcheck

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/limitgraph/limit/sdk/storage"
)

// Item is one key a snapshot yielded, or one the model holds.
type Item struct {
	NS         string
	Key, Value []byte
}

func (it Item) String() string {
	v := it.Value
	if len(v) > 16 {
		v = v[:16]
	}
	return fmt.Sprintf("%q/%x=%x (%d bytes)", it.NS, it.Key, v, len(it.Value))
}

// Model is what a store should hold: namespace → key → value.
type Model map[string]map[string][]byte

// Put records key=value in ns.
func (m Model) Put(ns string, key, value []byte) {
	if m[ns] == nil {
		m[ns] = map[string][]byte{}
	}
	m[ns][string(key)] = bytes.Clone(nonNil(value))
}

// Delete records the deletion of key in ns.
func (m Model) Delete(ns string, key []byte) {
	delete(m[ns], string(key))
	if len(m[ns]) == 0 {
		delete(m, ns)
	}
}

// Items returns the model's keys in the order a snapshot yields them: by namespace, then
// by key, bytewise.
func (m Model) Items() []Item {
	var out []Item
	for _, ns := range slices.Sorted(maps.Keys(m)) {
		for _, k := range slices.Sorted(maps.Keys(m[ns])) {
			out = append(out, Item{NS: ns, Key: []byte(k), Value: m[ns][k]})
		}
	}
	return out
}

// Collect runs s's Snapshot and returns what it yielded, copied. It fails when s offers
// no snapshot (not a Snapshotter, or a plugin client answering storage.ErrNoSnapshot).
// during, if not nil, is called after each item with its position and may write to the
// store; its error stops the snapshot.
func Collect(ctx context.Context, s storage.Storage, during func(i int, it Item) error) ([]Item, error) {
	sn, ok := s.(storage.Snapshotter)
	if !ok {
		return nil, fmt.Errorf("%T does not implement storage.Snapshotter", s)
	}
	var got []Item
	err := sn.Snapshot(ctx, func(ns string, key, value []byte) error {
		if value == nil {
			return fmt.Errorf("snapshot yielded %q/%x with a nil value (want empty)", ns, key)
		}
		it := Item{NS: ns, Key: bytes.Clone(key), Value: bytes.Clone(value)}
		got = append(got, it)
		if during != nil {
			return during(len(got)-1, it)
		}
		return nil
	})
	if errors.Is(err, storage.ErrNoSnapshot) {
		return nil, fmt.Errorf("the backend offers no snapshot: %w", err)
	}
	return got, err
}

// Diff returns nil when got and want hold the same items in the same order, else an
// error naming the first difference.
func Diff(got, want []Item) error {
	for i := range min(len(got), len(want)) {
		g, w := got[i], want[i]
		if g.NS != w.NS || !bytes.Equal(g.Key, w.Key) || !bytes.Equal(g.Value, w.Value) {
			return fmt.Errorf("snapshot item %d of %d: got %v, want %v", i, len(got), g, w)
		}
	}
	switch {
	case len(got) > len(want):
		return fmt.Errorf("snapshot holds %d items, want %d; the first extra one: %v", len(got), len(want), got[len(want)])
	case len(got) < len(want):
		return fmt.Errorf("snapshot holds %d items, want %d; the first missing one: %v", len(got), len(want), want[len(got)])
	}
	return nil
}

// Fill writes n keys of size-byte values into each namespace of nss, in batches of up to
// 100, records them in m and returns the first error. Keys and values depend on seed, so
// a second Fill with another seed overwrites the same keys with other values.
func Fill(ctx context.Context, s storage.Storage, m Model, nss []string, n, size int, seed string) error {
	for _, ns := range nss {
		var ops []storage.Op
		flush := func() error {
			if len(ops) == 0 {
				return nil
			}
			err := s.Batch(ctx, ns, ops)
			ops = nil
			return err
		}
		for i := range n {
			key := fmt.Appendf(nil, "key-%06d", i)
			val := bytes.Repeat([]byte(fmt.Sprintf("%s/%s/%d;", seed, ns, i)), size/8+1)[:size]
			ops = append(ops, storage.Op{Kind: storage.OpPut, Key: key, Value: val})
			m.Put(ns, key, val)
			if len(ops) == 100 {
				if err := flush(); err != nil {
					return fmt.Errorf("fill %q: %w", ns, err)
				}
			}
		}
		if err := flush(); err != nil {
			return fmt.Errorf("fill %q: %w", ns, err)
		}
	}
	return nil
}

// Filter returns the items whose namespace starts with prefix, so a test that shares its
// store with others checks only its own.
func Filter(items []Item, prefix string) []Item {
	var out []Item
	for _, it := range items {
		if strings.HasPrefix(it.NS, prefix) {
			out = append(out, it)
		}
	}
	return out
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
