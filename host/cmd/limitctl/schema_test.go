package main

import (
	"testing"

	hcljson "github.com/hashicorp/hcl/v2/json"

	"github.com/limitgraph/limit/host/config"
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/sdktest"
)

// TestApplySchemaAgreesWithHost checks that `plugin check` (through sdktest.ApplySchema)
// accepts, refuses and completes a plugin's config as limitd does (config.DecodePluginConfig,
// here on the same JSON as a config block).
func TestApplySchemaAgreesWithHost(t *testing.T) {
	schema := base.Schema{Attributes: []base.Attribute{
		{Name: "severity", Type: "number", Default: 5},
		{Name: "token", Type: "string", Required: true},
		{Name: "words", Type: "list(string)"},
		{Name: "fallback", Type: "object({base_url = string})"},
		{Name: "labels", Type: "map(string)", Default: map[string]string{"a": "b"}},
	}}
	for _, cfg := range []string{
		`{"token": "t"}`,
		`{"token": "t", "severity": 8, "words": ["a", "b"]}`,
		`{"token": "t", "severity": "8"}`,
		`{"token": "t", "fallback": {"base_url": "x"}}`,
		`{"token": "t", "labels": {"x": "y"}}`,
		`{}`,
		`{"token": "t", "severty": 1}`,
		`{"token": "t", "words": 3}`,
		`{"token": "t", "severity": "high"}`,
		`{"token": "t", "fallback": {"base_url": "x", "base_ur1": "y"}}`,
	} {
		f, diags := hcljson.Parse([]byte(cfg), "config.json")
		if diags.HasErrors() {
			t.Fatalf("parse %s: %v", cfg, diags)
		}
		hostJSON, hostDiags := config.DecodePluginConfig(&config.PluginBlock{Kind: base.KindGovernance, Name: "g", Plugin: "g", Config: f.Body}, schema)
		ourJSON, ourDiags := sdktest.ApplySchema(schema, []byte(cfg))
		if hostDiags.HasErrors() != ourDiags.HasErrors() {
			t.Errorf("config %s: the host says %v, ApplySchema says %v", cfg, hostDiags, ourDiags)
			continue
		}
		if string(hostJSON) != string(ourJSON) {
			t.Errorf("config %s: the host configures the plugin with %s, ApplySchema with %s", cfg, hostJSON, ourJSON)
		}
	}
	bad := base.Schema{Attributes: []base.Attribute{{Name: "a", Type: "strin g("}}}
	f, _ := hcljson.Parse([]byte(`{}`), "config.json")
	_, hostDiags := config.DecodePluginConfig(&config.PluginBlock{Kind: base.KindGovernance, Name: "g", Plugin: "g", Config: f.Body}, bad)
	_, ourDiags := sdktest.ApplySchema(bad, []byte(`{}`))
	if !hostDiags.HasErrors() || !ourDiags.HasErrors() {
		t.Errorf("schema with type %q: the host says %v, ApplySchema says %v; want both to refuse it", "strin g(", hostDiags, ourDiags)
	}
}
