package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/limitgraph/limit/host/diskspace"
	"github.com/limitgraph/limit/sdk/base"
)

const testFile = "file.hcl"

// envMap returns a lookupEnv backed by m.
func envMap(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

func mustParse(t *testing.T, src string, env map[string]string) *Config {
	t.Helper()
	cfg, diags := Parse(testFile, []byte(src), envMap(env))
	if diags.HasErrors() {
		t.Fatalf("unexpected diagnostics:\n%s", diags.Error())
	}
	return cfg
}

// errorsOf returns the error diagnostics.
// wantOneError parses src and wants exactly one error, at line of testFile, whose summary
// holds summary and whose summary and detail hold detail.
func wantOneError(t *testing.T, src string, line int, summary, detail string) {
	t.Helper()
	_, diags := Parse(testFile, []byte(src), envMap(nil))
	errs := errorsOf(diags)
	if len(errs) != 1 {
		t.Fatalf("diagnostics %v, want one error", diags)
	}
	d := errs[0]
	if d.Subject == nil || d.Subject.Filename != testFile || d.Subject.Start.Line != line {
		t.Fatalf("error %q at %v, want %s line %d", d.Error(), d.Subject, testFile, line)
	}
	if !strings.Contains(d.Summary, summary) || !strings.Contains(d.Summary+d.Detail, detail) {
		t.Fatalf("error %q / %q, want %q and %q", d.Summary, d.Detail, summary, detail)
	}
}

func errorsOf(diags hcl.Diagnostics) hcl.Diagnostics {
	var out hcl.Diagnostics
	for _, d := range diags {
		if d.Severity == hcl.DiagError {
			out = append(out, d)
		}
	}
	return out
}

// plain strips what reflect.DeepEqual cannot compare usefully (bodies, contexts, ranges)
// from a copy of blocks.
func plain(blocks []*PluginBlock) []PluginBlock {
	var out []PluginBlock
	for _, b := range blocks {
		c := *b
		c.Config, c.evalCtx = nil, nil
		c.DeclRange, c.ConfigRange, c.SHA256Range, c.PluginRange = hcl.Range{}, hcl.Range{}, hcl.Range{}, hcl.Range{}
		out = append(out, c)
	}
	return out
}

const sha = "ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12"

var shaBytes = []byte{
	0xab, 0x12, 0xab, 0x12, 0xab, 0x12, 0xab, 0x12, 0xab, 0x12, 0xab, 0x12, 0xab, 0x12, 0xab, 0x12,
	0xab, 0x12, 0xab, 0x12, 0xab, 0x12, 0xab, 0x12, 0xab, 0x12, 0xab, 0x12, 0xab, 0x12, 0xab, 0x12,
}

const fullFile = `host {
  listen     = "127.0.0.1:9090"
  data_dir   = "/var/lib/limit"
  plugin_dir = "/opt/limit/plugins"
  log_level  = "debug"
  storage    = "bolt"
  plugin_start_timeout = "3s"
  deleted_retention = "720h"
}
storage "bolt" {
  plugin = "limit-storage-bolt"
  sha256 = "` + sha + `"
  env    = { FOO = "bar" }
  config {
    path = "limit.db"
  }
}

storage "sqlite" {
}

runner "python" {
  plugin = "/opt/limit/plugins/limit-runner-python"
  config { interpreter = "/usr/bin/python3" }
}

runner "llm" {}

governance {
  policy = "strict"
  rule "jailbreak" {
    plugin = "limit-governance-jailbreak"
    config {}
  }
}

rd {
  alpha    = 0.25
  epsilon  = 0.02
  max_iter = 500
  timeout  = "90s"
  tol      = 1e-6
}

api {
  max_body_bytes   = 1048576
  max_body_bytes_in_flight = 8388608
  read_timeout     = "10s"
  write_timeout    = "0s"
  shutdown_timeout = "1m"
}
`

// TestPluginConfigureTimeout: host.plugin_configure_timeout bounds a plugin's Configure;
// it must be a positive duration.
func TestPluginConfigureTimeout(t *testing.T) {
	cfg := mustParse(t, "host {\n  plugin_configure_timeout = \"20m\"\n}\n", nil)
	if cfg.Host.PluginConfigureTimeout != 20*time.Minute {
		t.Fatalf("PluginConfigureTimeout = %v, want 20m", cfg.Host.PluginConfigureTimeout)
	}
	for _, v := range []string{"0s", "soon"} {
		_, diags := Parse(testFile, []byte("host {\n  plugin_configure_timeout = \""+v+"\"\n}\n"), nil)
		if !diags.HasErrors() || !strings.Contains(diags.Error(), "plugin_configure_timeout") {
			t.Errorf("plugin_configure_timeout = %q: %v, want an error naming it", v, diags)
		}
	}
}

func TestParseFull(t *testing.T) {
	cfg := mustParse(t, fullFile, nil)

	wantHost := Host{
		Listen:                 "127.0.0.1:9090",
		DataDir:                "/var/lib/limit",
		PluginDir:              "/opt/limit/plugins",
		LogLevel:               "debug",
		LogFormat:              "text",
		StorageName:            "bolt",
		PluginStartTimeout:     3 * time.Second,
		PluginConfigureTimeout: 5 * time.Minute,
		DeletedRetention:       720 * time.Hour,
	}
	gotHost := cfg.Host
	if gotHost.DeclRange.Start.Line != 1 || gotHost.DeclRange.Filename != testFile {
		t.Errorf("Host.DeclRange = %v, want %s line 1", gotHost.DeclRange, testFile)
	}
	if gotHost.ListenRange.Start.Line != 2 || gotHost.DataDirRange.Start.Line != 3 {
		t.Errorf("ListenRange = %v, DataDirRange = %v, want lines 2 and 3", gotHost.ListenRange, gotHost.DataDirRange)
	}
	gotHost.DeclRange, gotHost.ListenRange, gotHost.DataDirRange = hcl.Range{}, hcl.Range{}, hcl.Range{}
	if !reflect.DeepEqual(gotHost, wantHost) {
		t.Errorf("Host = %+v\nwant %+v", gotHost, wantHost)
	}

	wantStorage := []PluginBlock{
		{Kind: "storage", Name: "bolt", Plugin: "limit-storage-bolt", SHA256: shaBytes, Env: map[string]string{"FOO": "bar"}},
		{Kind: "storage", Name: "sqlite", Plugin: "limit-storage-sqlite"},
	}
	if got := plain(cfg.Storage); !reflect.DeepEqual(got, wantStorage) {
		t.Errorf("Storage = %+v\nwant %+v", got, wantStorage)
	}
	wantRunners := []PluginBlock{
		{Kind: "runner", Name: "python", Plugin: "/opt/limit/plugins/limit-runner-python"},
		{Kind: "runner", Name: "llm", Plugin: "limit-runner-llm"},
	}
	if got := plain(cfg.Runners); !reflect.DeepEqual(got, wantRunners) {
		t.Errorf("Runners = %+v\nwant %+v", got, wantRunners)
	}
	if cfg.Governance.Policy != "strict" || cfg.Governance.PolicyRange.Start.Line != 30 {
		t.Errorf("Governance policy = %q at %v, want \"strict\" at line 30", cfg.Governance.Policy, cfg.Governance.PolicyRange)
	}
	wantRules := []PluginBlock{{Kind: "governance", Name: "jailbreak", Plugin: "limit-governance-jailbreak"}}
	if got := plain(cfg.Governance.Rules); !reflect.DeepEqual(got, wantRules) {
		t.Errorf("Rules = %+v\nwant %+v", got, wantRules)
	}
	if want := (RD{Alpha: 0.25, Epsilon: 0.02, Tol: 1e-6, MaxIter: 500, Timeout: 90 * time.Second}); cfg.RD != want {
		t.Errorf("RD = %+v, want %+v", cfg.RD, want)
	}
	wantAPI := API{MaxBodyBytes: 1 << 20, MaxBodyBytesInFlight: 8 << 20, ReadTimeout: 10 * time.Second, WriteTimeout: 0, ShutdownTimeout: time.Minute}
	if !reflect.DeepEqual(cfg.API, wantAPI) {
		t.Errorf("API = %+v, want %+v", cfg.API, wantAPI)
	}
	if cfg.Filename != testFile {
		t.Errorf("Filename = %q", cfg.Filename)
	}

	// Ranges point at the source.
	bolt := cfg.SelectedStorage()
	if bolt == nil || bolt.Name != "bolt" {
		t.Fatalf("SelectedStorage() = %+v, want bolt", bolt)
	}
	for name, r := range map[string]struct {
		rng  hcl.Range
		line int
	}{
		"DeclRange":   {bolt.DeclRange, 10},
		"PluginRange": {bolt.PluginRange, 11},
		"SHA256Range": {bolt.SHA256Range, 12},
		"ConfigRange": {bolt.ConfigRange, 14},
	} {
		if r.rng.Start.Line != r.line || r.rng.Filename != testFile {
			t.Errorf("bolt %s = %v, want line %d", name, r.rng, r.line)
		}
	}
	sqlite := cfg.Storage[1]
	if sqlite.ConfigRange != sqlite.DeclRange || sqlite.Config == nil {
		t.Errorf("block without config: ConfigRange = %v, DeclRange = %v, Config = %v", sqlite.ConfigRange, sqlite.DeclRange, sqlite.Config)
	}
	if sqlite.PluginRange != (hcl.Range{}) || sqlite.SHA256Range != (hcl.Range{}) {
		t.Errorf("absent plugin/sha256 have ranges %v %v", sqlite.PluginRange, sqlite.SHA256Range)
	}
	attrs, diags := bolt.Config.JustAttributes()
	if diags.HasErrors() || attrs["path"] == nil {
		t.Errorf("bolt config body attributes = %v, %v; want path", attrs, diags)
	}
}

func TestParseEmptyGivesDefaults(t *testing.T) {
	for _, src := range []string{"", "# nothing\n", "host {}\nrd {}\napi {}\ngovernance {}\n"} {
		cfg := mustParse(t, src, nil)
		want := Config{
			Host: Host{
				Listen:                 "127.0.0.1:8080",
				DataDir:                "./data",
				PluginDir:              "",
				LogLevel:               "info",
				LogFormat:              "text",
				StorageName:            "bolt",
				PluginStartTimeout:     10 * time.Second,
				PluginConfigureTimeout: 5 * time.Minute,
				DeclRange:              cfg.Host.DeclRange,
			},
			Storage:    cfg.Storage,
			Governance: Governance{Policy: "default"},
			RD:         RD{Alpha: 0.5, Epsilon: 0.01, Tol: 1e-9, MaxIter: 200, Timeout: time.Minute},
			API: API{
				MaxBodyBytes:         10485760,
				MaxBodyBytesInFlight: 32 << 20,
				ReadTimeout:          30 * time.Second,
				WriteTimeout:         5 * time.Minute,
				ShutdownTimeout:      15 * time.Second,
			},
			Filename: testFile,
		}
		if !reflect.DeepEqual(*cfg, want) {
			t.Errorf("%q:\n got %+v\nwant %+v", src, *cfg, want)
		}
		wantStorage := []PluginBlock{{Kind: "storage", Name: "bolt", Plugin: "limit-storage-bolt"}}
		if got := plain(cfg.Storage); !reflect.DeepEqual(got, wantStorage) {
			t.Errorf("%q: Storage = %+v, want %+v", src, got, wantStorage)
		}
		sel := cfg.SelectedStorage()
		if sel == nil || sel.Name != "bolt" {
			t.Fatalf("%q: SelectedStorage() = %v", src, sel)
		}
		raw, diags := DecodePluginConfig(sel, base.Schema{})
		if diags.HasErrors() || string(raw) != "{}" {
			t.Errorf("%q: synthesised config decodes to %s, %v", src, raw, diags)
		}
	}
}

func TestParseNullMeansDefault(t *testing.T) {
	cfg := mustParse(t, "host {\n  listen = null\n}\nrd {\n  alpha = null\n}\n", nil)
	if cfg.Host.Listen != DefaultListen || cfg.RD.Alpha != DefaultAlpha {
		t.Errorf("null attributes: listen %q alpha %v, want defaults", cfg.Host.Listen, cfg.RD.Alpha)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name    string
		src     string
		env     map[string]string
		line    int
		summary string // substring of the first error's Summary
		detail  string // substring of the first error's Detail, if any
	}{
		{"syntax error", "host {\n  listen = \"a:1\"\n  data_dir = = 3\n}\n", nil, 3, "", ""},
		{"unclosed block", "host {\n  listen = \"a:1\"\n", nil, 1, "Unclosed", ""},
		{"unknown attribute", "host {\n  listen = \"a:1\"\n  lisen = \"x\"\n}\n", nil, 3, "Unsupported argument", "lisen"},
		{"unknown top attribute", "\nlisten = \"x\"\n", nil, 2, "Unsupported argument", ""},
		{"unknown block", "host {}\n\nhots {\n}\n", nil, 3, "Unsupported block type", "hots"},
		{"unknown nested block", "host {\n  tls {}\n}\n", nil, 2, "Unsupported block type", "tls"},
		{"unknown plugin attribute", "storage \"bolt\" {\n  path = \"x\"\n}\n", nil, 2, "Unsupported argument", "path"},
		{"extraneous label", "\nhost \"main\" {}\n", nil, 2, "Extraneous label", ""},
		{"missing label", "runner {}\n", nil, 1, "Missing name", ""},
		{"wrong type number", "rd {\n  max_iter = \"many\"\n}\n", nil, 2, "Incorrect attribute value type", "a number is required"},
		{"wrong type string", "host {\n\n  listen = [\"a\"]\n}\n", nil, 3, "Incorrect attribute value type", "string required"},
		{"wrong type map", "storage \"bolt\" {\n  env = \"FOO=bar\"\n}\n", nil, 2, "Incorrect attribute value type", "map of string required"},
		{"variables not allowed", "host {\n  listen = foo\n}\n", nil, 2, "Variables not allowed", ""},
		{"unknown function", "host {\n  listen = upper(\"x\")\n}\n", nil, 2, "Call to unknown function", ""},
		{"duplicate storage label", "storage \"bolt\" {}\nstorage \"file\" {}\nstorage \"bolt\" {}\n", nil, 3, "Duplicate storage \"bolt\"", "file.hcl:1"},
		{"duplicate runner label", "runner \"python\" {}\n\nrunner \"python\" {}\n", nil, 3, "Duplicate runner \"python\"", ""},
		{"duplicate rule label", "governance {\n  rule \"a\" {}\n  rule \"a\" {}\n}\n", nil, 3, "Duplicate governance rule \"a\"", ""},
		{"duplicate host", "host {}\nhost {}\n", nil, 2, "Duplicate host block", ""},
		{"duplicate governance", "governance {}\n\ngovernance {}\n", nil, 3, "Duplicate governance block", ""},
		{"duplicate rd", "rd {}\nrd {}\n", nil, 2, "Duplicate rd block", ""},
		{"duplicate api", "api {}\napi {}\n", nil, 2, "Duplicate api block", ""},
		{"duplicate config block", "runner \"x\" {\n  config {}\n  config {}\n}\n", nil, 3, "Duplicate config block", ""},
		{"duplicate attribute", "host {\n  listen = \"a:1\"\n  listen = \"b:2\"\n}\n", nil, 3, "Attribute redefined", ""},
		{"bad label", "runner \"my python\" {}\n", nil, 1, "Invalid runner name", ""},
		{"bad policy", "governance {\n  policy = \"lax\"\n}\n", nil, 2, "Invalid policy", "\"permissive\", \"default\", \"strict\""},
		{"bad log level", "host {\n  log_level = \"verbose\"\n}\n", nil, 2, "Invalid log_level", "verbose"},
		{"bad log format", "host {\n\n  log_format = \"logfmt\"\n}\n", nil, 3, "Invalid log_format", "\"text\", \"json\"; got \"logfmt\""},
		{"bad listen", "host {\n  listen = \"localhost\"\n}\n", nil, 2, "Invalid listen address", ""},
		{"bad listen port", "host {\n  listen = \"localhost:http\"\n}\n", nil, 2, "Invalid listen address", ""},
		{"empty data dir", "host {\n  data_dir = \"\"\n}\n", nil, 2, "Invalid data_dir", ""},
		{"bad duration", "host {\n  plugin_start_timeout = \"10 seconds\"\n}\n", nil, 2, "Invalid duration", "plugin_start_timeout"},
		{"duration without unit", "api {\n  read_timeout = 30\n}\n", nil, 2, "Invalid duration", "missing unit"},
		{"allowed host with a port", "api {\n\n  allowed_hosts = [\"limit.example.com:8080\"]\n}\n", nil, 3, "Invalid allowed_hosts", "without a port"},
		{"allowed host with a scheme", "api {\n  allowed_hosts = [\"https://limit.example.com\"]\n}\n", nil, 2, "Invalid allowed_hosts", "not a host name"},
		{"allowed hosts not a list", "api {\n  allowed_hosts = \"limit.example.com\"\n}\n", nil, 2, "Incorrect attribute value type", "list of string required"},
		{"zero start timeout", "host {\n  plugin_start_timeout = \"0s\"\n}\n", nil, 2, "Invalid duration", ""},
		{"negative timeout", "api {\n  write_timeout = \"-1s\"\n}\n", nil, 2, "Invalid duration", "negative"},
		{"negative drain delay", "api {\n\n  drain_delay = \"-5s\"\n}\n", nil, 3, "Invalid duration", "drain_delay must not be negative"},
		{"negative deleted retention", "host {\n  deleted_retention = \"-24h\"\n}\n", nil, 2, "Invalid duration", "deleted_retention must not be negative"},
		{"min_free_disk unknown unit", "host {\n\n  min_free_disk = \"5 bananas\"\n}\n", nil, 3, "Invalid min_free_disk", "unknown unit \"bananas\""},
		{"min_free_disk negative", "host {\n  min_free_disk = \"-1GiB\"\n}\n", nil, 2, "Invalid min_free_disk", "must not be negative"},
		{"min_free_disk percentage", "host {\n  min_free_disk = \"100%\"\n}\n", nil, 2, "Invalid min_free_disk", "below 100"},
		{"deleted retention without unit", "host {\n  deleted_retention = \"30\"\n}\n", nil, 2, "Invalid duration", "deleted_retention"},
		{"short sha256", "storage \"bolt\" {\n  sha256 = \"ab12\"\n}\n", nil, 2, "Invalid sha256", "got 4 characters"},
		{"sha256 of characters beyond ASCII", "storage \"bolt\" {\n  sha256 = \"é…x\"\n}\n", nil, 2, "Invalid sha256", "got 3 characters"},
		{"sha256 placeholder", "storage \"bolt\" {\n  sha256 = \"…\"\n}\n", nil, 2, "Invalid sha256", "got 1 character."},
		{"non-hex sha256", "storage \"bolt\" {\n  sha256 = \"" + strings.Repeat("g", 64) + "\"\n}\n", nil, 2, "Invalid sha256", "invalid byte"},
		{"empty plugin", "runner \"x\" {\n  plugin = \"\"\n}\n", nil, 2, "Invalid plugin", ""},
		{"bad env key", "runner \"x\" {\n  env = { \"A=B\" = \"c\" }\n}\n", nil, 2, "Invalid env", ""},
		{"alpha too big", "rd {\n  alpha = 1.5\n}\n", nil, 2, "Invalid alpha", ""},
		{"alpha negative", "rd {\n  alpha = -0.1\n}\n", nil, 2, "Invalid alpha", ""},
		{"epsilon zero", "rd {\n  epsilon = 0\n}\n", nil, 2, "Invalid epsilon", ""},
		{"tol negative", "rd {\n\n  tol = -1e-9\n}\n", nil, 3, "Invalid tol", ""},
		{"max_iter zero", "rd {\n  max_iter = 0\n}\n", nil, 2, "Invalid max_iter", ""},
		{"max_iter fraction", "rd {\n  max_iter = 1.5\n}\n", nil, 2, "Invalid max_iter", "whole number"},
		{"rd timeout zero", "rd {\n  timeout = \"0s\"\n}\n", nil, 2, "Invalid duration", "timeout must be longer than zero"},
		{"rd timeout no unit", "rd {\n  timeout = \"60\"\n}\n", nil, 2, "Invalid duration", "not a duration"},
		{"max_body_bytes zero", "api {\n  max_body_bytes = 0\n}\n", nil, 2, "Invalid max_body_bytes", ""},
		{"max_body_bytes_in_flight zero", "api {\n  max_body_bytes_in_flight = 0\n}\n", nil, 2, "Invalid max_body_bytes_in_flight", "greater than 0"},
		{"max_body_bytes_in_flight fraction", "api {\n  max_body_bytes_in_flight = 1.5\n}\n", nil, 2, "Invalid max_body_bytes_in_flight", "whole number"},
		{"storage absent", "host {\n  storage = \"x\"\n}\nstorage \"bolt\" {}\n", nil, 2,
			"host.storage names \"x\" but no storage \"x\" block exists", "\"bolt\""},
		{"storage absent despite STORAGE_BACKEND", "host {\n  storage = \"x\"\n}\n", map[string]string{"STORAGE_BACKEND": "bolt"}, 2,
			"host.storage names \"x\"", ""},
		{"storage ambiguous", "host {}\nstorage \"a\" {}\nstorage \"b\" {}\n", nil, 1, "host.storage is required", "\"a\", \"b\""},
		{"storage ambiguous no host", "storage \"a\" {}\nstorage \"b\" {}\n", nil, 2, "host.storage is required", ""},
		{"env unset", "host {\n  data_dir = env(\"LIMIT_DATA\")\n}\n", nil, 2, "Invalid function argument", "\"LIMIT_DATA\" is not set"},
		{"env too many args", "host {\n  data_dir = env(\"A\", \"b\", \"c\")\n}\n", nil, 2, "Invalid function argument", "at most one default"},
		{"pool too large", "runner \"x\" {\n  pool = 1e30\n}\n", nil, 2, "Invalid pool", "from 0 to 64"},
		{"max_iter too large", "rd {\n  max_iter = 1e30\n}\n", nil, 2, "Invalid max_iter", "from 1 to 2147483647"},
		{"max_body_bytes too large", "api {\n\n  max_body_bytes = 1e30\n}\n", nil, 3, "Invalid max_body_bytes", "from 1 to 9223372036854775807"},
		{"alpha infinite", "rd {\n  alpha = 1e400\n}\n", nil, 2, "Invalid alpha", "finite"},
		{"listen port out of range", "host {\n  listen = \"127.0.0.1:70000\"\n}\n", nil, 2, "Invalid listen address", "from 0 to 65535"},
		{"listen bracket", "host {\n  listen = \"[::1\"\n}\n", nil, 2, "Invalid listen address", "host:port"},
		{"env without argument", "host {\n  data_dir = env()\n}\n", nil, 2, "Not enough function arguments", "name"},
		{"env of a list", "host {\n  data_dir = env([\"A\"])\n}\n", nil, 2, "Invalid function argument", "string required"},
		{"env of null", "host {\n  data_dir = env(null)\n}\n", nil, 2, "Invalid function argument", ""},
		{"env in plugin block", "runner \"x\" {\n  plugin = env(\"RUNNER_BIN\")\n}\n", nil, 2, "Invalid function argument", "RUNNER_BIN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, diags := Parse(testFile, []byte(tt.src), envMap(tt.env))
			if cfg == nil {
				t.Fatal("Parse returned a nil Config")
			}
			errs := errorsOf(diags)
			if len(errs) == 0 {
				t.Fatalf("no error; diagnostics: %v", diags)
			}
			d := errs[0]
			if d.Subject == nil {
				t.Fatalf("error %q has no Subject", d.Error())
			}
			if d.Subject.Start.Line != tt.line || d.Subject.Filename != testFile {
				t.Errorf("Subject = %v, want %s line %d (%s)", d.Subject, testFile, tt.line, d.Error())
			}
			if want := fmt.Sprintf("%s:%d", testFile, tt.line); !strings.Contains(diags.Error(), want) {
				t.Errorf("Error() = %q, want it to contain %q", diags.Error(), want)
			}
			if !strings.Contains(d.Summary, tt.summary) {
				t.Errorf("Summary = %q, want it to contain %q", d.Summary, tt.summary)
			}
			if !strings.Contains(d.Detail, tt.detail) {
				t.Errorf("Detail = %q, want it to contain %q", d.Detail, tt.detail)
			}
		})
	}
}

