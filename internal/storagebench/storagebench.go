// Package storagebench measures every storage backend through its plugin in one run:
// per-call p50 and p99 latency, throughput and amortised cost of put, get, scan and batch
// at 1 and 16 concurrent callers, printed as one table beside the gRPC round-trip floor,
// with each backend's durable-write cost held against its target.
//
// `make bench-storage` runs it (BenchmarkBackends in this package's tests).
package storagebench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/limitgraph/limit/internal/latency"
	"github.com/limitgraph/limit/sdk/storage"
)

// Shapes of the measured data.
const (
	// ValueSize is the size of every value written or read.
	ValueSize = 100
	// KeysPerCaller is the number of keys each caller cycles through, so data stays
	// bounded however long a cell runs.
	KeysPerCaller = 1000
	// PageSize is the items per scan page and the puts per batch.
	PageSize = 100
)

// Op names a measured operation.
type Op string

// The measured operations. OpRoundTrip is one empty call on the transport of the storage
// calls (Ping: the fast path or gRPC; PluginInfo for a client without Ping), the floor
// under every other figure.
const (
	OpRoundTrip Op = "roundtrip"
	OpPut       Op = "put"
	OpGet       Op = "get"
	OpScan      Op = "scan100"
	OpBatch     Op = "batch100"
)

// Ops is every operation, in table order.
var Ops = []Op{OpRoundTrip, OpPut, OpGet, OpScan, OpBatch}

// Target is one backend to measure.
type Target struct {
	Name string
	S    storage.Storage
	// Goal is the amortised cost of a durable write at 16 callers the backend should
	// reach (zero: none).
	Goal time.Duration
}

// Config tunes a run.
type Config struct {
	// Cell is how long each (backend, operation, concurrency) cell runs; 0 means 1s.
	Cell time.Duration
	// MaxCalls stops a cell early after this many calls; 0 means no bound.
	MaxCalls int
	// Concurrency lists the caller counts; nil means 1 and 16.
	Concurrency []int
	// Ops lists the operations; nil means Ops.
	Ops []Op
}

// Result is one measured cell.
type Result struct {
	Backend string
	Op      Op
	Callers int
	Calls   int
	Elapsed time.Duration
	// P50 and P99 are per-call latencies.
	P50, P99 time.Duration
}

// Throughput is calls completed per second of wall time.
func (r Result) Throughput() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Calls) / r.Elapsed.Seconds()
}

// Amortised is wall time per call: what one call costs when Callers run at once.
func (r Result) Amortised() time.Duration {
	if r.Calls == 0 {
		return 0
	}
	return r.Elapsed / time.Duration(r.Calls)
}

// PerKey is the amortised cost per key written or read: a scan or batch call moves
// PageSize keys.
func (r Result) PerKey() time.Duration {
	if r.Op == OpScan || r.Op == OpBatch {
		return r.Amortised() / PageSize
	}
	return r.Amortised()
}

// keyTable holds the keys of the benchmarks: keyTable[c][i] is key i of caller c.
var keyTable = sync.OnceValue(func() [][][]byte {
	t := make([][][]byte, 64)
	for c := range t {
		t[c] = make([][]byte, KeysPerCaller)
		for i := range t[c] {
			t[c][i] = fmt.Appendf(nil, "bench/c%02d/k%05d", c, i)
		}
	}
	return t
})

var value = []byte(strings.Repeat("v", ValueSize))

// keysOf returns caller c's keys (callers beyond the table share its last rows).
func keysOf(c int) [][]byte {
	t := keyTable()
	return t[c%len(t)]
}

// fill writes caller 0's keys, in batches.
func fill(ctx context.Context, s storage.Storage, ns string) error {
	keys := keysOf(0)
	for i := 0; i < len(keys); i += PageSize {
		ops := make([]storage.Op, 0, PageSize)
		for _, k := range keys[i:min(i+PageSize, len(keys))] {
			ops = append(ops, storage.Op{Kind: storage.OpPut, Key: k, Value: value})
		}
		if err := s.Batch(ctx, ns, ops); err != nil {
			return fmt.Errorf("fill: %w", err)
		}
	}
	return nil
}

// call performs call i of caller c.
func call(ctx context.Context, s storage.Storage, ns string, op Op, c, i int) error {
	switch op {
	case OpRoundTrip:
		if p, ok := s.(interface{ Ping(context.Context) error }); ok {
			return p.Ping(ctx)
		}
		if s.PluginInfo().Name == "" {
			return fmt.Errorf("plugin info has no name: the call failed")
		}
		return nil
	case OpPut:
		return s.Put(ctx, ns, keysOf(c)[i%KeysPerCaller], value)
	case OpGet:
		k := keysOf(0)[(i*7+c*131)%KeysPerCaller]
		v, ok, err := s.Get(ctx, ns, k)
		if err == nil && (!ok || len(v) != ValueSize) {
			err = fmt.Errorf("get %q: found=%v with %d bytes", k, ok, len(v))
		}
		return err
	case OpScan:
		after := keysOf(0)[((i+c)*PageSize+c)%(KeysPerCaller-PageSize)]
		res, err := s.Scan(ctx, storage.ScanRequest{Namespace: ns, StartAfter: after, Limit: PageSize})
		if err == nil && len(res.Items) != PageSize {
			err = fmt.Errorf("scan after %q: %d items, want %d", after, len(res.Items), PageSize)
		}
		return err
	case OpBatch:
		keys := keysOf(c)
		start := (i * PageSize) % KeysPerCaller
		ops := make([]storage.Op, PageSize)
		for j := range ops {
			ops[j] = storage.Op{Kind: storage.OpPut, Key: keys[(start+j)%KeysPerCaller], Value: value}
		}
		return s.Batch(ctx, ns, ops)
	}
	return fmt.Errorf("unknown operation %q", op)
}

