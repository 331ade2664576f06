package main

import (
	"fmt"
	"math"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/limitgraph/limit/internal/describe"
	"github.com/limitgraph/limit/sdk/base"
)

// Providers.
const (
	providerOpenAI     = "openai"
	providerAnthropic  = "anthropic"
	providerCompatible = "openai-compatible"
)

// Default base URLs of the hosted providers.
const (
	defaultOpenAIURL    = "https://api.openai.com/v1"
	defaultAnthropicURL = "https://api.anthropic.com"
)

// Defaults of the config attributes; ConfigSchema publishes them to the host.
const (
	defaultProvider       = providerOpenAI
	defaultAttemptTimeout = "60s"
	defaultTimeout        = "300s"
	defaultRetries        = 2
	defaultRetryBackoff   = "500ms"
	defaultMaxBackoff     = "30s"
	defaultMaxTokens      = 1024
)

// maxTokensLimit bounds max_tokens and params.max_tokens: far above what any model
// generates in one answer.
const maxTokensLimit = 1 << 24

// rawTarget is one entry of fallback (and the shape of the primary model).
type rawTarget struct {
	Provider *string `json:"provider"`
	Model    *string `json:"model"`
	BaseURL  *string `json:"base_url"`
	APIKey   *string `json:"api_key"`
}

// price is what a model costs, in US dollars per million tokens.
type price struct {
	Input  float64 `json:"input"`
	Output float64 `json:"output"`
}

// rawConfig is the config block as the host sends it. Pointers tell an absent attribute
// (default applies) from one set to its zero value.
type rawConfig struct {
	Provider       *string          `json:"provider"`
	Model          *string          `json:"model"`
	BaseURL        *string          `json:"base_url"`
	APIKey         *string          `json:"api_key"`
	Fallback       []rawTarget      `json:"fallback"`
	AttemptTimeout *string          `json:"attempt_timeout"`
	Timeout        *string          `json:"timeout"`
	Retries        *float64         `json:"retries"`
	RetryBackoff   *string          `json:"retry_backoff"`
	MaxBackoff     *string          `json:"max_backoff"`
	MaxTokens      *float64         `json:"max_tokens"`
	Temperature    *float64         `json:"temperature"`
	System         *string          `json:"system"`
	Stream         *bool            `json:"stream"`
	Prices         map[string]price `json:"prices"`
	BudgetTokens   *float64         `json:"budget_tokens"`
	BudgetCost     *float64         `json:"budget_cost"`
}

// target is one model at one provider; the primary is targets[0].
type target struct {
	Provider string
	Model    string
	BaseURL  string
	APIKey   string
}

// String names the target for messages: "openai gpt-4o-mini". It never includes the key.
func (t target) String() string { return t.Provider + " " + t.Model }

// settings is a checked configuration with every default applied.
type settings struct {
	targets        []target
	attemptTimeout time.Duration
	timeout        time.Duration
	retries        int
	retryBackoff   time.Duration
	maxBackoff     time.Duration
	maxTokens      int
	temperature    *float64
	system         string
	stream         bool
	prices         map[string]price
	budgetTokens   uint64
	budgetCost     float64
}

// secrets returns the API keys of the configuration, for redaction.
func (s settings) secrets() []string {
	var out []string
	for _, t := range s.targets {
		if t.APIKey != "" {
			out = append(out, t.APIKey)
		}
	}
	return out
}

