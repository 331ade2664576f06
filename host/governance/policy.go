// Package governance holds the host's governance: the policy presets that decide what a
// flag means (block an execution, quarantine a trace, refuse a merge), the evaluation of
// inputs and outputs by the configured rule plugins, and the statistics of both.
package governance

import (
	"fmt"
	"sort"
	"strings"

	sdkgov "github.com/limitgraph/limit/sdk/governance"
)

// Policy is a preset's table.
type Policy struct {
	Name string `json:"name"`
	// Block maps a flag to the lowest severity at which it blocks an execution; a flag
	// absent from the map never blocks.
	Block map[string]int `json:"block"`
	// QuarantineSeverity is the lowest severity of any flag that quarantines a trace
	// automatically; 0 means never.
	QuarantineSeverity int `json:"auto_quarantine"`
	// MergeBlock lists the flags that refuse a merge, at any severity.
	MergeBlock []string `json:"merge_block"`
	// AllowUnverifiedMerge lets a trace whose chain verifies but lacks an entry its kind
	// requires (flagged unverified by the host) be merged; a chain that does not verify
	// is never merged.
	AllowUnverifiedMerge bool `json:"allow_unverified_merge"`
	// FailOpen lets an execution proceed when a rule plugin cannot answer.
	FailOpen bool `json:"fail_open"`
}

// Presets are the policy tables by name. The README documents them; keep both in step.
var Presets = map[string]Policy{
	"permissive": {
		Name:                 "permissive",
		Block:                map[string]int{sdkgov.FlagMalicious: 9},
		QuarantineSeverity:   10,
		MergeBlock:           []string{sdkgov.FlagMalicious},
		AllowUnverifiedMerge: true,
		FailOpen:             true,
	},
	"default": {
		Name: "default",
		Block: map[string]int{
			sdkgov.FlagJailbreak: 7, sdkgov.FlagMalicious: 5, sdkgov.FlagUnsafe: 8, sdkgov.FlagHighRisk: 9,
		},
		QuarantineSeverity: 8,
		MergeBlock:         []string{sdkgov.FlagJailbreak, sdkgov.FlagMalicious, sdkgov.FlagUnsafe, sdkgov.FlagHighRisk},
	},
	"strict": {
		Name: "strict",
		Block: map[string]int{
			sdkgov.FlagJailbreak: 1, sdkgov.FlagMalicious: 1, sdkgov.FlagUnsafe: 1, sdkgov.FlagHighRisk: 1,
			sdkgov.FlagAnomaly: 5, sdkgov.FlagUnverified: 1,
		},
		QuarantineSeverity: 5,
		MergeBlock:         append([]string{}, sdkgov.Flags...),
	},
}

// PolicyNames lists the presets.
func PolicyNames() []string {
	out := make([]string, 0, len(Presets))
	for n := range Presets {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Lookup returns the named preset.
func Lookup(name string) (Policy, error) {
	p, ok := Presets[name]
	if !ok {
		return Policy{}, fmt.Errorf("unknown governance policy %q (want one of %s)", name, strings.Join(PolicyNames(), ", "))
	}
	return p, nil
}

// NormalizeFlag accepts the API's flag names and the seed's spellings ("Jailbreak",
// "HighRisk") and returns the API's.
func NormalizeFlag(f string) (string, bool) {
	s := strings.ToLower(strings.TrimSpace(f))
	switch s {
	case "highrisk", "high-risk":
		s = sdkgov.FlagHighRisk
	}
	return s, sdkgov.ValidFlag(s)
}

// Blocking returns the flags among fs that block an execution under p.
func (p Policy) Blocking(fs []Flag) []Flag {
	var out []Flag
	for _, f := range fs {
		if min, ok := p.Block[f.Flag]; ok && f.Severity >= min {
			out = append(out, f)
		}
	}
	return out
}

// Quarantines reports whether fs quarantine a trace under p.
func (p Policy) Quarantines(fs []Flag) bool {
	if p.QuarantineSeverity == 0 {
		return false
	}
	for _, f := range fs {
		if f.Severity >= p.QuarantineSeverity {
			return true
		}
	}
	return false
}

// MergeRefusals lists every reason a trace may not be merged under p; none means allowed.
// complete is false when the trace's chain, which verifies, lacks an entry its kind
// requires, which gap names (an execution without its outcome); a chain that does not
// verify is refused before, under every policy.
func (p Policy) MergeRefusals(status string, fs []Flag, complete bool, gap string) []string {
	var out []string
	if status == "quarantined" {
		out = append(out, "trace is quarantined")
	}
	if status == "merged" {
		out = append(out, "trace is already merged")
	}
	for _, f := range fs {
		for _, b := range p.MergeBlock {
			if f.Flag == b {
				out = append(out, fmt.Sprintf("trace is flagged %s (severity %d, rule %s): %s", f.Flag, f.Severity, f.RuleID, f.Reason))
			}
		}
	}
	if !complete && !p.AllowUnverifiedMerge {
		// The chain verifies: what it holds is intact, but something is missing.
		out = append(out, "provenance is incomplete: "+gap)
	}
	return out
}
