package execution

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/limitgraph/limit/host/governance"
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
