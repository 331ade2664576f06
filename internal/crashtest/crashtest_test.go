package crashtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/limitgraph/limit/internal/testbin"
	"github.com/limitgraph/limit/sdk/storage"
	"github.com/limitgraph/limit/sdk/storage/memstore"
)

// Environment of the crash tests.
const (
	// killsEnv sets the kills per backend (default defaultKills); `make crashtest` runs
	// hundreds.
	killsEnv = "LIMIT_CRASHTEST_KILLS"
	// seedEnv repeats a run's random choices (the seed is in every report).
	seedEnv = "LIMIT_CRASHTEST_SEED"
	// postgresEnv names the PostgreSQL database of the postgres backend.
	postgresEnv = "LIMIT_TEST_POSTGRES_URL"
	// verboseEnv, set to 1, logs a line per round (with -v).
	verboseEnv = "LIMIT_CRASHTEST_VERBOSE"
	// defaultKills is the CI size: enough to land kills in every phase of a write, in
	// about ten seconds per backend here. Each round restarts the writer and the plugin
	// (two processes, a mutual-TLS handshake: about 140 ms on two shared cores), which
	// bounds how many kills fit in a CI minute; `make crashtest` runs 500 per backend.
	defaultKills = 50
)

// serveMemstoreEnv makes the test binary serve the in-memory store as a plugin: a
// backend that acknowledges writes it loses at every kill, for the test that the harness
// notices.
const serveMemstoreEnv = "LIMIT_CRASHTEST_SERVE_MEMSTORE"

func TestMain(m *testing.M) {
	if os.Getenv(serveMemstoreEnv) == "1" {
		storage.Serve(memstore.New())
		os.Exit(0)
	}
	if os.Getenv(postgresEnv) == "" {
		if os.Getenv("CI") == "true" {
			fmt.Fprintf(os.Stderr, "FAIL: CI=true but %s is not set: the PostgreSQL crash test must run in CI (.ci/setup.d/postgres.sh sets it)\n", postgresEnv)
			os.Exit(1)
		}
		fmt.Fprintf(os.Stderr, "\n#### PostgreSQL crash test SKIPPED: set %s (source .ci/setup.d/postgres.sh) ####\n\n", postgresEnv)
	}
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

var (
	writerOnce sync.Once
	writerPath string
	writerErr  error
)

// writerBinary builds ./internal/crashtest/cmd/crashwriter once per test process. The
// writer is a binary of its own, built without the race detector, because a race-enabled
// binary takes about 100 ms to start, and the harness starts one per kill.
func writerBinary(t *testing.T) string {
	t.Helper()
	writerOnce.Do(func() {
		writerPath = filepath.Join(testbin.Dir(t), "crashwriter")
		cmd := exec.Command("go", "build", "-o", writerPath, "./cmd/crashwriter")
		if out, err := cmd.CombinedOutput(); err != nil {
			writerErr = fmt.Errorf("go build ./cmd/crashwriter: %v\n%s", err, out)
		}
	})
	if writerErr != nil {
		t.Fatal(writerErr)
	}
	return writerPath
}

// options returns the run options of this test process: kills and seed from the
// environment, cmd/crashwriter as the writer.
func options(t *testing.T) Options {
	t.Helper()
	o := Options{Kills: defaultKills, Writer: Command{Path: writerBinary(t)}, WorkDir: t.TempDir(), Logf: t.Logf}
	if v := os.Getenv(killsEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive number", killsEnv, v)
		}
		o.Kills = n
	}
	if v := os.Getenv(seedEnv); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: want a number", seedEnv, v)
		}
		o.Seed = n
	}
	return o
}

// backend returns the named backend on a fresh directory (or database namespace), with
// its plugin built from ./plugins.
func backend(t *testing.T, name string) Backend {
	t.Helper()
	dir := t.TempDir()
	b := Backend{Name: name, DataDir: dir}
	switch name {
	case "bolt":
		b.Config = json.RawMessage(`{"path": "limit.db"}`)
	case "file":
		b.Config = json.RawMessage(`{"root": "files"}`)
	case "sqlite":
		b.Config = json.RawMessage(`{"path": "limit.sqlite"}`)
	case "postgres":
		u := os.Getenv(postgresEnv)
		if u == "" {
			t.Skipf("PostgreSQL skipped: %s is not set", postgresEnv)
		}
		b.Env = []string{"DATABASE_URL=" + u}
	default:
		t.Fatalf("unknown backend %q", name)
	}
	b.Plugin = testbin.Plugin(t, "storage-"+name)
	return b
}

// TestCrashSafety kills the writer (the host) or the plugin of every backend at random
// moments and checks after each restart that every acknowledged write is there, intact,
// and that no batch is visible in part. For postgres the server is never killed, only
// the plugin and its client.
func TestCrashSafety(t *testing.T) {
	for _, name := range []string{"bolt", "file", "sqlite", "postgres"} {
		t.Run(name, func(t *testing.T) {
			b := backend(t, name)
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
			defer cancel()
			o := options(t)
			o.Logf = nil
			if os.Getenv(verboseEnv) == "1" {
				o.Logf = t.Logf
			}
			rep, err := Run(ctx, b, o)
			if err != nil {
				t.Fatalf("%v\n(after %d kills; rerun with %s=%d)", err, rep.Kills, seedEnv, rep.Seed)
			}
			if rep.Kills != o.Kills || rep.PluginKills == 0 || rep.WriterKills == 0 {
				t.Errorf("kills: %+v", rep)
			}
			if rep.Acks == 0 {
				t.Error("no write was acknowledged in the whole run")
			}
			// Every first-party backend takes batches across namespaces: some batch keys
			// must have gone to the second one.
			if rep.OtherItems == 0 {
				t.Errorf("no key in the second namespace: batches across namespaces were not exercised (%v)", rep)
			}
			t.Log(rep)
			fmt.Fprintf(os.Stderr, "crashtest %s\n", rep)
		})
	}
}

// TestDiskFull fills a 2 MiB tmpfs through each file-based backend.
func TestDiskFull(t *testing.T) {
	for _, name := range []string{"bolt", "file", "sqlite"} {
		t.Run(name, func(t *testing.T) {
			b := backend(t, name)
			dir := t.TempDir()
			unmount, err := MountTmpfs(dir, 2<<20)
			if err != nil {
				if errors.Is(err, ErrCannotMount) {
					t.Skipf("disk-full test skipped: %v", err)
				}
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := unmount(); err != nil {
					t.Errorf("unmount %s: %v", dir, err)
				}
			})
			rep, err := DiskFull(t.Context(), b, dir, 512<<10)
			t.Log(rep)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(os.Stderr, "diskfull %s\n", rep)
		})
	}
}

// TestHarnessCatchesLoss runs the harness against a plugin that keeps everything in
// memory: the first check after a kill must report the lost acknowledged writes.
func TestHarnessCatchesLoss(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b := Backend{Name: "memstore", Plugin: exe, Env: []string{serveMemstoreEnv + "=1"}, DataDir: t.TempDir()}
	o := options(t)
	o.Kills, o.MaxDelay, o.Seed = 3, 200*time.Millisecond, 1
	_, err = Run(t.Context(), b, o)
	var ve *ViolationError
	if !errors.As(err, &ve) {
		t.Fatalf("Run against a store that forgets everything: got %v, want a ViolationError", err)
	}
	if ve.Round != 1 || !strings.Contains(ve.Error(), "is lost") {
		t.Errorf("got %v, want lost writes found in round 1", ve)
	}
}
