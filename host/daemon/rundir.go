package daemon

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/limitgraph/limit/sdk/base"
)

// runDirName is the folder of data_dir that holds the plugins' Unix sockets.
const runDirName = "run"

// runDir is where the plugins of the limitd holding a data_dir make their Unix sockets.
type runDir struct {
	// Path of the directory, mode 0700; "" when none could be had (the plugins then use
	// the system's temporary directory, as without one).
	Path string
	// Fallback is set when data_dir/run was too long for a socket's path and Path is a
	// directory of the system's temporary directory named for the data_dir instead.
	Fallback bool
	// Swept counts the entries an earlier limitd left in it, removed.
	Swept int
}

// openRunDir makes the run directory of dataDir, the absolute data directory, and empties
// it. A limitd killed with SIGKILL cannot remove its plugins' sockets (the plugins die with
// it, by their parent-death signal), so each start removes what is there; only the holder
// of the data_dir's lock may call it, since the sockets of a live limitd are there too.
//
// The directory is data_dir/run, unless that path leaves less than base.SocketNameMax
// bytes of a socket's 107 for the plugin's own names: then it is
// $TMPDIR/limit-run-<first 16 hex digits of the SHA-256 of data_dir's real path>, a stable
// name, so the next start on that data_dir finds and sweeps it too. That one must be
// a directory of this user's, not a symlink: anyone may create a name in /tmp first.
func openRunDir(dataDir string) (runDir, error) {
	dir := filepath.Join(dataDir, runDirName)
	var rd runDir
	if len(dir)+base.SocketNameMax > base.SocketPathMax {
		real, err := filepath.EvalSymlinks(dataDir)
		if err != nil {
			real = dataDir
		}
		sum := sha256.Sum256([]byte(real))
		dir = filepath.Join(os.TempDir(), "limit-run-"+hex.EncodeToString(sum[:8]))
		rd.Fallback = true
		if len(dir)+base.SocketNameMax > base.SocketPathMax {
			return rd, fmt.Errorf("both %s and %s are too long for the paths of Unix sockets (at most %d bytes)",
				filepath.Join(dataDir, runDirName), dir, base.SocketPathMax)
		}
	}
	if err := ownDir(dir); err != nil {
		return rd, err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return rd, fmt.Errorf("read %s: %w", dir, err)
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return rd, fmt.Errorf("remove what an earlier limitd left in %s: %w", dir, err)
		}
		rd.Swept++
	}
	rd.Path = dir
	return rd, nil
}

// ownDir creates dir with mode 0700, or checks that the one there is a directory (not a
// symlink) this user owns and makes its mode 0700.
func ownDir(dir string) error {
	err := os.Mkdir(dir, 0o700)
	if err == nil || !errors.Is(err, fs.ErrExist) {
		return err
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory (limitd keeps its plugins' sockets there): remove it", dir)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%s belongs to uid %d, not to limitd's uid %d (limitd keeps its plugins' sockets there): remove it", dir, st.Uid, os.Geteuid())
	}
	if fi.Mode().Perm() != 0o700 {
		return os.Chmod(dir, 0o700)
	}
	return nil
}
