package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// acquireLock takes the exclusive flock on root/LOCK without waiting and writes this
// process's pid into the file, so a second process gets an error naming the holder. The
// kernel releases the lock when the process dies, however it dies.
func acquireLock(root string) (*os.File, error) {
	path := filepath.Join(root, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, inUseError(root, f)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	pid := []byte(strconv.Itoa(os.Getpid()) + "\n")
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt(pid, 0)
	}
	if err != nil {
		releaseLock(f)
		return nil, fmt.Errorf("write pid into %s: %w", path, err)
	}
	return f, nil
}

// probeLock reports an error if another process holds root's lock, without creating the
// lock file or keeping the lock.
func probeLock(root string) error {
	f, err := os.Open(filepath.Join(root, lockName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open lock file: %w", err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return inUseError(root, f)
		}
		return fmt.Errorf("probe lock of %s: %w", root, err)
	}
	return syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}

// inUseError names the process holding root, as written in its lock file.
func inUseError(root string, f *os.File) error {
	holder := "pid unknown"
	buf := make([]byte, 32)
	n, _ := f.ReadAt(buf, 0)
	if pid, err := strconv.Atoi(strings.TrimSpace(string(buf[:n]))); err == nil {
		holder = "pid " + strconv.Itoa(pid)
	}
	return fmt.Errorf("root %s is in use by another process (%s); stop that process or configure another root", root, holder)
}

// releaseLock drops the lock and closes the lock file.
func releaseLock(f *os.File) error {
	uerr := syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	if err := f.Close(); err != nil {
		return fmt.Errorf("close lock file: %w", err)
	}
	if uerr != nil {
		return fmt.Errorf("unlock root: %w", uerr)
	}
	return nil
}
