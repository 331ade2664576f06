package config

import (
	"regexp"
	"strings"
	"sync"

	"github.com/hashicorp/hcl/v2"

	"github.com/limitgraph/limit/sdk/base"
)

// sensitiveMu guards PluginBlock.sensitive: a block's config may be decoded by several
// goroutines (a runner's pool) while diagnostics are printed.
var sensitiveMu sync.Mutex

// setSensitive records the attributes schema marks sensitive.
func (b *PluginBlock) setSensitive(schema base.Schema) {
	var names []string
	for _, a := range schema.Attributes {
		if a.Sensitive {
			names = append(names, a.Name)
		}
	}
	sensitiveMu.Lock()
	b.sensitive = names
	sensitiveMu.Unlock()
}

// Patterns of a source line that holds a secret whatever the schema says (a line a
// diagnostic shows before any plugin's schema is known, or an attribute a plugin does not
// mark sensitive, such as a base URL with credentials in it).
var (
	// secretUserInfo is a URL's user:password@.
	secretUserInfo = regexp.MustCompile(`://[^/\s"'@]*:[^\s"'@]*@`)
	// secretParam is a query or key=value parameter that carries a credential.
	secretParam = regexp.MustCompile(`(?i)(^|[?&;\s"'])(password|passwd|pwd|pass|key|api[-_]?key|apikey|token|access[-_]?token|auth|secret|client[-_]?secret|sig|signature)\s*=`)
	// secretName is an HCL attribute whose name says it holds a credential.
	secretName = regexp.MustCompile(`(?i)^\s*"?[\w-]*(password|passwd|secret|api[-_]?key|apikey|token)"?\s*[=:]`)
)

// lineHoldsSecret reports whether a source line looks like it holds a credential.
func lineHoldsSecret(line string) bool {
	return secretUserInfo.MatchString(line) || secretParam.MatchString(line) || secretName.MatchString(line)
}

// SecretLines returns, by file name, the lines of files that hold a value a diagnostic's
// source snippet must not show: the attributes a plugin's schema marks sensitive (known
// once the plugin's config was decoded, so call it when printing), and any line that
// looks like it holds a credential (a URL's user:password@, a ?key=, password=, an
// attribute named api_key or password). cfg may be nil.
func SecretLines(cfg *Config, files map[string]*hcl.File) map[string]map[int]bool {
	out := map[string]map[int]bool{}
	mark := func(rng hcl.Range) {
		if rng.Filename == "" {
			return
		}
		if out[rng.Filename] == nil {
			out[rng.Filename] = map[int]bool{}
		}
		for l := rng.Start.Line; l <= rng.End.Line; l++ {
			out[rng.Filename][l] = true
		}
	}
	for name, f := range files {
		if f == nil {
			continue
		}
		for i, line := range strings.Split(string(f.Bytes), "\n") {
			if lineHoldsSecret(line) {
				mark(hcl.Range{Filename: name, Start: hcl.Pos{Line: i + 1}, End: hcl.Pos{Line: i + 1}})
			}
		}
	}
	if cfg == nil {
		return out
	}
	blocks := append(append(append([]*PluginBlock(nil), cfg.Storage...), cfg.Runners...), cfg.Governance.Rules...)
	for _, b := range blocks {
		if b == nil || b.Config == nil {
			continue
		}
		sensitiveMu.Lock()
		names := b.sensitive
		sensitiveMu.Unlock()
		if len(names) == 0 {
			continue
		}
		attrs, _ := b.Config.JustAttributes()
		for _, n := range names {
			if a, ok := attrs[n]; ok {
				mark(a.Range)
			}
		}
	}
	return out
}

// ShowsSecret reports whether the source snippet of d, as hcl's diagnostic text writer
// prints it (the lines of its Subject and Context), would show one of lines.
func ShowsSecret(d *hcl.Diagnostic, lines map[string]map[int]bool) bool {
	if d.Subject == nil {
		return false
	}
	rng := *d.Subject
	if d.Context != nil {
		rng = hcl.RangeOver(rng, *d.Context)
	}
	for l := rng.Start.Line; l <= rng.End.Line; l++ {
		if lines[rng.Filename][l] {
			return true
		}
	}
	return false
}
