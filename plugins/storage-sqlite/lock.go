package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// lockSuffix names the lock file beside the database: path + lockSuffix.
const lockSuffix = ".lock"

// inUseError is an open refused because another process holds the database's lock.
type inUseError struct {
	path   string // the database file
	holder string // "pid N", or "pid unknown" when the lock file does not say
}

func (e *inUseError) Error() string {
	return fmt.Sprintf("database file %s is in use by another process (%s)", e.path, e.holder)
}

// acquireLock takes the exclusive flock on path's lock file without waiting and writes
// this process's pid into it, so a second process gets an error naming the holder. The
// kernel releases the lock when the process dies, however it dies, so a crash leaves a
// stale pid in the file but never a held lock. The lock belongs to the open file
// description: a second open in this same process conflicts too.
func acquireLock(path string) (*os.File, error) {
	lockPath := path + lockSuffix
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file %s: %w", lockPath, err)
	}
	if err := flock(f, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, &inUseError{path: path, holder: lockHolder(f)}
		}
		return nil, fmt.Errorf("lock %s: %w", lockPath, err)
	}
	pid := []byte(strconv.Itoa(os.Getpid()) + "\n")
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt(pid, 0)
	}
	if err != nil {
		_ = releaseLock(f)
		return nil, fmt.Errorf("write pid into %s: %w", lockPath, err)
	}
	return f, nil
}

// flock calls flock(2) on f, retrying when a signal interrupts it.
func flock(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// lockHolder names the process holding the lock, as written in its lock file.
func lockHolder(f *os.File) string {
	buf := make([]byte, 32)
	n, _ := f.ReadAt(buf, 0)
	if pid, err := strconv.Atoi(strings.TrimSpace(string(buf[:n]))); err == nil && pid > 0 {
		return "pid " + strconv.Itoa(pid)
	}
	return "pid unknown"
}

// releaseLock drops the lock and closes the lock file. The file stays: removing it could
// let a process that opened it before the removal lock a file nobody else sees.
func releaseLock(f *os.File) error {
	uerr := flock(f, unix.LOCK_UN)
	if err := f.Close(); err != nil {
		return fmt.Errorf("close lock file: %w", err)
	}
	if uerr != nil {
		return fmt.Errorf("unlock %s: %w", f.Name(), uerr)
	}
	return nil
}
