package main

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/limitgraph/limit/internal/jailbreak"
)

// ruleSet is a named set of texts the rule check counts firings on.
type ruleSet struct {
	name string
	ex   []jailbreak.Example
}

// printRuleCheck prints, for every set, how many of its benign texts a phrase rule or
// decoder fires on (each such text with its finding, to read them) and how many of its
// jailbreaks one catches, and per phrase rule (every rule that matches, not only the
// finding the detector reports for its category) how many texts of each label it
// matches: a new rule is checked against every benign text at hand before it lands.
// The sets rules are written from are the training split, the documents and the written
// corpus's training half; measured also adds the sets that are only measured (the written
// corpus's held-out half, testdata/governance), which reading would make them a
// development set. The training file's held-out split is never read.
func printRuleCheck(root string, train []jailbreak.Example, docs *Docs, written *Written, measured bool) error {
	sets := []ruleSet{{"training split", train}}
	if docs != nil {
		sets = append(sets, ruleSet{"documents", append(append([]jailbreak.Example(nil), docs.Train...), docs.HeldOut...)})
	}
	if written != nil {
		sets = append(sets, ruleSet{"written corpus, training half", written.Train})
		if measured {
			sets = append(sets, ruleSet{"written corpus, held-out half", written.HeldOut})
		}
	}
	if measured {
		files, _ := filepath.Glob(filepath.Join(root, "testdata/governance/*.jsonl"))
		sort.Strings(files)
		for _, f := range files {
			ex, _, err := jailbreak.LoadJSONL(f)
			if err != nil {
				return err
			}
			sets = append(sets, ruleSet{filepath.Base(f), ex})
		}
	}
	var benign, flagged int
	for _, s := range sets {
		rules, err := ruleFindings(s.ex)
		if err != nil {
			return err
		}
		byRule := map[string]*[2]int{} // phrase rule id → jailbreaks, benign texts it matches
		var pos, neg, fp, caught int
		for i, e := range s.ex {
			seen := map[string]bool{}
			for _, m := range jailbreak.MatchPhrases(jailbreak.Normalize(e.Text).Text, false, false) {
				if seen[m.Rule.ID] {
					continue
				}
				seen[m.Rule.ID] = true
				c := byRule[m.Rule.ID]
				if c == nil {
					c = new([2]int)
					byRule[m.Rule.ID] = c
				}
				if e.Positive() {
					c[0]++
				} else {
					c[1]++
				}
			}
			if e.Positive() {
				pos++
				if rules[i] != "" {
					caught++
				}
				continue
			}
			neg++
			if rules[i] != "" {
				fp++
				fmt.Printf("  benign text flagged in %s by %s\n    %q\n", s.name, rules[i], oneLine(e.Text, 300))
			}
		}
		benign, flagged = benign+neg, flagged+fp
		ids := make([]string, 0, len(byRule))
		for id, c := range byRule {
			ids = append(ids, fmt.Sprintf("%s %d/%d", id, c[0], c[1]))
		}
		sort.Strings(ids)
		fmt.Printf("%s: %d of %d benign texts flagged by a rule or decoder; %d of %d jailbreaks caught by one; phrase rules (jailbreaks/benign matched): %s\n", s.name, fp, neg, caught, pos, strings.Join(ids, ", "))
	}
	fmt.Printf("all sets: %d of %d benign texts flagged by a rule or decoder\n", flagged, benign)
	return nil
}
