package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/limitgraph/limit/sdk/base"
)

// Defaults of the config attributes; ConfigSchema publishes them to the host.
const (
	defaultPath     = "limit.db"
	defaultTimeout  = "5s"
	defaultMaxBatch = 1000
	// maxMaxBatch bounds max_batch: a larger group gains nothing once the fsync is shared,
	// and only makes the unlucky request at the end of it wait longer.
	maxMaxBatch = 100000
)

// noSyncWarning is what the log at start, the health answers and -validate say of
// no_sync.
const noSyncWarning = "no_sync is enabled: writes are not durable (UNSAFE: a crash or power loss can lose acknowledged writes)"

// rawConfig is the config block as the host sends it. Pointers tell an absent attribute
// (default applies) from one set to its zero value.
type rawConfig struct {
	// Path of the database file; relative paths are resolved against the plugin's data
	// directory.
	Path *string `json:"path"`
	// Timeout is how long to wait for the file lock another process holds, as a Go
	// duration ("5s", "500ms").
	Timeout *string `json:"timeout"`
	// NoSync skips fsync at commit: unsafe, a crash can lose acknowledged writes.
	NoSync *bool `json:"no_sync"`
	// MaxBatch is the most write requests grouped into one transaction.
	MaxBatch *float64 `json:"max_batch"`
}

// settings is a checked configuration with every default applied and the path resolved.
// It is comparable, so a repeated Configure can tell whether anything changed.
type settings struct {
	path     string
	timeout  time.Duration
	noSync   bool
	maxBatch int
}

// configSchema describes the config block; the descriptions are the user documentation.
func configSchema() base.Schema {
	return base.Schema{Attributes: []base.Attribute{
		{
			Name: "path", Type: "string", Default: defaultPath,
			Description: "Database file. A relative path is resolved against the plugin's data directory; missing parent directories are created with mode 0700 and the file with mode 0600.",
		},
		{
			Name: "timeout", Type: "string", Default: defaultTimeout,
			Description: "How long to wait for the database file's lock when another process holds it, as a duration such as \"5s\" or \"500ms\". Configuration fails with an error naming the file when it runs out.",
		},
		{
			Name: "no_sync", Type: "bool", Default: false,
			Description: "UNSAFE: do not fsync the write-ahead log or the checkpoints. Writes get faster, but a crash or power loss can lose writes that were acknowledged, or corrupt the file. For tests and throwaway data only.",
		},
		{
			Name: "max_batch", Type: "number", Default: defaultMaxBatch,
			Description: "Most concurrent write requests grouped into one write-ahead log record (one fdatasync). Requests are never delayed to fill a group: a lone write commits at once.",
		},
	}}
}

// parseConfig decodes and checks a ConfigureRequest. It collects every problem it finds
// rather than stopping at the first, and touches nothing on disk but a stat of the path.
func parseConfig(req base.ConfigureRequest) (settings, base.Diagnostics) {
	var raw rawConfig
	if ds := base.DecodeConfig(req.Config, &raw); ds.HasErrors() {
		return settings{}, ds
	}
	var ds base.Diagnostics
	set := settings{path: defaultPath, maxBatch: defaultMaxBatch}

	if raw.Path != nil {
		set.path = *raw.Path
	}
	if set.path == "" {
		ds = append(ds, base.Diagnostic{
			Severity: base.SeverityError, Summary: "path must not be empty",
			Detail: "Name the database file, e.g. \"limit.db\", or leave path out to use the default.",
			Path:   []string{"path"},
		})
	} else {
		p, err := resolvePath(set.path, req.DataDir)
		if err != nil {
			ds = append(ds, base.Errorf([]string{"path"}, "cannot resolve %q: %v", set.path, err))
		} else {
			set.path = p
			if fi, err := os.Stat(p); err == nil && fi.IsDir() {
				ds = append(ds, base.Errorf([]string{"path"}, "%s is a directory; path must name a file", p))
			}
		}
	}

	timeout := defaultTimeout
	if raw.Timeout != nil {
		timeout = *raw.Timeout
	}
	d, err := time.ParseDuration(timeout)
	switch {
	case err != nil:
		ds = append(ds, base.Diagnostic{
			Severity: base.SeverityError, Summary: fmt.Sprintf("invalid duration %q", timeout),
			Detail: "Write a duration with a unit, such as \"5s\", \"500ms\" or \"1m\".",
			Path:   []string{"timeout"},
		})
	case d <= 0:
		ds = append(ds, base.Errorf([]string{"timeout"}, "timeout must be positive, got %q", timeout))
	default:
		set.timeout = d
	}

	if raw.NoSync != nil && *raw.NoSync {
		set.noSync = true
		ds = append(ds, base.Diagnostic{
			Severity: base.SeverityWarning, Summary: noSyncWarning,
			Detail: "A crash or power loss can lose acknowledged writes or corrupt the database file. Do not use it for data you want to keep.",
			Path:   []string{"no_sync"},
		})
	}

	if raw.MaxBatch != nil {
		n := *raw.MaxBatch
		if n != math.Trunc(n) || n < 1 || n > maxMaxBatch {
			ds = append(ds, base.Errorf([]string{"max_batch"}, "max_batch must be a whole number from 1 to %d, got %v", maxMaxBatch, n))
		} else {
			set.maxBatch = int(n)
		}
	}
	return set, ds
}

// resolvePath makes p absolute: relative to dataDir when the host gave one, else to the
// working directory.
func resolvePath(p, dataDir string) (string, error) {
	if !filepath.IsAbs(p) && dataDir != "" {
		p = filepath.Join(dataDir, p)
	}
	return filepath.Abs(p)
}

// String renders the settings as JSON, for messages and logs.
func (s settings) String() string {
	b, _ := json.Marshal(map[string]any{
		"path": s.path, "timeout": s.timeout.String(), "no_sync": s.noSync, "max_batch": s.maxBatch,
	})
	return string(b)
}
