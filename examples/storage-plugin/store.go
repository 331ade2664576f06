package main

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/limitgraph/limit/sdk/storage"
)

// Store implements storage.Storage. Every namespace is a slice of entries sorted by key, so
// a Get is a binary search and a Scan is a binary search followed by a walk. Writes go to
// the log first and to memory once they are durable.
//
// Two locks: writeMu orders the writers, so the log and memory see writes in the same order
// and a compare-and-swap can read and write without another writer in between; mu guards
// the in-memory data and is held only briefly, so readers never wait for an fsync.
type Store struct {
	logger hclog.Logger

	writeMu sync.Mutex
	log     *appendLog // nil until Configure; guarded by writeMu (and mu for the nil check)

	mu     sync.RWMutex
	spaces map[string][]entry
	closed bool
}

// entry is one key and its value. Keys are strings, so they compare byte-wise, which is
// the order the protocol asks scans to use.
type entry struct {
	key   string
	value []byte
}

// newStore returns an empty store; Configure opens its log.
func newStore(logger hclog.Logger) *Store {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	return &Store{logger: logger, spaces: map[string][]entry{}}
}

// readable fails when the store is not configured or closed; the caller holds mu.
func (s *Store) readable() error {
	switch {
	case s.closed:
		return fmt.Errorf("example storage is closed: %w", storage.ErrUnavailable)
	case s.log == nil:
		return fmt.Errorf("example storage is not configured yet: %w", storage.ErrUnavailable)
	}
	return nil
}

// find returns the index of key in a sorted namespace, or where it would be inserted.
func find(es []entry, key string) (int, bool) {
	return slices.BinarySearchFunc(es, key, func(e entry, k string) int { return strings.Compare(e.key, k) })
}

// lookup returns the value at key and whether it exists; the caller holds mu.
func (s *Store) lookup(ns string, key []byte) ([]byte, bool) {
	es := s.spaces[ns]
	if i, ok := find(es, string(key)); ok {
		return es[i].value, true
	}
	return nil, false
}

// apply changes memory by ops, which the log already holds; the caller holds mu for
// writing. It is also how the log is replayed at start.
func (s *Store) apply(ns string, ops []storage.Op) {
	es := s.spaces[ns]
	for _, op := range ops {
		i, ok := find(es, string(op.Key))
		switch {
		case op.Kind == storage.OpPut && ok:
			es[i].value = bytes.Clone(op.Value)
		case op.Kind == storage.OpPut:
			es = slices.Insert(es, i, entry{key: string(op.Key), value: bytes.Clone(op.Value)})
		case op.Kind == storage.OpDelete && ok:
			es = slices.Delete(es, i, i+1)
		}
	}
	if len(es) == 0 {
		delete(s.spaces, ns) // keep no trace of emptied namespaces
	} else {
		s.spaces[ns] = es
	}
}

// write makes the ops that decide returns durable, then visible. decide runs with writeMu
// held, so what it reads cannot change before the ops are applied: that is what makes
// Delete's answer and compare-and-swap exact. It returns no ops when nothing is to be written.
func (s *Store) write(ctx context.Context, ns string, decide func() []storage.Op) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.RLock()
	err := s.readable()
	s.mu.RUnlock()
	if err != nil {
		return err
	}
	ops := decide()
	if len(ops) == 0 {
		return nil
	}
	if err := s.log.append(ns, ops); err != nil {
		return err
	}
	s.mu.Lock()
	s.apply(ns, ops)
	s.mu.Unlock()
	return nil
}

// Get implements storage.Storage.
func (s *Store) Get(ctx context.Context, ns string, key []byte) ([]byte, bool, error) {
	if err := checkKey(ctx, ns, key); err != nil {
		return nil, false, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.readable(); err != nil {
		return nil, false, err
	}
	v, ok := s.lookup(ns, key)
	if !ok {
		return nil, false, nil
	}
	// The caller owns what it gets: hand out a copy, never the stored slice (and a
	// non-nil one, so an empty value is not mistaken for a missing key).
	return append([]byte{}, v...), true, nil
}

// Put implements storage.Storage.
func (s *Store) Put(ctx context.Context, ns string, key, value []byte) error {
	if err := checkKey(ctx, ns, key); err != nil {
		return err
	}
	if err := storage.ValidateValue(value); err != nil {
		return err
	}
	return s.write(ctx, ns, func() []storage.Op {
		return []storage.Op{{Kind: storage.OpPut, Key: key, Value: value}}
	})
}

// Delete implements storage.Storage. Deleting a missing key writes nothing.
func (s *Store) Delete(ctx context.Context, ns string, key []byte) (bool, error) {
	if err := checkKey(ctx, ns, key); err != nil {
		return false, err
	}
	existed := false
	err := s.write(ctx, ns, func() []storage.Op {
		s.mu.RLock()
		_, existed = s.lookup(ns, key)
		s.mu.RUnlock()
		if !existed {
			return nil
		}
		return []storage.Op{{Kind: storage.OpDelete, Key: key}}
	})
	return existed && err == nil, err
}

// Batch implements storage.Storage. The whole batch is one log record and is applied
// under one lock, so after a crash and to every reader it is all there or not at all.
func (s *Store) Batch(ctx context.Context, ns string, ops []storage.Op) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := storage.ValidateBatch(ns, ops); err != nil {
		return err
	}
	var condErr error
	err := s.write(ctx, ns, func() []storage.Op {
		// Assertions are checked against the state before the batch; only the writes
		// go to the log.
		s.mu.RLock()
		condErr = storage.CheckAssertions(ops, func(key []byte) ([]byte, bool, error) {
			v, ok := s.lookup(ns, key)
			return v, ok, nil
		})
		s.mu.RUnlock()
		if condErr != nil {
			return nil
		}
		writes := make([]storage.Op, 0, len(ops))
		for _, op := range ops {
			if !op.IsAssertion() {
				writes = append(writes, op)
			}
		}
		return writes
	})
	if err != nil {
		return err
	}
	return condErr
}

