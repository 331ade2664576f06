package config

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestReadmeFullConfig parses the README's full configuration, the first HCL block, which
// names every block and host attribute: a setting renamed or dropped in the code, or
// misspelt in the README, fails here (the optional sha256 pin is shown with a placeholder,
// left out). Plugins' config bodies are the plugins' to check (limitd -validate).
func TestReadmeFullConfig(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```hcl\n(host \\{.*?)```").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README has no ```hcl block starting with a host block")
	}
	src := regexp.MustCompile(`(?m)^(\s*)sha256\s*=\s*"…".*$`).ReplaceAllString(string(m[1]), "$1# sha256 left out")
	cfg, diags := Parse("README.md", []byte(src), nil)
	if diags.HasErrors() {
		t.Fatalf("the README's full configuration does not parse:\n%s", diags.Error())
	}
	for _, attr := range []string{"max_body_bytes_in_flight", "shutdown_timeout", "plugin_dir"} {
		if !strings.Contains(src, attr) {
			t.Errorf("the README's full configuration does not show %s", attr)
		}
	}
	if cfg.API.MaxBodyBytesInFlight != DefaultMaxBodyBytesInFlight || cfg.API.MaxBodyBytes != DefaultMaxBodyBytes {
		t.Errorf("the README shows api limits %d / %d, the defaults are %d / %d",
			cfg.API.MaxBodyBytes, cfg.API.MaxBodyBytesInFlight, DefaultMaxBodyBytes, DefaultMaxBodyBytesInFlight)
	}
}
