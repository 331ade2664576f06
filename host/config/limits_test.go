package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// TestLoadFileDiagnostics: a file limitd cannot or must not parse is refused with an
// error naming the file (and its line and column when there is one), saying what is
// wrong and what to do, and quickly: no stack overflow, no endless evaluation.
func TestLoadFileDiagnostics(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	list := "[" + strings.Repeat("1,", 2000) + "1]"
	tests := []struct {
		name     string
		path     string
		line     int // 0: the error has no Subject, but names the file
		col      int
		severity hcl.DiagnosticSeverity
		want     []string // substrings of the first diagnostic's Error()
	}{
		{"missing", filepath.Join(dir, "nope.hcl"), 0, 0, hcl.DiagError, []string{"nope.hcl", "no such file or directory", "-config"}},
		{"directory", dir, 0, 0, hcl.DiagError, []string{dir, "is a directory", "HCL file"}},
		{"empty", write("empty.hcl", ""), 1, 1, hcl.DiagWarning, []string{"declares nothing", "defaults"}},
		{"comments only", write("comments.hcl", "# host {}\n"), 1, 1, hcl.DiagWarning, []string{"declares nothing"}},
		{"invalid UTF-8 in a string", write("utf8.hcl", "host {\n  data_dir = \"a\xffb\"\n}\n"), 2, 16, hcl.DiagError, []string{"Invalid character encoding", "0xff", "UTF-8"}},
		{"invalid UTF-8 in a comment", write("utf8c.hcl", "host {}\n\n\n# caf\xe9\n"), 4, 6, hcl.DiagError, []string{"Invalid character encoding", "0xe9", "line 4, column 6"}},
		{"huge", write("huge.hcl", "# "+strings.Repeat("x", MaxFileBytes)+"\n"), 1, 1, hcl.DiagError, []string{"too large", "1024 KiB", "-config"}},
		{"deep brackets", write("deep.hcl", "host {\n  listen = "+strings.Repeat("[", 50_000)+strings.Repeat("]", 50_000)+"\n}\n"), 2, 111, hcl.DiagError, []string{"Nested too deeply", "100"}},
		{"deep unary", write("neg.hcl", "host {\n  listen = "+strings.Repeat("-", 50_000)+"1\n}\n"), 2, 111, hcl.DiagError, []string{"Nested too deeply"}},
		{"binary chain", write("plus.hcl", "rd {\n  alpha = "+strings.Repeat("0+", 50_000)+"0\n}\n"), 2, 0, hcl.DiagError, []string{"Nested too deeply"}},
		{"binary chain over lines", write("plus2.hcl", "rd {\n  alpha = (0\n"+strings.Repeat("+ 0\n", 200)+")\n}\n"), 0, 0, hcl.DiagError, []string{"Nested too deeply"}},
		{"deep templates", write("tmpl.hcl", "host {\n  listen = \""+strings.Repeat("${\"", 20_000)+strings.Repeat("\"}", 20_000)+"\"\n}\n"), 2, 0, hcl.DiagError, []string{"Nested too deeply"}},
		{"deep blocks", write("blocks.hcl", strings.Repeat("a {\n", 20_000)+strings.Repeat("}\n", 20_000)), 101, 3, hcl.DiagError, []string{"Nested too deeply"}},
		{"deep JSON", write("deep.json", strings.Repeat("[", 50_000)+strings.Repeat("]", 50_000)), 1, 101, hcl.DiagError, []string{"Nested too deeply"}},
		{"deep template in JSON", write("tmpl.json", `{"host": {"listen": "${`+strings.Repeat("-", 50_000)+`1}"}}`), 1, 0, hcl.DiagError, []string{"Nested too deeply"}},
		{"nested for", write("for.hcl", "host {\n  data_dir = [for a in "+list+" : [for b in "+list+" : [for c in "+list+" : 1]]]\n}\n"), 2, 14, hcl.DiagError, []string{"for expressions are not supported"}},
		{"for on the next line", write("for2.hcl", "host {\n  data_dir = [\n    for a in [1] : a\n  ]\n}\n"), 2, 14, hcl.DiagError, []string{"for expressions are not supported"}},
		{"for directive", write("fordir.hcl", "host {\n  data_dir = \"%{ for a in [1] }x%{ endfor }\"\n}\n"), 2, 15, hcl.DiagError, []string{"for expressions are not supported"}},
		{"for in JSON", write("for.json", `{"host": {"data_dir": "${[for a in [1] : a]}"}}`), 1, 0, hcl.DiagError, []string{"for expressions are not supported"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// No time bound here (the machine is shared): input the parser could not take in
			// bounded time would hang the test until go test's -timeout.
			cfg, diags, files := LoadFile(tt.path, nil)
			if cfg == nil {
				t.Fatal("nil Config")
			}
			if len(diags) == 0 {
				t.Fatal("no diagnostic")
			}
			d := diags[0]
			if d.Severity != tt.severity {
				t.Errorf("severity %v, want %v: %s", d.Severity, tt.severity, d.Error())
			}
			switch {
			case tt.line == 0 && d.Subject == nil:
				if !strings.Contains(d.Error(), tt.path) {
					t.Errorf("%q does not name the file %s", d.Error(), tt.path)
				}
			case d.Subject == nil:
				t.Fatalf("no Subject: %s", d.Error())
			case d.Subject.Filename != tt.path:
				t.Errorf("Subject %v, want the file %s", d.Subject, tt.path)
			case tt.line != 0 && (d.Subject.Start.Line != tt.line || (tt.col != 0 && d.Subject.Start.Column != tt.col)):
				t.Errorf("Subject %v, want line %d column %d", d.Subject, tt.line, tt.col)
			}
			for _, w := range tt.want {
				if !strings.Contains(d.Error(), w) {
					t.Errorf("%q does not contain %q", d.Error(), w)
				}
			}
			// limitd prints them with hcl.NewDiagnosticTextWriter: it must not fail.
			w := hcl.NewDiagnosticTextWriter(&strings.Builder{}, files, 80, false)
			if err := w.WriteDiagnostics(diags); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestLoadFileReadsAtMostMaxFileBytes: an endless file (a device, a pipe) is refused as
// too large rather than read for ever.
func TestLoadFileReadsAtMostMaxFileBytes(t *testing.T) {
	if _, err := os.Stat("/dev/zero"); err != nil {
		t.Skip("no /dev/zero")
	}
	_, diags, _ := LoadFile("/dev/zero", nil)
	if !diags.HasErrors() || !strings.Contains(diags.Error(), "too large") {
		t.Fatalf("diagnostics %v", diags)
	}
}

// TestNestingAllowsRealFiles: the limits leave real configurations alone.
func TestNestingAllowsRealFiles(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("..", "..", "configs", "*.hcl"))
	if len(files) == 0 {
		t.Skip("no configs")
	}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if diags := checkSource(f, src, false); len(diags) != 0 {
			t.Errorf("%s: %v", f, diags)
		}
	}
	src := "rd {\n  alpha = (1 + 2) * -3 / 4 - (true ? 1 : 0)\n  tol = [1, 2, [3, {a = \"${\"x\"}\"}]]\n}\n" +
		"runner \"x\" {\n  config {\n    for = 1\n    list = [for, 1]\n  }\n}\n"
	if diags := checkSource(testFile, []byte(src), false); len(diags) != 0 {
		t.Errorf("%v", diags)
	}
}

// TestDiagnosticsHideEnvValues: a value that comes from env() may be a secret; a
// diagnostic about it says what is wrong without quoting it.
func TestDiagnosticsHideEnvValues(t *testing.T) {
	const secret = "sk-0123456789-SECRET"
	env := envMap(map[string]string{"KEY": secret})
	tests := []struct {
		name, src string
		line      int
		want      string
	}{
		{"listen", "host {\n  listen = env(\"KEY\")\n}\n", 2, "Invalid listen address"},
		{"listen template", "host {\n  listen = \"${env(\"KEY\")}\"\n}\n", 2, "host:port"},
		{"log_level", "host {\n\n  log_level = env(\"KEY\")\n}\n", 3, "log_level must be one of"},
		{"duration", "host {\n  plugin_start_timeout = env(\"KEY\")\n}\n", 2, "is not a duration"},
		{"policy", "governance {\n  policy = env(\"KEY\")\n}\n", 2, "policy must be one of"},
		{"sha256", "storage \"bolt\" {\n  sha256 = env(\"KEY\")\n}\n", 2, "64 hexadecimal"},
		{"api timeout", "api {\n  read_timeout = env(\"KEY\")\n}\n", 2, "read_timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, diags := Parse(testFile, []byte(tt.src), env)
			errs := errorsOf(diags)
			if len(errs) != 1 {
				t.Fatalf("diagnostics %v, want one error", diags)
			}
			got := errs[0].Error()
			if want := fmt.Sprintf("%s:%d", testFile, tt.line); !strings.Contains(got, want) || !strings.Contains(got, tt.want) {
				t.Errorf("%q, want %q and %q", got, want, tt.want)
			}
			// As limitd prints it too, with the snippet and the values HCL shows.
			var out strings.Builder
			w := hcl.NewDiagnosticTextWriter(&out, map[string]*hcl.File{testFile: {Bytes: []byte(tt.src)}}, 0, false)
			if err := w.WriteDiagnostics(diags); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(got+out.String(), "SECRET") {
				t.Errorf("the diagnostic reveals the value: %s\n%s", got, out.String())
			}
		})
	}
	// Without env(), the value is quoted: it helps to see the typo.
	_, diags := Parse(testFile, []byte("host {\n  log_level = \"verbos\"\n}\n"), nil)
	if !strings.Contains(diags.Error(), `"verbos"`) {
		t.Errorf("%v", diags)
	}
}

// TestTokenFileNotRegular: a token_file that is a FIFO or a directory is refused at its
// line instead of blocking the daemon or failing obscurely.
func TestTokenFileNotRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skip("mkfifo:", err)
	}
	for path, kind := range map[string]string{fifo: "is a named pipe, not a regular file", dir: "is a directory, not a regular file"} {
		done := make(chan hcl.Diagnostics, 1)
		go func() {
			_, diags := Parse(testFile, []byte("api {\n\n  token_file = \""+path+"\"\n}\n"), nil)
			done <- diags
		}()
		select {
		case diags := <-done:
			errs := errorsOf(diags)
			if len(errs) != 1 || errs[0].Subject == nil || errs[0].Subject.Start.Line != 3 ||
				!strings.Contains(errs[0].Detail, kind) {
				t.Errorf("%s: %v", path, diags)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: Parse blocks", path)
		}
	}
}