func TestParseKeepsCollecting(t *testing.T) {
	src := `host {
  log_level = "loud"
  bogus     = 1
}
governance {
  policy = "lax"
}
rd {
  alpha    = 2
  max_iter = -1
}
storage "bolt" {}
storage "bolt" {}
mystery {}
`
	_, diags := Parse(testFile, []byte(src), nil)
	var lines []int
	for _, d := range errorsOf(diags) {
		lines = append(lines, d.Subject.Start.Line)
	}
	want := []int{14, 2, 3, 6, 9, 10, 13}
	if !sameInts(lines, want) {
		t.Errorf("error lines = %v, want (in any order) %v\n%s", lines, want, diags.Error())
	}
}

func sameInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	count := map[int]int{}
	for _, x := range a {
		count[x]++
	}
	for _, x := range b {
		count[x]--
	}
	for _, n := range count {
		if n != 0 {
			return false
		}
	}
	return true
}

func TestEnvFunction(t *testing.T) {
	src := `host {
  data_dir  = env("LIMIT_DATA")
  log_level = env("LIMIT_LOG", "warn")
  listen    = "${env("BIND", "127.0.0.1")}:${env("PORT", "8080")}"
}
storage "bolt" {
  env = { TOKEN = env("TOKEN", "") }
}
`
	tests := []struct {
		name                     string
		env                      map[string]string
		dataDir, logLevel, bind  string
		token                    string
		wantErr, wantErrVariable string
	}{
		{name: "set", env: map[string]string{"LIMIT_DATA": "/srv", "LIMIT_LOG": "debug", "BIND": "0.0.0.0", "PORT": "1", "TOKEN": "t"},
			dataDir: "/srv", logLevel: "debug", bind: "0.0.0.0:1", token: "t"},
		{name: "defaults", env: map[string]string{"LIMIT_DATA": "/srv"},
			dataDir: "/srv", logLevel: "warn", bind: "127.0.0.1:8080", token: ""},
		{name: "set to empty is set", env: map[string]string{"LIMIT_DATA": "/srv", "LIMIT_LOG": ""},
			wantErr: "Invalid log_level"},
		{name: "unset without default", env: map[string]string{},
			wantErr: "Invalid function argument", wantErrVariable: "LIMIT_DATA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, diags := Parse(testFile, []byte(src), envMap(tt.env))
			if tt.wantErr != "" {
				errs := errorsOf(diags)
				if len(errs) != 1 || !strings.Contains(errs[0].Summary, tt.wantErr) ||
					!strings.Contains(errs[0].Detail, tt.wantErrVariable) {
					t.Fatalf("diagnostics = %v, want one %q naming %q", diags, tt.wantErr, tt.wantErrVariable)
				}
				return
			}
			if diags.HasErrors() {
				t.Fatal(diags.Error())
			}
			if cfg.Host.DataDir != tt.dataDir || cfg.Host.LogLevel != tt.logLevel || cfg.Host.Listen != tt.bind {
				t.Errorf("host = %+v", cfg.Host)
			}
			if got := cfg.Storage[0].Env["TOKEN"]; got != tt.token {
				t.Errorf("TOKEN = %q, want %q", got, tt.token)
			}
		})
	}
}