// CompareAndSwap implements storage.Storage.
func (s *Store) CompareAndSwap(ctx context.Context, req storage.CASRequest) (storage.CASResult, error) {
	if err := checkKey(ctx, req.Namespace, req.Key); err != nil {
		return storage.CASResult{}, err
	}
	if err := storage.ValidateValue(req.Value); err != nil {
		return storage.CASResult{}, err
	}
	var res storage.CASResult
	err := s.write(ctx, req.Namespace, func() []storage.Op {
		s.mu.RLock()
		cur, present := s.lookup(req.Namespace, req.Key)
		s.mu.RUnlock()
		if present != req.ExpectPresent || (present && !bytes.Equal(cur, req.Expected)) {
			// No swap: report what the key holds now.
			res = storage.CASResult{Present: present}
			if present {
				res.Current = bytes.Clone(cur)
			}
			return nil
		}
		res.Swapped = true
		if req.Delete {
			return []storage.Op{{Kind: storage.OpDelete, Key: req.Key}}
		}
		res.Present, res.Current = true, append([]byte{}, req.Value...)
		return []storage.Op{{Kind: storage.OpPut, Key: req.Key, Value: req.Value}}
	})
	if err != nil {
		return storage.CASResult{}, err
	}
	return res, nil
}

// Scan implements storage.Storage: keys with the prefix, after StartAfter, in order, at
// most Limit of them and at most storage.MaxScanBytes of keys and values per page.
func (s *Store) Scan(ctx context.Context, req storage.ScanRequest) (storage.ScanResult, error) {
	if err := ctx.Err(); err != nil {
		return storage.ScanResult{}, err
	}
	if err := storage.NormalizeScan(&req); err != nil { // also applies the default limit
		return storage.ScanResult{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.readable(); err != nil {
		return storage.ScanResult{}, err
	}
	es := s.spaces[req.Namespace]
	prefix := string(req.Prefix)
	// Start at the first key that is >= prefix and > start_after.
	i, _ := find(es, prefix)
	if len(req.StartAfter) > 0 {
		j, found := find(es, string(req.StartAfter))
		if found {
			j++
		}
		i = max(i, j)
	}
	var res storage.ScanResult
	size := 0
	for ; i < len(es) && strings.HasPrefix(es[i].key, prefix); i++ {
		n := len(es[i].key)
		if !req.KeysOnly {
			n += len(es[i].value)
		}
		// A full page says More; so does one that this item would take past the byte
		// cap (the first item always fits, since a value is smaller than the cap).
		if len(res.Items) == req.Limit || (len(res.Items) > 0 && size+n > storage.MaxScanBytes) {
			res.More = true
			break
		}
		size += n
		kv := storage.KeyValue{Key: []byte(es[i].key)}
		if !req.KeysOnly {
			kv.Value = append([]byte{}, es[i].value...)
		}
		res.Items = append(res.Items, kv)
	}
	return res, nil
}

// Close implements storage.Storage: it waits for the write in progress, closes the log
// (releasing its lock, so another process may open it) and refuses every later call.
func (s *Store) Close() error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.spaces = nil
	if s.log == nil {
		return nil
	}
	return s.log.close()
}

// checkKey rejects a cancelled call and a namespace or key the protocol does not allow.
func checkKey(ctx context.Context, ns string, key []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := storage.ValidateNamespace(ns); err != nil {
		return err
	}
	return storage.ValidateKey(key)
}

// The compiler checks that Store implements the whole interface.
var _ storage.Storage = (*Store)(nil)
