package execution

import (
	"context"
	"errors"
	"time"

	"github.com/hashicorp/go-hclog"
)

type requestIDKey struct{}

// WithRequestID returns ctx carrying id, the API request's id (its X-Request-Id answer):
// the engine's log lines about an execution asked under ctx carry it as request_id, so
// that what a user reports by that id can be found in the log.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID returns the request id WithRequestID put in ctx, "" when none.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// logger is the engine's logger for the execution asked under ctx: with its request_id.
func (e *Engine) logger(ctx context.Context) hclog.Logger {
	l := e.Logger
	if l == nil {
		l = hclog.NewNullLogger()
	}
	if id := RequestID(ctx); id != "" {
		l = l.With("request_id", id)
	}
	return l
}

// logOutcome writes the one INFO line of an execution's outcome: it ran (with its status:
// ok, error, timeout, cancelled; and, when its trace could not be stored, record pending or
// lost), was blocked by its policy, or was not run (the error says why). Inputs and outputs
// are never logged, only their figures.
func logOutcome(log hclog.Logger, sessionID, runnerName string, took time.Duration, res *Result, err error) {
	args := []any{"session", sessionID, "runner", runnerName}
	var (
		pending *RecordPendingError
		lost    *RecordLostError
		blocked *BlockedError
	)
	record := ""
	switch {
	case err == nil && res != nil:
	case errors.As(err, &pending):
		res, record = pending.Result, "pending"
	case errors.As(err, &lost):
		res, record = lost.Result, "lost"
	case errors.As(err, &blocked):
		log.Info("execution blocked", append(args, "trace", blocked.TraceID, "status", "blocked", "policy", blocked.Policy,
			"duration", took, "flags", flagNames(blocked.Flags))...)
		return
	default:
		log.Info("execution not run", append(args, "duration", took, "error", err)...)
		return
	}
	if res == nil {
		log.Info("execution", append(args, "duration", took, "record", record, "error", err)...)
		return
	}
	args = append(args, "trace", res.TraceID, "status", res.Status, "exit_code", res.ExitCode, "duration", took,
		"flags", flagNames(res.Flags))
	if res.StateReset {
		args = append(args, "state_reset", true)
	}
	if res.Truncated {
		args = append(args, "truncated", true)
	}
	if record != "" {
		args = append(args, "record", record)
	}
	log.Info("execution", args...)
}