func TestEnvOverrides(t *testing.T) {
	const twoStores = "storage \"main\" {\n  plugin = \"limit-storage-postgres\"\n}\nstorage \"bolt\" {}\nhost {\n  storage = \"bolt\"\n}\n"
	tests := []struct {
		name    string
		src     string
		env     map[string]string
		check   func(t *testing.T, c *Config)
		wantErr string // the variable the error must name; "" for no error
	}{
		{name: "API_HOST alone", env: map[string]string{"API_HOST": "0.0.0.0"},
			check: listen("0.0.0.0:8080")},
		{name: "API_PORT alone", env: map[string]string{"API_PORT": "9000"},
			check: listen("127.0.0.1:9000")},
		{name: "both", env: map[string]string{"API_HOST": "example.org", "API_PORT": "80"},
			check: listen("example.org:80")},
		{name: "API_HOST keeps the file's port", src: "host {\n  listen = \":7000\"\n}\n", env: map[string]string{"API_HOST": "10.0.0.1"},
			check: listen("10.0.0.1:7000")},
		{name: "API_PORT keeps the file's host", src: "host {\n  listen = \"[::1]:7000\"\n}\n", env: map[string]string{"API_PORT": "7001"},
			check: listen("[::1]:7001")},
		{name: "IPv6 API_HOST", env: map[string]string{"API_HOST": "::1"}, check: listen("[::1]:8080")},
		{name: "bracketed IPv6 API_HOST", env: map[string]string{"API_HOST": "[::1]"}, check: listen("[::1]:8080")},
		{name: "empty is unset", env: map[string]string{"API_HOST": "", "API_PORT": ""}, check: listen("127.0.0.1:8080")},
		{name: "invalid API_PORT", env: map[string]string{"API_PORT": "eighty"}, wantErr: "API_PORT"},
		{name: "API_PORT out of range", env: map[string]string{"API_PORT": "70000"}, wantErr: "API_PORT"},
		{name: "negative API_PORT", env: map[string]string{"API_PORT": "-1"}, wantErr: "API_PORT"},
		{name: "API_HOST with a port", env: map[string]string{"API_HOST": "localhost:80"}, wantErr: "API_HOST"},
		{name: "API_HOST with a slash", env: map[string]string{"API_HOST": "http://x"}, wantErr: "API_HOST"},

		{name: "STORAGE_BACKEND synthesises", env: map[string]string{"STORAGE_BACKEND": "sqlite"},
			check: func(t *testing.T, c *Config) {
				sel := c.SelectedStorage()
				if sel == nil || sel.Name != "sqlite" || sel.Plugin != "limit-storage-sqlite" || c.Host.StorageName != "sqlite" {
					t.Fatalf("selected = %+v", sel)
				}
				if len(c.Storage) != 1 {
					t.Errorf("Storage has %d blocks, want only the synthesised one", len(c.Storage))
				}
				raw, diags := DecodePluginConfig(sel, base.Schema{})
				if diags.HasErrors() || string(raw) != "{}" {
					t.Errorf("synthesised config = %s %v", raw, diags)
				}
			}},
		{name: "STORAGE_BACKEND overrides host.storage", src: twoStores, env: map[string]string{"STORAGE_BACKEND": "main"},
			check: selected("main", "limit-storage-postgres")},
		{name: "STORAGE_BACKEND settles ambiguity", src: "storage \"a\" {}\nstorage \"b\" {}\n", env: map[string]string{"STORAGE_BACKEND": "b"},
			check: selected("b", "limit-storage-b")},
		{name: "STORAGE_BACKEND kv is bolt", env: map[string]string{"STORAGE_BACKEND": "kv"},
			check: selected("bolt", "limit-storage-bolt")},
		{name: "STORAGE_BACKEND kv uses the file's bolt block", src: "storage \"bolt\" {\n  plugin = \"my-bolt\"\n}\n",
			env: map[string]string{"STORAGE_BACKEND": "kv"}, check: selected("bolt", "my-bolt")},
		{name: "STORAGE_BACKEND file", src: "storage \"bolt\" {}\n", env: map[string]string{"STORAGE_BACKEND": "file"},
			check: func(t *testing.T, c *Config) {
				selected("file", "limit-storage-file")(t, c)
				if len(c.Storage) != 2 {
					t.Errorf("Storage has %d blocks, want 2", len(c.Storage))
				}
			}},
		{name: "invalid STORAGE_BACKEND", env: map[string]string{"STORAGE_BACKEND": "mongo"}, wantErr: "STORAGE_BACKEND"},

		{name: "DATABASE_URL to synthesised postgres", env: map[string]string{"STORAGE_BACKEND": "postgres", "DATABASE_URL": "postgres://db/x"},
			check: func(t *testing.T, c *Config) {
				if got := c.SelectedStorage().Env; !reflect.DeepEqual(got, map[string]string{"DATABASE_URL": "postgres://db/x"}) {
					t.Errorf("Env = %v", got)
				}
			}},
		{name: "DATABASE_URL to a postgres plugin by binary", src: twoStores,
			env: map[string]string{"STORAGE_BACKEND": "main", "DATABASE_URL": "postgres://db/x"},
			check: func(t *testing.T, c *Config) {
				if got := c.SelectedStorage().Env["DATABASE_URL"]; got != "postgres://db/x" {
					t.Errorf("DATABASE_URL = %q", got)
				}
			}},
		{name: "DATABASE_URL does not replace the file's", src: "storage \"postgres\" {\n  env = { DATABASE_URL = \"postgres://file\", X = \"y\" }\n}\n",
			env: map[string]string{"DATABASE_URL": "postgres://env"},
			check: func(t *testing.T, c *Config) {
				want := map[string]string{"DATABASE_URL": "postgres://file", "X": "y"}
				if got := c.SelectedStorage().Env; !reflect.DeepEqual(got, want) {
					t.Errorf("Env = %v, want %v", got, want)
				}
			}},
		{name: "DATABASE_URL overrides the config url", src: "storage \"postgres\" {\n  config {\n    url = \"postgres://file/x\"\n  }\n}\n",
			env: map[string]string{"DATABASE_URL": "postgres://env/x"},
			check: func(t *testing.T, c *Config) {
				sel := c.SelectedStorage()
				raw, ds := DecodePluginConfig(sel, base.Schema{Attributes: []base.Attribute{{Name: "url", Type: "string", Sensitive: true}}})
				if ds.HasErrors() || string(raw) != "{}" || sel.Env["DATABASE_URL"] != "postgres://env/x" || !sel.URLFromEnv {
					t.Errorf("config %s (%v), Env %v, URLFromEnv %v", raw, ds, sel.Env, sel.URLFromEnv)
				}
			}},
		{name: "the config url without DATABASE_URL", src: "storage \"postgres\" {\n  config {\n    url = \"postgres://file/x\"\n  }\n}\n",
			check: func(t *testing.T, c *Config) {
				raw, _ := DecodePluginConfig(c.SelectedStorage(), base.Schema{Attributes: []base.Attribute{{Name: "url", Type: "string"}}})
				if string(raw) != `{"url":"postgres://file/x"}` {
					t.Errorf("config %s", raw)
				}
			}},
		{name: "blank DATABASE_URL", src: "storage \"postgres\" {}\n", env: map[string]string{"DATABASE_URL": " "}, wantErr: "DATABASE_URL is empty"},
		{name: "STORAGE_BACKEND picks the block running its plugin", src: "storage \"bolt\" {}\nstorage \"main\" {\n  plugin = \"limit-storage-postgres\"\n}\n",
			env: map[string]string{"STORAGE_BACKEND": "postgres", "DATABASE_URL": "postgres://env/x"},
			check: func(t *testing.T, c *Config) {
				if c.Host.StorageName != "main" || len(c.Storage) != 2 || c.SelectedStorage().Env["DATABASE_URL"] != "postgres://env/x" {
					t.Errorf("storage %q of %d blocks", c.Host.StorageName, len(c.Storage))
				}
			}},
		{name: "STORAGE_BACKEND with two blocks running its plugin",
			src:     "storage \"a\" {\n  plugin = \"limit-storage-postgres\"\n}\nstorage \"b\" {\n  plugin = \"/opt/limit-storage-postgres\"\n}\nhost {\n  storage = \"a\"\n}\n",
			env:     map[string]string{"STORAGE_BACKEND": "postgres"},
			wantErr: "STORAGE_BACKEND"},
		{name: "DATABASE_URL not given to bolt", env: map[string]string{"DATABASE_URL": "postgres://db/x"},
			check: func(t *testing.T, c *Config) {
				if env := c.SelectedStorage().Env; env != nil {
					t.Errorf("bolt Env = %v, want nil", env)
				}
			}},

		{name: "GOVERNANCE_POLICY", src: "governance {\n  policy = \"permissive\"\n}\n", env: map[string]string{"GOVERNANCE_POLICY": "strict"},
			check: func(t *testing.T, c *Config) {
				if c.Governance.Policy != "strict" || c.Governance.PolicyRange != (hcl.Range{}) {
					t.Errorf("Governance = %+v", c.Governance)
				}
			}},
		{name: "invalid GOVERNANCE_POLICY", env: map[string]string{"GOVERNANCE_POLICY": "Strict"}, wantErr: "GOVERNANCE_POLICY"},

		{name: "FGW_ALPHA and FGW_EPSILON", src: "rd {\n  alpha = 0.9\n  epsilon = 0.5\n  max_iter = 7\n}\n",
			env: map[string]string{"FGW_ALPHA": "0.1", "FGW_EPSILON": "1e-3"},
			check: func(t *testing.T, c *Config) {
				if want := (RD{Alpha: 0.1, Epsilon: 1e-3, Tol: DefaultTol, MaxIter: 7, Timeout: DefaultRDTimeout}); c.RD != want {
					t.Errorf("RD = %+v, want %+v", c.RD, want)
				}
			}},
		{name: "FGW_ALPHA bounds are inclusive", env: map[string]string{"FGW_ALPHA": "1"},
			check: func(t *testing.T, c *Config) {
				if c.RD.Alpha != 1 {
					t.Errorf("Alpha = %v", c.RD.Alpha)
				}
			}},
		{name: "FGW_ALPHA out of range", env: map[string]string{"FGW_ALPHA": "1.5"}, wantErr: "FGW_ALPHA"},
		{name: "FGW_ALPHA not a number", env: map[string]string{"FGW_ALPHA": "half"}, wantErr: "FGW_ALPHA"},
		{name: "FGW_ALPHA NaN", env: map[string]string{"FGW_ALPHA": "NaN"}, wantErr: "FGW_ALPHA"},
		{name: "FGW_EPSILON zero", env: map[string]string{"FGW_EPSILON": "0"}, wantErr: "FGW_EPSILON"},
		{name: "FGW_EPSILON infinite", env: map[string]string{"FGW_EPSILON": "+Inf"}, wantErr: "FGW_EPSILON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, diags := Parse(testFile, []byte(tt.src), envMap(tt.env))
			if tt.wantErr == "" {
				if diags.HasErrors() {
					t.Fatal(diags.Error())
				}
				tt.check(t, cfg)
				return
			}
			errs := errorsOf(diags)
			if len(errs) != 1 {
				t.Fatalf("diagnostics = %v, want one error", diags)
			}
			if !strings.Contains(errs[0].Summary, tt.wantErr) {
				t.Errorf("Summary = %q, want it to name %s", errs[0].Summary, tt.wantErr)
			}
			if !strings.Contains(errs[0].Detail, tt.env[tt.wantErr]) {
				t.Errorf("Detail = %q, want it to show the value %q", errs[0].Detail, tt.env[tt.wantErr])
			}
		})
	}
}