// configSchema describes the config block; the descriptions are the user documentation.
func configSchema() base.Schema {
	return base.Schema{Attributes: []base.Attribute{
		{
			Name: "provider", Type: "string", Default: defaultProvider,
			Description: "\"openai\", \"anthropic\", or \"openai-compatible\" for any server speaking OpenAI's chat completions API (vLLM, llama-server, Ollama), which needs base_url.",
		},
		{
			Name: "model", Type: "string", Required: true,
			Description: "Model name as the provider knows it, e.g. \"gpt-4o-mini\" or \"claude-sonnet-4-5\".",
		},
		{
			Name: "base_url", Type: "string",
			Description: "API base URL. Defaults: " + defaultOpenAIURL + " (openai), " + defaultAnthropicURL + " (anthropic); required for openai-compatible, e.g. \"http://127.0.0.1:8000/v1\". Nothing is read from OPENAI_BASE_URL or ANTHROPIC_BASE_URL.",
		},
		{
			Name: "api_key", Type: "string", Sensitive: true,
			Description: "API key, normally env(\"OPENAI_API_KEY\") or env(\"ANTHROPIC_API_KEY\"). The plugin never reads a key from its environment by itself, and never shows it in logs, errors or health answers. Answers are checked too: should a server or model put a configured key (of any model, fallbacks included) in an answer, as is or in base64, it is replaced by [REDACTED] in the streamed tokens and the output; a streamed token that may begin a key waits for the next one to tell. Short keys are no exception, so for an openai-compatible server that needs no key leave api_key unset rather than giving a placeholder such as \"EMPTY\".",
		},
		{
			Name: "fallback", Type: "list(object({provider=optional(string), model=string, base_url=optional(string), api_key=optional(string)}))",
			Sensitive:   true,
			Description: "Models tried in order when the primary fails after its retries (rate limits, server errors, timeouts, unreadable answers, rejected requests). An entry without provider, base_url or api_key takes the primary's when the provider is the same. A fallback is never tried once part of an answer was streamed.",
		},
		{
			Name: "attempt_timeout", Type: "string", Default: defaultAttemptTimeout,
			Description: "Longest one request to the provider may take, streaming included, as a duration such as \"60s\".",
		},
		{
			Name: "timeout", Type: "string", Default: defaultTimeout,
			Description: "Longest one execution may take over all its attempts, retries, waits and fallbacks. An execution's own timeout, when shorter, wins.",
		},
		{
			Name: "retries", Type: "number", Default: defaultRetries,
			Description: "Retries of a model after a retryable failure (HTTP 408, 409, 429, 5xx, timeouts, connection errors) before its fallback is tried.",
		},
		{
			Name: "retry_backoff", Type: "string", Default: defaultRetryBackoff,
			Description: "Wait before the first retry, doubled at each further one, with jitter. A Retry-After (or retry-after-ms) header from the provider replaces it.",
		},
		{
			Name: "max_backoff", Type: "string", Default: defaultMaxBackoff,
			Description: "Longest computed wait between retries. A provider's Retry-After is honoured even when longer, as long as it fits the execution's timeout; when it does not, the model is given up at once.",
		},
		{
			Name: "max_tokens", Type: "number", Default: defaultMaxTokens,
			Description: "Most tokens to generate per execution, from 1 to 16777216; params.max_tokens (same bounds) overrides it.",
		},
		{
			Name: "temperature", Type: "number",
			Description: "Sampling temperature for OpenAI and OpenAI-compatible models; unset leaves the provider's default. params.temperature overrides it. Not sent to Anthropic, whose API deprecated it and whose SDK v2 has no field for it (the config warns); params.temperature is refused when an Anthropic model is configured, as primary or fallback.",
		},
		{
			Name: "system", Type: "string",
			Description: "System prompt sent first with every execution, before the system messages of params.messages, which are kept too; params.system replaces it. Anthropic gets it and the system messages before the first user or assistant message joined by blank lines, and refuses a system message after the conversation began.",
		},
		{
			Name: "stream", Type: "bool", Default: true,
			Description: "Stream answers token by token (server-sent events); false waits for the whole answer. params.stream overrides it.",
		},
		{
			Name: "prices", Type: "map(object({input=number, output=number}))",
			Description: "Prices in US dollars per million input and output tokens, by model name, e.g. { \"gpt-4o-mini\" = { input = 0.15, output = 0.60 } }. Results carry the cost (usage.extra.cost_usd) of priced models.",
		},
		{
			Name: "budget_tokens", Type: "number", Default: 0,
			Description: "Most tokens (input plus output) one session may use; once reached, executions are refused, as is one whose prompt alone (estimated at 4 bytes a token) leaves nothing for an answer. An answer's max_tokens is capped at what is left after the prompt. 0 means no limit.",
		},
		{
			Name: "budget_cost", Type: "number", Default: 0,
			Description: "Most US dollars one session may spend; once reached, executions are refused, as is one whose prompt alone (estimated at 4 bytes a token, at the cheapest model's price) costs more than what is left. An answer's max_tokens is capped at what the rest pays for, after the prompt at the model's input price. Needs a price for every model. 0 means no limit.",
		},
	}}
}

