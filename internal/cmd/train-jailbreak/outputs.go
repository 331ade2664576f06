package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/limitgraph/limit/internal/jailbreak"
)

// The planted-instruction scorer also reads what a program printed (text/output: the
// Python runner's output an agent reads next, a model runner's answer). Trained on
// documents and prompts alone it took benign output for planted instructions: a fetched
// page of the Rust book in Japanese, an assistant's drafted e-mail asking its readers to
// call the bank, a system prompt a user asked for their own bot (12 of 1,693 pieces of
// program output and 21 of 640 assistant answers flagged under default). So it trains on
// benign output too (internal/jailbreak/corpus, see its SOURCES.md): pieces of what real
// programs print (output-program.jsonl.gz, collected by
// scripts/jailbreak/collect-program-output.py) and answers of an assistant written blind
// (output-answers-*.jsonl). Half of it (by sha256 of the text) is trained on, the other half
// only measured.

// outputGlob is where the output corpus lives, relative to the repository root.
const outputGlob = "internal/jailbreak/corpus/output-*.jsonl*"

// Outputs is the benign output corpus: its training half, its held-out half, the files
// and the sha256 of their contents in order.
type Outputs struct {
	Train, HeldOut []jailbreak.Example
	Files          []string
	SHA256         string
}

// outputCorpus loads the output corpus under root.
func outputCorpus(root string) (Outputs, error) {
	files, err := filepath.Glob(filepath.Join(root, outputGlob))
	if err != nil {
		return Outputs{}, err
	}
	sort.Strings(files)
	if len(files) == 0 {
		return Outputs{}, fmt.Errorf("no file matches %s", outputGlob)
	}
	var o Outputs
	var all []jailbreak.Example
	h := sha256.New()
	for _, f := range files {
		ex, sum, err := jailbreak.LoadJSONL(f)
		if err != nil {
			return Outputs{}, err
		}
		for i, e := range ex {
			if e.Positive() {
				return Outputs{}, fmt.Errorf("%s: row %d is labelled %q: the output corpus is benign", f, i+1, e.Label)
			}
		}
		rel, _ := filepath.Rel(root, f)
		o.Files = append(o.Files, filepath.ToSlash(rel))
		fmt.Fprintf(h, "%s\x00", sum)
		all = append(all, ex...)
	}
	o.Train, o.HeldOut = jailbreak.Split(all, 0.5)
	o.SHA256 = hex.EncodeToString(h.Sum(nil))
	return o, nil
}

// train returns the training half, or none.
func (o *Outputs) train() []jailbreak.Example {
	if o == nil {
		return nil
	}
	return o.Train
}

// isAnswer reports whether an output row is an assistant's answer (else a program's output).
func isAnswer(category string) bool { return category == "answer" }

// heldOutWhere returns the held-out rows whose category satisfies keep.
func (o *Outputs) heldOutWhere(keep func(category string) bool) []jailbreak.Example {
	if o == nil {
		return nil
	}
	var out []jailbreak.Example
	for _, e := range o.HeldOut {
		if keep(e.Category) {
			out = append(out, e)
		}
	}
	return out
}

// isProgram reports whether an output row is a program's output.
func isProgram(category string) bool { return strings.HasPrefix(category, "program-") }
