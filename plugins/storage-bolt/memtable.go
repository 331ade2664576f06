package main

import (
	"bytes"

	"github.com/tidwall/btree"
)

// item is one key's latest write in a memtable: a value, or a deletion that hides the
// key's value in the database file.
type item struct {
	ns  string
	key []byte
	val []byte
	del bool
}

func itemLess(a, b item) bool {
	if a.ns != b.ns {
		return a.ns < b.ns
	}
	return bytes.Compare(a.key, b.key) < 0
}

// memtable holds the writes logged since a checkpoint, ordered by namespace and key, until
// the checkpoint copies them into the database file. Its items are never changed once
// set, so readers may hold them after the lock is released.
type memtable struct {
	t     *btree.BTreeG[item]
	bytes int // keys and values set, with replaced ones counted again
}

func newMemtable() *memtable {
	return &memtable{t: btree.NewBTreeGOptions(itemLess, btree.Options{NoLocks: true})}
}

func (m *memtable) set(it item) {
	m.t.Set(it)
	m.bytes += len(it.ns) + len(it.key) + len(it.val) + 32
}

// get returns the item written at key; ok is false when the memtable does not know it.
func (m *memtable) get(ns string, key []byte) (item, bool) {
	return m.t.Get(item{ns: ns, key: key})
}

func (m *memtable) len() int { return m.t.Len() }

// snapshot is a copy of m that later writes to m do not change (copy on write: it shares
// m's nodes until either changes one).
func (m *memtable) snapshot() *memtable {
	return &memtable{t: m.t.Copy(), bytes: m.bytes}
}

// cursor walks one namespace's items in key order from a starting key.
type cursor interface {
	// next returns the next item, or ok false at the end of the namespace.
	next() (it item, ok bool)
	close()
}

type memCursor struct {
	it      btree.IterG[item]
	ns      string
	started bool
	seek    []byte
	done    bool
}

// cursor returns a cursor over ns from the first key ≥ start.
func (m *memtable) cursor(ns string, start []byte) cursor {
	return &memCursor{it: m.t.Iter(), ns: ns, seek: start}
}

func (c *memCursor) next() (item, bool) {
	if c.done {
		return item{}, false
	}
	var ok bool
	if !c.started {
		c.started = true
		ok = c.it.Seek(item{ns: c.ns, key: c.seek})
	} else {
		ok = c.it.Next()
	}
	if !ok || c.it.Item().ns != c.ns {
		c.done = true
		return item{}, false
	}
	return c.it.Item(), true
}

func (c *memCursor) close() { c.it.Release() }

// mergedScan yields a namespace's live keys in order from sources listed newest first:
// where several hold a key, the first one's item wins, and a deletion hides the key.
// It stops when yield returns false.
func mergedScan(srcs []cursor, yield func(key, val []byte) bool) {
	heads := make([]item, len(srcs))
	live := make([]bool, len(srcs))
	for i, c := range srcs {
		heads[i], live[i] = c.next()
	}
	for {
		win := -1
		for i := range srcs {
			if !live[i] {
				continue
			}
			if win < 0 || bytes.Compare(heads[i].key, heads[win].key) < 0 {
				win = i
			}
		}
		if win < 0 {
			return
		}
		cur := heads[win]
		for i := range srcs {
			if live[i] && bytes.Equal(heads[i].key, cur.key) {
				heads[i], live[i] = srcs[i].next()
			}
		}
		if cur.del {
			continue
		}
		if !yield(cur.key, cur.val) {
			return
		}
	}
}

// namespaces adds the namespaces m holds items of (deletions included) to names.
func (m *memtable) namespaces(names map[string]bool) {
	m.t.Scan(func(it item) bool {
		names[it.ns] = true
		return true
	})
}
