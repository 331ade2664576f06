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
// decoder fires on (each such text with the rule, to read them) and how many of its
// jailbreaks one catches, per rule: a new rule is checked against every benign text at
// hand before it lands. The held-out split of the training file is not among the sets
// (the rules are written from the training split; the held-out split is only measured).
func printRuleCheck(root string, train []jailbreak.Example, docs *Docs, written *Written) error {
	sets := []ruleSet{{"training split", train}}
	if docs != nil {
		sets = append(sets, ruleSet{"documents", append(append([]jailbreak.Example(nil), docs.Train...), docs.HeldOut...)})
	}
	if written != nil {
		sets = append(sets, ruleSet{"written corpus, training half", written.Train}, ruleSet{"written corpus, held-out half", written.HeldOut})
	}
	files, _ := filepath.Glob(filepath.Join(root, "testdata/governance/*.jsonl"))
	sort.Strings(files)
	for _, f := range files {
		ex, _, err := jailbreak.LoadJSONL(f)
		if err != nil {
			return err
		}
		sets = append(sets, ruleSet{filepath.Base(f), ex})
	}
	var benign, flagged int
	for _, s := range sets {
		rules, err := ruleFindings(s.ex)
		if err != nil {
			return err
		}
		caught := map[string]int{}
		var pos, neg, fp int
		for i, e := range s.ex {
			id, _, _ := strings.Cut(rules[i], ":")
			if e.Positive() {
				pos++
				if id != "" {
					caught[id]++
				}
				continue
			}
			neg++
			if id != "" {
				fp++
				fmt.Printf("  benign text flagged in %s by %s\n    %q\n", s.name, rules[i], clip(e.Text, 300))
			}
		}
		benign, flagged = benign+neg, flagged+fp
		ids := make([]string, 0, len(caught))
		total := 0
		for id, n := range caught {
			ids = append(ids, fmt.Sprintf("%s %d", id, n))
			total += n
		}
		sort.Strings(ids)
		fmt.Printf("%s: %d of %d benign texts flagged by a rule; %d of %d jailbreaks caught by one (%s)\n", s.name, fp, neg, total, pos, strings.Join(ids, ", "))
	}
	fmt.Printf("all sets: %d of %d benign texts flagged by a rule\n", flagged, benign)
	return nil
}
