package execution

import (
	"slices"
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
