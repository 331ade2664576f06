package daemon

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/limitgraph/limit/sdk/base"
)

// staleSocket leaves a socket file at path with nothing listening, as a process killed
// with SIGKILL does.
func staleSocket(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatal(err)
	}
}

// TestRunDirSweptAtStart: the plugins' sockets are made in data_dir/run (mode 0700), what
// an earlier limitd left there is removed at the start, and a clean shutdown leaves it
// empty.
func TestRunDirSweptAtStart(t *testing.T) {
	dir := t.TempDir()
	run := filepath.Join(dir, runDirName)
	stale := []string{filepath.Join(run, "plugin123"), filepath.Join(run, "limit-storage-456", "s")}
	for _, p := range stale {
		staleSocket(t, p)
	}
	if err := os.Chmod(run, 0o755); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, fmt.Sprintf("host {\n  listen = \"127.0.0.1:0\"\n  data_dir = %q\n}\nstorage \"bolt\" {}\n", dir))
	for _, p := range stale {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("stale %s after the start: %v", p, err)
		}
	}
	if fi, err := os.Stat(run); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("run dir %s: %v %v, want mode 0700", run, fi.Mode(), err)
	}
	live, _ := filepath.Glob(filepath.Join(run, "plugin*"))
	if len(live) != 1 || live[0] == stale[0] {
		t.Errorf("the storage plugin's sockets in %s: %v, want one", run, live)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if ents, err := os.ReadDir(run); err != nil || len(ents) != 0 {
		t.Errorf("run dir after a clean shutdown: %v %v, want it empty", ents, err)
	}
}

// TestRunDirFallback: a data_dir too deep for socket paths under it gets a run directory
// of its own in the temporary directory, stable across starts (so it is swept too), and
// one there that is not this user's plain directory is refused.
func TestRunDirFallback(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	short := t.TempDir()
	rd, err := openRunDir(short)
	if err != nil || rd.Fallback || rd.Path != filepath.Join(short, runDirName) {
		t.Fatalf("short data_dir %s: %+v %v", short, rd, err)
	}

	deep := filepath.Join(t.TempDir(), strings.Repeat("d", 80))
	if err := os.MkdirAll(deep, 0o700); err != nil {
		t.Fatal(err)
	}
	rd, err = openRunDir(deep)
	if err != nil || !rd.Fallback || filepath.Dir(rd.Path) != tmp || !strings.HasPrefix(filepath.Base(rd.Path), "limit-run-") {
		t.Fatalf("deep data_dir: %+v %v, want a run dir in %s", rd, err, tmp)
	}
	if len(rd.Path)+base.SocketNameMax > base.SocketPathMax {
		t.Errorf("fallback %s leaves too little room for socket names", rd.Path)
	}
	if _, err := os.Lstat(filepath.Join(deep, runDirName)); !os.IsNotExist(err) {
		t.Errorf("a run dir was made under the deep data_dir too: %v", err)
	}
	staleSocket(t, filepath.Join(rd.Path, "plugin1"))
	again, err := openRunDir(deep)
	if err != nil || again.Path != rd.Path || again.Swept != 1 {
		t.Fatalf("second start on the deep data_dir: %+v %v, want %s with one entry swept", again, err, rd.Path)
	}
	if ents, _ := os.ReadDir(rd.Path); len(ents) != 0 {
		t.Errorf("fallback after the sweep: %v", ents)
	}

	// Someone else's name in the shared temporary directory is not used.
	if err := os.Remove(rd.Path); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(t.TempDir(), rd.Path); err != nil {
		t.Fatal(err)
	}
	if _, err := openRunDir(deep); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("fallback that is a symlink: %v", err)
	}
	if os.Geteuid() == 0 {
		if err := os.Remove(rd.Path); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(rd.Path, 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(rd.Path, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		if _, err := openRunDir(deep); err == nil || !strings.Contains(err.Error(), "belongs to uid 65534") {
			t.Errorf("fallback of another uid: %v", err)
		}
	}
}
