package plugins

import (
	"context"
	"errors"
	"maps"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/limitgraph/limit/internal/syncbuf"
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/runner"
)

// TestHandleSpent: a session's process is opened with what the session spent before, and
// an execution whose result reports the session's running totals hands just those to
// Handle.Spent; one that reports none does not call it, and a failure to keep them is
// logged, the result kept.
func TestHandleSpent(t *testing.T) {
	ctx := context.Background()
	logs := &syncbuf.Buffer{}
	rs := NewRunners(map[string]Spec{"echo": testSpec(base.KindRunner, "echo", "echo")}, hclog.New(&hclog.LoggerOptions{Output: logs}))
	defer rs.Close(ctx)
	h, err := rs.Get(ctx, runner.Session{ID: "S", Spent: map[string]float64{"session_tokens": 5}}, "echo")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []map[string]float64
	var fail error
	h.Spent = func(_ context.Context, spent map[string]float64) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, spent)
		return fail
	}
	calls := func() []map[string]float64 {
		mu.Lock()
		defer mu.Unlock()
		return append([]map[string]float64(nil), got...)
	}
	res, err := h.Execute(ctx, runner.ExecuteRequest{Input: "spend:10"}, func(runner.Event) error { return nil })
	if err != nil || res.Usage.Extra["session_tokens"] != 15 {
		t.Fatalf("spend: %+v %v, want session_tokens 5+10", res, err)
	}
	if c := calls(); len(c) != 1 || !maps.Equal(c[0], map[string]float64{"session_tokens": 15}) {
		t.Fatalf("Spent got %v, want one call with session_tokens 15 alone", c)
	}
	// A runner without running totals (the Python runner): Spent is not called.
	echoOutput(t, h, "plain")
	if c := calls(); len(c) != 1 {
		t.Fatalf("an execution without session_ figures called Spent: %v", c)
	}
	mu.Lock()
	fail = errors.New("store is down")
	mu.Unlock()
	res, err = h.Execute(ctx, runner.ExecuteRequest{Input: "spend:1"}, func(runner.Event) error { return nil })
	if err != nil || res.Status != runner.StatusOK || res.Usage.Extra["session_tokens"] != 16 {
		t.Fatalf("a failure to keep the spending changed the execution: %+v %v", res, err)
	}
	if !strings.Contains(logs.String(), "store is down") {
		t.Errorf("the failure to keep the spending was not logged:\n%s", logs.String())
	}
}

func TestSpentOf(t *testing.T) {
	for _, tc := range []struct {
		extra, want map[string]float64
	}{
		{nil, nil},
		{map[string]float64{"tokens_per_second": 3, "cost_usd": 1}, nil},
		{map[string]float64{"session_tokens": 3, "session_cost_usd": 0.5, "attempts": 1}, map[string]float64{"session_tokens": 3, "session_cost_usd": 0.5}},
		{map[string]float64{"session_tokens": math.NaN(), "session_a": math.Inf(1), "session_b": -1, "session_c": 0}, map[string]float64{"session_c": 0}},
	} {
		if got := SpentOf(tc.extra); !maps.Equal(got, tc.want) || (got == nil) != (tc.want == nil) {
			t.Errorf("SpentOf(%v) = %v, want %v", tc.extra, got, tc.want)
		}
	}
}