// parseConfig decodes and checks a ConfigureRequest, collecting every problem. It makes
// no request to any provider.
func parseConfig(req base.ConfigureRequest) (settings, base.Diagnostics) {
	var raw rawConfig
	if ds := base.DecodeConfig(req.Config, &raw); ds.HasErrors() {
		return settings{}, ds
	}
	var ds base.Diagnostics
	set := settings{stream: true, maxTokens: defaultMaxTokens, retries: defaultRetries, prices: raw.Prices}

	primary, pds := checkTarget(rawTarget{Provider: raw.Provider, Model: raw.Model, BaseURL: raw.BaseURL, APIKey: raw.APIKey}, nil, nil)
	ds = append(ds, pds...)
	set.targets = append(set.targets, primary)
	for i, f := range raw.Fallback {
		t, fds := checkTarget(f, &primary, []string{"fallback", fmt.Sprint(i)})
		ds = append(ds, fds...)
		set.targets = append(set.targets, t)
	}

	dur := func(name string, v *string, def string, dst *time.Duration) {
		s := def
		if v != nil {
			s = *v
		}
		d, err := time.ParseDuration(s)
		switch {
		case err != nil:
			ds = append(ds, base.Diagnostic{
				Severity: base.SeverityError, Summary: fmt.Sprintf("invalid duration %q", s),
				Detail: "Write a duration with a unit, such as \"30s\", \"500ms\" or \"2m\".", Path: []string{name},
			})
		case d <= 0:
			ds = append(ds, base.Errorf([]string{name}, "%s must be positive, got %q", name, s))
		default:
			*dst = d
		}
	}
	dur("attempt_timeout", raw.AttemptTimeout, defaultAttemptTimeout, &set.attemptTimeout)
	dur("timeout", raw.Timeout, defaultTimeout, &set.timeout)
	dur("retry_backoff", raw.RetryBackoff, defaultRetryBackoff, &set.retryBackoff)
	dur("max_backoff", raw.MaxBackoff, defaultMaxBackoff, &set.maxBackoff)

	whole := func(name string, v *float64, lo, hi float64) (int, bool) {
		if v == nil {
			return 0, false
		}
		if *v != math.Trunc(*v) || *v < lo || *v > hi {
			ds = append(ds, base.Errorf([]string{name}, "%s must be a whole number from %s to %s, got %s", name, describe.Number(lo), describe.Number(hi), describe.Number(*v)))
			return 0, false
		}
		return int(*v), true
	}
	if n, ok := whole("retries", raw.Retries, 0, 20); ok {
		set.retries = n
	}
	if n, ok := whole("max_tokens", raw.MaxTokens, 1, maxTokensLimit); ok {
		set.maxTokens = n
	}
	if n, ok := whole("budget_tokens", raw.BudgetTokens, 0, 1e15); ok {
		set.budgetTokens = uint64(n)
	}
	if raw.BudgetCost != nil {
		if c := *raw.BudgetCost; c < 0 || math.IsNaN(c) || math.IsInf(c, 0) {
			ds = append(ds, base.Errorf([]string{"budget_cost"}, "budget_cost must be a number of dollars, 0 or more, got %s", describe.Number(c)))
		} else {
			set.budgetCost = c
		}
	}
	if raw.Temperature != nil {
		if t := *raw.Temperature; t < 0 || t > 2 || math.IsNaN(t) {
			ds = append(ds, base.Errorf([]string{"temperature"}, "temperature must be from 0 to 2, got %s", describe.Number(t)))
		} else {
			set.temperature = raw.Temperature
		}
	}
	if set.temperature != nil {
		for i, t := range set.targets {
			if t.Provider != providerAnthropic {
				continue
			}
			path := []string{"provider"}
			if i > 0 {
				path = []string{"fallback", fmt.Sprint(i - 1), "provider"}
			}
			ds = append(ds, base.Diagnostic{
				Severity: base.SeverityWarning, Summary: fmt.Sprintf("temperature is not sent to %s: Anthropic's API deprecated it", t),
				Path: path,
			})
		}
	}
	if raw.System != nil {
		set.system = *raw.System
	}
	if raw.Stream != nil {
		set.stream = *raw.Stream
	}
	names := make([]string, 0, len(raw.Prices))
	for m := range raw.Prices {
		names = append(names, m)
	}
	sort.Strings(names)
	for _, m := range names {
		p := raw.Prices[m]
		if p.Input < 0 || p.Output < 0 || math.IsNaN(p.Input+p.Output) || math.IsInf(p.Input+p.Output, 0) {
			ds = append(ds, base.Errorf([]string{"prices", m}, "prices of %q must be dollar amounts, 0 or more", m))
		}
	}
	for i, t := range set.targets {
		if t.Model == "" {
			continue
		}
		if _, ok := raw.Prices[t.Model]; ok {
			continue
		}
		path := []string{"model"}
		if i > 0 {
			path = []string{"fallback", fmt.Sprint(i - 1), "model"}
		}
		if set.budgetCost > 0 {
			ds = append(ds, base.Diagnostic{
				Severity: base.SeverityError, Summary: fmt.Sprintf("budget_cost needs a price for model %q", t.Model),
				Detail: "Add it to prices, e.g. prices = { \"" + t.Model + "\" = { input = 0.15, output = 0.60 } } (dollars per million tokens).",
				Path:   path,
			})
		} else if len(raw.Prices) > 0 {
			ds = append(ds, base.Diagnostic{
				Severity: base.SeverityWarning, Summary: fmt.Sprintf("model %q has no price: its results carry no cost", t.Model),
				Path: path,
			})
		}
	}
	return set, ds
}

