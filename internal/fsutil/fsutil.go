// Package fsutil writes the small files the host keeps in its data_dir so that a crash
// leaves either no file or the whole one.
package fsutil

import (
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
