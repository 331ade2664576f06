package main

import (
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"

	"github.com/limitgraph/limit/sdk/runner"
	"golang.org/x/sys/unix"
)

// Per-session uids come from [uidBase, uidBase+uidRange), far above the ids of real users
// and system accounts. The session's id picks the first candidate; a lock file held for
// the session's life makes sure two live sessions on the machine never share one, so the
// per-uid process limit (RLIMIT_NPROC) and file ownership stay the session's own.
const (
	uidBase  = runner.SandboxUIDBase
	uidRange = runner.SandboxUIDCount
	// uidTries bounds the search for a free uid.
	uidTries = 4096
)

// uidLockDir holds the lock files; it is root's, as only a root plugin switches uids.
var uidLockDir = "/run/limit-runner-python"

// uidLease is a uid reserved for one session.
type uidLease struct {
	uid  int
	path string
	f    *os.File
}

// leaseUID reserves a free uid for the session.
func leaseUID(sessionID string) (*uidLease, error) {
	if err := os.MkdirAll(uidLockDir, 0o700); err != nil {
		return nil, fmt.Errorf("create uid lock directory: %w", err)
	}
	sweepUIDLocks()
	h := fnv.New32a()
	_, _ = h.Write([]byte(sessionID))
	start := int(h.Sum32() % uidRange)
	for i := 0; i < uidTries; i++ {
		uid := uidBase + (start+i)%uidRange
		l, err := tryLease(uid)
		if err != nil {
			return nil, err
		}
		if l != nil {
			return l, nil
		}
	}
	return nil, fmt.Errorf("no free sandbox uid after %d tries in %d-%d", uidTries, uidBase, uidBase+uidRange-1)
}

// tryLease locks uid's file; it returns nil, nil when another session holds it.
func tryLease(uid int) (*uidLease, error) {
	path := filepath.Join(uidLockDir, fmt.Sprintf("uid-%d.lock", uid))
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("open uid lock %s: %w", path, err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, nil
			}
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		// A releasing holder unlinks the file before unlocking it: if the locked file is no
		// longer the one at path, lock the new one instead.
		var a, b unix.Stat_t
		if unix.Fstat(int(f.Fd()), &a) == nil && unix.Stat(path, &b) == nil && a.Ino == b.Ino && a.Dev == b.Dev {
			return &uidLease{uid: uid, path: path, f: f}, nil
		}
		f.Close()
	}
}

// sweepUIDLocks removes the lock files of plugins that died without releasing their uid:
// a file nobody holds a lock on is stale.
func sweepUIDLocks() {
	ents, err := os.ReadDir(uidLockDir)
	if err != nil {
		return
	}
	for _, e := range ents {
		var uid int
		if _, err := fmt.Sscanf(e.Name(), "uid-%d.lock", &uid); err != nil {
			continue
		}
		if l, err := tryLease(uid); err == nil && l != nil {
			l.release()
		}
	}
}

// release frees the uid.
func (l *uidLease) release() {
	if l == nil || l.f == nil {
		return
	}
	_ = os.Remove(l.path)
	l.f.Close()
	l.f = nil
}

// chownTree changes the owner of dir and everything in it, never following a symbolic
// link: it walks by file descriptors (openat with O_NOFOLLOW), so a link the sandboxed
// code planted cannot redirect it outside dir.
func chownTree(dir string, uid, gid int) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	defer unix.Close(fd)
	if err := unix.Fchown(fd, uid, gid); err != nil {
		return fmt.Errorf("chown %s: %w", dir, err)
	}
	return chownAt(fd, dir, uid, gid, 0)
}

func chownAt(dirfd int, name string, uid, gid, depth int) error {
	if depth > 256 {
		return fmt.Errorf("%s: directory tree too deep", name)
	}
	d := os.NewFile(uintptr(mustDup(dirfd)), name)
	if d == nil {
		return fmt.Errorf("dup %s", name)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return fmt.Errorf("list %s: %w", name, err)
	}
	var errs []error
	for _, n := range names {
		if err := unix.Fchownat(dirfd, n, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("chown %s/%s: %w", name, n, err))
			}
			continue
		}
		sub, err := unix.Openat(dirfd, n, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			continue // not a directory (or gone)
		}
		errs = append(errs, chownAt(sub, name+"/"+n, uid, gid, depth+1))
		unix.Close(sub)
	}
	return errors.Join(errs...)
}

func mustDup(fd int) int {
	n, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	return n
}
