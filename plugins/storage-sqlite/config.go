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
	defaultPath        = "limit.sqlite"
	defaultBusyTimeout = "5s"
	defaultMaxBatch    = 1000
	defaultReaders     = 4
	// maxMaxBatch bounds max_batch: past a few hundred requests the shared fsync is paid
	// for, and a larger group only makes its last request wait longer.
	maxMaxBatch = 100000
	// maxReaders bounds the reader pool; each reader holds a connection and its cache.
	maxReaders = 64
)

// rawConfig is the config block as the host sends it. Pointers tell an absent attribute
// (default applies) from one set to its zero value.
type rawConfig struct {
	Path        *string  `json:"path"`
	BusyTimeout *string  `json:"busy_timeout"`
	MaxBatch    *float64 `json:"max_batch"`
	Readers     *float64 `json:"readers"`
}

// settings is a checked configuration with every default applied and the path resolved.
// It is comparable, so a repeated Configure can tell whether anything changed.
type settings struct {
	path        string
	busyTimeout time.Duration
	maxBatch    int
	readers     int
}

// configSchema describes the config block; the descriptions are the user documentation.
func configSchema() base.Schema {
	return base.Schema{Attributes: []base.Attribute{
		{
			Name: "path", Type: "string", Default: defaultPath,
			Description: "SQLite database file. A relative path is resolved against the plugin's data directory; missing parent directories are created with mode 0700 and the file with mode 0600. The write-ahead log lives beside it (path-wal, path-shm), and so does the lock file (path.lock) that keeps a second process from opening the same database.",
		},
		{
			Name: "busy_timeout", Type: "string", Default: defaultBusyTimeout,
			Description: "How long a write waits for the database's write lock when another process holds it, as a duration such as \"5s\" or \"500ms\"; after that the write fails as unavailable.",
		},
		{
			Name: "max_batch", Type: "number", Default: defaultMaxBatch,
			Description: "Most concurrent write requests grouped into one transaction (one fsync). Requests are never delayed to fill a group: a lone write commits at once.",
		},
		{
			Name: "readers", Type: "number", Default: defaultReaders,
			Description: "Connections that serve reads (get, scan) concurrently with the single writer connection.",
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
	set := settings{path: defaultPath, maxBatch: defaultMaxBatch, readers: defaultReaders}

	if raw.Path != nil {
		set.path = *raw.Path
	}
	if set.path == "" {
		ds = append(ds, base.Diagnostic{
			Severity: base.SeverityError, Summary: "path must not be empty",
			Detail: "Name the database file, e.g. \"limit.sqlite\", or leave path out to use the default.",
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

	timeout := defaultBusyTimeout
	if raw.BusyTimeout != nil {
		timeout = *raw.BusyTimeout
	}
	d, err := time.ParseDuration(timeout)
	switch {
	case err != nil:
		ds = append(ds, base.Diagnostic{
			Severity: base.SeverityError, Summary: fmt.Sprintf("invalid duration %q", timeout),
			Detail: "Write a duration with a unit, such as \"5s\", \"500ms\" or \"1m\".",
			Path:   []string{"busy_timeout"},
		})
	case d < time.Millisecond:
		ds = append(ds, base.Errorf([]string{"busy_timeout"}, "busy_timeout must be at least 1ms, got %q", timeout))
	default:
		set.busyTimeout = d
	}

	if raw.MaxBatch != nil {
		n, ok := wholeNumber(*raw.MaxBatch, 1, maxMaxBatch)
		if !ok {
			ds = append(ds, base.Errorf([]string{"max_batch"}, "max_batch must be a whole number from 1 to %d, got %v", maxMaxBatch, *raw.MaxBatch))
		}
		set.maxBatch = n
	}
	if raw.Readers != nil {
		n, ok := wholeNumber(*raw.Readers, 1, maxReaders)
		if !ok {
			ds = append(ds, base.Errorf([]string{"readers"}, "readers must be a whole number from 1 to %d, got %v", maxReaders, *raw.Readers))
		}
		set.readers = n
	}
	return set, ds
}

// wholeNumber converts f to an int if it is a whole number within [lo, hi].
func wholeNumber(f float64, lo, hi int) (int, bool) {
	if f != math.Trunc(f) || f < float64(lo) || f > float64(hi) {
		return 0, false
	}
	return int(f), true
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
		"path": s.path, "busy_timeout": s.busyTimeout.String(), "max_batch": s.maxBatch, "readers": s.readers,
	})
	return string(b)
}
