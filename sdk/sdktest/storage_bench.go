package sdktest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/limitgraph/limit/internal/latency"
	"github.com/limitgraph/limit/sdk/storage"
)

// Sizes of the benchmarks' data.
const (
	benchValueSize = 100  // bytes of every value written or read
	benchKeys      = 1000 // keys per writer; writes cycle through them, so data stays bounded
	benchWriters   = 16   // concurrent writers of PutParallel16
	benchPage      = 100  // items per scan page and puts per batch
)

// benchOp is one benchmarked operation: setup prepares a namespace outside the timer, do
// performs operation i for writer w.
type benchOp struct {
	name    string
	writers int
	setup   func(ctx context.Context, s storage.Storage, ns string) error
	do      func(ctx context.Context, s storage.Storage, ns string, w, i int) error
}

// benchKeyTable holds the keys of the benchmarks, built once so formatting stays out of
// the measured loop: benchKeyTable[w][i] is key i of writer w.
var benchKeyTable = sync.OnceValue(func() [][][]byte {
	t := make([][][]byte, benchWriters)
	for w := range t {
		t[w] = make([][]byte, benchKeys)
		for i := range t[w] {
			t[w][i] = fmt.Appendf(nil, "bench/w%02d/k%05d", w, i)
		}
	}
	return t
})

// benchValue is the value every benchmark writes.
var benchValue = []byte(strings.Repeat("v", benchValueSize))

// fillBench writes the keys of writer 0 with benchValue.
func fillBench(ctx context.Context, s storage.Storage, ns string) error {
	keys := benchKeyTable()[0]
	for i := 0; i < len(keys); i += benchPage {
		ops := make([]storage.Op, 0, benchPage)
		for _, k := range keys[i:min(i+benchPage, len(keys))] {
			ops = append(ops, storage.Op{Kind: storage.OpPut, Key: k, Value: benchValue})
		}
		if err := s.Batch(ctx, ns, ops); err != nil {
			return fmt.Errorf("fill benchmark data: %w", err)
		}
	}
	return nil
}

// benchOps returns the storage operations measured by BenchStorage and CompareStorage.
func benchOps() []benchOp {
	keys := benchKeyTable()
	batches := make([][]storage.Op, benchKeys/benchPage)
	for b := range batches {
		for _, k := range keys[0][b*benchPage : (b+1)*benchPage] {
			batches[b] = append(batches[b], storage.Op{Kind: storage.OpPut, Key: k, Value: benchValue})
		}
	}
	return []benchOp{
		{
			name:  "Get",
			setup: fillBench,
			do: func(ctx context.Context, s storage.Storage, ns string, _, i int) error {
				k := keys[0][i%benchKeys]
				v, found, err := s.Get(ctx, ns, k)
				if err == nil && (!found || len(v) != benchValueSize) {
					err = fmt.Errorf("get %q: found=%v with %d bytes, want %d bytes", k, found, len(v), benchValueSize)
				}
				return err
			},
		},
		{
			name: "Put",
			do: func(ctx context.Context, s storage.Storage, ns string, _, i int) error {
				return s.Put(ctx, ns, keys[0][i%benchKeys], benchValue)
			},
		},
		{
			name:    "PutParallel16",
			writers: benchWriters,
			do: func(ctx context.Context, s storage.Storage, ns string, w, i int) error {
				return s.Put(ctx, ns, keys[w][i%benchKeys], benchValue)
			},
		},
		{
			name:  "Scan100",
			setup: fillBench,
			do: func(ctx context.Context, s storage.Storage, ns string, _, i int) error {
				after := keys[0][(i*benchPage)%(benchKeys-benchPage)]
				res, err := s.Scan(ctx, storage.ScanRequest{Namespace: ns, StartAfter: after, Limit: benchPage})
				if err == nil && len(res.Items) != benchPage {
					err = fmt.Errorf("scan after %q: %d items, want %d", after, len(res.Items), benchPage)
				}
				return err
			},
		},
		{
			name: "Batch100",
			do: func(ctx context.Context, s storage.Storage, ns string, _, i int) error {
				return s.Batch(ctx, ns, batches[i%len(batches)])
			},
		},
	}
}

