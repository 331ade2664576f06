package storagebench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/limitgraph/limit/internal/testbin"
	"github.com/limitgraph/limit/sdk/sdktest"
	"github.com/limitgraph/limit/sdk/storage/memstore"
)

// Environment of the benchmark.
const (
	// cellEnv sets how long each cell runs (a Go duration); default 1s.
	cellEnv = "LIMIT_STORAGEBENCH_CELL"
	// postgresEnv names the PostgreSQL database of the postgres backend; without it the
	// table has no postgres rows and says so.
	postgresEnv = "LIMIT_TEST_POSTGRES_URL"
)

// Goals of the issue: amortised cost of a durable write at 16 callers.
var goals = map[string]time.Duration{
	"bolt":     100 * time.Microsecond,
	"file":     time.Millisecond,
	"sqlite":   time.Millisecond,
	"postgres": 5 * time.Millisecond,
}

func TestMain(m *testing.M) {
	if dir := os.Getenv(transportChildEnv); dir != "" {
		serveTransports(dir)
	}
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// launchAll starts every backend's plugin binary on fresh files (postgres only with
// postgresEnv set), each durable (fsync kept), and stops them at cleanup. Their calls take
// the fast path; "bolt-grpc" is bolt with every call over gRPC, the transport before the
// fast path, measured in the same run for comparison.
func launchAll(tb testing.TB) []Target {
	tb.Helper()
	dir := tb.TempDir()
	type spec struct {
		name, plugin, config string
		env                  []string
		grpcOnly             bool
	}
	specs := []spec{
		{name: "bolt", plugin: "bolt", config: `{"path": "bolt/limit.db"}`},
		{name: "bolt-grpc", plugin: "bolt", config: `{"path": "bolt/limit.db"}`, grpcOnly: true},
		{name: "file", plugin: "file", config: `{"root": "files"}`},
		{name: "sqlite", plugin: "sqlite", config: `{"path": "sqlite/limit.sqlite"}`},
	}
	if u := os.Getenv(postgresEnv); u != "" {
		specs = append(specs, spec{name: "postgres", plugin: "postgres", config: `{}`, env: []string{"DATABASE_URL=" + u}})
	} else {
		fmt.Fprintf(os.Stderr, "postgres left out: set %s (source .ci/setup.d/postgres.sh)\n", postgresEnv)
	}
	var targets []Target
	for _, sp := range specs {
		bin := testbin.Plugin(tb, "storage-"+sp.plugin)
		launch := sdktest.LaunchStorage
		if sp.grpcOnly {
			launch = sdktest.LaunchStorageGRPC
		}
		s, stop, err := launch(context.Background(), bin, sp.env, []byte(sp.config), filepath.Join(dir, sp.name))
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(stop)
		targets = append(targets, Target{Name: sp.name, S: s, Goal: goals[sp.plugin]})
	}
	return targets
}

// BenchmarkBackends prints the cross-backend table; run it once:
//
//	go test -run '^$' -bench BenchmarkBackends -benchtime 1x ./internal/storagebench
//
// (make bench-storage). b.N is ignored: each cell runs for LIMIT_STORAGEBENCH_CELL.
func BenchmarkBackends(b *testing.B) {
	cell := time.Second
	if v := os.Getenv(cellEnv); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			b.Fatalf("%s=%q: want a positive duration", cellEnv, v)
		}
		cell = d
	}
	targets := launchAll(b)
	for b.Loop() {
		results, err := Run(b.Context(), targets, Config{Cell: cell})
		if err != nil {
			b.Fatal(err)
		}
		var out bytes.Buffer
		fmt.Fprintf(&out, "\nStorage backends through their plugins (durable, fsync kept), %v per cell, GOMAXPROCS-limited machine:\n", cell)
		if err := WriteTable(&out, targets, results); err != nil {
			b.Fatal(err)
		}
		os.Stdout.Write(out.Bytes())
	}
}

// TestRunSmoke runs every cell briefly against every local backend, so the benchmark's
// code stays working; it asserts no timings.
func TestRunSmoke(t *testing.T) {
	targets := launchAll(t)
	targets = append(targets, Target{Name: "memstore", S: memstore.New()})
	results, err := Run(t.Context(), targets, Config{Cell: 20 * time.Millisecond, MaxCalls: 40})
	if err != nil {
		t.Fatal(err)
	}
	if want := len(targets) * len(Ops) * 2; len(results) != want {
		t.Fatalf("%d results, want %d", len(results), want)
	}
	for _, r := range results {
		if r.Calls == 0 || r.Calls > 40 || r.P50 <= 0 || r.P99 < r.P50 || r.Elapsed <= 0 {
			t.Errorf("implausible result %+v", r)
		}
	}
	var out strings.Builder
	if err := WriteTable(&out, targets, results); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"backend", "bolt", "batch100", "goal ≤ 100µs per put"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}
