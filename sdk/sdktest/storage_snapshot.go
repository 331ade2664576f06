package sdktest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/limitgraph/limit/sdk/storage"
)

// snapItem is one key a snapshot yielded.
type snapItem struct {
	ns       string
	key, val []byte
}

func (it snapItem) String() string { return fmt.Sprintf("%s/%q=%q", it.ns, it.key, it.val) }

// caseSnapshot: a backend that offers storage.Snapshotter yields every key of every
// namespace (deleted ones not), ordered by namespace and then key, with empty values and
// binary keys intact, as of the moment it was called: a put made while it runs, to a
// namespace it has not reached yet, is not in it. A backend without it passes (a plugin
// client of such a plugin returns storage.ErrNoSnapshot); the host then refuses online
// backups.
func caseSnapshot(ctx context.Context, s storage.Storage, n *namespaces) error {
	sn, ok := s.(storage.Snapshotter)
	if !ok {
		return nil
	}
	a, b, late := n.ns(""), n.ns("b"), n.ns("late")
	if err := s.Batch(ctx, a, []storage.Op{
		{Kind: storage.OpPut, Key: []byte("k1"), Value: []byte("one")},
		{Kind: storage.OpPut, Key: []byte("k2"), Value: []byte("two")},
		{Kind: storage.OpPut, Key: []byte("k3"), Value: []byte("three")},
		{Kind: storage.OpPut, Key: []byte{0x00, 0xff}, Value: []byte{0xff, 0x00}},
		{Kind: storage.OpPut, Key: []byte("e"), Value: []byte{}},
	}); err != nil {
		return fmt.Errorf("batch of the snapshot's data: %w", err)
	}
	if err := put(ctx, s, b, []byte("x"), []byte("in b")); err != nil {
		return err
	}
	if _, err := s.Delete(ctx, a, []byte("k2")); err != nil {
		return fmt.Errorf("delete k2: %w", err)
	}
	want := []snapItem{
		{a, []byte{0x00, 0xff}, []byte{0xff, 0x00}},
		{a, []byte("e"), []byte{}},
		{a, []byte("k1"), []byte("one")},
		{a, []byte("k3"), []byte("three")},
		{b, []byte("x"), []byte("in b")},
	}
	var got []snapItem
	wrote := make(chan error, 1)
	started := false
	var last *snapItem
	err := sn.Snapshot(ctx, func(ns string, key, value []byte) error {
		it := snapItem{ns, bytes.Clone(key), bytes.Clone(value)}
		if last != nil && (ns < last.ns || ns == last.ns && bytes.Compare(key, last.key) <= 0) {
			return fmt.Errorf("snapshot out of order: %v after %v", it, *last)
		}
		last = &it
		// Other runs' and the host's namespaces may be there too; only this run's count.
		if !strings.HasPrefix(ns, n.prefix) {
			return nil
		}
		if !started {
			// A write while the snapshot runs, waited for only once it has returned
			// (a backend may hold its writes back until then).
			started = true
			go func() { wrote <- put(ctx, s, late, []byte("after"), []byte("v")) }()
		}
		got = append(got, it)
		return nil
	})
	if started {
		if werr := <-wrote; werr != nil && err == nil {
			err = fmt.Errorf("a put while the snapshot ran: %w", werr)
		}
	}
	switch {
	case errors.Is(err, storage.ErrNoSnapshot):
		return nil
	case err != nil:
		return fmt.Errorf("snapshot: %w", err)
	}
	for _, it := range got {
		if it.ns == late {
			return fmt.Errorf("snapshot holds %v, put after it began: it is not of one point in time", it)
		}
	}
	if len(got) != len(want) {
		return fmt.Errorf("snapshot of this case's namespaces: got %v, want %v", got, want)
	}
	for i := range want {
		if got[i].ns != want[i].ns || !bytes.Equal(got[i].key, want[i].key) || !bytes.Equal(got[i].val, want[i].val) || (got[i].val == nil) {
			return fmt.Errorf("snapshot item %d: got %v, want %v (all: %v)", i, got[i], want[i], got)
		}
	}
	return nil
}
