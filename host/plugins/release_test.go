package plugins

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/runner"
)

// TestReleaseWithEndedContext: Release whose context has already ended (a deleting client
// that went away) still stops every process of the session; it used to pick at random
// between the ended context and the process being ready, and leave the process running
// half the time.
func TestReleaseWithEndedContext(t *testing.T) {
	ctx := context.Background()
	rs := NewRunners(map[string]Spec{"echo": testSpec(base.KindRunner, "echo", "echo")}, nil)
	defer rs.Close(ctx)
	var pids []int
	for i := range 8 {
		h, err := rs.Get(ctx, runner.Session{ID: fmt.Sprint("S", i)}, "echo")
		if err != nil {
			t.Fatal(err)
		}
		pids = append(pids, h.Process.PID)
	}
	ended, cancel := context.WithCancel(ctx)
	cancel()
	for i := range pids {
		rs.Release(ended, fmt.Sprint("S", i))
	}
	for _, pid := range pids {
		waitDead(t, pid, 5*time.Second)
	}
}

// TestCloseWaitsForRetiredAndDead: processes stopped in the background (Retire, Died)
// are gone when Close returns; it used to return while they were still being stopped,
// so a daemon that exited right after could leave them behind.
func TestCloseWaitsForRetiredAndDead(t *testing.T) {
	ctx := context.Background()
	rs := NewRunners(map[string]Spec{"echo": testSpec(base.KindRunner, "echo", "echo")}, nil)
	var pids []int
	for i := range 4 {
		h, err := rs.Get(ctx, runner.Session{ID: fmt.Sprint("S", i)}, "echo")
		if err != nil {
			t.Fatal(err)
		}
		pids = append(pids, h.Process.PID)
		if i%2 == 0 {
			h.Retire()
		} else {
			h.Died()
		}
	}
	rs.Close(ctx)
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("pid %d still running after Close", pid)
		}
	}
}
