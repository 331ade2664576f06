package main

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/limitgraph/limit/host/version"
	"github.com/limitgraph/limit/internal/bytebudget"
	"github.com/limitgraph/limit/internal/jailbreak"
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/governance"
)

// rawConfig is the config block as the host sends it.
type rawConfig struct {
	// Preset picks the model threshold calibrated to a false-positive rate on benign text.
	Preset *string `json:"preset"`
	// Threshold, when set, replaces the preset's model threshold.
	Threshold *float64 `json:"threshold"`
	// ContentTypes are the content types the rule reads at all (see defaultContentTypes).
	ContentTypes *[]string `json:"content_types"`
	// ModelContentTypes are the content types the model scores (see defaultModelTypes).
	ModelContentTypes *[]string `json:"model_content_types"`
	// PlantedContentTypes are the content types the planted-instruction scorer reads (see
	// defaultPlantedTypes).
	PlantedContentTypes *[]string `json:"planted_content_types"`
	// MaxBytesInFlight bounds the large texts scanned at once (see largeText).
	MaxBytesInFlight *float64 `json:"max_bytes_in_flight"`
}

// largeText is the size from which a text counts against max_bytes_in_flight: a scan holds
// tens of bytes for each byte of its text (views with their offset maps, a block of the
// model's features), so a few concurrent prompts of megabytes would take gigabytes. Texts
// under it, ordinary prompts, never wait.
const largeText = 64 << 10

// defaultMaxBytesInFlight is max_bytes_in_flight's default: 32 MiB of large texts scanned
// at once, about 0.4–1.8 GB held by their scans at worst.
const defaultMaxBytesInFlight = 32 << 20

// defaultContentTypes are the content types the rule reads by default: what a person
// writes to a model, and what a program printed (which may be fed to one: an injection in
// tool output). Code to run (a Python runner's input, "code/python") is the code-safety
// rule's: a comment such as "# print the system prompt for debugging" in it harms no model,
// and blocking it as a jailbreak would only stop the user. Content without a type is read.
var defaultContentTypes = []string{"text/plain", "text/prompt", "text/output"}

// defaultModelTypes are the content types the model scores by default: text a person
// writes to a model. It was trained on prompts; code (a Python runner's input,
// "code/python") and what a program printed ("text/output") are read by the phrase rules
// and decoders only, since the model's score of them means nothing (a class definition or
// an `ls -l` listing scored as a jailbreak). Content without a type is scored.
var defaultModelTypes = []string{"text/plain", "text/prompt"}

// defaultPlantedTypes are the content types a planted-instruction scorer reads by default:
// prompts (a pasted document, e-mail or page) and what a program printed (outputType: a
// fetched page, an API's JSON, a model's answer), which the scorer of output reads, trained
// and calibrated with benign program output and assistant answers. Content without a type
// is read.
var defaultPlantedTypes = []string{"text/plain", "text/prompt", "text/output"}

// outputType is the content type of what a program printed.
const outputType = "text/output"

// rule is the plugin. Its detector is swapped atomically by Configure, so evaluations in
// flight finish with the configuration they started with.
type rule struct {
	det          atomic.Pointer[jailbreak.Detector]
	preset       atomic.Pointer[string]
	types        atomic.Pointer[[]string]
	modelTypes   atomic.Pointer[[]string]
	plantedTypes atomic.Pointer[[]string]
	// inFlight admits large texts up to max_bytes_in_flight of them at once (a text larger
	// than that alone).
	inFlight atomic.Pointer[bytebudget.Budget]
}

func newRule() *rule {
	r := &rule{}
	r.inFlight.Store(bytebudget.New(defaultMaxBytesInFlight))
	return r
}

// PluginInfo implements base.Plugin.
func (r *rule) PluginInfo() base.Info {
	return base.Info{
		Name: "jailbreak", Kind: base.KindGovernance, Version: version.Version,
		Capabilities: []string{"multilingual", "decoders", "windows", "model"},
		Description:  "Jailbreak and prompt-injection detection: normalisation, decoders, multilingual phrase rules and a trained model.",
	}
}

