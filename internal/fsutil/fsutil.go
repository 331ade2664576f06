// Package fsutil writes the small files the host keeps in its data_dir so that a crash
// leaves either no file or the whole one.
package fsutil

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// CreateSynced creates the file path holding data, with mode perm, whole or not at all: a
// temporary file beside it is written, synced and linked to path, then the folder is
// synced. If path exists already (another process created it first), it is left as it is
// and the error wraps fs.ErrExist.
func CreateSynced(path string, data []byte, perm fs.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		return fmt.Errorf("install %s: %w", path, err)
	}
	// Make the new directory entry durable before the file is relied on.
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// CheckCreatable reports whether the directory dir exists or can be created (with its
// missing parents), without leaving anything behind: for a configuration's check before
// anything is created. The closest existing ancestor must be a directory in which a
// directory can really be made; a probe directory is made there and removed, since
// permission bits alone do not tell (root may write everywhere but /proc, a read-only
// mount, …).
func CheckCreatable(dir string) error {
	fi, err := os.Stat(dir)
	if err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s exists and is not a directory", dir)
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	anc := dir
	for {
		parent := filepath.Dir(anc)
		if parent == anc {
			return fmt.Errorf("no existing ancestor of %s", dir)
		}
		anc = parent
		afi, err := os.Stat(anc)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if !afi.IsDir() {
			return fmt.Errorf("cannot create %s: %s is not a directory", dir, anc)
		}
		probe, err := os.MkdirTemp(anc, ".limit-check-")
		if err != nil {
			if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
				err = pe.Err
			}
			return fmt.Errorf("cannot create %s: no directory can be made in %s (%w)", dir, anc, err)
		}
		return os.Remove(probe)
	}
}
