package config

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/limitgraph/limit/configs"
	"github.com/limitgraph/limit/sdk/base"
)

// fuzzSeeds are configurations the fuzzer starts from, besides the files of configs/: a
// valid file using every block, and the shapes of bad input the loader must diagnose.
var fuzzSeeds = []string{
	fullFile,
	"",
	"host {\n  listen = \"a:1\"\n  data_dir = = 3\n}\n",
	"host {\n  listen = \"a:1\"\n",
	"host {\n  listen = \"a:1\"\n  lisen = \"x\"\n}\n",
	"host {}\n\nhots {\n}\n",
	"storage \"bolt\" {}\nstorage \"file\" {}\nstorage \"bolt\" {}\n",
	"runner \"python\" {}\n\nrunner \"python\" {}\n",
	"governance {\n  rule \"a\" {}\n  rule \"a\" {}\n}\n",
	"runner \"x\" {\n  config {}\n  config {}\n}\n",
	"runner \"my python\" {}\n",
	"runner \"x\" {\n  pool = 65\n}\n",
	"rd {\n  max_iter = \"many\"\n  alpha = 1e400\n  epsilon = -0\n  tol = 1e-400\n}\n",
	"rd {\n  max_iter = 1e30\n  timeout = \"9999999999999999h\"\n}\n",
	"host {\n  listen = \"localhost:http\"\n  plugin_start_timeout = \"10 seconds\"\n}\n",
	"host {\n  listen = \"[::1]:99999\"\n}\n",
	"storage \"bolt\" {\n  sha256 = \"ab12\"\n  env = { \"A=B\" = \"c\", D = null }\n}\n",
	"host {\n  data_dir = env(\"LIMIT_DATA\")\n  listen = \"${env(\"BIND\", \"127.0.0.1\")}:${env(\"PORT\", \"8080\")}\"\n}\n",
	"host {\n  data_dir = env(\"A\", \"b\", \"c\")\n  log_level = env(1)\n  plugin_dir = env()\n}\n",
	"host {\n  listen = [for x in [1, 2] : x]\n  data_dir = { a = 1 }\n}\n",
	"storage \"bolt\" {\n  config {\n    path = \"x\"\n    pth = \"y\"\n    tls {}\n    tags = [1, true]\n    labels = { a = [1] }\n  }\n}\n",
	"api {\n  token_file = \"\"\n  max_body_bytes = -1\n  read_timeout = 30\n}\n",
	"governance {\n  policy = \"bogus\"\n}\n",
	"host {\n  storage = \"x\"\n}\nstorage \"a\" {}\nstorage \"b\" {}\n",
	"\xff\xfehost {}\n",
	"host {\n  listen = \"\x00\"\n}\n",
	`{"host": {"listen": "127.0.0.1:1"}, "storage": {"bolt": {"config": {"path": "x"}}}}`,
	`{"runner": {"python": [{}, {}]}, "rd": [{"alpha": 2}]}`,
}

// fuzzEnv is the environment fuzzed configurations see: "NAME=value" lines, plus a
// secret that no diagnostic may reveal.
const fuzzSecret = "sk-fuzz-SECRET-value-0123456789"