// roundTripOp measures PluginInfo: nothing for an in-process backend, one bare unary gRPC
// call for a plugin client, whatever transport its storage calls use.
var roundTripOp = benchOp{
	name: "RoundTripGRPC",
	do: func(_ context.Context, s storage.Storage, _ string, _, _ int) error {
		if s.PluginInfo().Name == "" {
			return fmt.Errorf("plugin info has no name: the call failed")
		}
		return nil
	},
}

// pingOp measures one empty call on the transport of a plugin client's storage calls (the
// fast path, or gRPC); nothing for an in-process backend. Its added latency is the floor
// of every storage call across the plugin boundary.
var pingOp = benchOp{
	name: "RoundTrip",
	do: func(ctx context.Context, s storage.Storage, _ string, _, _ int) error {
		if p, ok := s.(interface{ Ping(context.Context) error }); ok {
			return p.Ping(ctx)
		}
		return nil
	},
}

// benchResult is what one run of a benchmarked operation measured.
type benchResult struct {
	ops      int
	elapsed  time.Duration
	p50, p99 time.Duration
}

// throughput is operations completed per second of wall time.
func (r benchResult) throughput() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.ops) / r.elapsed.Seconds()
}

// runBench runs op b.N times against s in a fresh namespace, spread over op's writers,
// reports p50, p99 and throughput, and returns them.
func runBench(b *testing.B, op benchOp, s storage.Storage) benchResult {
	b.Helper()
	ctx := context.Background()
	ns, cleanup := benchNamespace(b, op, s, "bench-"+op.name)
	defer cleanup()
	b.ResetTimer()
	var all latency.Histogram
	elapsed, err := runOps(ctx, op, s, ns, b.N, &all)
	b.StopTimer()
	if err != nil {
		b.Fatalf("%s: %v", op.name, err)
	}
	r := benchResult{ops: b.N, elapsed: elapsed, p50: all.Quantile(0.50), p99: all.Quantile(0.99)}
	b.ReportMetric(micros(r.p50), "p50-µs")
	b.ReportMetric(micros(r.p99), "p99-µs")
	b.ReportMetric(r.throughput(), "ops/s")
	return r
}

// benchNamespace makes a fresh namespace of s for op, named after name, and prepares it
// (op.setup); cleanup deletes it.
func benchNamespace(b *testing.B, op benchOp, s storage.Storage, name string) (ns string, cleanup func()) {
	b.Helper()
	ctx := context.Background()
	n := newNamespaces(name)
	ns = n.ns("")
	cleanup = func() {
		if err := n.cleanup(ctx, s); err != nil {
			b.Errorf("clean up after benchmark: %v", err)
		}
	}
	if op.setup != nil {
		if err := op.setup(ctx, s, ns); err != nil {
			cleanup()
			b.Fatal(err)
		}
	}
	return ns, cleanup
}