// ConfigSchema implements base.Plugin.
func (r *rule) ConfigSchema() base.Schema {
	return base.Schema{Attributes: []base.Attribute{
		{
			Name: "preset", Type: "string", Default: jailbreak.PresetDefault,
			Description: "How eager the model is: \"permissive\", \"default\" or \"strict\", whose thresholds are calibrated to about 0.1 %, 1 % and 5 % false positives on benign prompts. Phrase rules and decoded payloads are reported under every preset; the planted-instruction scorer (jailbreak.planted) takes the preset's own threshold.",
		},
		{
			Name: "threshold", Type: "number",
			Description: "Model probability (between 0 and 1, exclusive) at or above which a text is flagged; replaces the preset's threshold for the window model when set (the planted-instruction scorer keeps the preset's).",
		},
		{
			Name: "content_types", Type: "list(string)", Default: defaultContentTypes,
			Description: "Content types the rule reads (prompts, and program output that may reach a model); code to run (code/python) is left to the code-safety rule. Content without a type is read.",
		},
		{
			Name: "max_bytes_in_flight", Type: "number", Default: defaultMaxBytesInFlight,
			Description: "Bytes of large texts (64 KiB and more) scanned at once; more wait their turn, within the host's time for a rule (a text larger than this is scanned alone). A scan holds tens of bytes for each byte of its text. Smaller texts never wait.",
		},
		{
			Name: "model_content_types", Type: "list(string)", Default: defaultModelTypes,
			Description: "Content types the trained model scores (the text a person writes to a model); other content (code/python, a program's text/output) gets the phrase rules and decoders only. Content without a type is scored.",
		},
		{
			Name: "planted_content_types", Type: "list(string)", Default: defaultPlantedTypes,
			Description: "Content types the planted-instruction scorers (jailbreak.planted) read: prompts, and a program's text/output (a fetched page, an API's JSON, a model's answer), which the scorer of output reads, trained and calibrated with benign program output and assistant answers. Only types the rule reads (content_types) are read. Content without a type is read.",
		},
	}}
}

// Configure implements base.Plugin.
func (r *rule) Configure(_ context.Context, req base.ConfigureRequest) base.Diagnostics {
	var raw rawConfig
	if ds := base.DecodeConfig(req.Config, &raw); ds.HasErrors() {
		return ds
	}
	var ds base.Diagnostics
	preset := jailbreak.PresetDefault
	if raw.Preset != nil {
		preset = *raw.Preset
		if _, ok := jailbreak.PresetFPR[preset]; !ok {
			ds = append(ds, base.Diagnostic{
				Severity: base.SeverityError, Summary: fmt.Sprintf("unknown preset %q", preset),
				Detail: "Use \"permissive\", \"default\" or \"strict\", or set threshold instead.",
				Path:   []string{"preset"},
			})
		}
	}
	threshold := 0.0
	if raw.Threshold != nil {
		threshold = *raw.Threshold
		if math.IsNaN(threshold) || threshold <= 0 || threshold >= 1 {
			ds = append(ds, base.Errorf([]string{"threshold"}, "threshold must be between 0 and 1 (exclusive), got %v", threshold))
		}
	}
	mediaTypes := func(name string, def []string, given *[]string) []string {
		if given == nil {
			return def
		}
		for i, t := range *given {
			if t != strings.TrimSpace(t) || t == "" || strings.ContainsAny(t, ";, ") {
				ds = append(ds, base.Errorf([]string{name}, "content type %d, %q, is not a media type such as \"text/plain\"", i+1, t))
			}
		}
		return *given
	}
	inFlight := int64(defaultMaxBytesInFlight)
	if raw.MaxBytesInFlight != nil {
		n := *raw.MaxBytesInFlight
		if n != math.Trunc(n) || n < largeText || n > 1<<40 {
			ds = append(ds, base.Errorf([]string{"max_bytes_in_flight"}, "max_bytes_in_flight must be a whole number of bytes from %d to %d, got %v", largeText, int64(1)<<40, n))
		} else {
			inFlight = int64(n)
		}
	}
	readTypes := mediaTypes("content_types", defaultContentTypes, raw.ContentTypes)
	types := mediaTypes("model_content_types", defaultModelTypes, raw.ModelContentTypes)
	plantedTypes := mediaTypes("planted_content_types", defaultPlantedTypes, raw.PlantedContentTypes)
	if ds.HasErrors() {
		return ds
	}
	m, err := jailbreak.DefaultModel()
	if err != nil {
		return base.Diagnostics{base.Errorf(nil, "load the built-in model: %v; rebuild the plugin", err)}
	}
	d, err := jailbreak.NewDetector(m, preset, threshold)
	if err != nil {
		return base.Diagnostics{base.Errorf([]string{"preset"}, "%v", err)}
	}
	if req.ValidateOnly {
		return ds
	}
	r.det.Store(d)
	r.preset.Store(&preset)
	r.types.Store(&readTypes)
	r.modelTypes.Store(&types)
	r.plantedTypes.Store(&plantedTypes)
	if r.inFlight.Load().Max() != inFlight {
		r.inFlight.Store(bytebudget.New(inFlight))
	}
	return ds
}