// checkTarget checks a model entry. A fallback (primary != nil) takes the primary's base
// URL and key when it names the same provider and sets none.
func checkTarget(rt rawTarget, primary *target, at []string) (target, base.Diagnostics) {
	var ds base.Diagnostics
	path := func(name string) []string { return append(append([]string(nil), at...), name) }
	var t target
	t.Provider = defaultProvider
	if rt.Provider != nil && *rt.Provider != "" {
		t.Provider = *rt.Provider
	} else if primary != nil {
		t.Provider = primary.Provider
	}
	switch t.Provider {
	case providerOpenAI, providerAnthropic, providerCompatible:
	default:
		ds = append(ds, base.Errorf(path("provider"), "unknown provider %q: use \"openai\", \"anthropic\" or \"openai-compatible\"", t.Provider))
	}
	if rt.Model != nil {
		t.Model = strings.TrimSpace(*rt.Model)
	}
	if t.Model == "" {
		ds = append(ds, base.Errorf(path("model"), "model must name the provider's model, e.g. \"gpt-4o-mini\""))
	}
	same := primary != nil && primary.Provider == t.Provider
	if rt.BaseURL != nil && *rt.BaseURL != "" {
		t.BaseURL = strings.TrimRight(*rt.BaseURL, "/")
	} else if same {
		t.BaseURL = primary.BaseURL
	} else {
		switch t.Provider {
		case providerOpenAI:
			t.BaseURL = defaultOpenAIURL
		case providerAnthropic:
			t.BaseURL = defaultAnthropicURL
		case providerCompatible:
			ds = append(ds, base.Errorf(path("base_url"), "provider openai-compatible needs base_url, e.g. \"http://127.0.0.1:8000/v1\""))
		}
	}
	if t.BaseURL != "" {
		u, err := url.Parse(t.BaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			ds = append(ds, base.Errorf(path("base_url"), "base_url must be an http or https URL, got %q", redactURL(t.BaseURL)))
		} else if u.User != nil {
			ds = append(ds, base.Errorf(path("base_url"), "base_url must not carry credentials (%s): put the key in api_key", redactURL(t.BaseURL)))
		}
	}
	if rt.APIKey != nil {
		t.APIKey = *rt.APIKey
	} else if same {
		t.APIKey = primary.APIKey
	}
	if t.APIKey != strings.TrimSpace(t.APIKey) {
		ds = append(ds, base.Errorf(path("api_key"), "api_key has leading or trailing white space; check the variable it comes from"))
	}
	if t.APIKey == "" && t.Provider != providerCompatible {
		ds = append(ds, base.Diagnostic{
			Severity: base.SeverityError, Summary: fmt.Sprintf("provider %s needs api_key", t.Provider),
			Detail: "Set api_key = env(\"" + map[string]string{providerOpenAI: "OPENAI_API_KEY", providerAnthropic: "ANTHROPIC_API_KEY"}[t.Provider] + "\"); the plugin does not read keys from its environment by itself.",
			Path:   path("api_key"),
		})
	}
	return t, ds
}

// redactURL hides a URL's user info and query, which may hold secrets.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	if u.User != nil {
		u.User = url.User("redacted")
	}
	if u.RawQuery != "" {
		u.RawQuery = "redacted"
	}
	return u.String()
}
