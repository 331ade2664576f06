package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/limitgraph/limit/sdk/governance"
)

// benchCode is a realistic 60-line script with two findings (B602, B608).
var benchCode = strings.Repeat(`import json, subprocess, sqlite3

def load(path):
    with open(path) as f:
        return json.load(f)

def count(db, name):
    cur = db.cursor()
    cur.execute("SELECT count(*) FROM t WHERE name = '%s'" % name)
    return cur.fetchone()[0]

def run(cmd):
    return subprocess.run(cmd, shell=True, capture_output=True)

`, 4)

// measure runs call b.N times and reports p50 and p99 in µs.
func measure(b *testing.B, call func()) time.Duration {
	ds := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		call()
		ds = append(ds, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(ds)
	b.ReportMetric(float64(ds[len(ds)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(ds[len(ds)*99/100].Microseconds()), "p99-µs")
	return ds[len(ds)/2]
}

// BenchmarkEvaluate measures one analysis of a 60-line script in-process (Go to the
// Python helper and back) and through the plugin process, beside the gRPC floor. Each call
// sends different code (a comment with a counter), as the plugin answers code it analysed
// lately from its cache; "cached" sends the same code every time.
//
//	go test -run '^$' -bench Evaluate -benchtime 2000x ./plugins/governance-codesafety
func BenchmarkEvaluate(b *testing.B) {
	ctx := context.Background()
	n := 0
	req := func() governance.EvaluateRequest {
		n++
		return governance.EvaluateRequest{Stage: governance.StagePre, ContentType: "code/python", Content: fmt.Sprintf("%s# %d\n", benchCode, n)}
	}
	var inproc, cached, plugin, floor time.Duration
	b.Run("in-process", func(b *testing.B) {
		r := configured(b, `{}`)
		inproc = measure(b, func() {
			if fs, err := r.Evaluate(ctx, req()); err != nil || len(fs) != 8 {
				b.Fatal(fs, err)
			}
		})
	})
	b.Run("in-process-cached", func(b *testing.B) {
		r := configured(b, `{}`)
		same := req()
		cached = measure(b, func() {
			if fs, err := r.Evaluate(ctx, same); err != nil || len(fs) != 8 {
				b.Fatal(fs, err)
			}
		})
	})
	r := launch(b, `{}`)
	b.Run("plugin", func(b *testing.B) {
		plugin = measure(b, func() {
			if _, err := r.Evaluate(ctx, req()); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("grpc-floor", func(b *testing.B) {
		floor = measure(b, func() {
			if _, err := r.Describe(ctx); err != nil {
				b.Fatal(err)
			}
		})
	})
	if cached > 0 {
		fmt.Printf("p50 of the same script again (cache): %v\n", cached)
	}
	if inproc > 0 && plugin > 0 && floor > 0 {
		fmt.Printf("p50 per 60-line script: in-process %v, through the plugin %v, gRPC floor %v; plugin/in-process %.2f\n", inproc, plugin, floor, float64(plugin)/float64(inproc))
	}
}