// detector returns the configured detector, or the default preset's when Configure has
// not been called.
func (r *rule) detector() (*jailbreak.Detector, error) {
	if d := r.det.Load(); d != nil {
		return d, nil
	}
	m, err := jailbreak.DefaultModel()
	if err != nil {
		return nil, fmt.Errorf("load the built-in model: %w", err)
	}
	d, err := jailbreak.NewDetector(m, jailbreak.PresetDefault, 0)
	if err != nil {
		return nil, err
	}
	r.det.CompareAndSwap(nil, d)
	return r.det.Load(), nil
}

// descriptions of the rule ids.
var descriptions = map[string]string{
	jailbreak.RuleModel:                           "Trained model (NB-SVM: logistic regression over naive-Bayes-scaled hashed word, word-pair and character n-grams) scored over windows of the normalised text.",
	jailbreak.RulePlanted:                         "Trained sentence scorer for instructions planted in a document, e-mail, web page or tool output for the assistant reading it.",
	jailbreak.RuleEncoded:                         "A base64, hex, percent-encoded or ROT13 payload that decodes to an injection.",
	jailbreak.RuleHidden:                          "Text hidden in invisible Unicode tag characters.",
	jailbreak.PhraseRuleID(jailbreak.CatOverride): "Phrases that tell the model to ignore or forget its instructions, in 18 languages.",
	jailbreak.PhraseRuleID(jailbreak.CatPersona):  "Jailbreak personas: DAN, developer mode, \"you are not bound by any rules\", bypassing content policies.",
	jailbreak.PhraseRuleID(jailbreak.CatReveal):   "Requests to reveal the system prompt or hidden instructions.",
	jailbreak.PhraseRuleID(jailbreak.CatIndirect): "Instructions addressed to an AI inside a document, e-mail, web page or tool output.",
	jailbreak.PhraseRuleID(jailbreak.CatExfil):    "Sending secrets or the conversation to an outside address, or a markdown image that leaks data.",
}

// Describe implements governance.Rule.
// Each rule reads the configured content_types (the host sends the rule nothing else).
func (r *rule) Describe(context.Context) ([]governance.RuleDescription, error) {
	types := defaultContentTypes
	if t := r.types.Load(); t != nil {
		types = *t
	}
	var out []governance.RuleDescription
	for _, id := range jailbreak.RuleIDs() {
		out = append(out, governance.RuleDescription{
			ID: id, Flags: []string{governance.FlagJailbreak},
			Stages:       []governance.Stage{governance.StagePre, governance.StagePost},
			Description:  descriptions[id],
			ContentTypes: slices.Clone(types),
		})
	}
	return out, nil
}

