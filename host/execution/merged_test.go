package execution

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/limitgraph/limit/host/session"
	"github.com/limitgraph/limit/host/trace"
)

// running starts input in session s with a caller whose context the returned function
// cancels, and returns the execution's trace id once its trace is stored (it outlasted
// RecordStartAfter) and a channel that receives the execution's end.
func running(t *testing.T, e *Engine, s *session.Session, input string) (string, context.CancelFunc, <-chan error) {
	t.Helper()
	ctx, leave := context.WithCancel(context.Background())
	t.Cleanup(leave)
	streaming := make(chan struct{})
	var once sync.Once
	done := make(chan error, 1)
	go func() {
		_, err := e.Execute(ctx, s.ID, Request{Runner: "echo", Input: input, TimeoutMS: 60_000}, func(ev Event) {
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
		list, _, err := e.Traces.ListBySession(context.Background(), s.ID, 10, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(list) == 1 {
			return list[0].ID, leave, done
		}
		time.Sleep(10 * time.Millisecond) // the early create lands RecordStartAfter in
	}
}

// TestOutcomeNotAppendedToMergedTrace: an execution whose trace was merged while it ran
// (the API refuses that, but a host that does not see the execution might) leaves the
// merged chain as it was, final, and still answers what ran; the outcome used to be
// appended to the merged chain, the shared copy left without it.
func TestOutcomeNotAppendedToMergedTrace(t *testing.T) {
	ctx := context.Background()
	e, s := echoEngine(t)
	id, leave, done := running(t, e, s, "tokens-wait:hello")
	if _, _, err := e.Traces.Apply(ctx, id, Agent, trace.Update{Status: trace.StatusMerged, Reason: "elsewhere"}); err != nil {
		t.Fatal(err)
	}
	leave()
	if err := <-done; err != nil {
		t.Fatalf("execution: %v, want its result", err)
	}
	chain, err := e.Traces.Chain(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if last := chain[len(chain)-1]; last.Kind != trace.KindMerged {
		t.Fatalf("the merged chain ends with %s, want it left final", last.Kind)
	}
}
