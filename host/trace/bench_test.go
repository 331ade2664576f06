package trace

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/limitgraph/limit/internal/testbin"
	"github.com/limitgraph/limit/sdk/sdktest"
	"github.com/limitgraph/limit/sdk/storage"
	"github.com/limitgraph/limit/sdk/storage/memstore"
)

// benchBackends are the storages the benchmarks run on: memory (the store's own cost) and
// the storage-bolt plugin (what the host runs by default, fsync included).
func benchBackends(b *testing.B) map[string]func(b *testing.B) storage.Storage {
	return map[string]func(b *testing.B) storage.Storage{
		"memory": func(*testing.B) storage.Storage { return memstore.New() },
		"bolt": func(b *testing.B) storage.Storage {
			bin := testbin.Plugin(b, "storage-bolt")
			dir := b.TempDir()
			cfg := fmt.Appendf(nil, `{"path": %q}`, filepath.Join(dir, "bench.db"))
			st, stop, err := sdktest.LaunchStorage(context.Background(), bin, nil, cfg, dir)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(stop)
			return st
		},
	}
}

var benchData = json.RawMessage(`{"prompt":"summarize the report","params":{"temperature":0.2,"max_tokens":256},"tags":["a","b"]}`)

// BenchmarkCreate measures Create (an index put, then one batch: two storage writes) beside a raw storage Put of
// a value of the record's size, each from 1, 16 and 64 goroutines, in the same run;
// "ratio" is creates per raw put.
func BenchmarkCreate(b *testing.B) {
	for _, name := range []string{"memory", "bolt"} {
		open := benchBackends(b)[name]
		for _, clients := range []int{1, 16, 64} {
			b.Run(fmt.Sprintf("%s/clients=%d", name, clients), func(b *testing.B) {
				st := open(b)
				s := newStore(b, st)
				session := NewID()
				value := bytes.Repeat([]byte("x"), 1000)
				var n atomic.Int64
				put := func() error {
					return st.Put(context.Background(), "bench", fmt.Appendf(nil, "k%d", n.Add(1)), value)
				}
				create := func() error {
					_, err := s.Create(context.Background(), session, TraceCustom, benchData, "bench")
					return err
				}
				const batch = 256
				var rawTime, createTime time.Duration
				ops := 0
				for b.Loop() {
					rawTime += timeOps(b, clients, batch, put)
					createTime += timeOps(b, clients, batch, create)
					ops += batch
				}
				created, raw := float64(ops)/createTime.Seconds(), float64(ops)/rawTime.Seconds()
				b.ReportMetric(created, "creates/s")
				b.ReportMetric(raw, "raw-puts/s")
				b.ReportMetric(created/raw, "ratio")
			})
		}
	}
}

