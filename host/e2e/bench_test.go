package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/limitgraph/limit/host/plugins"
	"github.com/limitgraph/limit/internal/testbin"
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/client"
	"github.com/limitgraph/limit/sdk/runner"
	"github.com/limitgraph/limit/sdk/sdktest"
)

// load runs op from n workers for total operations and returns ops/s, p50 and p99.
func load(n, total int, op func(i int) error) (float64, time.Duration, time.Duration, error) {
	var next atomic.Int64
	lat := make([]time.Duration, total)
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < n; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= total {
					return
				}
				t0 := time.Now()
				if err := op(i); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	sort.Slice(lat, func(a, b int) bool { return lat[a] < lat[b] })
	return float64(total) / el.Seconds(), lat[total/2], lat[total*99/100], firstErr
}

// BenchmarkAPITraces measures POST /v1/traces through the real daemon (bbolt, durable) at
// 1, 16 and 64 concurrent clients beside the raw put rate of the same storage plugin at
// the same concurrency, and an execution through the API against calling the runner
// plugin directly. Run with `make bench-api`; the table goes to stdout.
func BenchmarkAPITraces(b *testing.B) {
	if b.N > 1 {
		b.Skip("runs once; the table is the result")
	}
	ctx := context.Background()
	dir := b.TempDir()
	testbin.Plugin(b, "storage-bolt")
	testbin.TestPlugin(b, "runner-echo")
	testbin.TestPlugin(b, "governance-keyword")
	cfgPath := benchConfig(b, dir)
	d := start(b, cfgPath)
	sess, err := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: "bench", MaxConcurrency: 64})
	if err != nil {
		b.Fatal(err)
	}
	raw, stop, err := sdktest.LaunchStorage(ctx, testbin.Plugin(b, "storage-bolt"), nil, []byte(fmt.Sprintf(`{"path": %q}`, dir+"/raw.db")), dir)
	if err != nil {
		b.Fatal(err)
	}
	defer stop()
	// The same plugin's puts with the client's merging of concurrent writes off: the
	// reference of the figures recorded before it existed.
	unmerged, stopUnmerged, err := sdktest.LaunchStorage(ctx, testbin.Plugin(b, "storage-bolt"), nil, []byte(fmt.Sprintf(`{"path": %q}`, dir+"/unmerged.db")), dir)
	if err != nil {
		b.Fatal(err)
	}
	defer stopUnmerged()
	unmerged.(interface{ MergeWrites(bool) }).MergeWrites(false)
	// For profiling one concurrency level at length (see BENCHMARKS.md, API), the clients and
	// the operations per level can be set: LIMIT_BENCH_API_CLIENTS=64 LIMIT_BENCH_API_TOTAL=30000.
	total, levels := 3000, []int{1, 16, 64}
	if v := os.Getenv("LIMIT_BENCH_API_TOTAL"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("LIMIT_BENCH_API_TOTAL=%q: want a positive number", v)
		}
		total = n
	}
	if v := os.Getenv("LIMIT_BENCH_API_CLIENTS"); v != "" {
		levels = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(f)
			if err != nil || n < 1 {
				b.Fatalf("LIMIT_BENCH_API_CLIENTS=%q: want numbers of clients, comma-separated", v)
			}
			levels = append(levels, n)
		}
	}
	floorURL, stopFloor := httpFloor(b, d.url, sess.ID)
	defer stopFloor()
	floor := client.New(floorURL)
	var apis, raws, floors []float64
	fmt.Printf("\nPOST /v1/traces (bbolt, durable) vs raw storage put through the plugin, %d operations each\n", total)
	fmt.Printf("%8s %14s %10s %10s %14s %10s %10s %8s %18s %16s\n", "clients", "api req/s", "api p50", "api p99", "raw put/s", "raw p50", "raw p99", "ratio", "unmerged raw put/s", "unmerged ratio")
	for _, n := range levels {
		rps, p50, p99, err := load(n, total, func(i int) error {
			_, err := d.c.CreateTrace(ctx, sess.ID, map[string]any{"i": i, "payload": "benchmark trace"})
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		val := []byte(`{"i":1,"payload":"benchmark trace"}`)
		prs, r50, r99, err := load(n, total, func(i int) error {
			return raw.Put(ctx, "bench", []byte(fmt.Sprintf("k%d-%08d", n, i)), val)
		})
		if err != nil {
			b.Fatal(err)
		}
		urs, _, _, err := load(n, total, func(i int) error {
			return unmerged.Put(ctx, "bench", []byte(fmt.Sprintf("k%d-%08d", n, i)), val)
		})
		if err != nil {
			b.Fatal(err)
		}
		fmt.Printf("%8d %14.0f %10s %10s %14.0f %10s %10s %8.2f %18.0f %16.2f\n", n, rps, p50.Round(time.Microsecond), p99.Round(time.Microsecond), prs, r50.Round(time.Microsecond), r99.Round(time.Microsecond), rps/prs, urs, rps/urs)
		frs, _, _, err := load(n, total, func(i int) error {
			_, err := floor.CreateTrace(ctx, sess.ID, map[string]any{"i": i, "payload": "benchmark trace"})
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		apis, raws, floors = append(apis, rps), append(raws, prs), append(floors, frs)
	}
	fmt.Printf("\nthe HTTP floor: the same client and requests against a server that only reads each body and\nreplays limitd's answer to one (no storage, no provenance; net/http in the benchmark's process)\n")
	fmt.Printf("%8s %14s %16s %12s\n", "clients", "floor req/s", "floor / raw put", "api / floor")
	for i, n := range levels {
		fmt.Printf("%8d %14.0f %16.2f %12.2f\n", n, floors[i], floors[i]/raws[i], apis[i]/floors[i])
	}

	// Execution overhead: the echo runner through the API vs its plugin called directly.
	if _, err := d.c.Execute(ctx, sess.ID, client.ExecuteRequest{Runner: "echo", Input: "warm"}); err != nil {
		b.Fatal(err)
	}
	const execs = 500
	_, a50, a99, err := load(1, execs, func(i int) error {
		_, err := d.c.Execute(ctx, sess.ID, client.ExecuteRequest{Runner: "echo", Input: "x"})
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	rs := plugins.NewRunners(map[string]plugins.Spec{"echo": {
		Kind: base.KindRunner, Name: "echo", Path: testbin.TestPlugin(b, "runner-echo"),
	}}, nil)
	defer rs.Close(ctx)
	h, err := rs.Get(ctx, runner.Session{ID: "direct", WorkDir: dir}, "echo")
	if err != nil {
		b.Fatal(err)
	}
	_, d50, d99, err := load(1, execs, func(i int) error {
		_, err := h.Execute(ctx, runner.ExecuteRequest{ExecutionID: fmt.Sprint(i), Input: "x"}, func(runner.Event) error { return nil })
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	fmt.Printf("\nexecution of the echo runner, %d sequential calls\n", execs)
	fmt.Printf("%-34s %10s %10s\n", "path", "p50", "p99")
	fmt.Printf("%-34s %10s %10s\n", "API (governance, trace, runner)", a50.Round(time.Microsecond), a99.Round(time.Microsecond))
	fmt.Printf("%-34s %10s %10s\n", "runner plugin called directly", d50.Round(time.Microsecond), d99.Round(time.Microsecond))
	fmt.Printf("%-34s %10s\n", "API overhead at p50", (a50 - d50).Round(time.Microsecond))
}

// httpFloor starts a server that answers every request with the status, content type and
// body limitd gave to one real POST /v1/traces for session, after reading the request's
// body: the least any handler could cost behind net/http. It returns its URL and a stop.
func httpFloor(b *testing.B, apiURL, session string) (string, func()) {
	b.Helper()
	req, err := http.NewRequest("POST", apiURL+"/v1/traces", strings.NewReader(fmt.Sprintf(`{"session_id":%q,"data":{"i":0,"payload":"benchmark trace"}}`, session)))
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil || res.StatusCode != http.StatusCreated {
		b.Fatalf("POST /v1/traces: %d %s, %v", res.StatusCode, body, err)
	}
	ctype := res.Header.Get("Content-Type")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var id atomic.Int64
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", ctype)
		w.Header().Set("X-Request-Id", strconv.FormatInt(id.Add(1), 10))
		w.WriteHeader(http.StatusCreated)
		w.Write(body)
	})}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), func() { srv.Close() }
}

func benchConfig(b *testing.B, dataDir string) string {
	src := fmt.Sprintf(`host {
  listen     = "127.0.0.1:0"
  data_dir   = %q
  plugin_dir = %q
  log_level  = "warn"
}
storage "bolt" {}
runner "echo" {}
governance {
  rule "keyword" {}
}
`, dataDir, testbin.PluginDir(b))
	return writeConfig(b, src)
}
