package base

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Info names a plugin and tells what it supports.
type Info struct {
	// Name is the plugin's short name, e.g. "bolt".
	Name string `json:"name"`
	// Kind is one of KindStorage, KindRunner, KindGovernance.
	Kind string `json:"kind"`
	// Version is the plugin's own semantic version.
	Version string `json:"version"`
	// ProtocolVersions the binary can speak; empty means [ProtocolVersion].
	ProtocolVersions []uint32 `json:"protocol_versions"`
	// Capabilities are feature names. The host reads only those of the plugin's kind
	// that the SDK defines: storage.CapBatchNamespaces ("batch:namespaces"), and a
	// runner's "input:TYPE" and runner.CapSandboxUIDs ("sandbox_uids:LOW-HIGH"); it
	// ignores any other, which may serve the plugin's own tooling.
	Capabilities []string `json:"capabilities,omitempty"`
	// Description is one line for humans.
	Description string `json:"description,omitempty"`
}

// CheckInfo checks what the host requires of any plugin's Info: a name, a version, and
// among its ProtocolVersions (empty means [ProtocolVersion]) the one this SDK speaks. The
// error says what is wrong and what to do. The kind is the caller's to check.
func CheckInfo(i Info) error {
	var problems []string
	if strings.TrimSpace(i.Name) == "" {
		problems = append(problems, "its Info has an empty name (PluginInfo must return a Name, such as \"bolt\")")
	}
	if strings.TrimSpace(i.Version) == "" {
		problems = append(problems, "its Info has an empty version (PluginInfo must return a Version, such as \"1.0.0\")")
	}
	if len(i.ProtocolVersions) > 0 && !slices.Contains(i.ProtocolVersions, ProtocolVersion) {
		speaks := make([]string, len(i.ProtocolVersions))
		for n, v := range i.ProtocolVersions {
			speaks[n] = fmt.Sprint(v)
		}
		problems = append(problems, fmt.Sprintf("it speaks plugin protocol version %s and this host speaks %d: rebuild the plugin against the LIMIT SDK of this host's version",
			strings.Join(speaks, ", "), ProtocolVersion))
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// Attribute describes one attribute of a plugin's HCL config block.
type Attribute struct {
	Name string `json:"name"`
	// Type is an HCL type constraint expression: "string", "number", "bool",
	// "list(string)", "map(string)", "any", ...
	Type        string `json:"type"`
	Required    bool   `json:"required,omitempty"`
	Description string `json:"description,omitempty"`
	// Default is used when the attribute is absent; it must be JSON-encodable.
	Default any `json:"default,omitempty"`
	// Sensitive values are never logged by the host.
	Sensitive bool `json:"sensitive,omitempty"`
}

// Schema describes a plugin's config block.
type Schema struct {
	Attributes []Attribute `json:"attributes"`
}

// ConfigureRequest carries a plugin's decoded configuration.
type ConfigureRequest struct {
	// Config is the config block as a JSON object (never nil: "{}" when empty).
	Config json.RawMessage
	// ValidateOnly asks the plugin to check the config without applying it.
	ValidateOnly bool
	// DataDir is a directory the host gives the plugin for its own files; relative
	// paths in the config are meant relative to it.
	DataDir string
}

// Plugin is what every plugin implements, whatever its kind.
type Plugin interface {
	// PluginInfo names the plugin.
	PluginInfo() Info
	// ConfigSchema describes the plugin's config block.
	ConfigSchema() Schema
	// Configure checks and (unless ValidateOnly) applies the configuration. It is called
	// once before any other call of the plugin's kind.
	Configure(ctx context.Context, req ConfigureRequest) Diagnostics
}

// Severity of a diagnostic.
type Severity int

// Diagnostic severities.
const (
	SeverityError Severity = iota + 1
	SeverityWarning
)

// Diagnostic is one problem found in a configuration. Path names the attribute at fault
// so the host can point at the file, line and column where it is set.
type Diagnostic struct {
	Severity Severity `json:"severity"`
	Summary  string   `json:"summary"`
	Detail   string   `json:"detail,omitempty"`
	Path     []string `json:"path,omitempty"`
}

// Error implements error.
func (d Diagnostic) Error() string {
	var b strings.Builder
	if len(d.Path) > 0 {
		b.WriteString(strings.Join(d.Path, "."))
		b.WriteString(": ")
	}
	b.WriteString(d.Summary)
	if d.Detail != "" {
		b.WriteString(": ")
		b.WriteString(d.Detail)
	}
	return b.String()
}

// Diagnostics is a list of diagnostics.
type Diagnostics []Diagnostic

// HasErrors reports whether any diagnostic is an error.
func (ds Diagnostics) HasErrors() bool {
	for _, d := range ds {
		if d.Severity == SeverityError {
			return true
		}
	}
	return false
}

// Err returns the diagnostics' errors joined into one error, or nil.
func (ds Diagnostics) Err() error {
	var msgs []string
	for _, d := range ds {
		if d.Severity == SeverityError {
			msgs = append(msgs, d.Error())
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	return fmt.Errorf("%s", strings.Join(msgs, "; "))
}

// Errorf returns an error diagnostic about the attribute at path.
func Errorf(path []string, format string, args ...any) Diagnostic {
	return Diagnostic{Severity: SeverityError, Summary: fmt.Sprintf(format, args...), Path: path}
}

// Warningf returns a warning diagnostic about the attribute at path: the configuration is
// accepted, and the host shows the warning where the attribute is set (limitd -validate
// prints it as file:line: warning: …, the daemon logs it when it starts the plugin).
func Warningf(path []string, format string, args ...any) Diagnostic {
	return Diagnostic{Severity: SeverityWarning, Summary: fmt.Sprintf(format, args...), Path: path}
}

// Warnings returns the diagnostics that are warnings.
func (ds Diagnostics) Warnings() Diagnostics {
	var out Diagnostics
	for _, d := range ds {
		if d.Severity == SeverityWarning {
			out = append(out, d)
		}
	}
	return out
}

// DecodeConfig decodes a JSON config into v, which should be a pointer to a struct with
// json tags. Unknown attributes and wrong types are reported as diagnostics with a path;
// a config that is not a JSON object as "config must be a JSON object".
func DecodeConfig(raw json.RawMessage, v any) Diagnostics {
	if len(raw) == 0 {
		raw = json.RawMessage("{}")
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var path []string
		if te, ok := err.(*json.UnmarshalTypeError); ok {
			if te.Field == "" {
				// The whole config is of the wrong type: v is a struct (or map), so
				// say what the user wrote, not which Go type would not take it.
				return Diagnostics{Errorf(nil, "config must be a JSON object, got %s", jsonValueName(te.Value))}
			}
			path = strings.Split(te.Field, ".")
			return Diagnostics{Errorf(path, "must be of type %s, got %s", te.Type, te.Value)}
		}
		msg := err.Error()
		if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
			name := strings.Trim(f, `"`)
			return Diagnostics{Errorf([]string{name}, "unsupported attribute %q", name)}
		}
		return Diagnostics{Errorf(nil, "invalid configuration: %v", err)}
	}
	if dec.More() {
		return Diagnostics{Errorf(nil, "invalid configuration: data after the JSON object")}
	}
	return nil
}

// jsonValueName names a JSON value as json.UnmarshalTypeError's Value describes it
// ("array", "string", "number 3", "bool").
func jsonValueName(v string) string {
	switch {
	case v == "array":
		return "an array"
	case v == "string":
		return "a string"
	case v == "bool":
		return "a boolean"
	case v == "number" || strings.HasPrefix(v, "number "):
		return "a number"
	}
	return v
}
