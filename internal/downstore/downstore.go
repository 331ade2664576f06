// Package downstore is a storage for tests whose writes fail, while it is down, as those
// of a backend that is down do (storage.ErrUnavailable), or while it is full, as those of
// a backend out of space do (storage.ErrNoSpace); reads go through.
package downstore

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/limitgraph/limit/sdk/storage"
)

// Store wraps a storage; while Down is set, its Put, Delete, Batch and CompareAndSwap
// fail with storage.ErrUnavailable and write nothing; while Full is set, with an error
// that wraps storage.ErrNoSpace, as a plugin's on a full disk.
type Store struct {
	storage.Storage
	Down atomic.Bool
	Full atomic.Bool
}

func (s *Store) fail() error {
	if s.Down.Load() {
		return storage.ErrUnavailable
	}
	if s.Full.Load() {
		return fmt.Errorf("storage batch: %w: the disk holding /data/limit.db is full", storage.ErrNoSpace)
	}
	return nil
}

func (s *Store) Put(ctx context.Context, ns string, k, v []byte) error {
	if err := s.fail(); err != nil {
		return err
	}
	return s.Storage.Put(ctx, ns, k, v)
}

func (s *Store) Delete(ctx context.Context, ns string, k []byte) (bool, error) {
	if err := s.fail(); err != nil {
		return false, err
	}
	return s.Storage.Delete(ctx, ns, k)
}

func (s *Store) Batch(ctx context.Context, ns string, ops []storage.Op) error {
	if err := s.fail(); err != nil {
		return err
	}
	return s.Storage.Batch(ctx, ns, ops)
}

func (s *Store) CompareAndSwap(ctx context.Context, req storage.CASRequest) (storage.CASResult, error) {
	if err := s.fail(); err != nil {
		return storage.CASResult{}, err
	}
	return s.Storage.CompareAndSwap(ctx, req)
}
