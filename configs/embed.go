// Package configs holds the host's ready-made configuration files; the default one is
// embedded into limitd so the daemon runs with no file at all.
package configs

import _ "embed"

// Default is configs/default.hcl.
//
//go:embed default.hcl
var Default []byte

// DefaultName is the file name diagnostics about the embedded default refer to.
const DefaultName = "configs/default.hcl (embedded)"
