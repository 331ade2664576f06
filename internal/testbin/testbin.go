// Package testbin builds the project's commands and plugins for tests that need real
// binaries, once per test process, into a temporary directory laid out like bin/.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

var (
	mu    sync.Mutex
	dir   string
	built = map[string]error{}
)

// root is the module's root directory.
func root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Dir returns the directory binaries are built into; plugins go to Dir()/plugins.
func Dir(t testing.TB) string {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if dir == "" {
		d, err := os.MkdirTemp("", "limit-testbin-")
		if err != nil {
			t.Fatal(err)
		}
		dir = d
	}
	return dir
}

// Command builds ./host/cmd/<name> and returns the binary's path.
func Command(t testing.TB, name string) string {
	t.Helper()
	return build(t, "./host/cmd/"+name, filepath.Join(Dir(t), name))
}

// Plugin builds ./plugins/<name> as plugins/limit-<name> and returns the binary's path.
func Plugin(t testing.TB, name string) string {
	t.Helper()
	return build(t, "./plugins/"+name, filepath.Join(Dir(t), "plugins", "limit-"+name))
}

// PluginDir returns the directory Plugin builds into.
func PluginDir(t testing.TB) string {
	return filepath.Join(Dir(t), "plugins")
}

func build(t testing.TB, pkg, out string) string {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	err, ok := built[out]
	if !ok {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Dir = root()
		b, berr := cmd.CombinedOutput()
		if berr != nil {
			err = fmt.Errorf("go build %s: %v\n%s", pkg, berr, b)
		}
		built[out] = err
	}
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Cleanup removes the build directory; call it from TestMain after m.Run.
func Cleanup() {
	mu.Lock()
	defer mu.Unlock()
	if dir != "" {
		os.RemoveAll(dir)
		dir = ""
		built = map[string]error{}
	}
}

// TestPlugin builds ./internal/testplugins/<name> as plugins/limit-<name>: the runner and
// governance plugins the host's own tests use (never part of a release).
func TestPlugin(t testing.TB, name string) string {
	t.Helper()
	return build(t, "./internal/testplugins/"+name, filepath.Join(Dir(t), "plugins", "limit-"+name))
}

// Example builds ./examples/<name> and returns the binary's path.
func Example(t testing.TB, name string) string {
	t.Helper()
	return build(t, "./examples/"+name, filepath.Join(Dir(t), "examples", name))
}
