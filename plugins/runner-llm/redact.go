package main

import (
	"sort"
	"strings"
)

// redactor removes secrets from text that leaves the plugin: errors, log lines, health
// answers. Providers and proxies sometimes echo credentials in error bodies, so every
// such string goes through it, whatever its origin.
type redactor struct {
	r *strings.Replacer
}

// redacted replaces a secret.
const redacted = "[REDACTED]"

func newRedactor(secrets []string) redactor {
	// Longest first, so a secret that contains another is replaced whole.
	s := append([]string(nil), secrets...)
	sort.Slice(s, func(i, j int) bool { return len(s[i]) > len(s[j]) })
	var pairs []string
	seen := map[string]bool{}
	for _, k := range s {
		if k == "" || seen[k] {
			continue
		}
		seen[k] = true
		pairs = append(pairs, k, redacted)
	}
	if len(pairs) == 0 {
		return redactor{}
	}
	return redactor{r: strings.NewReplacer(pairs...)}
}

// clean returns s without any secret.
func (r redactor) clean(s string) string {
	if r.r == nil || s == "" {
		return s
	}
	return r.r.Replace(s)
}
