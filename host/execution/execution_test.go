package execution

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/limitgraph/limit/host/governance"
	"github.com/limitgraph/limit/host/trace"
)

// TestBlockedFlagNames checks that a blocked execution names each flag once, in the order
// raised, however many rules raised it.
func TestBlockedFlagNames(t *testing.T) {
	e := &BlockedError{Policy: "default", Flags: []governance.Flag{
		{Flag: "jailbreak", Severity: 9, RuleID: "jailbreak.model"},
		{Flag: "unsafe", Severity: 7, RuleID: "codesafety.B605"},
		{Flag: "jailbreak", Severity: 8, RuleID: "jailbreak.phrase.override"},
	}}
	if got, want := e.FlagNames(), []string{"jailbreak", "unsafe"}; !slices.Equal(got, want) {
		t.Fatalf("flag names %q, want %q", got, want)
	}
}

// TestParamsBounded: params with more JSON values than MaxParamValues, or nested deeper
// than MaxParamDepth, are refused before anything runs (a 10 MB array of zeros had the
// host and the runner process each hold ~450 MB); ordinary params pass the check.
func TestParamsBounded(t *testing.T) {
	deep := map[string]any{}
	cur := deep
	for range MaxParamDepth + 1 {
		next := map[string]any{}
		cur["x"] = next
		cur = next
	}
	e := &Engine{}
	for name, p := range map[string]map[string]any{
		"wide": {"x": make([]any, MaxParamValues)},
		"deep": deep,
	} {
		_, err := e.Execute(context.Background(), "s", Request{Runner: "python", Input: "1", Params: p}, nil)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "params hold more than") {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	ok := map[string]any{"messages": []any{map[string]any{"role": "user", "content": strings.Repeat("long text ", 1e5)}}, "temperature": 0.2}
	if n, deep := countValues(ok, 0); n != 6 || deep {
		t.Errorf("ordinary params: %d values, deep %v", n, deep)
	}
	if n, deep := countValues(map[string]any{"x": make([]any, MaxParamValues-2)}, 0); n != MaxParamValues || deep {
		t.Errorf("params at the limit: %d values, deep %v", n, deep)
	}
}

// TestTooLargeToRecordNotRun: an input under MaxInputBytes whose trace data would exceed
// the trace store's limit (1.7 MB of control characters: six bytes each in canonical JSON)
// is refused before it runs, naming the limit, and leaves no trace; it used to run, then
// fail to be recorded ("record execution: invalid request"), leaving nothing of what ran.
func TestTooLargeToRecordNotRun(t *testing.T) {
	e, s := echoEngine(t)
	ctx := context.Background()
	_, err := e.Execute(ctx, s.ID, Request{Runner: "echo", Input: strings.Repeat("\x01", 1_700_000)}, nil)
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), fmt.Sprint(trace.MaxDataSize)) || !strings.Contains(err.Error(), "not run") {
		t.Fatalf("execution: %v, want ErrTooLarge naming the limit", err)
	}
	if list, _, err := e.Traces.ListBySession(ctx, s.ID, 10, ""); err != nil || len(list) != 0 {
		t.Fatalf("traces: %d %v, want none", len(list), err)
	}
	// The runner process ran nothing before: this is its first execution.
	res, err := e.Execute(ctx, s.ID, Request{Runner: "echo", Input: "x"}, nil)
	if err != nil || !strings.Contains(res.Stdout, " n=1 ") {
		t.Fatalf("next execution: %+v %v, want the process's first", res, err)
	}
}

// TestClip: an error text over its bound is cut at a character boundary, within it, and
// says how long it was; the trace's executed entry cannot outgrow the store's limit.
func TestClip(t *testing.T) {
	long := strings.Repeat("é", MaxKeptError)
	got := clip(long, MaxKeptError)
	if len(got) > MaxKeptError || !utf8.ValidString(got) || !strings.HasSuffix(got, fmt.Sprintf("(cut: %d bytes in all)", len(long))) {
		t.Fatalf("clip: %d bytes, valid %v, ends %q", len(got), utf8.ValidString(got), got[len(got)-40:])
	}
	if clip("short", MaxKeptError) != "short" {
		t.Fatal("a short text was changed")
	}
}

// TestOutputBounded: a runner's output over MaxKeptOutput (one that does not keep to its
// max_output_bytes) is cut to it, at a character boundary, as stdout and stderr are, and
// the result and its trace say truncated; a 20 MB output came back whole, unmarked.
func TestOutputBounded(t *testing.T) {
	e, s := echoEngine(t)
	res, err := e.Execute(context.Background(), s.ID, Request{Runner: "echo", Input: fmt.Sprint("output:", MaxKeptOutput+1000)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Output) > MaxKeptOutput || len(res.Output) < MaxKeptOutput-4 || !utf8.ValidString(res.Output) || !res.Truncated {
		t.Fatalf("output of %d bytes (valid UTF-8 %v), truncated %v; want at most %d, cut between characters, truncated", len(res.Output), utf8.ValidString(res.Output), res.Truncated, MaxKeptOutput)
	}
	ex := executed(t, e, res.TraceID)
	if ex["truncated"] != true || ex["output_sha256"] != digest(res.Output) {
		t.Fatalf("executed entry: truncated %v, output_sha256 %v; want true and the digest of the output kept", ex["truncated"], ex["output_sha256"])
	}
	small, err := e.Execute(context.Background(), s.ID, Request{Runner: "echo", Input: "output:1000"}, nil)
	if err != nil || len(small.Output) != 1001 || small.Truncated {
		t.Fatalf("a small output: %d bytes, truncated %v, %v", len(small.Output), small.Truncated, err)
	}
}
