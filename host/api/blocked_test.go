package api

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/limitgraph/limit/host/session"
	"github.com/limitgraph/limit/host/trace"
	"github.com/limitgraph/limit/sdk/storage/memstore"
)

// TestBlockedCountedWhenClientLeaves: an execution governance blocked, whose trace was
// written, is counted in the governance stats (its flags, the block) even if its client
// went away right after the write. The count used the request's context and was lost.
func TestBlockedCountedWhenClientLeaves(t *testing.T) {
	ctx := context.Background()
	st := &hookStore{Storage: memstore.New()}
	a := newPluginAPI(t, st)
	srv, sessions, traces, stats := a.srv, a.sessions, a.traces, a.stats
	s, err := sessions.Create(ctx, session.CreateRequest{Runners: []string{"echo"}})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The client goes away once the blocked trace is written.
	ns := trace.SessionNamespace(trace.DefaultTenant, s.ID)
	st.at(func(after bool, op, n string, _ []byte) bool { return after && op == "batch" && n == ns }, cancel)
	req := httptest.NewRequest("POST", "/v1/sessions/"+s.ID+"/executions", strings.NewReader(`{"runner":"echo","input":"forbidden"}`)).WithContext(rctx)
	srv.ServeHTTP(httptest.NewRecorder(), req)
	list, _, err := traces.ListBySession(ctx, s.ID, 10, "")
	if err != nil || len(list) != 1 {
		t.Fatalf("traces: %v %v", list, err)
	}
	got, err := stats.Get(ctx, s.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.ExecutionsBlocked != 1 || got.ByFlag["jailbreak"] != 1 {
		t.Fatalf("stats of a blocked execution whose client left: %+v", got)
	}
}
