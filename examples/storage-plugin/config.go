package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/limitgraph/limit/sdk/base"
)

// version is the plugin's own version, reported in its Info.
const version = "0.1.0"

// defaultPath is where the log lives when the config names no path.
const defaultPath = "example.log"

// config is the plugin's HCL config block as the host sends it: JSON with one key per
// attribute. base.DecodeConfig rejects unknown attributes and wrong types with a
// diagnostic naming the attribute, so a typo in the HCL points at its line.
type config struct {
	// Path is the log file; a relative path is resolved against the plugin's data
	// directory (the host's data_dir), so the default needs no configuration at all.
	Path string `json:"path"`
}

// PluginInfo names the plugin. Kind must be storage; the host refuses anything else. It
// declares no capability: the one a storage backend may declare, batch:namespaces
// (storage.CapBatchNamespaces), says its Batch takes ops in other namespaces than the
// batch's, which this one does not; batches, compare-and-swap, scans and durability are
// what every backend must provide.
func (s *Store) PluginInfo() base.Info {
	return base.Info{
		Name:             "example",
		Kind:             base.KindStorage,
		Version:          version,
		ProtocolVersions: []uint32{base.ProtocolVersion},
		Description:      "example plugin: sorted slices in memory, made durable by an append-only log",
	}
}

// ConfigSchema describes the config block. The host checks the user's HCL against it
// before the plugin sees anything, and its descriptions are the plugin's user manual.
func (s *Store) ConfigSchema() base.Schema {
	return base.Schema{Attributes: []base.Attribute{{
		Name:        "path",
		Type:        "string",
		Default:     defaultPath,
		Description: "Log file. A relative path is resolved against the plugin's data directory; the directory must exist.",
	}}}
}

// Configure checks the config block and, unless the host only asks for validation, opens
// the log and replays it. Problems come back as diagnostics whose Path names the
// attribute, so the host can show the user the file and line to fix.
func (s *Store) Configure(_ context.Context, req base.ConfigureRequest) base.Diagnostics {
	cfg := config{Path: defaultPath}
	if ds := base.DecodeConfig(req.Config, &cfg); ds.HasErrors() {
		return ds
	}
	if cfg.Path == "" {
		return base.Diagnostics{base.Errorf([]string{"path"}, "path must not be empty")}
	}
	path := cfg.Path
	if !filepath.IsAbs(path) {
		if req.DataDir == "" {
			return base.Diagnostics{base.Errorf([]string{"path"}, "path %q is relative and the host gave no data directory; use an absolute path", path)}
		}
		path = filepath.Join(req.DataDir, path)
	}
	if fi, err := os.Stat(filepath.Dir(path)); err != nil || !fi.IsDir() {
		return base.Diagnostics{base.Errorf([]string{"path"}, "directory of %q does not exist; create it first", path)}
	}
	if req.ValidateOnly {
		return nil
	}
	if err := s.open(path); err != nil {
		return base.Diagnostics{base.Errorf([]string{"path"}, "%v", err)}
	}
	return nil
}

// open opens and replays the log at path, once. A later Configure with the same path is
// a no-op; another path needs a restart, because the data would silently change under the
// host's feet.
func (s *Store) open(path string) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("the store is closed")
	}
	if s.log != nil {
		if s.log.path == path {
			return nil
		}
		return fmt.Errorf("the store already uses %q; restart the plugin to use %q", s.log.path, path)
	}
	l, dropped, err := openLog(path, s.apply)
	if err != nil {
		return err
	}
	if dropped > 0 {
		// A crash in the middle of an append leaves a torn record at the end. It was
		// never acknowledged (the fsync had not returned), so dropping it loses nothing.
		s.logger.Warn("dropped a torn record at the end of the log", "path", path, "bytes", dropped)
	}
	s.log = l
	return nil
}