// runOps performs op total times against s in ns, spread over op's writers, adds each
// call's latency to hist, and returns the wall time it took and the first error.
func runOps(ctx context.Context, op benchOp, s storage.Storage, ns string, total int, hist *latency.Histogram) (time.Duration, error) {
	writers := max(op.writers, 1)
	hists := make([]latency.Histogram, writers)
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		once     sync.Once
		firstErr error
	)
	start := time.Now()
	for w := range writers {
		wg.Go(func() {
			h := &hists[w]
			for {
				i := next.Add(1) - 1
				if i >= int64(total) {
					return
				}
				t0 := time.Now()
				err := op.do(ctx, s, ns, w, int(i))
				h.Record(time.Since(t0))
				if err != nil {
					once.Do(func() { firstErr = err })
					next.Store(int64(total))
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	for i := range hists {
		hist.Merge(&hists[i])
	}
	return elapsed, firstErr
}

// interleavedStretches is how many parts runInterleaved cuts each side's operations into.
const interleavedStretches = 20

// runInterleaved runs op b.N times against each side, in interleavedStretches stretches
// that take turns (side 1, side 2, …, side 1, …), each side in a fresh namespace of its
// own, and returns each side's figures. A durable write's speed follows the disk's, which
// moves within seconds on shared machines: sides measured one after the other, as the
// other benchmarks are, then compare two disks as much as two implementations.
func runInterleaved(b *testing.B, op benchOp, sides []Side) []*benchResult {
	b.Helper()
	ctx := context.Background()
	nss := make([]string, len(sides))
	for i, sd := range sides {
		var cleanup func()
		nss[i], cleanup = benchNamespace(b, op, sd.S, fmt.Sprintf("bench-%s-%d", op.name, i))
		defer cleanup()
	}
	elapsed := make([]time.Duration, len(sides))
	hists := make([]latency.Histogram, len(sides))
	b.ResetTimer()
	for st := range interleavedStretches {
		n := b.N / interleavedStretches
		if st == interleavedStretches-1 {
			n = b.N - n*(interleavedStretches-1)
		}
		for i, sd := range sides {
			d, err := runOps(ctx, op, sd.S, nss[i], n, &hists[i])
			if err != nil {
				b.Fatalf("%s, %s: %v", op.name, sd.Name, err)
			}
			elapsed[i] += d
		}
	}
	b.StopTimer()
	out := make([]*benchResult, len(sides))
	for i, sd := range sides {
		out[i] = &benchResult{ops: b.N, elapsed: elapsed[i], p50: hists[i].Quantile(0.50), p99: hists[i].Quantile(0.99)}
		if i > 0 && out[0].throughput() > 0 {
			b.ReportMetric(out[i].throughput()/out[0].throughput(), sd.Name+"/"+sides[0].Name)
		}
	}
	return out
}

// BenchStorage runs the storage benchmarks against s as sub-benchmarks Get, Put,
// PutParallel16 (16 concurrent writers, whatever GOMAXPROCS), Scan100 (one page of 100
// items), Batch100 (a batch of 100 puts), each with a level named name below it (so
// "Get/bolt"), reporting p50 and p99 latency per call and throughput. Values are 100
// bytes; writes cycle through a fixed set of keys, so the data stays small however long it
// runs. Each run uses a fresh namespace and deletes it afterwards.
func BenchStorage(b *testing.B, name string, s storage.Storage) {
	for _, op := range benchOps() {
		b.Run(op.name, func(b *testing.B) {
			if name == "" {
				runBench(b, op, s)
				return
			}
			b.Run(name, func(b *testing.B) { runBench(b, op, s) })
		})
	}
}

// CompareStorage runs the benchmarks of BenchStorage against an in-process backend and the
// same backend behind the plugin boundary, as "Get/inproc" and "Get/plugin" and so on, plus
// "RoundTrip" (one empty call on the transport of the storage calls, the floor of every
// call) and "RoundTripGRPC" (PluginInfo: one bare unary gRPC call). At the end it prints to
// stdout a table of each side's p50 latency, the latency the boundary adds, the
// throughputs and their ratio.
func CompareStorage(b *testing.B, inProc, viaPlugin storage.Storage) {
	CompareStorageSides(b, Side{"inproc", inProc}, Side{"plugin", viaPlugin})
}

// Side is one column of CompareStorageSides: a name and the storage it measures.
type Side struct {
	Name string
	S    storage.Storage
}

// CompareStorageSides is CompareStorage over any number of sides, the first being the
// reference (usually in-process) the others are compared with, e.g. one plugin client
// over gRPC and one over the fast path, measured in the same run.
func CompareStorageSides(b *testing.B, sides ...Side) {
	if len(sides) < 2 {
		b.Fatal("CompareStorageSides: need a reference and at least one other side")
	}
	type row struct {
		op      string
		results []*benchResult
	}
	var rows []*row
	for _, op := range append([]benchOp{pingOp, roundTripOp}, benchOps()...) {
		rw := &row{op: op.name, results: make([]*benchResult, len(sides))}
		rows = append(rows, rw)
		b.Run(op.name, func(b *testing.B) {
			for i, side := range sides {
				b.Run(side.Name, func(b *testing.B) {
					r := runBench(b, op, side.S)
					rw.results[i] = &r // the last run, with the largest b.N, wins
				})
			}
		})
		if op.writers > 1 {
			// Concurrent durable writes once more, the sides taking turns.
			rw := &row{op: op.name + "Interleaved"}
			rows = append(rows, rw)
			b.Run(rw.op, func(b *testing.B) { rw.results = runInterleaved(b, op, sides) })
		}
	}
	ref := sides[0].Name
	var out strings.Builder
	tw := tabwriter.NewWriter(&out, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "operation\t"
	for _, sd := range sides {
		head += sd.Name + " p50 µs\t"
	}
	for _, sd := range sides[1:] {
		head += sd.Name + " added p50 µs\t"
	}
	for _, sd := range sides {
		head += sd.Name + " ops/s\t"
	}
	for _, sd := range sides[1:] {
		head += sd.Name + "/" + ref + " ops/s\t"
	}
	fmt.Fprintln(tw, head)
	floors := make([]*benchResult, len(sides))
	for _, rw := range rows {
		complete := len(rw.results) == len(sides)
		for _, r := range rw.results {
			complete = complete && r != nil
		}
		if !complete {
			continue // filtered out by -bench
		}
		if rw.op == pingOp.name {
			copy(floors, rw.results)
		}
		line := rw.op + "\t"
		for _, r := range rw.results {
			line += fmt.Sprintf("%.2f\t", micros(r.p50))
		}
		for _, r := range rw.results[1:] {
			line += fmt.Sprintf("%.2f\t", micros(r.p50-rw.results[0].p50))
		}
		for _, r := range rw.results {
			line += fmt.Sprintf("%.0f\t", r.throughput())
		}
		for _, r := range rw.results[1:] {
			ratio := 0.0
			if rw.results[0].throughput() > 0 {
				ratio = r.throughput() / rw.results[0].throughput()
			}
			line += fmt.Sprintf("%.4f\t", ratio)
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
	for i, f := range floors[1:] {
		if f != nil {
			fmt.Fprintf(&out, "%s round-trip floor (RoundTrip: one empty call on its transport, %s): p50 %.2f µs, p99 %.2f µs\n",
				sides[i+1].Name, Transport(sides[i+1].S), micros(f.p50), micros(f.p99))
		}
	}
	out.WriteString("added p50 = side p50 - " + ref + " p50: the latency one call across the plugin boundary adds.\n")
	out.WriteString("RoundTripGRPC is one bare unary gRPC call (PluginInfo) whatever the transport of the storage calls.\n")
	out.WriteString("Batch100 counts one batch of 100 puts as one operation.\n")
	fmt.Fprintf(&out, "PutParallel16Interleaved is PutParallel16 with the sides taking turns, "+
		"in %d stretches each: every side sees the same disk, whose speed moves within seconds; "+
		"its ratios are the ones to judge writes by.\n", interleavedStretches)
	// Printed rather than logged: the testing package shows a parent benchmark's log only
	// with -v, and cuts it to ten lines.
	fmt.Fprintf(os.Stdout, "\n%s: %s vs plugin\n%s\n", b.Name(), ref, out.String())
}

// micros converts a duration to microseconds.
func micros(d time.Duration) float64 {
	return float64(d) / float64(time.Microsecond)
}
