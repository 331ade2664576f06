package session

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"

	"github.com/limitgraph/limit/sdk/storage/memstore"
)

// TestKeepSpent: what a runner reports a session spent is kept in the session's record,
// the largest figure of each key, written only when a figure grew, read back by a host
// that starts on the same store, and not shown in the API's answer.
func TestKeepSpent(t *testing.T) {
	ctx := context.Background()
	st := &countingStore{Storage: memstore.New()}
	m := newManager(t, st)
	s, err := m.Create(ctx, CreateRequest{Name: "a"})
	if err != nil {
		t.Fatal(err)
	}
	puts := func() int64 { return st.puts.Load() }
	spentOf := func(m *Manager, name string) map[string]float64 {
		t.Helper()
		got, err := m.Get(ctx, s.ID)
		if err != nil {
			t.Fatal(err)
		}
		return got.RunnerSpent[name]
	}
	before := puts()
	// Nothing spent, or zeros (a first execution refused before it spent): no write.
	for _, spent := range []map[string]float64{nil, {"session_tokens": 0, "session_cost_usd": 0}} {
		if err := m.keepSpent(ctx, s.ID, "llm", spent); err != nil {
			t.Fatal(err)
		}
	}
	if n := puts() - before; n != 0 {
		t.Fatalf("spending nothing wrote the record %d times", n)
	}
	steps := []struct {
		spent map[string]float64
		want  map[string]float64
		write bool
	}{
		{map[string]float64{"session_tokens": 15, "session_cost_usd": 0.5}, map[string]float64{"session_tokens": 15, "session_cost_usd": 0.5}, true},
		// The same totals again (an execution refused over budget): no write.
		{map[string]float64{"session_tokens": 15, "session_cost_usd": 0.5}, map[string]float64{"session_tokens": 15, "session_cost_usd": 0.5}, false},
		// Less (a report older than the last kept one): no write, nothing goes down.
		{map[string]float64{"session_tokens": 10}, map[string]float64{"session_tokens": 15, "session_cost_usd": 0.5}, false},
		// One figure grew: the larger of each is kept.
		{map[string]float64{"session_tokens": 30, "session_cost_usd": 0.25}, map[string]float64{"session_tokens": 30, "session_cost_usd": 0.5}, true},
	}
	for i, step := range steps {
		before := puts()
		if err := m.keepSpent(ctx, s.ID, "llm", step.spent); err != nil {
			t.Fatal(err)
		}
		if wrote := puts() > before; wrote != step.write {
			t.Errorf("step %d: wrote %v, want %v", i, wrote, step.write)
		}
		if got := spentOf(m, "llm"); !maps.Equal(got, step.want) {
			t.Errorf("step %d: kept %v, want %v", i, got, step.want)
		}
	}
	if got := spentOf(m, "other"); got != nil {
		t.Errorf("another runner's spending: %v, want none", got)
	}
	// A host started on the same store reads it back.
	m2 := newManager(t, st)
	if got := spentOf(m2, "llm"); !maps.Equal(got, steps[len(steps)-1].want) {
		t.Errorf("after a restart: %v", got)
	}
	// The API's answer (the Session encoded) shows it as "spent", so a user can see what
	// is left of a budget; the stored record keeps it as "runner_spent" alone.
	got, _ := m2.Get(ctx, s.ID)
	b, _ := json.Marshal(got)
	if !strings.Contains(string(b), `"spent":{"llm":{"session_cost_usd":0.5,"session_tokens":30}}`) || strings.Contains(string(b), "runner_spent") {
		t.Errorf("the session's answer: %s", b)
	}
	raw, _, _ := st.Get(ctx, IndexNamespace(DefaultTenant), []byte(sessionPrefix+s.ID))
	if !strings.Contains(string(raw), `"runner_spent":{"llm":{`) || strings.Contains(string(raw), `"spent":`) {
		t.Errorf("stored record: %s", raw)
	}
	// A copy handed out does not share the cache's maps.
	got.RunnerSpent["llm"]["session_tokens"] = 1
	if again := spentOf(m2, "llm"); again["session_tokens"] != 30 {
		t.Errorf("a caller's change reached the cache: %v", again)
	}

	// A deleted session's record is left as the delete wrote it.
	if _, err := m.Delete(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	before = puts()
	if err := m.keepSpent(ctx, s.ID, "llm", map[string]float64{"session_tokens": 99}); err != nil {
		t.Fatal(err)
	}
	if puts() != before {
		t.Error("spending was written over a deleted session")
	}
	if got, _ := m.Get(ctx, s.ID); got.State != StateDeleted {
		t.Errorf("state %q after keeping spending, want deleted", got.State)
	}
}

// TestKeepSpentConcurrent: reports kept at once, for two runners, end with the largest
// figure of each, none lost to another's write.
func TestKeepSpentConcurrent(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, memstore.New())
	s, err := m.Create(ctx, CreateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 1; i <= 50; i++ {
		for _, name := range []string{"a", "b"} {
			wg.Go(func() {
				spent := map[string]float64{"session_tokens": float64(i), fmt.Sprintf("session_k%d", i%3): float64(i)}
				if err := m.keepSpent(ctx, s.ID, name, spent); err != nil {
					t.Error(err)
				}
			})
		}
	}
	wg.Wait()
	got, _ := m.Get(ctx, s.ID)
	want := map[string]float64{"session_tokens": 50, "session_k0": 48, "session_k1": 49, "session_k2": 50}
	for _, name := range []string{"a", "b"} {
		if !maps.Equal(got.RunnerSpent[name], want) {
			t.Errorf("runner %s: kept %v, want %v", name, got.RunnerSpent[name], want)
		}
	}
}
