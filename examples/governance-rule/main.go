// Command governance-rule is an example third-party governance rule plugin for the LIMIT
// host, written only against the public SDK (github.com/limitgraph/limit/sdk/...). It flags
// an execution's input or output that contains a configured word, raising high_risk with
// the configured severity and where the word is.
//
// What a rule must know:
//
//   - the host calls Evaluate for every execution, before it runs (StagePre, on the input)
//     and after (StagePost, on the output), for every configured rule: keep it fast;
//   - a rule that reads only some content says which in Describe (ContentTypes such as
//     "code/python", Runners such as "python") and is sent nothing else; this one names
//     neither, so it reads everything;
//   - findings name one of the known flags (governance.Flags) and a severity from 1 to 10;
//     what they do (block, quarantine, refuse a merge) is the session's policy's business;
//   - an error return (or a panic, which the SDK turns into one) is a rule that cannot
//     answer: under the default and strict policies the execution is then refused (503).
//
// The host starts the plugin, not you: build it with
//
//	go build -o limit-governance-wordflag ./examples/governance-rule
//
// check it with `limitctl plugin check --kind governance` and declare it in the host's HCL
// (see README.md).
package main

import (
	"context"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/governance"
)

func main() { governance.Serve(&rule{}) }

// ruleID names the rule in findings and in the trace's flags.
const ruleID = "wordflag"

// rule is the plugin. Evaluate runs concurrently: rule only reads what Configure set.
type rule struct {
	word     string // lower-case
	severity int
}

// PluginInfo names the plugin; Kind must match the HCL block that declares it.
func (r *rule) PluginInfo() base.Info {
	return base.Info{Name: "wordflag", Kind: base.KindGovernance, Version: "0.1.0", Description: "flags a configured word"}
}

// ConfigSchema is what the host checks the HCL config block against: a missing word, an
// unknown attribute or a wrong type is reported at its file, line and column.
func (r *rule) ConfigSchema() base.Schema {
	return base.Schema{Attributes: []base.Attribute{
		{Name: "word", Type: "string", Required: true, Description: "the word to flag, matched case-insensitively"},
		{Name: "severity", Type: "number", Default: 5, Description: "severity of the flag, 1 to 10"},
	}}
}

// Configure checks what the schema cannot, with diagnostics that name the attribute.
func (r *rule) Configure(_ context.Context, req base.ConfigureRequest) base.Diagnostics {
	cfg := struct {
		Word     string `json:"word"`
		Severity int    `json:"severity"`
	}{Severity: 5}
	if ds := base.DecodeConfig(req.Config, &cfg); ds.HasErrors() {
		return ds
	}
	var ds base.Diagnostics
	if strings.TrimSpace(cfg.Word) == "" {
		ds = append(ds, base.Errorf([]string{"word"}, "word must not be empty"))
	}
	if cfg.Severity < 1 || cfg.Severity > 10 {
		ds = append(ds, base.Errorf([]string{"severity"}, "severity must be from 1 to 10, not %d", cfg.Severity))
	}
	if ds.HasErrors() || req.ValidateOnly {
		return ds
	}
	r.word, r.severity = strings.ToLower(cfg.Word), cfg.Severity
	return nil
}

// Describe lists the plugin's rules, the flags they raise and the stages they run at.
func (r *rule) Describe(context.Context) ([]governance.RuleDescription, error) {
	return []governance.RuleDescription{{
		ID:          ruleID,
		Flags:       []string{governance.FlagHighRisk},
		Stages:      []governance.Stage{governance.StagePre, governance.StagePost},
		Description: "content that contains the configured word",
	}}, nil
}

// Evaluate flags the first occurrence of the word. No finding is a pass.
func (r *rule) Evaluate(_ context.Context, req governance.EvaluateRequest) ([]governance.Finding, error) {
	start := indexFold(req.Content, r.word)
	if start < 0 {
		return nil, nil
	}
	before := req.Content[:start]
	line := 1 + strings.Count(before, "\n")
	col := 1 + utf8.RuneCountInString(before[strings.LastIndexByte(before, '\n')+1:])
	return []governance.Finding{{
		Flag:     governance.FlagHighRisk,
		Severity: r.severity,
		Score:    1,
		Reason:   fmt.Sprintf("contains %q", r.word),
		RuleID:   ruleID,
		Location: &governance.Location{Line: line, Column: col, Start: start, End: start + len(r.word)},
	}}, nil
}

// indexFold is the byte offset in s of the first match of the lower-case word, ignoring
// case, or -1.
func indexFold(s, word string) int {
	for i := 0; i+len(word) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(word)], word) {
			return i
		}
	}
	return -1
}
