// Command basic_session walks through LIMIT host's basics with the Go SDK client: it
// creates a session, runs an execution in it, appends provenance to the execution's trace,
// exports the session's traces as a bundle and verifies the bundle offline.
//
//	make run &                       # limitd on 127.0.0.1:8080
//	go run ./examples/basic_session  # -addr, -runner, -input to change
//
// As limitctl does, it finds the daemon at -addr (a URL or a bare HOST:PORT), else
// LIMIT_ADDR, else http://127.0.0.1:8080, and sends the API token in LIMIT_TOKEN, else the
// one in the file LIMIT_TOKEN_FILE names (a daemon with api { token_file = ... }).
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"syscall"
	"time"

	"github.com/limitgraph/limit/host/trace"
	"github.com/limitgraph/limit/sdk/client"
)

func main() {
	addr := flag.String("addr", "", "limitd `URL` (http://HOST:PORT, https://... or HOST:PORT; default LIMIT_ADDR, else "+client.DefaultAddr+")")
	runner := flag.String("runner", "python", "runner to execute with (a runner block of the daemon's config)")
	input := flag.String("input", "x = 6 * 7\nprint('the answer is', x)", "input to execute")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := client.FromEnv(*addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "basic_session:", err)
		os.Exit(2)
	}
	if err := run(ctx, c, *runner, *input, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "basic_session:", err)
		if h := hint(err, c.Token != ""); h != "" {
			fmt.Fprintln(os.Stderr, "  "+h)
		}
		os.Exit(1)
	}
}

// hint says what to do about err, as limitctl does: start the daemon or point at it, or
// give it the token it wants ("" when there is nothing to add). sent tells whether a
// token was sent.
func hint(err error, sent bool) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "nothing listens there: start limitd (make run), or set -addr or LIMIT_ADDR to its address"
	case client.StatusOf(err) == http.StatusUnauthorized && !sent:
		return "the daemon wants an API token (its api.token_file): set LIMIT_TOKEN, or LIMIT_TOKEN_FILE to a file holding it"
	case client.StatusOf(err) == http.StatusUnauthorized:
		return "the daemon refused the token sent (LIMIT_TOKEN, else LIMIT_TOKEN_FILE's, else the address's): give one of its api.token_file"
	}
	return ""
}

func run(ctx context.Context, c *client.Client, runner, input string, out io.Writer) error {
	// 1. A session: its own storage namespace, runner processes and provenance chains.
	s, err := c.CreateSession(ctx, client.CreateSessionRequest{Name: "basic-session", MaxConcurrency: 4})
	if err != nil {
		return fmt.Errorf("create session: %w", err)
	}
	fmt.Fprintf(out, "session %s (policy %s)\n", s.ID, s.Policy)
	defer c.DeleteSession(context.WithoutCancel(ctx), s.ID)

	// 2. An execution, streamed as it runs; governance checks its input and output.
	fmt.Fprintf(out, "executing with runner %q:\n", runner)
	res, err := c.ExecuteStream(ctx, s.ID, client.ExecuteRequest{Runner: runner, Input: input}, func(ev client.Event) {
		fmt.Fprintf(out, "  [%s] %s", ev.Kind, ev.Data)
	})
	if err != nil {
		return fmt.Errorf("execute: %w", err)
	}
	fmt.Fprintf(out, "\n  status %s, exit %d, %d ms, trace %s, %d flags\n", res.Status, res.ExitCode, res.DurationMS, res.TraceID, len(res.Flags))

	// 3. Provenance: record who reviewed the result; the host keeps the chain hashed and signed.
	e, err := c.AppendProvenance(ctx, res.TraceID, "reviewed", "example-reviewer", map[string]any{"verdict": "looks right"})
	if err != nil {
		return fmt.Errorf("append provenance: %w", err)
	}
	v, err := c.VerifyProvenance(ctx, res.TraceID)
	if err != nil {
		return fmt.Errorf("verify provenance: %w", err)
	}
	fmt.Fprintf(out, "provenance: entry %d appended, chain valid=%v, %d entries, head %.16s…\n", e.Index, v.Valid, v.Length, v.Head)

	// 4. Export the session's traces and verify the bundle offline, as an auditor would.
	var bundle bytes.Buffer
	if err := c.Export(ctx, client.ExportRequest{SessionID: s.ID}, &bundle); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	sum, err := trace.VerifyBundle(bytes.NewReader(bundle.Bytes()), trace.VerifyOptions{})
	if err != nil {
		return fmt.Errorf("bundle does not verify: %w", err)
	}
	fmt.Fprintf(out, "bundle: %d bytes, %d traces, %d entries, %d checkpoints, signed by %s — verified offline\n",
		bundle.Len(), sum.Traces, sum.Entries, sum.Checkpoints, sum.KeyFingerprint)
	return nil
}
