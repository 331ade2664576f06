package main

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/limitgraph/limit/sdk/storage"
)

// maxInstallAttempts bounds the retries of a write whose directory a concurrent delete
// removed after emptying it.
const maxInstallAttempts = 100

// Get implements storage.Storage.
func (s *store) Get(ctx context.Context, ns string, key []byte) ([]byte, bool, error) {
	if err := storage.ValidateNamespace(ns); err != nil {
		return nil, false, err
	}
	if err := storage.ValidateKey(key); err != nil {
		return nil, false, err
	}
	if err := s.rlock(); err != nil {
		return nil, false, err
	}
	defer s.mu.RUnlock()
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	return s.get(ns, key)
}

func (s *store) get(ns string, key []byte) ([]byte, bool, error) {
	b, err := os.ReadFile(filepath.Join(s.nsPath(ns), keyRel(key)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, s.ioErr("read value", err)
	}
	if b == nil {
		b = []byte{}
	}
	return b, true, nil
}

// Put implements storage.Storage.
func (s *store) Put(ctx context.Context, ns string, key, value []byte) error {
	if err := validatePut(ns, key, value); err != nil {
		return err
	}
	defer s.holdWrite()()
	if err := s.rlock(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	m := s.stripe(ns, key)
	m.Lock()
	defer m.Unlock()
	return s.put(ns, key, value)
}

// putFile writes value durably: into a synced temporary file, renamed into place, with the
// directories above it synced. Called with the key's stripe held.
func (s *store) putFile(ns string, key, value []byte) error {
	nsDir, err := s.ensureNamespace(ns)
	if err != nil {
		return err
	}
	tmp, err := s.writeTemp(value)
	if err != nil {
		return err
	}
	dirs, file := keyParts(key)
	for attempt := 1; ; attempt++ {
		var dir string
		dir, err = s.mkdirs(nsDir, dirs)
		if err == nil {
			err = os.Rename(tmp, filepath.Join(dir, file))
		}
		// A concurrent delete may remove a directory it emptied between our mkdir and
		// rename; create it again.
		if err == nil || !errors.Is(err, fs.ErrNotExist) || len(dirs) == 0 || attempt == maxInstallAttempts {
			break
		}
	}
	if err != nil {
		os.Remove(tmp)
		return s.ioErr("move value into place", err)
	}
	return s.syncChain(nsDir, dirs)
}

// Delete implements storage.Storage.
func (s *store) Delete(ctx context.Context, ns string, key []byte) (bool, error) {
	if err := storage.ValidateNamespace(ns); err != nil {
		return false, err
	}
	if err := storage.ValidateKey(key); err != nil {
		return false, err
	}
	defer s.holdWrite()()
	if err := s.rlock(); err != nil {
		return false, err
	}
	defer s.mu.RUnlock()
	if err := ctx.Err(); err != nil {
		return false, err
	}
	m := s.stripe(ns, key)
	m.Lock()
	defer m.Unlock()
	return s.del(ns, key)
}

// del unlinks a key's file and syncs its directory. Called with the key's stripe held.
func (s *store) del(ns string, key []byte) (bool, error) {
	nsDir := s.nsPath(ns)
	dirs, file := keyParts(key)
	dir := filepath.Join(append([]string{nsDir}, dirs...)...)
	err := os.Remove(filepath.Join(dir, file))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, s.ioErr("delete value", err)
	}
	if err := s.syncDir(dir); err != nil {
		return true, err
	}
	pruneDirs(nsDir, dirs)
	return true, nil
}

// CompareAndSwap implements storage.Storage.
func (s *store) CompareAndSwap(ctx context.Context, req storage.CASRequest) (storage.CASResult, error) {
	if err := storage.ValidateCAS(req); err != nil {
		return storage.CASResult{}, err
	}
	defer s.holdWrite()()
	if err := s.rlock(); err != nil {
		return storage.CASResult{}, err
	}
	defer s.mu.RUnlock()
	if err := ctx.Err(); err != nil {
		return storage.CASResult{}, err
	}
	m := s.stripe(req.Namespace, req.Key)
	m.Lock()
	defer m.Unlock()

	cur, present, err := s.get(req.Namespace, req.Key)
	if err != nil {
		return storage.CASResult{}, err
	}
	if present != req.ExpectPresent || (present && !bytes.Equal(cur, req.Expected)) {
		return storage.CASResult{Present: present, Current: cur}, nil
	}
	if req.Delete {
		if present {
			if _, err := s.del(req.Namespace, req.Key); err != nil {
				return storage.CASResult{}, err
			}
		}
		return storage.CASResult{Swapped: true}, nil
	}
	if err := s.put(req.Namespace, req.Key, req.Value); err != nil {
		return storage.CASResult{}, err
	}
	return storage.CASResult{Swapped: true, Present: true, Current: bytes.Clone(nonNil(req.Value))}, nil
}

func validatePut(ns string, key, value []byte) error {
	if err := storage.ValidateNamespace(ns); err != nil {
		return err
	}
	if err := storage.ValidateKey(key); err != nil {
		return err
	}
	return storage.ValidateValue(value)
}

// nonNil turns a nil value into an empty one: both mean "empty value".
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
