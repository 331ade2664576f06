// Package memstore is an in-memory storage backend. It is the reference implementation the
// conformance suite (sdk/sdktest) is checked against, and a fast backend for host tests.
// Nothing survives the process, so it does not meet the durability promise of
// storage.Storage and must not back a real deployment.
package memstore

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/storage"
)

// Version is the plugin's own version, reported in its Info.
const Version = "1.0.0"

// Store is an in-memory storage.Storage. The zero value is not usable; call New.
type Store struct {
	mu     sync.RWMutex
	spaces map[string]*space
	closed bool
}

// space is one namespace: values by key, and the keys in ascending byte order so a scan
// is a binary search and a walk.
type space struct {
	values map[string][]byte
	keys   []string
}

// New returns an empty store.
func New() *Store {
	return &Store{spaces: make(map[string]*space)}
}

// PluginInfo implements base.Plugin.
func (s *Store) PluginInfo() base.Info {
	return base.Info{
		Name:             "memory",
		Kind:             base.KindStorage,
		Version:          Version,
		ProtocolVersions: []uint32{base.ProtocolVersion},
		Capabilities:     []string{storage.CapBatchNamespaces},
		Description:      "in-memory storage for tests; nothing is kept when the process ends",
	}
}

// ConfigSchema implements base.Plugin: the store takes no configuration.
func (s *Store) ConfigSchema() base.Schema {
	return base.Schema{}
}

// config is the (empty) configuration block; decoding into it rejects any attribute.
type config struct{}

// Configure implements base.Plugin. It accepts only an empty configuration.
func (s *Store) Configure(_ context.Context, req base.ConfigureRequest) base.Diagnostics {
	var c config
	return base.DecodeConfig(req.Config, &c)
}

// Get implements storage.Storage.
func (s *Store) Get(ctx context.Context, namespace string, key []byte) ([]byte, bool, error) {
	if err := check(ctx, namespace, key); err != nil {
		return nil, false, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.usable(); err != nil {
		return nil, false, err
	}
	sp := s.spaces[namespace]
	if sp == nil {
		return nil, false, nil
	}
	v, ok := sp.values[string(key)]
	if !ok {
		return nil, false, nil
	}
	return clone(v), true, nil
}

// Put implements storage.Storage.
func (s *Store) Put(ctx context.Context, namespace string, key, value []byte) error {
	if err := check(ctx, namespace, key); err != nil {
		return err
	}
	if err := storage.ValidateValue(value); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return err
	}
	s.put(namespace, string(key), clone(value))
	return nil
}

// Delete implements storage.Storage.
func (s *Store) Delete(ctx context.Context, namespace string, key []byte) (bool, error) {
	if err := check(ctx, namespace, key); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return false, err
	}
	return s.delete(namespace, string(key)), nil
}

