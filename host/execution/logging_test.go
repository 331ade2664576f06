package execution

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/limitgraph/limit/internal/downstore"
	"github.com/limitgraph/limit/sdk/storage/memstore"
)

// TestLogLinesCarryRequestID: the engine's lines about an execution carry the request id
// the API put in its context, the WARN of an outcome the storage did not take included (a
// user reports the X-Request-Id of the 503), and its outcome has one INFO line.
func TestLogLinesCarryRequestID(t *testing.T) {
	defer func(d time.Duration) { PendingRetry = d }(PendingRetry)
	PendingRetry = 10 * time.Millisecond
	ctx := WithRequestID(context.Background(), "req-0123")
	st := &downstore.Store{Storage: memstore.New()}
	e, s := echoEngineOn(t, st)
	var out syncBuilder
	e.Logger = hclog.New(&hclog.LoggerOptions{Output: &out, Level: hclog.Info})
	e.Store, e.Node, e.JournalDir = st, "a", t.TempDir()
	_, err := e.Execute(ctx, s.ID, Request{Runner: "echo", Input: "x"}, func(ev Event) {
		if ev.Kind == EventStarted {
			st.Down.Store(true)
		}
	})
	var pe *RecordPendingError
	if !errors.As(err, &pe) {
		t.Fatalf("execution: %v, want a RecordPendingError", err)
	}
	var warn, outcome string
	for _, l := range strings.Split(out.String(), "\n") {
		switch {
		case strings.Contains(l, "an execution ran but its trace could not be stored"):
			warn = l
		case strings.Contains(l, "[INFO]  execution:"):
			outcome = l
		}
	}
	if !strings.Contains(warn, "request_id=req-0123") {
		t.Errorf("the WARN line has no request_id: %q (log %s)", warn, out.String())
	}
	for _, want := range []string{"request_id=req-0123", "session=" + s.ID, "trace=" + pe.TraceID, "runner=echo", "status=ok", "record=pending", "duration="} {
		if !strings.Contains(outcome, want) {
			t.Errorf("outcome line %q lacks %s", outcome, want)
		}
	}
	st.Down.Store(false)
	for e.pending(pe.TraceID) {
		time.Sleep(10 * time.Millisecond)
	}
}

// syncBuilder is a log's output, which the journal's background retry writes to too.
type syncBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuilder) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuilder) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
