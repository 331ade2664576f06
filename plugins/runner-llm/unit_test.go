package main

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/limitgraph/limit/host/config"
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/runner"
)

func TestParseConfig(t *testing.T) {
	for _, tt := range []struct {
		name  string
		cfg   map[string]any
		paths [][]string // error paths in order
		warns int
	}{
		{"defaults", map[string]any{"model": "gpt-4o-mini", "api_key": "k"}, nil, 0},
		{"no model", map[string]any{"api_key": "k"}, [][]string{{"model"}}, 0},
		{"no key", map[string]any{"model": "m"}, [][]string{{"api_key"}}, 0},
		{"compatible needs url", map[string]any{"provider": "openai-compatible", "model": "m"}, [][]string{{"base_url"}}, 0},
		{"bad provider", map[string]any{"provider": "bard", "model": "m", "api_key": "k"}, [][]string{{"provider"}}, 0},
		{"bad url", map[string]any{"model": "m", "api_key": "k", "base_url": "ftp://x"}, [][]string{{"base_url"}}, 0},
		{"url with credentials", map[string]any{"model": "m", "api_key": "k", "base_url": "https://u:p@host/v1"}, [][]string{{"base_url"}}, 0},
		{"bad durations and numbers", map[string]any{"model": "m", "api_key": "k", "attempt_timeout": "soon", "timeout": "-1s",
			"retries": 1.5, "max_tokens": 0, "temperature": 5, "budget_cost": -1},
			[][]string{{"attempt_timeout"}, {"timeout"}, {"retries"}, {"max_tokens"}, {"budget_cost"}, {"temperature"}}, 0},
		{"fallback errors", map[string]any{"model": "m", "api_key": "k", "fallback": []any{
			map[string]any{"model": "m2"},
			map[string]any{"provider": "anthropic", "model": "c"},
			map[string]any{"provider": "openai-compatible", "model": ""},
		}}, [][]string{{"fallback", "1", "api_key"}, {"fallback", "2", "model"}, {"fallback", "2", "base_url"}}, 0},
		{"cost budget needs prices", map[string]any{"model": "m", "api_key": "k", "budget_cost": 1,
			"prices": map[string]any{"other": map[string]any{"input": 1, "output": 1}}}, [][]string{{"model"}}, 0},
		{"unpriced model warns", map[string]any{"model": "m", "api_key": "k",
			"prices": map[string]any{"other": map[string]any{"input": 1, "output": 1}}}, nil, 1},
		{"negative price", map[string]any{"model": "m", "api_key": "k",
			"prices": map[string]any{"m": map[string]any{"input": -1, "output": 1}}}, [][]string{{"prices", "m"}}, 0},
		{"temperature to anthropic warns", map[string]any{"provider": "anthropic", "model": "c", "api_key": "k", "temperature": 0.5}, nil, 1},
		{"unknown attribute", map[string]any{"model": "m", "api_key": "k", "organization": "x"}, [][]string{{"organization"}}, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			raw, _ := json.Marshal(tt.cfg)
			_, ds := parseConfig(base.ConfigureRequest{Config: raw})
			var paths [][]string
			warns := 0
			for _, d := range ds {
				if d.Severity == base.SeverityError {
					paths = append(paths, d.Path)
				} else {
					warns++
				}
			}
			if !slices.EqualFunc(paths, tt.paths, slices.Equal) || warns != tt.warns {
				t.Errorf("errors at %v and %d warnings, want %v and %d: %v", paths, warns, tt.paths, tt.warns, ds)
			}
		})
	}

	// Bounds and values are written as whole numbers, not in exponent notation.
	raw, _ := json.Marshal(map[string]any{"model": "m", "api_key": "k", "max_tokens": 1 << 25, "budget_tokens": 1e16, "retries": 2.5})
	_, ds := parseConfig(base.ConfigureRequest{Config: raw})
	var got []string
	for _, d := range ds {
		got = append(got, d.Summary)
	}
	if want := []string{
		"retries must be a whole number from 0 to 20, got 2.5",
		"max_tokens must be a whole number from 1 to 16777216, got 33554432",
		"budget_tokens must be a whole number from 0 to 1000000000000000, got 10000000000000000",
	}; !slices.Equal(got, want) {
		t.Errorf("diagnostics %q, want %q", got, want)
	}

	// A fallback of the same provider inherits base URL and key; another provider does not.
	raw, _ = json.Marshal(map[string]any{"model": "m", "api_key": "k1", "base_url": "http://h/v1", "fallback": []any{
		map[string]any{"model": "m2"},
		map[string]any{"provider": "anthropic", "model": "c", "api_key": "k2"},
	}})
	set, ds := parseConfig(base.ConfigureRequest{Config: raw})
	if ds.HasErrors() {
		t.Fatal(ds.Err())
	}
	want := []target{
		{providerOpenAI, "m", "http://h/v1", "k1"},
		{providerOpenAI, "m2", "http://h/v1", "k1"},
		{providerAnthropic, "c", defaultAnthropicURL, "k2"},
	}
	if !slices.Equal(set.targets, want) || set.attemptTimeout != 60*time.Second || set.timeout != 300*time.Second ||
		set.retries != 2 || set.maxTokens != 1024 || !set.stream || set.temperature != nil {
		t.Errorf("settings: %+v", set)
	}
	if s := set.secrets(); !slices.Equal(s, []string{"k1", "k1", "k2"}) {
		t.Errorf("secrets: %v", s)
	}
}

