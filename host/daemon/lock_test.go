package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/limitgraph/limit/host/execution"
	"github.com/limitgraph/limit/internal/testbin"
)

// TestDataDirLock: a second daemon on a data_dir in use stops before any plugin starts,
// saying which process holds it and at the data_dir's line; once the first has shut
// down, the data_dir is free again and the host keeps its node id.
func TestDataDirLock(t *testing.T) {
	dir := t.TempDir()
	src := fmt.Sprintf("host {\n  listen = \"127.0.0.1:0\"\n  data_dir = %q\n}\nstorage \"bolt\" {}\n", dir)
	first := startDaemon(t, src)
	node := first.Sessions.Node()
	host, _ := os.Hostname()
	if !execution.ValidNode(node) || !strings.HasPrefix(node, host[:min(len(host), 20)]) || node == host {
		t.Errorf("node id %q: want the host name %q and a random suffix", node, host)
	}
	if b, err := os.ReadFile(filepath.Join(dir, lockFile)); err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		t.Errorf("lock file holds %q (%v), want this process's pid", b, err)
	}

	t0 := time.Now()
	_, diags := Start(context.Background(), Options{Config: parse(t, src), Version: "test", Logger: hclog.NewNullLogger(), DefaultPluginDir: testbin.PluginDir(t)})
	msg := diags.Error()
	if !diags.HasErrors() || !strings.Contains(msg, "in use by another limitd") || !strings.Contains(msg, "pid "+strconv.Itoa(os.Getpid())) || !strings.Contains(msg, "test.hcl:3") {
		t.Fatalf("second daemon on the same data_dir: %q", msg)
	}
	if el := time.Since(t0); el > 3*time.Second {
		t.Errorf("the refusal took %v: it should come before any plugin starts", el)
	}
	// The first daemon is untouched.
	for _, st := range first.PluginStatus() {
		if !st.Healthy {
			t.Errorf("first daemon after the refusal: %+v", st)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := first.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	second := startDaemon(t, src)
	if got := second.Sessions.Node(); got != node {
		t.Errorf("node id after a restart %q, want %q", got, node)
	}
	// Another data_dir is another node.
	other := startDaemon(t, fmt.Sprintf("host {\n  listen = \"127.0.0.1:0\"\n  data_dir = %q\n}\nstorage \"bolt\" {}\n", t.TempDir()))
	if other.Sessions.Node() == node {
		t.Errorf("two data_dirs share the node id %q", node)
	}
}

// TestNodeIDFile: a node_id file that does not hold one is refused with its path, not
// silently replaced (the markers of the last run's executions are keyed by it).
func TestNodeIDFile(t *testing.T) {
	dir := t.TempDir()
	id, err := nodeID(dir)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := nodeID(dir); err != nil || again != id {
		t.Fatalf("second read %q %v, want %q", again, err, id)
	}
	if fi, err := os.Stat(filepath.Join(dir, nodeFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("node_id file: %v %v, want mode 0600", fi, err)
	}
	for _, bad := range []string{"", "a b", "../x", strings.Repeat("x", 200), "é"} {
		if err := os.WriteFile(filepath.Join(dir, nodeFile), []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if got, err := nodeID(dir); err == nil || !strings.Contains(err.Error(), nodeFile) {
			t.Errorf("node_id %q: got %q %v, want an error naming the file", bad, got, err)
		}
	}
}

// TestDataDirLockErrors: the lock's error wraps ErrDataDirInUse only when another
// process holds it.
func TestDataDirLockErrors(t *testing.T) {
	dir := t.TempDir()
	l, err := lockDataDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lockDataDir(dir); !errors.Is(err, ErrDataDirInUse) {
		t.Fatalf("second lock: %v", err)
	}
	l.release()
	l.release() // twice is harmless
	l2, err := lockDataDir(dir)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	l2.release()
	if os.Geteuid() != 0 {
		ro := filepath.Join(t.TempDir(), "ro")
		if err := os.Mkdir(ro, 0o500); err != nil {
			t.Fatal(err)
		}
		if _, err := lockDataDir(ro); err == nil || errors.Is(err, ErrDataDirInUse) {
			t.Errorf("read-only data_dir: %v", err)
		}
	}
}