func listen(want string) func(*testing.T, *Config) {
	return func(t *testing.T, c *Config) {
		t.Helper()
		if c.Host.Listen != want {
			t.Errorf("Listen = %q, want %q", c.Host.Listen, want)
		}
	}
}

func selected(name, plugin string) func(*testing.T, *Config) {
	return func(t *testing.T, c *Config) {
		t.Helper()
		sel := c.SelectedStorage()
		if sel == nil || sel.Name != name || sel.Plugin != plugin || c.Host.StorageName != name {
			t.Errorf("selected = %+v (host.storage %q), want %s with plugin %s", sel, c.Host.StorageName, name, plugin)
		}
	}
}

func TestSelectedStorage(t *testing.T) {
	var nilCfg *Config
	if nilCfg.SelectedStorage() != nil {
		t.Error("nil Config selects a storage")
	}
	one := &PluginBlock{Name: "only"}
	if got := (&Config{Storage: []*PluginBlock{one}}).SelectedStorage(); got != one {
		t.Errorf("single block without a name: got %v", got)
	}
	a, b := &PluginBlock{Name: "a"}, &PluginBlock{Name: "b"}
	c := &Config{Host: Host{StorageName: "b"}, Storage: []*PluginBlock{a, b}}
	if got := c.SelectedStorage(); got != b {
		t.Errorf("got %v, want b", got)
	}
	c.Host.StorageName = "z"
	if got := c.SelectedStorage(); got != nil {
		t.Errorf("dangling name: got %v, want nil", got)
	}
}

