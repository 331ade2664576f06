package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"
)

// A database file is looked at before bbolt opens it for writing. bbolt trusts the file:
// one cut short, or with a damaged page, makes it read past the end of its memory map or
// fail an assertion, and it does so in a goroutine of its own while it rebuilds the
// free-page list at open (the list is not stored, see openDB), where no recover can
// reach: the process dies with a goroutine dump, and the host can only say the plugin
// went away. So openDB first checks the file's size against its meta page, then walks
// its pages in a read-only open, on this goroutine, with faults turned into panics that
// are recovered: one more pass over the tree, like the one bbolt makes at open, and
// mostly served from the page cache by the time bbolt makes its own. Either finding is a
// *damagedFileError; the file is left as it is. Damage the walk does not read (the keys
// of branch pages, a page id beyond the high-water mark that still lies in the file) can
// still crash bbolt's goroutine.

// The fields of a bbolt meta page (go.etcd.io/bbolt/internal/common.Meta, in the host's
// byte order), after the page header.
const (
	boltPageHeader = 16
	boltMetaSize   = 56 // up to the checksum, which covers the bytes before it
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
)

// boltMeta is what the size check needs of a meta page.
type boltMeta struct {
	pageSize uint32
	pgid     uint64 // the high-water mark: pages in use
	txid     uint64
}

// readMeta decodes the meta page at off, or returns false if it is not a valid one.
func readMeta(f *os.File, off int64) (boltMeta, bool) {
	b := make([]byte, boltPageHeader+boltMetaSize+8)
	if _, err := f.ReadAt(b, off); err != nil {
		return boltMeta{}, false
	}
	m := b[boltPageHeader:]
	h := fnv.New64a()
	_, _ = h.Write(m[:boltMetaSize])
	ne := binary.NativeEndian
	if ne.Uint32(m) != boltMagic || ne.Uint32(m[4:]) != boltVersion || ne.Uint64(m[boltMetaSize:]) != h.Sum64() {
		return boltMeta{}, false
	}
	return boltMeta{pageSize: ne.Uint32(m[8:]), pgid: ne.Uint64(m[40:]), txid: ne.Uint64(m[48:])}, true
}

// checkSize compares an existing file's size with what the meta page bbolt would use (the
// valid one with the later transaction) says it holds: pgid pages. A file without a valid
// meta page is left to bbolt, which says so.
func checkSize(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return nil // bbolt reports it
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return nil
	}
	var metas []boltMeta
	m0, ok0 := readMeta(f, 0)
	if ok0 {
		metas = append(metas, m0)
	}
	// The second meta page follows the first; if the first is damaged, bbolt assumes
	// the OS page size.
	second := int64(os.Getpagesize())
	if ok0 {
		second = int64(m0.pageSize)
	}
	if m1, ok := readMeta(f, second); ok {
		metas = append(metas, m1)
	}
	if len(metas) == 0 {
		return nil
	}
	m := metas[0]
	if len(metas) == 2 && metas[1].txid > m.txid {
		m = metas[1]
	}
	if need := int64(m.pgid) * int64(m.pageSize); fi.Size() < need {
		return &damagedFileError{path: path, truncated: true, size: fi.Size(), need: need, pages: m.pgid, pageSize: m.pageSize}
	}
	return nil
}

// walkPages reads every branch and leaf page of the database at path (the values'
// overflow pages are not read), and checks that each page's keys are in order: bbolt
// asserts that each page it reads is the one it asked for, and the key order is what it
// checks when it rebuilds the free-page list.
//
// The walk reads at most walkBudget's worth: a large database is not read whole at every
// start of the plugin (a restart after a crash waits for it); what it does not reach is
// left to bbolt's own checks as it is read.
func walkPages(path string, db *bolt.DB) error {
	deadline := time.Now().Add(walkBudget)
	err := db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			if err := walkBucket(name, b, deadline); err != nil {
				if errors.Is(err, errWalkBudget) {
					return err
				}
				return &damagedFileError{path: path, cause: err.Error()}
			}
			return nil
		})
	})
	if errors.Is(err, errWalkBudget) {
		return nil
	}
	return err
}

// walkBudget bounds the time walkPages reads for.
const walkBudget = 2 * time.Second

// errWalkBudget ends a walk that ran out of walkBudget.
var errWalkBudget = errors.New("walk budget spent")

func walkBucket(name []byte, b *bolt.Bucket, deadline time.Time) error {
	c := b.Cursor()
	var prev []byte
	n := 0
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if n++; n%4096 == 0 && time.Now().After(deadline) {
			return errWalkBudget
		}
		if prev != nil && bytes.Compare(prev, k) >= 0 {
			return fmt.Errorf("bucket %q: key %q after %q, out of order", name, k, prev)
		}
		prev = k
		if v == nil {
			if child := b.Bucket(k); child != nil {
				if err := walkBucket(k, child, deadline); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// guardDamage runs f, which reads path through bbolt, and turns a panic (a failed bbolt
// assertion, or a fault reading past the memory map, which SetPanicOnFault makes a panic)
// into a *damagedFileError. Only panics on this goroutine are caught.
func guardDamage(path string, f func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = &damagedFileError{path: path, cause: fmt.Sprint(r)}
		}
	}()
	return f()
}

// damagedFileError says a database file cannot be read as the database it claims to be:
// cut short, or with damaged pages.
type damagedFileError struct {
	path      string
	truncated bool
	size      int64 // the file's, when truncated
	need      int64 // what its meta page says it holds
	pages     uint64
	pageSize  uint32
	cause     string // what bbolt ran into, when damaged
}

func (e *damagedFileError) Error() string {
	if e.truncated {
		return fmt.Sprintf("database file %s is truncated: it is %d bytes, but its meta page says it holds %d pages of %d bytes (%d bytes)",
			e.path, e.size, e.pages, e.pageSize, e.need)
	}
	return fmt.Sprintf("database file %s is damaged: %s", e.path, e.cause)
}

// advice says what the operator can do; nothing was changed.
func (e *damagedFileError) advice() string {
	why := "a page of it does not hold what the pages that point to it expect (a failing disk, a bad copy)"
	if e.truncated {
		why = "it was cut short (an interrupted copy or restore, a full disk during a copy, a truncated file)"
	}
	return fmt.Sprintf("bbolt cannot read it safely: %s. The database is not opened, and nothing was changed. "+
		"Restore the file and its -wal files from a backup; or, to start over with an empty database, move the file and its -wal files away.", why)
}
