package api

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/limitgraph/limit/host/governance"
	"github.com/limitgraph/limit/host/session"
	"github.com/limitgraph/limit/host/trace/tracetest"
)

// BenchmarkCreateTrace measures POST /v1/traces through the API's handler on in-memory
// storage, without a network: the CPU and allocations the API and the trace store spend
// per request (go test -run '^$' -bench CreateTrace -benchmem ./host/api). The body is the
// one the e2e benchmark's client sends.
func BenchmarkCreateTrace(b *testing.B) {
	ctx := context.Background()
	st, traces := tracetest.Mem(b)
	sessions := session.NewManager(session.Options{Store: st, DataDir: b.TempDir(), Policies: governance.PolicyNames(), DefaultPolicy: "default"})
	srv := New(Options{Sessions: sessions, Traces: traces, Store: st})
	// A new session every 256 traces keeps the in-memory storage's sorted namespaces
	// small, so its inserts cost the same however long the benchmark runs.
	var body string
	n := 0
	b.ReportAllocs()
	cpu0 := cpuTime()
	for b.Loop() {
		if n%256 == 0 {
			b.StopTimer()
			sess, err := sessions.Create(ctx, session.CreateRequest{Name: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			body = fmt.Sprintf(`{"data":{"i":1,"payload":"benchmark trace"},"session_id":%q}`+"\n", sess.ID)
			b.StartTimer()
		}
		n++
		req := httptest.NewRequest("POST", "/v1/traces", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		if rec.Code != 201 {
			b.Fatalf("POST /v1/traces: %d %s", rec.Code, rec.Body)
		}
	}
	// The process's CPU time per request (garbage collection included) says more than the
	// wall time on a shared, loaded machine.
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
}

// cpuTime is the CPU time (user and system) the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
