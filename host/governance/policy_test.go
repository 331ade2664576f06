package governance

import (
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	sdkgov "github.com/limitgraph/limit/sdk/governance"
)

// readmePresets reads the presets table of the README: the rows by their first cell, each
// row's cells in the order of the header's preset names.
func readmePresets(t *testing.T) (names []string, rows map[string][]string) {
	t.Helper()
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(raw), "| | permissive | default | strict |")
	if !ok {
		t.Fatal("README: no presets table (header \"| | permissive | default | strict |\")")
	}
	names = []string{"permissive", "default", "strict"}
	rows = map[string][]string{}
	for _, line := range strings.Split(rest, "\n")[1:] {
		if !strings.HasPrefix(line, "|") {
			break
		}
		if strings.HasPrefix(line, "|---") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if len(cells) != 4 {
			t.Fatalf("README presets row %q has %d cells, want 4", line, len(cells))
		}
		rows[cells[0]] = cells[1:]
	}
	return names, rows
}

// row returns the cells of the row whose first cell starts with prefix.
func row(t *testing.T, rows map[string][]string, prefix string) []string {
	t.Helper()
	for k, v := range rows {
		if strings.HasPrefix(k, prefix) {
			return v
		}
	}
	t.Fatalf("README presets table: no row starting %q", prefix)
	return nil
}

var severityRun = regexp.MustCompile(`^(.*?)\s*≥\s*(\d+)$`)

// parseBlocks reads "jailbreak, malicious ≥ 5; anomaly ≥ 7": a run of flags takes the
// severity that ends it.
func parseBlocks(t *testing.T, cell string) map[string]int {
	t.Helper()
	out := map[string]int{}
	var run []string
	for _, part := range strings.FieldsFunc(cell, func(r rune) bool { return r == ',' || r == ';' }) {
		part = strings.TrimSpace(part)
		m := severityRun.FindStringSubmatch(part)
		if m == nil {
			run = append(run, part)
			continue
		}
		n, _ := strconv.Atoi(m[2])
		for _, f := range append(run, m[1]) {
			out[f] = n
		}
		run = nil
	}
	if len(run) > 0 {
		t.Fatalf("README presets cell %q: flags %v without a severity", cell, run)
	}
	return out
}

// TestReadmePresetsTable: the README's presets table says what Presets do.
func TestReadmePresetsTable(t *testing.T) {
	names, rows := readmePresets(t)
	for i, name := range names {
		p, err := Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		if got := parseBlocks(t, row(t, rows, "blocks an execution")[i]); !mapsEqual(got, p.Block) {
			t.Errorf("%s: README blocks %v, Presets %v", name, got, p.Block)
		}
		if got := row(t, rows, "quarantines the trace")[i]; got != strconv.Itoa(p.QuarantineSeverity) {
			t.Errorf("%s: README quarantines at %s, Presets at %d", name, got, p.QuarantineSeverity)
		}
		cell := row(t, rows, "refuses a merge")[i]
		var got []string
		if cell == "every flag" {
			got = slices.Clone(sdkgov.Flags)
		} else {
			for _, f := range strings.Split(cell, ",") {
				got = append(got, strings.TrimSpace(f))
			}
		}
		slices.Sort(got)
		want := slices.Sorted(slices.Values(p.MergeBlock))
		if !slices.Equal(got, want) {
			t.Errorf("%s: README refuses merges of %v, Presets %v", name, got, want)
		}
		if got, want := row(t, rows, "merge of a trace lacking")[i], map[bool]string{true: "allowed", false: "refused"}[p.AllowUnverifiedMerge]; got != want {
			t.Errorf("%s: README says a trace lacking an entry is %s, Presets %s", name, got, want)
		}
		if got := row(t, rows, "merge of a trace whose provenance does not verify")[i]; got != "refused" {
			t.Errorf("%s: README says a broken chain is %s; it is refused under every policy", name, got)
		}
		if got, want := row(t, rows, "a rule plugin that cannot answer")[i], map[bool]string{true: "execution proceeds", false: "execution refused (503)"}[p.FailOpen]; got != want {
			t.Errorf("%s: README says %q when a rule cannot answer, Presets %q", name, got, want)
		}
		if got, want := row(t, rows, "an input a rule cannot check")[i], map[bool]string{true: "execution proceeds", false: "execution refused (422)"}[p.FailOpen]; got != want {
			t.Errorf("%s: README says %q when a rule cannot check an input, Presets %q", name, got, want)
		}
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestMergeRefusals: what each preset refuses, reason by reason.
func TestMergeRefusals(t *testing.T) {
	jail := Flag{Flag: sdkgov.FlagJailbreak, Severity: 2, RuleID: "r", Reason: "x"}
	anomaly := Flag{Flag: sdkgov.FlagAnomaly, Severity: 1, RuleID: "r", Reason: "x"}
	cases := []struct {
		policy, status string
		flags          []Flag
		valid          bool
		want           []string // substrings, one per reason, in order
	}{
		{"permissive", "active", []Flag{jail, anomaly}, true, nil},
		{"permissive", "active", nil, false, nil}, // lacking an entry: allowed
		{"permissive", "quarantined", nil, true, []string{"quarantined"}},
		{"permissive", "merged", nil, true, []string{"already merged"}},
		{"permissive", "active", []Flag{{Flag: sdkgov.FlagMalicious, Severity: 1}}, true, []string{"flagged malicious"}},
		{"default", "active", []Flag{anomaly}, true, nil},
		{"default", "active", []Flag{jail}, true, []string{"flagged jailbreak (severity 2"}},
		{"default", "active", nil, false, []string{"provenance is incomplete: gone"}},
		{"strict", "active", []Flag{anomaly}, true, []string{"flagged anomaly"}},
		{"strict", "quarantined", []Flag{jail, anomaly}, false, []string{"quarantined", "flagged jailbreak", "flagged anomaly", "provenance"}},
	}
	for _, c := range cases {
		p, _ := Lookup(c.policy)
		got := p.MergeRefusals(c.status, c.flags, c.valid, "gone")
		if len(got) != len(c.want) {
			t.Errorf("%s %s %v valid=%v: %q, want %d reasons", c.policy, c.status, c.flags, c.valid, got, len(c.want))
			continue
		}
		for i := range got {
			if !strings.Contains(got[i], c.want[i]) {
				t.Errorf("%s %s: reason %d %q, want it to say %q", c.policy, c.status, i, got[i], c.want[i])
			}
		}
	}
}
