package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/limitgraph/limit/sdk/storage"
)

// faults lets tests inject failures; every hook may be nil.
type faults struct {
	// write replaces the write of a value into its temporary file.
	write func(f *os.File, b []byte) (int, error)
	// beforeCommit runs once a batch's values and uncommitted journal are written, just
	// before the rename that commits the batch.
	beforeCommit func() error
	// afterCommit runs right after the journal is committed, before any op is applied.
	afterCommit func() error
	// writeWaits runs when a write finds a snapshot running (or waiting to run) and is
	// about to wait for it.
	writeWaits func()
}

// errCrash, returned by a fault hook, makes the store stop where it is, leaving the files
// as a process killed at that point would, so tests can check what the next start does.
var errCrash = errors.New("simulated crash")

// ioErr wraps a file system error with what was being done; a full disk or exhausted
// quota becomes storage.ErrNoSpace.
func (s *store) ioErr(what string, err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: %s: the disk holding %s is full; free some space or move the root to a larger disk: %v",
			storage.ErrNoSpace, what, s.root, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// syncDir fsyncs a directory, making the creation, rename and removal of its entries
// durable.
func (s *store) syncDir(dir string) error {
	if s.noSync {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return s.ioErr("open directory to sync it", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return s.ioErr("sync directory", err)
	}
	return nil
}

// writeTemp writes b to a new synced file in tmp/ and returns its path. On failure it
// leaves nothing behind.
func (s *store) writeTemp(b []byte) (string, error) {
	f, err := os.CreateTemp(filepath.Join(s.root, tmpDirName), "v-*")
	if err != nil {
		return "", s.ioErr("create temporary file", err)
	}
	name := f.Name()
	if s.faults != nil && s.faults.write != nil {
		_, err = s.faults.write(f, b)
	} else {
		_, err = f.Write(b)
	}
	if err == nil && !s.noSync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
		return "", s.ioErr("write value", err)
	}
	return name, nil
}

// mkdirs creates the directories of a key under its namespace directory, as needed, and
// returns the innermost one. It does not sync: see syncChain.
func (s *store) mkdirs(nsDir string, dirs []string) (string, error) {
	cur := nsDir
	for _, d := range dirs {
		cur = filepath.Join(cur, d)
		if err := os.Mkdir(cur, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return "", err
		}
	}
	return cur, nil
}

// syncChain fsyncs the namespace directory and every directory of a key below it. A
// directory may have been created by a concurrent writer that has not synced its parent
// yet, so syncing only what this writer created would not be enough to make its own
// write durable.
func (s *store) syncChain(nsDir string, dirs []string) error {
	cur := nsDir
	if err := s.syncDir(cur); err != nil {
		return err
	}
	for _, d := range dirs {
		cur = filepath.Join(cur, d)
		if err := s.syncDir(cur); err != nil {
			return err
		}
	}
	return nil
}

// pruneDirs removes the directories of a deleted key that became empty, innermost first.
// It is best effort: a directory a concurrent writer just filled stays.
func pruneDirs(nsDir string, dirs []string) {
	for i := len(dirs); i > 0; i-- {
		p := filepath.Join(append([]string{nsDir}, dirs[:i]...)...)
		if syscall.Rmdir(p) != nil {
			return
		}
	}
}

// readNames lists a directory's entry names, unsorted.
func readNames(dir string) ([]string, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return names, nil
}

// ensureNamespace creates a namespace's directory, with the file naming it, unless it is
// known to exist, and makes it durable before any key is written into it.
func (s *store) ensureNamespace(ns string) (string, error) {
	dir := s.nsPath(ns)
	if _, ok := s.nsReady.Load(ns); ok {
		return dir, nil
	}
	s.nsMu.Lock()
	defer s.nsMu.Unlock()
	if _, ok := s.nsReady.Load(ns); ok {
		return dir, nil
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", s.ioErr("create namespace directory", err)
	}
	nameFile := filepath.Join(dir, nsNameFile)
	if _, err := os.Lstat(nameFile); errors.Is(err, fs.ErrNotExist) {
		tmp, err := s.writeTemp([]byte(ns))
		if err != nil {
			return "", err
		}
		if err := os.Rename(tmp, nameFile); err != nil {
			os.Remove(tmp)
			return "", s.ioErr("write namespace name file", err)
		}
	}
	// Sync even a directory found existing: a process that died may have created it
	// without syncing.
	if err := s.syncDir(dir); err != nil {
		return "", err
	}
	if err := s.syncDir(filepath.Dir(dir)); err != nil {
		return "", err
	}
	s.nsReady.Store(ns, struct{}{})
	return dir, nil
}
