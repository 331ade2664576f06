package main

import (
	"context"
	"runtime"
	"testing"

	"github.com/limitgraph/limit/sdk/runner"
)

// TestCancelledBeforeStartExitCode: an execution cancelled while it waits for the one
// before it is recorded with exit code -1, as every result of a program that never ran
// (it was 0, the exit status of a program that succeeded).
func TestCancelledBeforeStartExitCode(t *testing.T) {
	r := newRunner(nil)
	r.slot <- struct{}{} // an execution is running
	done := make(chan runner.Result, 1)
	go func() {
		res, err := r.Execute(context.Background(), runner.ExecuteRequest{ExecutionID: "e2", Input: "print(1)"}, func(runner.Event) error { return nil })
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	for {
		if ok, _ := r.Cancel(context.Background(), "e2"); ok {
			break
		}
		runtime.Gosched()
	}
	res := <-done
	if res.Status != runner.StatusCancelled || res.ExitCode != -1 || res.Error != "execution cancelled before it started" {
		t.Fatalf("result %+v, want cancelled before it started, exit code -1", res)
	}
}
