package api

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/limitgraph/limit/host/execution"
	"github.com/limitgraph/limit/host/session"
	"github.com/limitgraph/limit/host/trace"
	"github.com/limitgraph/limit/sdk/storage/memstore"
)

// runningExecution starts input in session sid on a's engine with a caller whose context
// the returned function cancels, and returns the execution's trace id once its trace is
// stored (it outlasted execution.RecordStartAfter) and a channel that receives the
// execution's end.
func runningExecution(t *testing.T, a pluginAPI, sid, input string) (string, context.CancelFunc, <-chan error) {
	t.Helper()
	ctx, leave := context.WithCancel(context.Background())
	t.Cleanup(leave)
	streaming := make(chan struct{})
	var once sync.Once
	done := make(chan error, 1)
	go func() {
		_, err := a.srv.opts.Engine.Execute(ctx, sid, execution.Request{Runner: "echo", Input: input, TimeoutMS: 60_000}, func(ev execution.Event) {
			if ev.Kind == "token" {
				once.Do(func() { close(streaming) })
			}
		})
		done <- err
	}()
	select {
	case <-streaming:
	case err := <-done:
		t.Fatalf("the execution ended before it streamed: %v", err)
	}
	for {
		list, _, err := a.traces.ListBySession(context.Background(), sid, 10, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(list) == 1 {
			return list[0].ID, leave, done
		}
		time.Sleep(10 * time.Millisecond) // the early create lands RecordStartAfter in
	}
}

// TestMergeRunningExecution: a merge of an execution still running is refused (409,
// saying so) under every policy, and writes nothing to its trace: it used to merge under
// permissive (the outcome then appended to a "final" chain, the shared copy stale) and to
// flag the trace unverified for good under the others. Once the execution ended, it merges
// with its outcome, and the shared copy is the whole chain.
func TestMergeRunningExecution(t *testing.T) {
	ctx := context.Background()
	a := newPluginAPI(t, memstore.New())
	for _, policy := range []string{"permissive", "default"} {
		t.Run(policy, func(t *testing.T) {
			s, err := a.sessions.Create(ctx, session.CreateRequest{Runners: []string{"echo"}, Policy: policy})
			if err != nil {
				t.Fatal(err)
			}
			id, leave, done := runningExecution(t, a, s.ID, "tokens-wait:hello")
			rec := httptest.NewRecorder()
			a.srv.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/traces/"+id+"/merge", nil))
			var p map[string]any
			_ = json.Unmarshal(rec.Body.Bytes(), &p)
			if rec.Code != 409 || !strings.Contains(rec.Header().Get("Content-Type"), "problem+json") ||
				!strings.HasPrefix(p["detail"].(string), "the execution is still running on this host (since ") ||
				!strings.HasSuffix(p["detail"].(string), "); merge it once it has ended") || p["trace_id"] != id || p["since"] == nil {
				t.Fatalf("merge of a running execution: %d %s", rec.Code, rec.Body)
			}
			got, err := a.traces.Get(ctx, id)
			if err != nil || len(got.Flags) != 0 || got.Status != trace.StatusActive || got.Length != 1 {
				t.Fatalf("trace after the refused merge: %+v %v; want it untouched (its created entry alone)", got, err)
			}

			leave() // the execution is cancelled, and recorded so
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			rec = httptest.NewRecorder()
			a.srv.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/traces/"+id+"/merge", nil))
			var m mergeResponse
			if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &m) != nil {
				t.Fatalf("merge once ended: %d %s", rec.Code, rec.Body)
			}
			chain, err := a.traces.Chain(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			kinds := []string{}
			for _, e := range chain {
				kinds = append(kinds, e.Kind)
			}
			if strings.Join(kinds, ",") != "created,executed,merged" || m.Record.Length != int64(len(chain)) {
				t.Fatalf("chain %v, shared copy of length %d; want created, executed, merged, all shared", kinds, m.Record.Length)
			}
		})
	}
}
