// Package client is the Go client of the LIMIT host REST API (the one limitctl uses).
//
//	c, err := client.FromEnv("") // LIMIT_ADDR, LIMIT_TOKEN or LIMIT_TOKEN_FILE; or client.New(addr)
//	if err != nil {
//		return err
//	}
//	s, err := c.CreateSession(ctx, client.CreateSessionRequest{Name: "demo"})
//	if err != nil {
//		return err
//	}
//	res, err := c.Execute(ctx, s.ID, client.ExecuteRequest{Runner: "python", Input: "print(6*7)"})
//	var apiErr *client.Error
//	switch {
//	case errors.As(err, &apiErr):
//		return fmt.Errorf("refused (HTTP %d): %s", apiErr.Status, apiErr.Detail)
//	case err != nil:
//		return err // the host not reached, the context ended, ...
//	case res.Status != "ok":
//		return fmt.Errorf("ran and ended %s (exit %d): %s", res.Status, res.ExitCode, res.Error)
//	}
//	fmt.Print(res.Stdout) // res.TraceID names the execution's trace
//
// # Results and errors
//
// An execution that ran returns its result with a nil error whatever its outcome:
// ExecutionResult.Status says how it ended ("ok", "error", "timeout", "cancelled",
// "limit_exceeded") and FinishReason, when the runner gives one, why ("completed",
// "exit", "timeout", "cancelled", "memory_limit", "file_size_limit" from the Python
// runner; "stop", "length" from the LLM runner; other runners choose their own words).
//
// A problem the API answered (RFC 9457) is an *Error: its HTTP Status, Title, Detail,
// Instance, the request's RequestID, RetryAfter when the host sent one, and the problem's
// other members in Extra (trace_id, flags and policy of an execution the policy blocked,
// reasons of a refused merge, record_pending of an execution whose trace is not stored
// yet). StatusOf(err) gives the status of any error, 0 when it is not an *Error. Other
// errors are the transport's (the host not reached), the context's, or the client's own
// ("client: ..."), such as an empty id or an unset BaseURL, found before any request.
//
// # Retries
//
// Nothing is retried by the client. A 503 or 429 with RetryAfter means the host could not
// serve the call then (a plugin unavailable, a runner at its process limit, storage down):
// wait RetryAfter and try again if the call is safe to repeat. The reads (Get*, List*,
// Health, GovernanceStats, VerifyProvenance, Policies, ProvenanceKey, OpenAPI, RDKnee),
// Evaluate, Export and the stateless RD computations (FGW, Knee, Curve, SessionFGW) are.
// The calls that write (CreateSession, CreateTrace, AppendProvenance, AddRDPoint, Flag)
// make a second record when repeated; before repeating Merge or DeleteSession, read the
// trace or session to see whether the first call took effect.
//
// Execute and ExecuteStream are not idempotent: each call runs the code again and makes a
// new trace. A call refused before the run (400, 401, 403 blocked by the policy, 404,
// 413, 415, 429) or that never reached the host did not run it. A 503 whose
// Extra["record_pending"] is true did run it: its trace (Extra["trace_id"]) is recorded
// once the host's storage is back; never run it again. A 500 whose Extra["record_lost"] is
// true ran it too, but its record is lost (the storage and the host's journal both refused
// it): Extra has what its result would have carried; never run it again. Any other failure (a 503 with
// RetryAfter or a 507, as storage or a rule plugin can fail before or after the run; an
// error event after output began; a stream that broke off, ErrStreamLost; a context that
// ended) may leave an execution that ran, and a call whose context ended or whose stream
// broke off returns no result and no trace id. The host cancels an execution whose client
// left (its trace records it as cancelled), but one that was ending may have completed:
// look for its trace with ListTraces on the session before running it again.
//
// # Streaming
//
// ExecuteStream calls a function for each piece of output (stdout, stderr, a model's
// tokens) as it comes and returns the result at the end. A failure after the stream began
// comes back as an *Error like an answered problem, its Status the one the answer would
// have had.
//
// # Bundles
//
// Export writes a bundle of traces and their provenance; verify it offline with `limitctl
// verify`, or from Go with VerifyBundle of github.com/limitgraph/limit/host/trace (see
// examples/basic_session).
package client