func TestRetryAfter(t *testing.T) {
	res := func(h map[string]string) *http.Response {
		r := &http.Response{Header: http.Header{}}
		for k, v := range h {
			r.Header.Set(k, v)
		}
		return r
	}
	future := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
	for _, tt := range []struct {
		h        map[string]string
		min, max time.Duration
	}{
		{nil, 0, 0},
		{map[string]string{"Retry-After": "2"}, 2 * time.Second, 2 * time.Second},
		{map[string]string{"Retry-After": "0.5"}, 500 * time.Millisecond, 500 * time.Millisecond},
		{map[string]string{"Retry-After-Ms": "250", "Retry-After": "9"}, 250 * time.Millisecond, 250 * time.Millisecond},
		{map[string]string{"Retry-After": future}, 80 * time.Second, 91 * time.Second},
		{map[string]string{"Retry-After": "soon"}, 0, 0},
		{map[string]string{"Retry-After": "-3"}, 0, 0},
	} {
		if got := retryAfter(res(tt.h)); got < tt.min || got > tt.max {
			t.Errorf("retryAfter(%v) = %v, want %v..%v", tt.h, got, tt.min, tt.max)
		}
	}
	if retryAfter(nil) != 0 {
		t.Error("nil response")
	}
	for n := 1; n <= 10; n++ {
		d := backoff(n, 100*time.Millisecond, 2*time.Second)
		want := min(100*time.Millisecond<<(n-1), 2*time.Second)
		if d > want || d < want*8/10 {
			t.Errorf("backoff(%d) = %v, want %v less up to 20%%", n, d, want)
		}
	}
}

func TestRedactor(t *testing.T) {
	r := newRedactor([]string{"abc", "abcdef", "", "abc"})
	if got := r.clean("key abcdef and abc and ab"); got != "key [REDACTED] and [REDACTED] and ab" {
		t.Errorf("clean: %q", got)
	}
	if got := (redactor{}).clean("abc"); got != "abc" {
		t.Errorf("empty redactor changed text: %q", got)
	}
	if got := redactURL("https://user:pw@h/v1?key=s"); strings.Contains(got, "pw") || strings.Contains(got, "key=s") {
		t.Errorf("redactURL: %q", got)
	}
}

// TestHCLConfig decodes a runner block written in HCL against the plugin's schema, as
// the host does, and checks that the plugin accepts the result: the schema's type
// strings are valid HCL types, optional fallback fields may be left out, and the key
// comes from env().
func TestHCLConfig(t *testing.T) {
	src := []byte(`
storage "bolt" {}
runner "gpt" {
  plugin = "limit-runner-llm"
  config {
    model   = "gpt-4o-mini"
    api_key = env("TEST_OPENAI_KEY")
    fallback = [
      { model = "gpt-4o" },
      { provider = "anthropic", model = "claude-sonnet-4-5", api_key = env("TEST_ANTHROPIC_KEY") },
    ]
    prices = {
      "gpt-4o-mini"       = { input = 0.15, output = 0.6 }
      "gpt-4o"            = { input = 2.5, output = 10 }
      "claude-sonnet-4-5" = { input = 3, output = 15 }
    }
    budget_cost = 2.5
    attempt_timeout = "20s"
  }
}
`)
	env := map[string]string{"TEST_OPENAI_KEY": "sk-o", "TEST_ANTHROPIC_KEY": "sk-a"}
	cfg, diags := config.Parse("test.hcl", src, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	raw, diags := config.DecodePluginConfig(cfg.Runners[0], configSchema())
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	set, ds := parseConfig(base.ConfigureRequest{Config: raw})
	if ds.HasErrors() || len(ds) != 0 {
		t.Fatalf("plugin refused the decoded config %s: %v", raw, ds)
	}
	want := []target{
		{providerOpenAI, "gpt-4o-mini", defaultOpenAIURL, "sk-o"},
		{providerOpenAI, "gpt-4o", defaultOpenAIURL, "sk-o"},
		{providerAnthropic, "claude-sonnet-4-5", defaultAnthropicURL, "sk-a"},
	}
	if !slices.Equal(set.targets, want) || set.budgetCost != 2.5 || set.attemptTimeout != 20*time.Second ||
		set.prices["gpt-4o"] != (price{2.5, 10}) || set.timeout != 300*time.Second || set.retries != defaultRetries {
		t.Errorf("settings: %+v", set)
	}
}

// TestConfiguredLimits: the runner reports its configured timeout (its default when the
// config sets none), the most a user's session may ask, and bounds nothing else; a config
// it refuses is an error that never carries the key.
func TestConfiguredLimits(t *testing.T) {
	r := newRunner(nil)
	for _, tt := range []struct {
		cfg  map[string]any
		want time.Duration
	}{
		{map[string]any{"model": "m", "api_key": "k"}, 300 * time.Second},
		{map[string]any{"model": "m", "api_key": "k", "timeout": "45s"}, 45 * time.Second},
	} {
		raw, _ := json.Marshal(tt.cfg)
		l, err := r.ConfiguredLimits(base.ConfigureRequest{Config: raw, ValidateOnly: true})
		if err != nil || l != (runner.Limits{Timeout: tt.want}) {
			t.Errorf("ConfiguredLimits(%s) = %+v, %v; want only the timeout %v", raw, l, err, tt.want)
		}
	}
	raw, _ := json.Marshal(map[string]any{"model": "m", "api_key": "sk-secret-key-1234567890", "timeout": "soon"})
	if _, err := r.ConfiguredLimits(base.ConfigureRequest{Config: raw}); err == nil || strings.Contains(err.Error(), "sk-secret-key-1234567890") {
		t.Errorf("ConfiguredLimits of a bad config: %v", err)
	}
}
