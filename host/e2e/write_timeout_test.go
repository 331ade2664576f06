package e2e

import (
	"os"
	"testing"
)

// TestWriteTimeoutLongExecution: api.write_timeout bounds writing an answer, not the work
// before it. A non-streamed execution that ran longer than write_timeout (within its own
// timeout) used to lose its answer: net/http's write deadline, counted from the request's
// headers, had passed when the result was written, the connection was cut and the client
// saw EOF, although the code ran and its trace said so.
func TestWriteTimeoutLongExecution(t *testing.T) {
	cfg := lifecycleConfig(t, t.TempDir(), 1)
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("api {\n  write_timeout = \"1s\"\n}\n"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	h := startInProcess(t, cfg)
	sid := h.session(1)
	// It sleeps twice write_timeout, well within its own timeout, then prints.
	o := h.exec(ctx, sid, "sleep:2000:done", 60_000)
	if o.err != nil {
		t.Fatalf("an execution longer than api.write_timeout: %v", o.err)
	}
	if o.res.Status != "ok" || o.res.Stdout != "done" || o.res.Output != "slept" || o.res.TraceID == "" {
		t.Fatalf("result %+v, want status ok, stdout \"done\" and a trace", o.res)
	}
}
