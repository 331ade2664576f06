package daemon

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/limitgraph/limit/host/execution"
	"github.com/limitgraph/limit/internal/clip"
	"github.com/limitgraph/limit/internal/fsutil"
)

// Files limitd keeps in its data_dir for itself.
const (
	// lockFile holds the pid of the limitd using the data_dir, under an exclusive flock.
	lockFile = "limitd.lock"
	// nodeFile names this host in the records it shares with other hosts.
	nodeFile = "node_id"
)

// ErrDataDirInUse reports a data_dir another limitd holds.
var ErrDataDirInUse = errors.New("data_dir is in use by another limitd")

// dirLock is the exclusive hold of a data_dir.
type dirLock struct{ f *os.File }

// lockDataDir takes the exclusive flock on dir's lock file without waiting and writes this
// process's pid into it, so that a second limitd on the same data_dir stops at once with
// the holder's pid, instead of sharing the host's key, runner folders and node identity
// (or, on the bbolt backend, waiting for the database file's lock). The kernel drops the
// lock when the process ends, however it ends; the file is opened close-on-exec, so
// plugins do not inherit it.
func lockDataDir(dir string) (*dirLock, error) {
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open the lock file: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		defer f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			holder := "another process"
			b := make([]byte, 32)
			if n, _ := f.ReadAt(b, 0); n > 0 {
				if pid, perr := strconv.Atoi(strings.TrimSpace(string(b[:n]))); perr == nil && pid > 0 {
					holder = "pid " + strconv.Itoa(pid)
				}
			}
			return nil, fmt.Errorf("%w (%s holds %s): stop it first, or give this one another data_dir", ErrDataDirInUse, holder, path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, fmt.Errorf("write the pid into %s: %w", path, err)
	}
	if _, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("write the pid into %s: %w", path, err)
	}
	return &dirLock{f: f}, nil
}

// release gives the data_dir up. The file stays, so its path never changes hands while
// another limitd waits to open it.
func (l *dirLock) release() {
	if l == nil || l.f == nil {
		return
	}
	_ = l.f.Truncate(0)
	_ = l.f.Close() // closing the last descriptor drops the flock
	l.f = nil
}

// nodeID returns the name this host goes by in records other hosts may read (a session's
// owner_node, the markers of its running executions): kept in dir's node_id file, made
// at the first start as the machine's host name and eight random hex digits. Two limitd
// on one machine that share a database therefore never take each other's markers for
// their own (the data_dir lock keeps two from sharing one data_dir), and a host keeps its
// name when the machine is renamed.
func nodeID(dir string) (string, error) {
	path := filepath.Join(dir, nodeFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		id := strings.TrimSpace(string(b))
		if !execution.ValidNode(id) {
			return "", fmt.Errorf("%s does not hold a node id (letters, digits, '.', '_' and '-', at most 128): %q; remove it and limitd makes a new one, but then executions the last run left running are not settled", path, clip.Marked(id, 64))
		}
		return id, nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	host, _ := os.Hostname()
	host = strings.Map(func(r rune) rune {
		if r < 128 && (r == '.' || r == '_' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return r
		}
		return '-'
	}, host)
	host = strings.TrimLeft(host, ".-_")
	if len(host) > 100 {
		host = host[:100]
	}
	if host == "" {
		host = "limitd"
	}
	var r [4]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", err
	}
	id := host + "-" + hex.EncodeToString(r[:])
	if err := fsutil.CreateSynced(path, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("create %s: %w", path, err)
	}
	return id, nil
}
