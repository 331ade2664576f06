package main

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// corpusExpected lists the findings (rule ids, in order) the rule should report on the
// benign programs of testdata/benign_corpus.txt; a program not listed should have none.
// Each listed finding is a real, low-severity warning the default policy neither blocks
// nor quarantines, except where noted.
var corpusExpected = map[string][]string{
	// A literal password in a test: Bandit reports it too (unsafe 4).
	"unittest": {"codesafety.B105"},
	// A module named at run time (high_risk 4); a literal name is a static import.
	"importlib optional dependency": {"codesafety.dynamic-import"},
	"plugin loader":                 {"codesafety.dynamic-import"},
	// Unpickling a file (unsafe 7): whoever can write the file runs code.
	"pickle own cache": {"codesafety.B301"},
	"joblib model":     {"codesafety.B301"},
	// os.system through a shell (unsafe 7), as Bandit reports it.
	"clear screen": {"codesafety.B605"},
	// bash -c in an argv: shell=True by another name (unsafe 7), reported as the rule
	// reports shell=True with a literal command.
	"mqtt client": {"codesafety.B602"},
	// Formerly false positives, now without findings: a token sent to its own service in
	// the URL ("telegram bot", by SERVICE_HOSTS in analyzer.py) or as basic auth ("jira
	// basic auth"), and destructive commands held as a deny list ("safety deny list",
	// "command filter regex", "agent guard with reasons", by DataFlow). The attacks each
	// fix must still catch are in exemptions_test.go.
}

// corpus reads the programs of a corpus file: each starts with a line "#### name".
func corpus(t *testing.T, path string) (names []string, code map[string]string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	code = map[string]string{}
	cur := ""
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if name, ok := strings.CutPrefix(line, "#### "); ok {
			cur = strings.TrimSpace(name)
			if _, dup := code[cur]; dup {
				t.Fatalf("%s: program %q twice", path, cur)
			}
			names = append(names, cur)
			code[cur] = ""
		} else if cur != "" {
			code[cur] += line
		}
	}
	return names, code
}

// TestBenignCorpus runs every benign program of the corpus through the rule and checks
// its findings are exactly those expected.
func TestBenignCorpus(t *testing.T) {
	r := configured(t, `{}`)
	names, code := corpus(t, "testdata/benign_corpus.txt")
	if len(names) < 60 {
		t.Fatalf("corpus has %d programs, want at least 60", len(names))
	}
	for name := range corpusExpected {
		if _, ok := code[name]; !ok {
			t.Errorf("expectation for %q, which is not in the corpus", name)
		}
	}
	for _, name := range names {
		fs := evaluate(t, r, code[name])
		var got []string
		for _, f := range fs {
			got = append(got, f.RuleID)
		}
		if want := corpusExpected[name]; !slices.Equal(got, want) {
			t.Errorf("%s: findings %v, want %v\n%+v", name, got, want, fs)
		}
	}
}