// Scan implements storage.Storage.
func (s *Store) Scan(ctx context.Context, req storage.ScanRequest) (storage.ScanResult, error) {
	if err := ctx.Err(); err != nil {
		return storage.ScanResult{}, err
	}
	if err := storage.NormalizeScan(&req); err != nil {
		return storage.ScanResult{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.usable(); err != nil {
		return storage.ScanResult{}, err
	}
	var res storage.ScanResult
	sp := s.spaces[req.Namespace]
	if sp == nil {
		return res, nil
	}
	prefix := string(req.Prefix)
	// Start at the first key that is both >= prefix and > start_after.
	i, _ := slices.BinarySearch(sp.keys, prefix)
	if after := string(req.StartAfter); len(req.StartAfter) > 0 && after >= prefix {
		j, found := slices.BinarySearch(sp.keys, after)
		if found {
			j++
		}
		i = max(i, j)
	}
	size := 0
	for ; i < len(sp.keys); i++ {
		k := sp.keys[i]
		if !strings.HasPrefix(k, prefix) {
			break
		}
		n := len(k)
		if !req.KeysOnly {
			n += len(sp.values[k])
		}
		// The page ends at the limit, or before an item that would take it past
		// MaxScanBytes (a first item always fits: values are smaller than the cap).
		if len(res.Items) == req.Limit || (len(res.Items) > 0 && size+n > storage.MaxScanBytes) {
			res.More = true
			break
		}
		size += n
		kv := storage.KeyValue{Key: []byte(k)}
		if !req.KeysOnly {
			kv.Value = clone(sp.values[k])
		}
		res.Items = append(res.Items, kv)
	}
	return res, nil
}

// Batch implements storage.Storage. Every op is checked before any is applied, and all are
// applied under one write lock, so readers see all of them or none.
func (s *Store) Batch(ctx context.Context, namespace string, ops []storage.Op) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := storage.ValidateBatch(namespace, ops); err != nil {
		return err
	}
	// Copy the values before taking the lock: the caller may reuse its slices afterwards.
	vals := make([][]byte, len(ops))
	for i, op := range ops {
		if op.Kind == storage.OpPut {
			vals[i] = clone(op.Value)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return err
	}
	if err := storage.CheckAssertionsIn(namespace, ops, func(ns string, key []byte) ([]byte, bool, error) {
		v, ok := s.get(ns, string(key))
		return v, ok, nil
	}); err != nil {
		return err
	}
	for i, op := range ops {
		switch op.Kind {
		case storage.OpPut:
			s.put(op.In(namespace), string(op.Key), vals[i])
		case storage.OpDelete:
			s.delete(op.In(namespace), string(op.Key))
		}
	}
	return nil
}

// CompareAndSwap implements storage.Storage.
func (s *Store) CompareAndSwap(ctx context.Context, req storage.CASRequest) (storage.CASResult, error) {
	if err := ctx.Err(); err != nil {
		return storage.CASResult{}, err
	}
	if err := storage.ValidateCAS(req); err != nil {
		return storage.CASResult{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return storage.CASResult{}, err
	}
	key := string(req.Key)
	var cur []byte
	present := false
	if sp := s.spaces[req.Namespace]; sp != nil {
		cur, present = sp.values[key]
	}
	match := present == req.ExpectPresent && (!present || bytes.Equal(cur, req.Expected))
	if !match {
		res := storage.CASResult{Present: present}
		if present {
			res.Current = clone(cur)
		}
		return res, nil
	}
	if req.Delete {
		s.delete(req.Namespace, key)
		return storage.CASResult{Swapped: true}, nil
	}
	s.put(req.Namespace, key, clone(req.Value))
	return storage.CASResult{Swapped: true, Present: true, Current: clone(req.Value)}, nil
}

// Close drops the data; later calls fail with storage.ErrUnavailable.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.spaces = nil
	return nil
}

// get returns the value at key (not copied); the caller holds a lock.
func (s *Store) get(namespace, key string) ([]byte, bool) {
	sp := s.spaces[namespace]
	if sp == nil {
		return nil, false
	}
	v, ok := sp.values[key]
	return v, ok
}

// put stores value (already copied) at key; the caller holds the write lock.
func (s *Store) put(namespace, key string, value []byte) {
	sp := s.spaces[namespace]
	if sp == nil {
		sp = &space{values: make(map[string][]byte)}
		s.spaces[namespace] = sp
	}
	if _, ok := sp.values[key]; !ok {
		i, _ := slices.BinarySearch(sp.keys, key)
		sp.keys = slices.Insert(sp.keys, i, key)
	}
	sp.values[key] = value
}

// delete removes key and tells whether it existed; the caller holds the write lock.
// An emptied namespace is dropped, so a store does not keep one entry per namespace ever used.
func (s *Store) delete(namespace, key string) bool {
	sp := s.spaces[namespace]
	if sp == nil {
		return false
	}
	if _, ok := sp.values[key]; !ok {
		return false
	}
	delete(sp.values, key)
	i, _ := slices.BinarySearch(sp.keys, key)
	sp.keys = slices.Delete(sp.keys, i, i+1)
	if len(sp.keys) == 0 {
		delete(s.spaces, namespace)
	}
	return true
}

// usable fails once the store is closed; the caller holds a lock.
func (s *Store) usable() error {
	if s.closed {
		return fmt.Errorf("memory storage is closed: %w", storage.ErrUnavailable)
	}
	return nil
}

// check rejects a cancelled call or an invalid namespace or key.
func check(ctx context.Context, namespace string, key []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := storage.ValidateNamespace(namespace); err != nil {
		return err
	}
	return storage.ValidateKey(key)
}

// clone copies b into a new non-nil slice, so an empty value stays distinct from a missing one
// and neither side can change the other's bytes.
func clone(b []byte) []byte {
	out := make([]byte, len(b))
	copy(out, b)
	return out
}

var _ storage.Storage = (*Store)(nil)

// Snapshot implements storage.Snapshotter: it copies the key lists (values are never
// changed in place) under the read lock, then walks the copy without it.
func (s *Store) Snapshot(ctx context.Context, fn func(namespace string, key, value []byte) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	type nsCopy struct {
		name   string
		keys   []string
		values map[string][]byte
	}
	s.mu.RLock()
	if err := s.usable(); err != nil {
		s.mu.RUnlock()
		return err
	}
	spaces := make([]nsCopy, 0, len(s.spaces))
	for name, sp := range s.spaces {
		c := nsCopy{name: name, keys: slices.Clone(sp.keys), values: make(map[string][]byte, len(sp.keys))}
		for _, k := range sp.keys {
			c.values[k] = sp.values[k]
		}
		spaces = append(spaces, c)
	}
	s.mu.RUnlock()
	slices.SortFunc(spaces, func(a, b nsCopy) int { return strings.Compare(a.name, b.name) })
	for _, sp := range spaces {
		for _, k := range sp.keys {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := fn(sp.name, []byte(k), sp.values[k]); err != nil {
				return err
			}
		}
	}
	return nil
}