// Measure runs one cell: callers goroutines call op against s for cfg.Cell (or
// cfg.MaxCalls calls), in a fresh namespace that is emptied afterwards.
func Measure(ctx context.Context, t Target, op Op, callers int, cfg Config) (Result, error) {
	if cfg.Cell <= 0 {
		cfg.Cell = time.Second
	}
	var rb [6]byte
	_, _ = rand.Read(rb[:])
	ns := "storagebench-" + hex.EncodeToString(rb[:])
	defer func() { _ = clear(context.WithoutCancel(ctx), t.S, ns) }()
	if op == OpGet || op == OpScan {
		if err := fill(ctx, t.S, ns); err != nil {
			return Result{}, err
		}
	}
	hists := make([]latency.Histogram, callers)
	var (
		calls    atomic.Int64
		stop     atomic.Bool
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	start := time.Now()
	deadline := start.Add(cfg.Cell)
	for c := range callers {
		wg.Go(func() {
			h := &hists[c]
			for i := 0; !stop.Load(); i++ {
				if n := calls.Add(1); cfg.MaxCalls > 0 && n > int64(cfg.MaxCalls) {
					calls.Add(-1)
					return
				}
				t0 := time.Now()
				err := call(ctx, t.S, ns, op, c, i)
				t1 := time.Now()
				h.Record(t1.Sub(t0))
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					stop.Store(true)
					return
				}
				if t1.After(deadline) {
					stop.Store(true)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return Result{}, fmt.Errorf("%s %s with %d callers: %w", t.Name, op, callers, firstErr)
	}
	var all latency.Histogram
	for i := range hists {
		all.Merge(&hists[i])
	}
	return Result{Backend: t.Name, Op: op, Callers: callers, Calls: all.Count(), Elapsed: elapsed,
		P50: all.Quantile(0.50), P99: all.Quantile(0.99)}, nil
}

// Run measures every target, operation and concurrency, one cell at a time.
func Run(ctx context.Context, targets []Target, cfg Config) ([]Result, error) {
	conc := cfg.Concurrency
	if conc == nil {
		conc = []int{1, 16}
	}
	ops := cfg.Ops
	if ops == nil {
		ops = Ops
	}
	var out []Result
	for _, t := range targets {
		for _, op := range ops {
			for _, n := range conc {
				r, err := Measure(ctx, t, op, n, cfg)
				if err != nil {
					return out, err
				}
				out = append(out, r)
			}
		}
	}
	return out, nil
}

// WriteTable prints results as a table, then, for each target with a goal, its durable
// write cost at the highest concurrency against the goal, and the costs relative to the
// first target and to the gRPC floor.
func WriteTable(w io.Writer, targets []Target, results []Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "backend\top\tcallers\tcalls\tp50 µs\tp99 µs\tcalls/s\tamortised µs/call\tµs/key\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.1f\t%.1f\t%.0f\t%.1f\t%.2f\t\n", r.Backend, r.Op, r.Callers, r.Calls,
			micros(r.P50), micros(r.P99), r.Throughput(), micros(r.Amortised()), micros(r.PerKey()))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	find := func(backend string, op Op, callers int) (Result, bool) {
		for _, r := range results {
			if r.Backend == backend && r.Op == op && r.Callers == callers {
				return r, true
			}
		}
		return Result{}, false
	}
	top := 0
	for _, r := range results {
		top = max(top, r.Callers)
	}
	fmt.Fprintf(w, "\nDurable writes at %d callers (amortised = wall time / calls; batch counts per key):\n", top)
	var base time.Duration
	for i, t := range targets {
		put, ok := find(t.Name, OpPut, top)
		if !ok {
			continue
		}
		line := fmt.Sprintf("  %-9s put %8.1f µs", t.Name, micros(put.Amortised()))
		if b, ok := find(t.Name, OpBatch, top); ok {
			line += fmt.Sprintf(", batch %6.2f µs/key", micros(b.PerKey()))
		}
		if rt, ok := find(t.Name, OpRoundTrip, top); ok && rt.Amortised() > 0 {
			line += fmt.Sprintf(", put = %.1f× the round-trip floor", float64(put.Amortised())/float64(rt.Amortised()))
		}
		if i == 0 {
			base = put.Amortised()
		} else if base > 0 {
			line += fmt.Sprintf(", %.1f× %s", float64(put.Amortised())/float64(base), targets[0].Name)
		}
		if t.Goal > 0 {
			verdict := "MET"
			if put.Amortised() > t.Goal {
				verdict = "MISSED"
			}
			line += fmt.Sprintf("; goal ≤ %v per put: %s", t.Goal, verdict)
		}
		fmt.Fprintln(w, line)
	}
	return nil
}

// clear deletes every key of ns.
func clear(ctx context.Context, s storage.Storage, ns string) error {
	for {
		res, err := s.Scan(ctx, storage.ScanRequest{Namespace: ns, Limit: storage.MaxScanLimit, KeysOnly: true})
		if err != nil || len(res.Items) == 0 {
			return err
		}
		ops := make([]storage.Op, len(res.Items))
		for i, kv := range res.Items {
			ops[i] = storage.Op{Kind: storage.OpDelete, Key: kv.Key}
		}
		if err := s.Batch(ctx, ns, ops); err != nil {
			return err
		}
	}
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
