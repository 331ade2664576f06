package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestUnlocatedErrors checks that a configuration error with no place in a file (a bad
// seed variable, an unreadable -config) is printed as clearly as a located one: a first
// line "limitd: error: SUMMARY", then the detail, and exit status 1, both with -validate
// and on a normal start.
func TestUnlocatedErrors(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "limit.hcl")
	src := "host {\n  data_dir = \"" + filepath.Join(dir, "data") + "\"\n}\n"
	if err := os.WriteFile(good, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "nonexistent.hcl")
	for _, tc := range []struct {
		name    string
		env     [2]string // a seed variable and its value, or none
		config  string    // -config; "" for the embedded default
		summary string    // the first line, after "limitd: error: "
		detail  string    // in what follows
	}{
		{"API_PORT", [2]string{"API_PORT", "abc"}, good, "Invalid environment variable API_PORT", `port "abc" is not a number`},
		{"API_PORT embedded default", [2]string{"API_PORT", "abc"}, "", "Invalid environment variable API_PORT", `port "abc" is not a number`},
		{"GOVERNANCE_POLICY", [2]string{"GOVERNANCE_POLICY", "bogus"}, good, "Invalid environment variable GOVERNANCE_POLICY", `the policy must be one of "permissive", "default", "strict"`},
		{"STORAGE_BACKEND", [2]string{"STORAGE_BACKEND", "nope"}, good, "Invalid environment variable STORAGE_BACKEND", `STORAGE_BACKEND="nope": it names neither a storage block`},
		{"missing config", [2]string{}, missing, `Cannot read the configuration file "` + missing + `"`, "no such file or directory. Check the path given to -config."},
		{"config is a directory", [2]string{}, dir, `Cannot read the configuration file "` + dir + `"`, "is a directory; -config takes an HCL file"},
	} {
		for _, validate := range []bool{true, false} {
			name := tc.name + "/start"
			if validate {
				name = tc.name + "/validate"
			}
			t.Run(name, func(t *testing.T) {
				for _, v := range []string{"API_HOST", "API_PORT", "GOVERNANCE_POLICY", "STORAGE_BACKEND"} {
					t.Setenv(v, "")
					os.Unsetenv(v) // an empty value may be an error too; t.Setenv restores it
				}
				if tc.env[0] != "" {
					t.Setenv(tc.env[0], tc.env[1])
				}
				var args []string
				if validate {
					args = append(args, "-validate")
				}
				if tc.config != "" {
					args = append(args, "-config", tc.config)
				}
				var stdout, stderr bytes.Buffer
				done := make(chan int, 1)
				go func() { done <- run(args, &stdout, &stderr) }()
				var code int
				select {
				case code = <-done:
				case <-time.After(30 * time.Second):
					t.Fatalf("limitd %v did not exit: it should refuse its configuration", args)
				}
				if code != 1 {
					t.Errorf("exit %d, want 1", code)
				}
				out := stderr.String()
				first, rest, _ := strings.Cut(out, "\n")
				if want := "limitd: error: " + tc.summary; first != want {
					t.Errorf("first line %q, want %q\n%s", first, want, out)
				}
				if !strings.Contains(rest, tc.detail) {
					t.Errorf("stderr lacks the detail %q:\n%s", tc.detail, out)
				}
				if stdout.Len() != 0 {
					t.Errorf("stdout: %s", stdout.String())
				}
			})
		}
	}
}