// BenchmarkAppend measures appends: one writer per trace (the common case), and 16 writers
// on one trace (every append contends for the same index).
func BenchmarkAppend(b *testing.B) {
	for _, name := range []string{"memory", "bolt"} {
		open := benchBackends(b)[name]
		b.Run(name+"/own-trace", func(b *testing.B) {
			s := newStore(b, open(b))
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				rec, err := s.Create(context.Background(), NewID(), TraceExecution, benchData, "bench")
				if err != nil {
					b.Error(err)
					return
				}
				for pb.Next() {
					if _, err := s.Append(context.Background(), rec.ID, Entry{Kind: KindExecuted, Agent: "runner", Data: benchData}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
		b.Run(name+"/one-trace-16-writers", func(b *testing.B) {
			s := newStore(b, open(b))
			rec, err := s.Create(context.Background(), NewID(), TraceExecution, benchData, "bench")
			if err != nil {
				b.Fatal(err)
			}
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := s.Append(context.Background(), rec.ID, Entry{Kind: KindExecuted, Data: benchData}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkAppendAfterRestart measures the first append to a trace of 4 entries by a store
// that has not written or checked it yet (after a restart, or on another host): the chain is
// read and verified before the host signs a longer one. Later appends by the same store skip
// that (BenchmarkAppend).
func BenchmarkAppendAfterRestart(b *testing.B) {
	ctx := context.Background()
	st := memstore.New()
	entry := Entry{Kind: KindExecuted, Agent: "runner", Data: benchData}
	for b.Loop() {
		b.StopTimer()
		s := newStore(b, st)
		rec, _, err := s.CreateWith(ctx, NewID(), TraceExecution, benchData, "bench", Update{Entries: []Entry{entry, entry, entry}})
		if err != nil {
			b.Fatal(err)
		}
		s = newStore(b, st)
		b.StartTimer()
		if _, err := s.Append(ctx, rec.ID, entry); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendLatency measures, one call at a time (so ns/op is latency, not throughput),
// in the same run: a raw storage Put of 1 KB, Create, Append, one Apply of 3 entries, 3
// Appends in a row, and CreateWith of 3 entries; every figure is in µs per call and its
// ratio to the raw put ("x put") is printed beside it. One Apply is one storage write, like
// the raw put; 3 Appends are three.
func BenchmarkAppendLatency(b *testing.B) {
	for _, name := range []string{"memory", "bolt"} {
		open := benchBackends(b)[name]
		b.Run(name, func(b *testing.B) {
			st := open(b)
			s := newStore(b, st)
			ctx := context.Background()
			value := bytes.Repeat([]byte("x"), 1000)
			entry := Entry{Kind: KindExecuted, Agent: "runner", Data: benchData}
			three := Update{Entries: []Entry{entry, entry, entry}}
			var id string
			steps := []struct {
				name string
				fn   func(i int) error
			}{
				{"put", func(i int) error { return st.Put(ctx, "bench", fmt.Appendf(nil, "k%d", i), value) }},
				{"create", func(int) error {
					rec, err := s.Create(ctx, NewID(), TraceExecution, benchData, "bench")
					id = rec.ID
					return err
				}},
				{"append", func(int) error { _, err := s.Append(ctx, id, entry); return err }},
				{"apply3", func(int) error { _, _, err := s.Apply(ctx, id, "runner", three); return err }},
				{"3appends", func(int) error {
					for range 3 {
						if _, err := s.Append(ctx, id, entry); err != nil {
							return err
						}
					}
					return nil
				}},
				{"createwith3", func(int) error {
					_, _, err := s.CreateWith(ctx, NewID(), TraceExecution, benchData, "bench", three)
					return err
				}},
			}
			total := make([]time.Duration, len(steps))
			n := 0
			for b.Loop() {
				for k, step := range steps {
					start := time.Now()
					if err := step.fn(n); err != nil {
						b.Fatal(err)
					}
					total[k] += time.Since(start)
				}
				n++
			}
			for k, step := range steps {
				b.ReportMetric(float64(total[k].Microseconds())/float64(n), step.name+"-µs")
				if k > 0 {
					b.ReportMetric(float64(total[k])/float64(total[0]), step.name+"-x-put")
				}
			}
		})
	}
}

// timeOps runs op count times from workers goroutines and returns the wall time taken.
func timeOps(b *testing.B, workers, count int, op func() error) time.Duration {
	b.Helper()
	var left atomic.Int64
	left.Store(int64(count))
	start := time.Now()
	done := make(chan error, workers)
	for range workers {
		go func() {
			for left.Add(-1) >= 0 {
				if err := op(); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range workers {
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
	return time.Since(start)
}

// BenchmarkVerifyBundle measures offline verification of a bundle of 50 traces of 10 entries.
func BenchmarkVerifyBundle(b *testing.B) {
	s := newStore(b, memstore.New())
	ctx := context.Background()
	session := NewID()
	for range 50 {
		rec, err := s.Create(ctx, session, TraceCustom, benchData, "bench")
		if err != nil {
			b.Fatal(err)
		}
		for range 9 {
			if _, err := s.Append(ctx, rec.ID, Entry{Kind: KindExecuted, Data: benchData}); err != nil {
				b.Fatal(err)
			}
		}
	}
	var buf bytes.Buffer
	if _, err := s.WriteBundle(ctx, &buf, BundleScope{SessionID: session}); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(buf.Len()))
	for b.Loop() {
		if _, err := VerifyBundle(bytes.NewReader(buf.Bytes()), VerifyOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/500, "µs/entry")
}

// BenchmarkCanonicalize measures RFC 8785 canonicalization of a small object.
func BenchmarkCanonicalize(b *testing.B) {
	b.SetBytes(int64(len(benchData)))
	for b.Loop() {
		if _, err := Canonicalize(benchData); err != nil {
			b.Fatal(err)
		}
	}
}
