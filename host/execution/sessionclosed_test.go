package execution

import (
	"context"
	"strings"
	"testing"

	"github.com/limitgraph/limit/host/session"
)

// TestSessionDeletedDuringExecution: an execution whose session is deleted while it runs
// (its runner process is closed and stopped under it) is recorded as cancelled because the
// session was closed, exit code -1, not as a runner that crashed; a process that does crash
// is still reported as one.
func TestSessionDeletedDuringExecution(t *testing.T) {
	e, s := echoEngine(t)
	ctx := context.Background()
	deleted := make(chan error, 1)
	var once bool
	res, err := e.Execute(ctx, s.ID, Request{Runner: "echo", Input: "tokens-hang:some words", TimeoutMS: 60_000}, func(ev Event) {
		if ev.Kind == "token" && !once {
			once = true
			go func() {
				_, err := e.Sessions.Delete(ctx, s.ID)
				deleted <- err
			}()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-deleted; err != nil {
		t.Fatalf("delete: %v", err)
	}
	if res.Status != "cancelled" || res.ExitCode != -1 || !strings.Contains(res.Error, "its session was closed") || strings.Contains(res.Error, "died") {
		t.Fatalf("result %+v, want cancelled, exit code -1, saying its session was closed", res)
	}
	if ex := executed(t, e, res.TraceID); ex["status"] != "cancelled" || ex["exit_code"] != float64(-1) || !strings.Contains(ex["error"].(string), "its session was closed") {
		t.Fatalf("executed entry %v, want status cancelled, exit code -1", ex)
	}
	// A runner process that crashes is still reported as one.
	s2, err := e.Sessions.Create(ctx, session.CreateRequest{Runners: []string{"echo"}})
	if err != nil {
		t.Fatal(err)
	}
	res, err = e.Execute(ctx, s2.ID, Request{Runner: "echo", Input: "crash"}, nil)
	if err != nil || res.Status != "error" || !strings.Contains(res.Error, "process died during the execution") {
		t.Fatalf("a crash: %+v %v, want an error saying the process died", res, err)
	}
}