// Evaluate implements governance.Rule.
func (r *rule) Evaluate(ctx context.Context, req governance.EvaluateRequest) ([]governance.Finding, error) {
	ev, err := r.EvaluateScores(ctx, req)
	return ev.Findings, err
}

// EvaluateScores implements governance.ScoringRule: the findings, and the model's
// probability for the text whether or not it reached the threshold. A request whose
// metadata names a preset is judged at that preset's threshold.
func (r *rule) EvaluateScores(ctx context.Context, req governance.EvaluateRequest) (governance.Evaluation, error) {
	if err := ctx.Err(); err != nil {
		return governance.Evaluation{}, err
	}
	d, err := r.detector()
	if err != nil {
		return governance.Evaluation{}, err
	}
	if p := req.Metadata[governance.MetaPreset]; p != "" {
		if d, err = jailbreak.NewDetector(d.Model(), p, 0); err != nil {
			return governance.Evaluation{}, fmt.Errorf("metadata %s: %w", governance.MetaPreset, err)
		}
	}
	if !hasType(req.ContentType, r.types.Load(), defaultContentTypes) {
		return governance.Evaluation{}, nil
	}
	if len(req.Content) >= largeText {
		release, err := r.admit(ctx, len(req.Content))
		if err != nil {
			return governance.Evaluation{}, err
		}
		defer release()
	}
	// A scan given up by its caller (the host's deadline, a cancelled call) stops, so
	// that it neither holds its share of max_bytes_in_flight nor takes the processor
	// from the scans still awaited.
	scored := hasType(req.ContentType, r.modelTypes.Load(), defaultModelTypes)
	res, err := d.ScanAs(ctx, req.Content, jailbreak.Reading{
		Window:  scored,
		Planted: hasType(req.ContentType, r.plantedTypes.Load(), defaultPlantedTypes),
		Output:  strings.EqualFold(governance.MediaType(req.ContentType), outputType),
	})
	if err != nil {
		return governance.Evaluation{}, fmt.Errorf("scan of %d bytes given up: %w", len(req.Content), err)
	}
	out := make([]governance.Finding, 0, len(res.Findings))
	for _, f := range res.Findings {
		out = append(out, governance.Finding{
			// Reasons quote the text; protobuf strings must be valid UTF-8.
			Flag: governance.FlagJailbreak, Severity: f.Severity, Score: f.Score, Reason: strings.ToValidUTF8(f.Reason, "\uFFFD"), RuleID: f.RuleID,
			Location: &governance.Location{Line: f.Line, Column: column(req.Content, f.Start), Start: f.Start, End: f.End},
		})
	}
	ev := governance.Evaluation{Findings: out}
	if scored {
		ev.Scores = map[string]float64{jailbreak.RuleModel: res.ModelScore.Prob}
	}
	return ev, nil
}

// admit waits until a text of n bytes fits max_bytes_in_flight (the whole of it for a
// text larger than that) and returns what gives its share back.
func (r *rule) admit(ctx context.Context, n int) (func(), error) {
	b := r.inFlight.Load()
	release, err := b.Acquire(ctx, int64(n))
	if err != nil {
		return nil, fmt.Errorf("a text of %d bytes waited for others being scanned (max_bytes_in_flight %d) until its call ended: %w", n, b.Max(), err)
	}
	return release, nil
}

// hasType reports whether content of type ct (its media type, parameters aside) is one
// of types (def when nil); content without a type always is.
func hasType(ct string, types *[]string, def []string) bool {
	ct = governance.MediaType(ct)
	if ct == "" {
		return true
	}
	list := def
	if types != nil {
		list = *types
	}
	for _, t := range list {
		if strings.EqualFold(t, ct) {
			return true
		}
	}
	return false
}

// column returns the 1-based byte column of offset off in s.
func column(s string, off int) int {
	return off - strings.LastIndexByte(s[:off], '\n')
}

var _ governance.ScoringRule = (*rule)(nil)
