package session

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/limitgraph/limit/host/plugins"
	"github.com/limitgraph/limit/sdk/storage/memstore"
)

// TestRunnerOfDeletedSession: an execution that looked its session up before a delete
// and asks for its runner after gets ErrDeleted, not a process that would outlive the
// session (nor its working directory back).
func TestRunnerOfDeletedSession(t *testing.T) {
	ctx := context.Background()
	m := NewManager(Options{Store: memstore.New(), DataDir: t.TempDir(), Policies: []string{"default"}, DefaultPolicy: "default",
		Runners: plugins.NewRunners(map[string]plugins.Spec{"echo": {Name: "echo"}}, nil)})
	s, err := m.Create(ctx, CreateRequest{Name: "a"})
	if err != nil {
		t.Fatal(err)
	}
	active, err := m.Active(ctx, s.ID)
	if err != nil {
		t.Fatal(err)
	}
	release, err := m.Acquire(ctx, active)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Delete(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Runner(ctx, active, "echo"); !errors.Is(err, ErrDeleted) {
		t.Fatalf("Runner of a deleted session: %v, want ErrDeleted", err)
	}
	release()
	if m.gates[s.ID] != nil {
		t.Fatal("the deleted session's gate outlived its last user")
	}
}

// TestGatesDropped: the per-session state kept for executions goes once none is left, so
// many sessions used once do not grow the manager; the bound holds while it is kept.
func TestGatesDropped(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, memstore.New())
	for range 50 {
		mc := 2
		s, err := m.Create(ctx, CreateRequest{Name: "a", MaxConcurrency: &mc})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for range 5 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				wctx, cancel := context.WithTimeout(ctx, 5*time.Millisecond)
				defer cancel()
				if release, err := m.Acquire(wctx, s); err == nil {
					time.Sleep(time.Millisecond)
					release()
				}
			}()
		}
		wg.Wait()
		a, err := m.Acquire(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		b, err := m.Acquire(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 5*time.Millisecond)
		if _, err := m.Acquire(wctx, s); !errors.Is(err, ErrBusy) {
			t.Fatalf("a third slot of max_concurrency 2: %v", err)
		}
		cancel()
		a()
		b()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.gates) != 0 {
		t.Fatalf("%d sessions' gates kept with no execution left", len(m.gates))
	}
}