// pluginSchema is a typical storage plugin schema.
var pluginSchema = base.Schema{Attributes: []base.Attribute{
	{Name: "path", Type: "string", Default: "limit.db"},
	{Name: "timeout", Type: "number", Default: json.RawMessage("5")},
	{Name: "sync", Type: "bool", Default: true},
	{Name: "max_bytes", Type: "number", Default: 10485760},
	{Name: "tags", Type: "list(string)"},
	{Name: "limits", Type: "map(number)"},
	{Name: "extra", Type: "any"},
	{Name: "labels", Type: "map(string)", Default: map[string]any{"tier": "hot"}},
}}

func TestDecodePluginConfig(t *testing.T) {
	tests := []struct {
		name    string
		src     string // a file with one storage "bolt" block
		schema  base.Schema
		env     map[string]string
		want    string // exact JSON; "" when an error is wanted
		errLine int
		errSumm string
		errText string // substring of the error's Error()
	}{
		{name: "defaults applied", src: "storage \"bolt\" {}\n", schema: pluginSchema,
			want: `{"labels":{"tier":"hot"},"max_bytes":10485760,"path":"limit.db","sync":true,"timeout":5}`},
		{name: "empty config block", src: "storage \"bolt\" {\n  config {}\n}\n", schema: pluginSchema,
			want: `{"labels":{"tier":"hot"},"max_bytes":10485760,"path":"limit.db","sync":true,"timeout":5}`},
		{name: "values set", src: `storage "bolt" {
  config {
    path      = "x.db"
    timeout   = 2.5
    sync      = false
    max_bytes = 1e12
    tags      = ["a", "b"]
    limits    = { memory = 512, cpu = 1 }
    extra     = { nested = [1, "two", true] }
    labels    = {}
  }
}
`, schema: pluginSchema,
			want: `{"extra":{"nested":[1,"two",true]},"labels":{},"limits":{"cpu":1,"memory":512},"max_bytes":1000000000000,"path":"x.db","sync":false,"tags":["a","b"],"timeout":2.5}`},
		// A number for a string converts; a string for a number only when computed (the
		// environment holds strings): a quoted constant is an error (TestDecodePluginConfigStrictTypes).
		{name: "conversions", src: "storage \"bolt\" {\n  config {\n    path = 42\n    timeout = env(\"T\")\n    tags = [1, true]\n  }\n}\n",
			schema: pluginSchema, env: map[string]string{"T": "7"},
			want: `{"labels":{"tier":"hot"},"max_bytes":10485760,"path":"42","sync":true,"tags":["1","true"],"timeout":7}`},
		{name: "null takes the default", src: "storage \"bolt\" {\n  config {\n    path = null\n  }\n}\n",
			schema: base.Schema{Attributes: []base.Attribute{{Name: "path", Type: "string", Default: json.RawMessage(`"d.db"`)}}},
			want:   `{"path":"d.db"}`},
		{name: "env in config", src: "storage \"bolt\" {\n  config {\n    path = env(\"DB_PATH\")\n  }\n}\n",
			schema: pluginSchema, env: map[string]string{"DB_PATH": "/srv/db"},
			want: `{"labels":{"tier":"hot"},"max_bytes":10485760,"path":"/srv/db","sync":true,"timeout":5}`},
		{name: "no schema", src: "storage \"bolt\" {}\n", want: `{}`},

		{name: "unknown attribute", src: "storage \"bolt\" {\n  config {\n    path = \"x\"\n    pth = \"y\"\n  }\n}\n",
			schema: pluginSchema, errLine: 4, errSumm: `storage "bolt": Unsupported argument`, errText: `"pth"`},
		{name: "unknown block", src: "runner \"x\" {}\nstorage \"bolt\" {\n  config {\n    tls {}\n  }\n}\n",
			schema: pluginSchema, errLine: 4, errSumm: "Unsupported block type"},
		{name: "wrong type", src: "storage \"bolt\" {\n  config {\n    path = \"x\"\n    timeout = \"soon\"\n  }\n}\n",
			schema: pluginSchema, errLine: 4, errSumm: "Incorrect attribute value type", errText: "a number is required"},
		{name: "wrong collection type", src: "storage \"bolt\" {\n  config {\n    tags = \"a\"\n  }\n}\n",
			schema: pluginSchema, errLine: 3, errSumm: "Incorrect attribute value type"},
		{name: "missing required", src: "\nstorage \"bolt\" {\n  config {\n  }\n}\n",
			schema:  base.Schema{Attributes: []base.Attribute{{Name: "dsn", Type: "string", Required: true}}},
			errLine: 3, errSumm: "Missing required argument", errText: `"dsn"`},
		{name: "missing required without config block", src: "\n\nstorage \"bolt\" {}\n",
			schema:  base.Schema{Attributes: []base.Attribute{{Name: "dsn", Type: "string", Required: true}}},
			errLine: 3, errSumm: "Missing required argument", errText: `"dsn"`},
		{name: "required but null", src: "storage \"bolt\" {\n  config {\n    dsn = null\n  }\n}\n",
			schema:  base.Schema{Attributes: []base.Attribute{{Name: "dsn", Type: "string", Required: true}}},
			errLine: 3, errSumm: "Missing required argument", errText: `"dsn"`},
		{name: "bad plugin type string", src: "storage \"bolt\" {\n  plugin = \"my-bolt\"\n}\n",
			schema:  base.Schema{Attributes: []base.Attribute{{Name: "path", Type: "lst(string)"}}},
			errLine: 2, errSumm: "invalid config schema from plugin \"my-bolt\"", errText: `attribute "path" has type "lst(string)"`},
		{name: "unparsable plugin type string", src: "storage \"bolt\" {}\n",
			schema:  base.Schema{Attributes: []base.Attribute{{Name: "size", Type: "number("}}},
			errLine: 1, errSumm: "invalid config schema", errText: `attribute "size"`},
		{name: "empty plugin type string", src: "storage \"bolt\" {}\n",
			schema:  base.Schema{Attributes: []base.Attribute{{Name: "size", Type: ""}}},
			errLine: 1, errSumm: "invalid config schema", errText: `attribute "size"`},
		{name: "default of the wrong type", src: "storage \"bolt\" {}\n",
			schema:  base.Schema{Attributes: []base.Attribute{{Name: "size", Type: "number", Default: "big"}}},
			errLine: 1, errSumm: "invalid config schema", errText: `default of attribute "size"`},
		{name: "duplicate schema attribute", src: "storage \"bolt\" {}\n",
			schema:  base.Schema{Attributes: []base.Attribute{{Name: "a", Type: "string"}, {Name: "a", Type: "number"}}},
			errLine: 1, errSumm: "invalid config schema", errText: `"a" is declared twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := mustParse(t, tt.src, tt.env)
			var b *PluginBlock
			for _, s := range cfg.Storage {
				if s.Name == "bolt" {
					b = s
				}
			}
			raw, diags := DecodePluginConfig(b, tt.schema)
			if tt.want != "" {
				if diags.HasErrors() {
					t.Fatal(diags.Error())
				}
				if string(raw) != tt.want {
					t.Errorf("JSON = %s\nwant   %s", raw, tt.want)
				}
				var m map[string]any
				if err := json.Unmarshal(raw, &m); err != nil {
					t.Errorf("output is not a JSON object: %v", err)
				}
				return
			}
			if raw != nil {
				t.Errorf("JSON = %s on error, want nil", raw)
			}
			errs := errorsOf(diags)
			if len(errs) != 1 {
				t.Fatalf("diagnostics = %v, want one error", diags)
			}
			d := errs[0]
			if d.Subject == nil || d.Subject.Start.Line != tt.errLine {
				t.Errorf("Subject = %v, want line %d", d.Subject, tt.errLine)
			}
			if want := fmt.Sprintf("%s:%d", testFile, tt.errLine); !strings.Contains(d.Error(), want) {
				t.Errorf("Error() = %q, want it to contain %q", d.Error(), want)
			}
			if !strings.Contains(d.Summary, tt.errSumm) {
				t.Errorf("Summary = %q, want it to contain %q", d.Summary, tt.errSumm)
			}
			if !strings.Contains(d.Error(), tt.errText) {
				t.Errorf("Error() = %q, want it to contain %q", d.Error(), tt.errText)
			}
		})
	}
}

// TestDecodePluginConfigRefusesUnknownObjectAttributes: an attribute an object type does
// not name, at any depth, is an error at its name in the file, not silently dropped by the
// conversion to the type; optional attributes may be set or left out.
func TestDecodePluginConfigRefusesUnknownObjectAttributes(t *testing.T) {
	schema := base.Schema{Attributes: []base.Attribute{
		{Name: "fallback", Type: "list(object({model=string, base_url=optional(string)}))"},
		{Name: "prices", Type: "map(object({input=number, output=number}))"},
		{Name: "tls", Type: "object({ca=optional(string), client=optional(object({cert=string, key=string}))})"},
		{Name: "hosts", Type: "set(object({name=string}))"},
		{Name: "pair", Type: "tuple([string, object({a=number})])"},
	}}
	for _, tt := range []struct {
		name, config string
		want         string // JSON when valid
		line, col    int
		text         string
	}{
		{name: "valid with optional attributes", config: `fallback = [{ model = "y" }, { model = "z", base_url = "http://h/v1" }]
    prices   = { "x" = { input = 1, output = 2 } }
    tls      = { client = { cert = "c", key = "k" } }
    hosts    = [{ name = "a" }]
    pair     = ["s", { a = 1 }]`,
			want: `{"fallback":[{"base_url":null,"model":"y"},{"base_url":"http://h/v1","model":"z"}],"hosts":[{"name":"a"}],"pair":["s",{"a":1}],"prices":{"x":{"input":1,"output":2}},"tls":{"ca":null,"client":{"cert":"c","key":"k"}}}`},
		{name: "list of objects", config: `fallback = [{ model = "y", base_ur1 = "http://10.0.0.9/v1" }]`,
			line: 3, col: 32, text: `"base_ur1" is not expected in fallback[0]; it takes "base_url" and "model". Did you mean "base_url"?`},
		{name: "map of objects", config: `prices = { "x" = { input = 1, output = 2, inptu = 3 } }`,
			line: 3, col: 47, text: `"inptu" is not expected in prices["x"]`},
		{name: "nested object", config: "tls = {\n      client = { cert = \"c\", key = \"k\", pasword = \"p\" }\n    }",
			line: 4, col: 41, text: `"pasword" is not expected in tls.client`},
		{name: "set of objects", config: `hosts = [{ name = "a", port = 1 }]`,
			line: 3, col: 28, text: `"port" is not expected in hosts[0]`},
		{name: "tuple", config: `pair = ["s", { a = 1, b = 2 }]`,
			line: 3, col: 27, text: `"b" is not expected in pair[1]`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := mustParse(t, "storage \"bolt\" {\n  config {\n    "+tt.config+"\n  }\n}\n", nil)
			raw, diags := DecodePluginConfig(cfg.Storage[0], schema)
			if tt.want != "" {
				if diags.HasErrors() || string(raw) != tt.want {
					t.Fatalf("got %s, %v\nwant %s", raw, diags, tt.want)
				}
				return
			}
			errs := errorsOf(diags)
			if raw != nil || len(errs) != 1 {
				t.Fatalf("got %s, %v; want one error", raw, diags)
			}
			d := errs[0]
			if d.Subject == nil || d.Subject.Start.Line != tt.line || d.Subject.Start.Column != tt.col {
				t.Errorf("Subject = %v, want line %d column %d", d.Subject, tt.line, tt.col)
			}
			if !strings.Contains(d.Summary, `storage "bolt": Unsupported argument`) || !strings.Contains(d.Detail, tt.text) {
				t.Errorf("diagnostic %q / %q, want %q", d.Summary, d.Detail, tt.text)
			}
		})
	}
}

// TestDecodePluginConfigNamesWhereAValueFails: an attribute of a structural type whose
// value does not fit it is reported at the place that does not, naming its path in the
// value; a misspelt attribute in an object that therefore lacks a required one is
// reported too, with its suggestion (it used to say only that "weight" was required, or
// only "a number is required").
func TestDecodePluginConfigNamesWhereAValueFails(t *testing.T) {
	schema := base.Schema{Attributes: []base.Attribute{
		{Name: "extra", Type: "list(object({name=string, weight=number}))"},
		{Name: "pair", Type: "tuple([string, number])"},
	}}
	type want struct {
		col  int
		text string
	}
	for _, tt := range []struct {
		name, config string
		want         []want
	}{
		{"typo of a required attribute", `extra = [{name="x", wieght=1}]`, []want{
			{14, `extra[0] lacks the required attribute "weight"`},
			{25, `"wieght" is not expected in extra[0]; it takes "name" and "weight". Did you mean "weight"?`},
		}},
		{"a string for a number", `extra = [{name="x", weight=1}, {name="y", weight="heavy"}]`, []want{
			{54, `extra[1].weight must be a number, not the string "heavy"`},
		}},
		{"a bool for a number", `extra = [{name="x", weight=true}]`, []want{
			{32, `extra[0].weight must be a number, not the bool true`},
		}},
		{"a tuple's element", `pair = ["a", "b"]`, []want{
			{18, `pair[1] must be a number, not the string "b"`},
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := mustParse(t, "storage \"bolt\" {\n  config {\n    "+tt.config+"\n  }\n}\n", nil)
			raw, diags := DecodePluginConfig(cfg.Storage[0], schema)
			errs := errorsOf(diags)
			if raw != nil || len(errs) != len(tt.want) {
				t.Fatalf("got %s, %v; want %d errors", raw, diags, len(tt.want))
			}
			for i, w := range tt.want {
				d := errs[i]
				if d.Subject == nil || d.Subject.Start.Line != 3 || d.Subject.Start.Column != w.col || !strings.Contains(d.Detail, w.text) {
					t.Errorf("error %d: %q at %v, want %q at line 3 column %d", i, d.Detail, d.Subject, w.text, w.col)
				}
			}
		})
	}
}

func TestDecodePluginConfigHandMadeBlock(t *testing.T) {
	// A block built in code (no file, no config body) decodes, and a missing required
	// attribute is an error without a Subject rather than one pointing nowhere.
	b := &PluginBlock{Kind: "runner", Name: "python", Plugin: "limit-runner-python"}
	raw, diags := DecodePluginConfig(b, base.Schema{Attributes: []base.Attribute{{Name: "x", Type: "number", Default: 1}}})
	if diags.HasErrors() || string(raw) != `{"x":1}` {
		t.Errorf("got %s, %v", raw, diags)
	}
	_, diags = DecodePluginConfig(b, base.Schema{Attributes: []base.Attribute{{Name: "x", Type: "number", Required: true}}})
	if !diags.HasErrors() || diags[0].Subject != nil || !strings.HasPrefix(diags[0].Summary, `runner "python": `) {
		t.Errorf("diagnostics = %#v", diags)
	}
}

func TestPluginDiagnostics(t *testing.T) {
	src := `storage "bolt" {
  plugin = "limit-storage-bolt"
  config {
    path   = "limit.db"
    limits = {
      memory = 512
      "cpu"  = 2
    }
    hosts = ["a", "b"]
  }
}

governance {
  rule "jailbreak" {}
}
`
	cfg := mustParse(t, src, nil)
	bolt := cfg.SelectedStorage()
	rule := cfg.Governance.Rules[0]
	tests := []struct {
		name     string
		block    *PluginBlock
		diag     base.Diagnostic
		line     int // 0: no Subject
		severity hcl.DiagnosticSeverity
		summary  string
		detail   string
	}{
		{"attribute", bolt, base.Errorf([]string{"path"}, "cannot open %q", "limit.db"), 4, hcl.DiagError,
			`storage "bolt": cannot open "limit.db"`, ""},
		{"nested object key", bolt, base.Errorf([]string{"limits", "memory"}, "too small"), 6, hcl.DiagError,
			`storage "bolt": too small`, ""},
		{"quoted object key", bolt, base.Errorf([]string{"limits", "cpu"}, "too many"), 7, hcl.DiagError, "too many", ""},
		{"tuple index", bolt, base.Errorf([]string{"hosts", "1"}, "unreachable"), 9, hcl.DiagError, "unreachable", ""},
		{"partly resolved path", bolt, base.Errorf([]string{"limits", "disk"}, "needed"), 5, hcl.DiagError,
			"needed", "limits.disk"},
		{"unknown path", bolt, base.Errorf([]string{"nope"}, "bad"), 3, hcl.DiagError, `storage "bolt": bad`, "nope"},
		{"no path", bolt, base.Diagnostic{Severity: base.SeverityError, Summary: "broken", Detail: "why"}, 3, hcl.DiagError,
			"broken", "why"},
		{"warning stays warning", bolt, base.Diagnostic{Severity: base.SeverityWarning, Summary: "slow disk", Path: []string{"path"}}, 4,
			hcl.DiagWarning, `storage "bolt": slow disk`, ""},
		{"block without config", rule, base.Errorf([]string{"threshold"}, "required"), 14, hcl.DiagError,
			`governance rule "jailbreak": required`, "threshold"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			diags := PluginDiagnostics(tt.block, base.Diagnostics{tt.diag})
			if len(diags) != 1 {
				t.Fatalf("got %d diagnostics", len(diags))
			}
			d := diags[0]
			if d.Severity != tt.severity {
				t.Errorf("Severity = %v, want %v", d.Severity, tt.severity)
			}
			if d.Subject == nil || d.Subject.Start.Line != tt.line || d.Subject.Filename != testFile {
				t.Errorf("Subject = %v, want %s line %d", d.Subject, testFile, tt.line)
			}
			if !strings.Contains(d.Summary, tt.summary) || !strings.HasPrefix(d.Summary, tt.block.String()+": ") {
				t.Errorf("Summary = %q, want it to contain %q", d.Summary, tt.summary)
			}
			if !strings.Contains(d.Detail, tt.detail) {
				t.Errorf("Detail = %q, want it to contain %q", d.Detail, tt.detail)
			}
		})
	}

	synth := mustParse(t, "", nil).SelectedStorage()
	diags := PluginDiagnostics(synth, base.Diagnostics{base.Errorf([]string{"path"}, "x")})
	if len(diags) != 1 || diags[0].Subject != nil || diags[0].Summary != `storage "bolt": x` {
		t.Errorf("synthesised block: %#v", diags)
	}
	if PluginDiagnostics(bolt, nil) != nil {
		t.Error("no plugin diagnostics should map to none")
	}
}

func TestDiagnosticSnippets(t *testing.T) {
	src := "host {\n  data_dir = \"./d\"\n  lisen  = \"oops\"\n}\n\ngovernance {\n  policy = \"lax\"\n}\n"

	check := func(t *testing.T, diags hcl.Diagnostics, files map[string]*hcl.File) {
		t.Helper()
		var buf bytes.Buffer
		w := hcl.NewDiagnosticTextWriter(&buf, files, 100, false)
		if err := w.WriteDiagnostics(diags); err != nil {
			t.Fatal(err)
		}
		out := buf.String()
		for _, want := range []string{
			`lisen  = "oops"`, `policy = "lax"`, // the offending source lines
			`Did you mean "listen"?`,
			"line 3", "line 7",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	}

	t.Run("Parse", func(t *testing.T) {
		_, diags := Parse(testFile, []byte(src), nil)
		check(t, diags, map[string]*hcl.File{testFile: {Bytes: []byte(src)}})
	})
	t.Run("LoadFile", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), testFile)
		if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, diags, files := LoadFile(path, nil)
		if cfg == nil || files[path] == nil {
			t.Fatalf("LoadFile: cfg %v, files %v", cfg, files)
		}
		check(t, diags, files)
	})
	t.Run("plugin diagnostics", func(t *testing.T) {
		psrc := "storage \"bolt\" {\n  config {\n    path = \"/nonexistent/limit.db\"\n  }\n}\n"
		cfg, diags := Parse(testFile, []byte(psrc), nil)
		if diags.HasErrors() {
			t.Fatal(diags.Error())
		}
		diags = PluginDiagnostics(cfg.SelectedStorage(), base.Diagnostics{base.Errorf([]string{"path"}, "cannot create the database")})
		var buf bytes.Buffer
		w := hcl.NewDiagnosticTextWriter(&buf, map[string]*hcl.File{testFile: {Bytes: []byte(psrc)}}, 100, false)
		if err := w.WriteDiagnostics(diags); err != nil {
			t.Fatal(err)
		}
		if out := buf.String(); !strings.Contains(out, `path = "/nonexistent/limit.db"`) || !strings.Contains(out, `storage "bolt": cannot create`) {
			t.Errorf("output:\n%s", out)
		}
	})
}

func TestLoadFileMissing(t *testing.T) {
	cfg, diags, _ := LoadFile(filepath.Join(t.TempDir(), "absent.hcl"), nil)
	if cfg == nil || !diags.HasErrors() || !strings.Contains(diags.Error(), "absent.hcl") {
		t.Errorf("missing file: cfg %v, diags %v", cfg, diags)
	}
}

func TestParseJSON(t *testing.T) {
	src := `{
  "host": {"listen": "127.0.0.1:9"},
  "storage": {"sqlite": {"config": {"path": "x.db"}}},
  "governance": {"policy": "strict"}
}`
	cfg, diags := Parse("limit.hcl.json", []byte(src), nil)
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	sel := cfg.SelectedStorage()
	if cfg.Host.Listen != "127.0.0.1:9" || sel == nil || sel.Name != "sqlite" || cfg.Governance.Policy != "strict" {
		t.Fatalf("cfg = %+v, storage %+v", cfg, sel)
	}
	raw, diags := DecodePluginConfig(sel, base.Schema{Attributes: []base.Attribute{{Name: "path", Type: "string"}}})
	if diags.HasErrors() || string(raw) != `{"path":"x.db"}` {
		t.Errorf("config = %s, %v", raw, diags)
	}
	ds := PluginDiagnostics(sel, base.Diagnostics{base.Errorf([]string{"path"}, "bad")})
	if ds[0].Subject == nil || ds[0].Subject.Start.Line != 3 {
		t.Errorf("JSON plugin diagnostic Subject = %v, want line 3", ds[0].Subject)
	}
}

// TestListenBeyondLoopbackWarns: an API reachable beyond loopback is allowed, with a
// warning that says why (it has no authentication), pointing at the attribute when the
// file sets it.
func TestListenBeyondLoopbackWarns(t *testing.T) {
	for _, tt := range []struct {
		name, src string
		env       map[string]string
		warn      bool
		line      int
	}{
		{"default", "", nil, false, 0},
		{"loopback v4", "host {\n  listen = \"127.0.0.1:9000\"\n}\n", nil, false, 0},
		{"loopback v6", "host {\n  listen = \"[::1]:9000\"\n}\n", nil, false, 0},
		{"localhost", "host {\n  listen = \"localhost:9000\"\n}\n", nil, false, 0},
		{"every interface", "host {\n\n  listen = \"0.0.0.0:9000\"\n}\n", nil, true, 3},
		{"empty host", "host {\n  listen = \":9000\"\n}\n", nil, true, 2},
		{"a LAN address", "host {\n  listen = \"10.1.2.3:9000\"\n}\n", nil, true, 2},
		{"API_HOST", "", map[string]string{"API_HOST": "0.0.0.0"}, true, 0},
		{"API_HOST over the file", "host {\n  listen = \"127.0.0.1:9000\"\n}\n", map[string]string{"API_HOST": "0.0.0.0"}, true, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, diags := Parse(testFile, []byte(tt.src), envMap(tt.env))
			if diags.HasErrors() {
				t.Fatal(diags)
			}
			if !tt.warn {
				if len(diags) != 0 {
					t.Fatalf("%s: unexpected diagnostics %v", cfg.Host.Listen, diags)
				}
				return
			}
			if len(diags) != 1 || diags[0].Severity != hcl.DiagWarning || !strings.Contains(diags[0].Detail, "api.token_file is not set") {
				t.Fatalf("%s: diagnostics %v, want one warning", cfg.Host.Listen, diags)
			}
			if got := diags[0].Subject; (tt.line == 0) != (got == nil) || (got != nil && got.Start.Line != tt.line) {
				t.Errorf("warning points at %v, want line %d", got, tt.line)
			}
			if fromEnv := strings.Contains(diags[0].Detail, "as API_HOST and API_PORT set it"); fromEnv != (tt.env != nil) {
				t.Errorf("the warning names the environment: %v, want %v: %s", fromEnv, tt.env != nil, diags[0].Detail)
			}
		})
	}
}

// TestTokenFile: api.token_file is read once, its tokens kept as digests; a missing,
// empty or malformed file is an error at its line, which never quotes a token; a file
// others can read is a warning; with tokens, listening beyond loopback is not.
func TestTokenFile(t *testing.T) {
	dir := t.TempDir()
	good := "# tokens\n\n" + strings.Repeat("a", 32) + "\n  " + strings.Repeat("b", 40) + "  \n"
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	src := func(path string) string {
		return "host {\n  listen = \"0.0.0.0:9000\"\n}\napi {\n  token_file = \"" + path + "\"\n}\n"
	}
	cfg, diags := Parse(testFile, []byte(src(write("good", good, 0o600))), nil)
	if len(diags) != 0 {
		t.Fatalf("good token file: %v", diags)
	}
	if len(cfg.API.Tokens) != 2 || cfg.API.Tokens[0] != (Token{Digest: sha256.Sum256([]byte(strings.Repeat("a", 32)))}) || cfg.API.Tokens[1].User != "" {
		t.Fatalf("tokens %+v", cfg.API.Tokens)
	}
	_, diags = Parse(testFile, []byte(src(write("open", good, 0o644))), nil)
	if len(diags) != 1 || diags[0].Severity != hcl.DiagWarning || !strings.Contains(diags[0].Detail, "chmod 600") {
		t.Fatalf("world-readable token file: %v", diags)
	}
	for _, tt := range []struct{ name, path, want string }{
		{"missing", filepath.Join(dir, "nope"), "Cannot read the API token file"},
		{"empty", write("empty", "# nothing\n\n", 0o600), "holds no token"},
		{"short", write("short", "s3cr3t-but-short\n", 0o600), "Line 1 of"},
		{"spaces", write("spaces", strings.Repeat("c", 20)+" "+strings.Repeat("d", 20)+"\n", 0o600), "Line 1 of"},
		{"empty path", "", "token_file must name a file"},
	} {
		_, diags := Parse(testFile, []byte(src(tt.path)), nil)
		if !diags.HasErrors() || !strings.Contains(diags.Error(), tt.want) || diags[0].Subject == nil || diags[0].Subject.Start.Line != 5 {
			t.Errorf("%s: %v, want an error at line 5 with %q", tt.name, diags, tt.want)
		}
		if strings.Contains(diags.Error(), "s3cr3t") || strings.Contains(diags.Error(), "cccc") {
			t.Errorf("%s: the diagnostic quotes the token: %v", tt.name, diags)
		}
	}
}

// TestTokenFileUsers: a token line may name the user the token is for ("TOKEN NAME",
// several lines per user); a line without a name is an operator's. A name that is not a
// user name, a line of more than two fields and one token given to two principals are
// errors naming their line, never quoting it; every bad line is reported.
func TestTokenFileUsers(t *testing.T) {
	dir := t.TempDir()
	a, b, c, o := strings.Repeat("a", 32), strings.Repeat("b", 32), strings.Repeat("c", 32), strings.Repeat("o", 32)
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	src := func(path string) string { return "api {\n  token_file = \"" + path + "\"\n}\n" }
	cfg, diags := Parse(testFile, []byte(src(write("good", "# operators\n"+o+"\n# users\n"+a+" alice\n"+b+"\tbob.smith-2_x \n"+c+"  alice\n"+a+" alice\n"))), nil)
	if len(diags) != 0 {
		t.Fatalf("good token file: %v", diags)
	}
	want := []Token{{Digest: sha256.Sum256([]byte(o))}, {Digest: sha256.Sum256([]byte(a)), User: "alice"},
		{Digest: sha256.Sum256([]byte(b)), User: "bob.smith-2_x"}, {Digest: sha256.Sum256([]byte(c)), User: "alice"}}
	if !slices.Equal(cfg.API.Tokens, want) {
		t.Fatalf("tokens %+v, want %+v", cfg.API.Tokens, want)
	}
	for _, tt := range []struct {
		name, content string
		want          []string
	}{
		{"upper-case name", o + "\n" + a + " Alice\n", []string{"Line 2 of", "names no valid user"}},
		{"name starting with a dot", "\n" + a + " .alice\n", []string{"Line 2 of", "names no valid user"}},
		{"name too long", a + " " + strings.Repeat("n", 65) + "\n", []string{"Line 1 of", "names no valid user"}},
		{"name and token swapped", "alice " + a + "\n", []string{"Line 1 of", "is not a token"}},
		{"three fields", "# x\n" + a + " alice # the first user\n", []string{"Line 2 of", "has 6 fields"}},
		{"three fields, two names", a + " alice bob\n", []string{"Line 1 of", "has 3 fields"}},
		{"one token, two users", a + " alice\n" + a + " bob\n", []string{"Line 2 of", "repeats the token of line 1"}},
		{"one token, operator and user", a + "\n" + a + " bob\n", []string{"Line 2 of", "repeats the token of line 1"}},
		{"every bad line", a + " Alice\n" + b + " x y\n" + c + " ok\n", []string{"Line 1 of", "Line 2 of"}},
		// The names the host gives its own principals and agents: a user so named would
		// read like them in the request log (principal=operator) and the provenance.
		{"user named operator", o + "\n" + a + " operator\n", []string{"Line 2 of", `names the user "operator", a name the host keeps`}},
		{"user named anonymous", a + " anonymous\n", []string{"Line 1 of", `"anonymous"`}},
		{"user named limitd", a + " limitd\n", []string{"Line 1 of", `"limitd"`}},
		{"user named api", a + " api\n", []string{"Line 1 of", `"api"`}},
	} {
		_, diags := Parse(testFile, []byte(src(write("bad", tt.content))), nil)
		if !diags.HasErrors() || diags[0].Subject == nil || diags[0].Subject.Start.Line != 2 {
			t.Errorf("%s: %v, want an error at the token_file attribute", tt.name, diags)
			continue
		}
		var all strings.Builder
		for _, d := range diags {
			all.WriteString(d.Detail + "\n")
		}
		for _, w := range tt.want {
			if !strings.Contains(all.String(), w) {
				t.Errorf("%s: %v, want %q", tt.name, diags, w)
			}
		}
		for _, secret := range []string{a, b, c, "Alice", "nnnn"} {
			if strings.Contains(all.String(), secret) {
				t.Errorf("%s: the diagnostic quotes a field of the file: %v", tt.name, diags)
			}
		}
	}
}

// TestTokenFileMetricsRole: "TOKEN :metrics" is a scraper's token, neither an operator's
// nor a user's; another role, or one token given a role and another principal, is an
// error at its line that quotes neither field.
func TestTokenFileMetricsRole(t *testing.T) {
	dir := t.TempDir()
	m, o := strings.Repeat("m", 32), strings.Repeat("o", 32)
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	src := func(path string) string { return "api {\n  token_file = \"" + path + "\"\n}\n" }
	cfg, diags := Parse(testFile, []byte(src(write("good", o+"\n"+m+" :metrics\n"))), nil)
	if len(diags) != 0 {
		t.Fatalf("good token file: %v", diags)
	}
	want := []Token{{Digest: sha256.Sum256([]byte(o))}, {Digest: sha256.Sum256([]byte(m)), Metrics: true}}
	if !slices.Equal(cfg.API.Tokens, want) {
		t.Fatalf("tokens %+v, want %+v", cfg.API.Tokens, want)
	}
	for _, tt := range []struct {
		name, content string
		want          []string
	}{
		{"unknown role", o + "\n" + m + " :admin\n", []string{"Line 2 of", "a role that is not :metrics"}},
		{"one token, scraper and operator", m + " :metrics\n" + m + "\n", []string{"Line 2 of", "repeats the token of line 1"}},
	} {
		_, diags := Parse(testFile, []byte(src(write("bad", tt.content))), nil)
		if !diags.HasErrors() || diags[0].Subject == nil || diags[0].Subject.Start.Line != 2 {
			t.Errorf("%s: %v, want an error at the token_file attribute", tt.name, diags)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(diags.Error(), w) {
				t.Errorf("%s: %v, want %q", tt.name, diags, w)
			}
		}
		if strings.Contains(diags.Error(), "admin") || strings.Contains(diags.Error(), m) {
			t.Errorf("%s: the diagnostic quotes a field of the file: %v", tt.name, diags)
		}
	}
}

// TestAllowedHosts: api.allowed_hosts is read as the names given ("*.x" and "*" kept).
func TestAllowedHosts(t *testing.T) {
	cfg, diags := Parse("a.hcl", []byte("api {\n  allowed_hosts = [\"limit.example.com\", \"*.corp.example\"]\n}\n"), func(string) (string, bool) { return "", false })
	if diags.HasErrors() || !slices.Equal(cfg.API.AllowedHosts, []string{"limit.example.com", "*.corp.example"}) {
		t.Fatalf("allowed_hosts = %q, %v", cfg.API.AllowedHosts, diags)
	}
}

// TestSecretLines: the lines a diagnostic's snippet must not show are those of a
// plugin's sensitive attributes and any line that looks like it holds a credential.
func TestSecretLines(t *testing.T) {
	src := `runner "llm" {
  config {
    base_url = "http://user:sk-abc@127.0.0.1:8000/v1"
    other    = "https://h.example/v1?key=sk-abc"
    model    = "gpt"
    dsn      = "scott/tiger"
    plain    = "http://127.0.0.1:8000/v1"
    api_key  = "sk-abc"
  }
}
api {
  token_file = "/etc/limit/tokens"
}
`
	cfg, _ := Parse("t.hcl", []byte(src), nil) // the token file does not exist: no matter
	if cfg == nil || len(cfg.Runners) != 1 {
		t.Fatal("runner block not parsed")
	}
	f, _ := hclsyntax.ParseConfig([]byte(src), "t.hcl", hcl.InitialPos)
	files := map[string]*hcl.File{"t.hcl": f}
	b := cfg.Runners[0]
	schema := base.Schema{Attributes: []base.Attribute{
		{Name: "base_url", Type: "string"}, {Name: "other", Type: "string"}, {Name: "model", Type: "string"},
		{Name: "dsn", Type: "string", Sensitive: true}, {Name: "plain", Type: "string"}, {Name: "api_key", Type: "string"},
	}}
	if got := SecretLines(cfg, files)["t.hcl"]; got[6] {
		t.Errorf("dsn's line is secret before the schema is known: %v", got)
	}
	if _, ds := DecodePluginConfig(b, schema); ds.HasErrors() {
		t.Fatal(ds)
	}
	got := SecretLines(cfg, files)["t.hcl"]
	for line, want := range map[int]bool{3: true, 4: true, 5: false, 6: true, 7: false, 8: true, 12: false} {
		if got[line] != want {
			t.Errorf("line %d secret: %v, want %v", line, got[line], want)
		}
	}
	d := &hcl.Diagnostic{Subject: &hcl.Range{Filename: "t.hcl", Start: hcl.Pos{Line: 5}, End: hcl.Pos{Line: 5}}}
	if ShowsSecret(d, map[string]map[int]bool{"t.hcl": got}) {
		t.Error("the model's line counted as secret")
	}
	d.Context = &hcl.Range{Filename: "t.hcl", Start: hcl.Pos{Line: 4}, End: hcl.Pos{Line: 5}}
	if !ShowsSecret(d, map[string]map[int]bool{"t.hcl": got}) {
		t.Error("a context spanning a secret line was not caught")
	}
}

// TestDecodePluginConfigStrictTypes: a bool for a string attribute and a quoted constant
// for a number or a bool are errors at their place (HCL would convert them silently:
// path = true named a file "true"); a string from env() still converts to a number.
func TestDecodePluginConfigStrictTypes(t *testing.T) {
	schema := base.Schema{Attributes: []base.Attribute{
		{Name: "path", Type: "string"}, {Name: "max_batch", Type: "number"}, {Name: "no_sync", Type: "bool"},
	}}
	for _, tc := range []struct {
		body string
		bad  string // the attribute named in the one error, "" for none
	}{
		{"path = true", "path"},
		{"max_batch = \"10\"", "max_batch"},
		{"no_sync = \"true\"", "no_sync"},
		{"path = \"x.db\"\n    max_batch = 10\n    no_sync = true", ""},
		{"max_batch = env(\"MAX_BATCH\")", ""},
		{"path = \"${env(\"MAX_BATCH\")}.db\"", ""},
	} {
		src := "storage \"bolt\" {\n  config {\n    " + tc.body + "\n  }\n}\n"
		cfg, diags := Parse(testFile, []byte(src), envMap(map[string]string{"MAX_BATCH": "10"}))
		if diags.HasErrors() {
			t.Fatalf("%s: %v", tc.body, diags)
		}
		raw, ds := DecodePluginConfig(cfg.Storage[0], schema)
		if tc.bad == "" {
			if ds.HasErrors() {
				t.Errorf("%s: %v", tc.body, ds)
			}
			continue
		}
		if len(ds) != 1 || !strings.Contains(ds[0].Detail, tc.bad+" must be") || ds[0].Subject == nil || ds[0].Subject.Start.Line != 3 {
			t.Errorf("%s: config %s, diagnostics %v", tc.body, raw, ds)
		}
	}
}

// TestMinFreeDisk: host.min_free_disk is a size, a share of the disk or 0 (no reserve);
// left out, the default reserve (the zero Reserve) applies.
func TestMinFreeDisk(t *testing.T) {
	for _, tc := range []struct {
		src  string
		want diskspace.Reserve
	}{
		{"", diskspace.Reserve{}},
		{`min_free_disk = "512MiB"`, diskspace.Reserve{Bytes: 512 << 20}},
		{`min_free_disk = "1.5 GB"`, diskspace.Reserve{Bytes: 1.5e9}},
		{`min_free_disk = 1048576`, diskspace.Reserve{Bytes: 1 << 20}},
		{`min_free_disk = "5%"`, diskspace.Reserve{Percent: 5}},
		{`min_free_disk = "0.5 %"`, diskspace.Reserve{Percent: 0.5}},
		{`min_free_disk = "0"`, diskspace.Reserve{Off: true}},
		{`min_free_disk = "0%"`, diskspace.Reserve{Off: true}},
	} {
		cfg := mustParse(t, "host {\n  "+tc.src+"\n}\n", nil)
		if cfg.Host.MinFreeDisk != tc.want {
			t.Errorf("%s: MinFreeDisk = %+v, want %+v", tc.src, cfg.Host.MinFreeDisk, tc.want)
		}
	}
}

// TestLogFormat: host.log_format is "text" unless set, and "json" is taken.
func TestLogFormat(t *testing.T) {
	cfg, diags := Parse(testFile, []byte("host {\n  log_format = \"json\"\n}\n"), nil)
	if diags.HasErrors() || cfg.Host.LogFormat != "json" {
		t.Fatalf("log_format json: %q %v", cfg.Host.LogFormat, diags)
	}
	cfg, diags = Parse(testFile, []byte("host {}\n"), nil)
	if diags.HasErrors() || cfg.Host.LogFormat != "text" {
		t.Fatalf("default log_format: %q %v", cfg.Host.LogFormat, diags)
	}
}

// TestDrainDelay: api.drain_delay is 0 unless set, and takes a duration.
func TestDrainDelay(t *testing.T) {
	cfg, diags := Parse(testFile, []byte("api {\n  drain_delay = \"5s\"\n}\n"), nil)
	if diags.HasErrors() || cfg.API.DrainDelay != 5*time.Second {
		t.Fatalf("drain_delay 5s: %v %v", cfg.API.DrainDelay, diags)
	}
	cfg, diags = Parse(testFile, []byte("api {}\n"), nil)
	if diags.HasErrors() || cfg.API.DrainDelay != 0 {
		t.Fatalf("default drain_delay: %v %v", cfg.API.DrainDelay, diags)
	}
}