func fuzzLookup(env string) func(string) (string, bool) {
	m := map[string]string{"API_KEY": fuzzSecret}
	for _, line := range strings.Split(env, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			m[k] = v
		}
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// fuzzSchema has one attribute of each kind of type a plugin may declare.
var fuzzSchema = base.Schema{Attributes: []base.Attribute{
	{Name: "path", Type: "string", Default: "limit.db"},
	{Name: "timeout", Type: "number", Default: 5},
	{Name: "sync", Type: "bool"},
	{Name: "tags", Type: "list(string)"},
	{Name: "labels", Type: "map(string)", Default: map[string]string{"tier": "hot"}},
	{Name: "limits", Type: "object({memory = number, cpu = number})"},
	{Name: "extra", Type: "any"},
	{Name: "api_key", Type: "string", Sensitive: true},
}}

// FuzzParse feeds arbitrary files (HCL, or HCL's JSON syntax when asJSON) and environments
// to Parse, decodes every plugin block against a schema, maps plugin diagnostics back and
// renders every diagnostic the way limitd prints them. None of it may panic, hang, or
// let the value of an environment variable read by env("API_KEY") into a diagnostic.
func FuzzParse(f *testing.F) {
	f.Add(string(configs.Default), false, "")
	files, _ := filepath.Glob(filepath.Join("..", "..", "configs", "*.hcl"))
	for _, name := range files {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(string(b), false, "STORAGE_BACKEND=postgres\nDATABASE_URL=postgres://u:p@h/db")
		}
	}
	for _, s := range fuzzSeeds {
		f.Add(s, strings.HasPrefix(s, "{"), "")
	}
	f.Add("host {}\n", false, "API_HOST=[::1]\nAPI_PORT=abc\nGOVERNANCE_POLICY=bogus\nFGW_ALPHA=NaN\nFGW_EPSILON=-Inf\nSTORAGE_BACKEND=kv")
	f.Add("runner \"llm\" {\n  config {\n    api_key = env(\"API_KEY\")\n    timeout = env(\"API_KEY\")\n  }\n}\n", false, "")

	f.Fuzz(func(t *testing.T, src string, asJSON bool, env string) {
		name := "fuzz.hcl"
		if asJSON {
			name = "fuzz.json"
		}
		start := time.Now()
		cfg, diags := Parse(name, []byte(src), fuzzLookup(env))
		if cfg == nil {
			t.Fatal("Parse returned a nil Config")
		}
		mustPoint := func(ds hcl.Diagnostics) {
			for _, d := range ds {
				if d.Severity == hcl.DiagError && d.Subject == nil && !strings.HasPrefix(d.Summary, "Invalid environment variable") {
					t.Errorf("error without a Subject: %s", d.Error())
				}
			}
		}
		mustPoint(diags)
		var blocks []*PluginBlock
		blocks = append(blocks, cfg.Storage...)
		blocks = append(blocks, cfg.Runners...)
		blocks = append(blocks, cfg.Governance.Rules...)
		for _, b := range blocks {
			raw, ds := DecodePluginConfig(b, fuzzSchema)
			if b.DeclRange.Filename != "" {
				mustPoint(ds)
			}
			diags = append(diags, ds...)
			if !ds.HasErrors() && !json.Valid(raw) {
				t.Fatalf("%s: invalid JSON %q", b, raw)
			}
			diags = append(diags, PluginDiagnostics(b, base.Diagnostics{
				{Summary: "bad", Path: []string{"extra", "nested", "0"}},
				{Summary: "bad", Severity: base.SeverityWarning, Path: []string{"tags", "1"}},
			})...)
		}
		_ = cfg.SelectedStorage()

		var out bytes.Buffer
		files := map[string]*hcl.File{name: {Bytes: []byte(src)}}
		w := hcl.NewDiagnosticTextWriter(&out, files, 78, false)
		for _, d := range diags {
			if err := w.WriteDiagnostic(d); err != nil {
				t.Fatal(err)
			}
		}
		if !strings.Contains(src, fuzzSecret) && !strings.Contains(env, fuzzSecret) &&
			strings.Contains(out.String(), fuzzSecret) {
			t.Fatalf("a diagnostic reveals the secret:\n%s", out.String())
		}
		if el := time.Since(start); el > 10*time.Second {
			t.Fatalf("took %v", el)
		}
	})
}

// FuzzPluginSchema feeds arbitrary attribute types and defaults, as a plugin might
// declare them, to DecodePluginConfig: a bad schema is the plugin's bug and must come
// back as a diagnostic, never a panic or a stack overflow in the host.
func FuzzPluginSchema(f *testing.F) {
	for _, a := range fuzzSchema.Attributes {
		def, _ := json.Marshal(a.Default)
		f.Add(a.Type, string(def), "")
	}
	f.Add("list(object({provider=optional(string), model=string}))", `[{"model":"m"}]`, "x = [{model = \"a\"}]")
	f.Add("map(number)", `{"a":1}`, "x = { a = 1, b = \"2\" }")
	f.Add("lst(string)", `"x"`, "")
	f.Add("number(", `null`, "")
	f.Add(strings.Repeat("list(", 40)+"string"+strings.Repeat(")", 40), `[]`, "")
	f.Add("tuple([string, number])", `["a", 1]`, "x = [1, \"2\"]")
	f.Add("optional(string, \"d\")", `"d"`, "x = null")
	f.Fuzz(func(t *testing.T, typ, def, body string) {
		src := "runner \"x\" {\n  config {\n" + body + "\n  }\n}\n"
		cfg, diags := Parse("fuzz.hcl", []byte(src), nil)
		if diags.HasErrors() || len(cfg.Runners) != 1 {
			return
		}
		schema := base.Schema{Attributes: []base.Attribute{{Name: "x", Type: typ, Default: json.RawMessage(def)}}}
		raw, ds := DecodePluginConfig(cfg.Runners[0], schema)
		if !ds.HasErrors() && !json.Valid(raw) {
			t.Fatalf("invalid JSON %q", raw)
		}
		var out bytes.Buffer
		w := hcl.NewDiagnosticTextWriter(&out, map[string]*hcl.File{"fuzz.hcl": {Bytes: []byte(src)}}, 78, false)
		if err := w.WriteDiagnostics(ds); err != nil {
			t.Fatal(err)
		}
	})
}
