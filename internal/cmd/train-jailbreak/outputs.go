package main

import (
	"fmt"
	"strings"

	"github.com/limitgraph/limit/internal/jailbreak"
)

// A planted-instruction scorer also reads what a program printed (text/output: the
// Python runner's output an agent reads next, a model runner's answer). The scorer of
// prompts and documents took benign output for planted instructions: a fetched page of the
// Rust book in Japanese, an assistant's drafted e-mail asking its readers to call the bank,
// a system prompt a user asked for their own bot (12 of 1,692 pieces of program output and
// 58 of 1,120 assistant answers flagged under default). Trained with benign output among its
// negatives, it grew worse on documents, so output has a scorer of its own, trained on the
// same data and on benign output (internal/jailbreak/corpus, see its SOURCES.md): pieces of
// what real programs print (output-program.jsonl.gz, collected by
// scripts/jailbreak/collect-program-output.py) and answers of an assistant written blind
// (output-answers-*.jsonl). Half of it (by sha256 of the text) is trained on, the other half
// only measured.

// outputGlob is where the output corpus lives, relative to the repository root.
const outputGlob = "internal/jailbreak/corpus/output-*.jsonl*"

// Outputs is the benign output corpus, split and described as the written corpus is.
type Outputs = Written

// outputCorpus loads the output corpus under root; a row labelled jailbreak is an error.
func outputCorpus(root string) (Outputs, error) {
	return halves(root, outputGlob, func(f string, ex []jailbreak.Example) error {
		for i, e := range ex {
			if e.Positive() {
				return fmt.Errorf("%s: row %d is labelled %q: the output corpus is benign", f, i+1, e.Label)
			}
		}
		return nil
	})
}

// isAnswer reports whether an output row is an assistant's answer (else a program's output).
func isAnswer(category string) bool { return category == "answer" }

// isProgram reports whether an output row is a program's output.
func isProgram(category string) bool { return strings.HasPrefix(category, "program-") }
