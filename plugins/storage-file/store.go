package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/hashicorp/go-hclog"

	"github.com/limitgraph/limit/host/version"
	"github.com/limitgraph/limit/internal/fsutil"
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/storage"
)

// defaultRoot is the root directory when the config names none, relative to the data
// directory the host gives the plugin.
const defaultRoot = "files"

// maxRootLen is the longest root path for which the file of the longest key still fits in
// PATH_MAX (4096 bytes with its NUL): the key's path below the root takes
// "/ns/<64>/" plus ten "<200>.d/" directories plus "<48>.v", 2149 bytes.
const maxRootLen = 4095 - 2149

// numStripes is the number of per-key mutexes. Writes to keys of the same stripe
// serialize; 256 keeps collisions rare for the concurrency a plugin sees.
const numStripes = 256

// config is the plugin's config block.
type config struct {
	// Root is the directory holding the data; a relative path is taken relative to the
	// data directory the host gives the plugin.
	Root *string `json:"root"`
	// NoSync skips every fsync. Unsafe: a machine crash loses acknowledged writes and may
	// leave a batch half applied.
	NoSync bool `json:"no_sync"`
}

// store is the file storage backend.
type store struct {
	// mu orders batches against everything else: Get, Scan, Put, Delete and
	// CompareAndSwap hold it shared, Batch, Configure and Close exclusively, so a reader
	// never sees half a batch.
	mu sync.RWMutex
	// root is the absolute root directory; empty until Configure.
	root   string
	noSync bool
	// lockFile holds the exclusive flock on root/LOCK while the store is open.
	lockFile *os.File
	closed   bool
	// broken is set when a committed batch could not be applied; the journal still holds
	// it and the next start replays it, so until then the store refuses every call.
	broken error

	// writes is held shared by every write (Put, Delete, CompareAndSwap, Batch) and
	// exclusively by Snapshot: the file system offers no view of one point in time, so
	// while a snapshot walks the tree, writes wait for it (reads go on). Writes take it
	// before mu.
	writes sync.RWMutex

	// stripes serialize Put, Delete and CompareAndSwap on the same key.
	stripes [numStripes]sync.Mutex

	// nsReady holds the namespaces whose directory is known to exist durably.
	nsReady sync.Map
	// nsMu serializes the creation of namespace directories.
	nsMu sync.Mutex

	logger hclog.Logger
	// faults lets tests inject failures and simulate crashes; nil in production.
	faults *faults

	// space is the last write refused for a full disk (see health.go).
	space spaceState
}

// newStore returns an unconfigured store.
func newStore() *store {
	return &store{logger: base.NewPluginLogger("storage-file")}
}

// PluginInfo implements base.Plugin.
func (s *store) PluginInfo() base.Info {
	return base.Info{
		Name:         "file",
		Kind:         base.KindStorage,
		Version:      version.Version,
		Capabilities: []string{"batch", "cas", "scan", "durable", storage.CapBatchNamespaces},
		Description:  "one file per key in a directory tree; synced writes, batches made atomic by a redo journal",
	}
}

// ConfigSchema implements base.Plugin.
func (s *store) ConfigSchema() base.Schema {
	return base.Schema{Attributes: []base.Attribute{
		{
			Name: "root", Type: "string", Default: defaultRoot,
			Description: "Directory holding the data, created with mode 0700 if missing. A relative path is " +
				"relative to the plugin's data directory. Only one process may use a root at a time.",
		},
		{
			Name: "no_sync", Type: "bool", Default: false,
			Description: "UNSAFE: skip every fsync. Faster, but a machine crash or power loss loses " +
				"acknowledged writes and may leave a batch half applied. For throwaway data only.",
		},
	}}
}

// Configure implements base.Plugin. It resolves and checks the root; unless ValidateOnly,
// it creates the root, locks it, replays a journal left by a crash and removes leftover
// temporary files.
func (s *store) Configure(_ context.Context, req base.ConfigureRequest) base.Diagnostics {
	var cfg config
	if ds := base.DecodeConfig(req.Config, &cfg); ds.HasErrors() {
		return ds
	}
	root, ds := resolveRoot(cfg, req.DataDir)
	if ds.HasErrors() {
		return ds
	}
	if cfg.NoSync {
		ds = append(ds, base.Diagnostic{
			Severity: base.SeverityWarning, Path: []string{"no_sync"},
			Summary: noSyncWarning,
			Detail:  "a machine crash or power loss can lose acknowledged writes and leave a batch half applied; unset it for data you want to keep",
		})
	}
	if req.ValidateOnly {
		s.mu.RLock()
		own := s.root == root && !s.closed
		s.mu.RUnlock()
		if err := checkRoot(root, own); err != nil {
			ds = append(ds, rootError(err))
		}
		return ds
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return append(ds, base.Errorf(nil, "the store is closed; start a new plugin process"))
	case s.root == root && s.noSync == cfg.NoSync:
		return ds
	case s.root != "":
		return append(ds, base.Errorf([]string{"root"}, "already configured with root %q; restart the plugin to change its configuration", s.root))
	}
	if err := s.open(root, cfg.NoSync); err != nil {
		return append(ds, rootError(err))
	}
	return ds
}

func rootError(err error) base.Diagnostic {
	return base.Diagnostic{Severity: base.SeverityError, Path: []string{"root"}, Summary: "cannot use the root directory", Detail: err.Error()}
}

// resolveRoot returns the absolute root directory named by cfg.
func resolveRoot(cfg config, dataDir string) (string, base.Diagnostics) {
	root := defaultRoot
	if cfg.Root != nil {
		root = *cfg.Root
	}
	if root == "" {
		return "", base.Diagnostics{base.Errorf([]string{"root"}, "must not be empty; name the directory to keep the data in")}
	}
	if !filepath.IsAbs(root) {
		if dataDir == "" {
			return "", base.Diagnostics{base.Errorf([]string{"root"}, "%q is relative but the host gave the plugin no data directory; use an absolute path", root)}
		}
		root = filepath.Join(dataDir, root)
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return "", base.Diagnostics{base.Errorf([]string{"root"}, "cannot resolve %q: %v", root, err)}
	}
	if len(abs) > maxRootLen {
		return "", base.Diagnostics{base.Errorf([]string{"root"}, "%q is %d bytes long; the files of the longest keys need a root of at most %d bytes", abs, len(abs), maxRootLen)}
	}
	return abs, nil
}

// checkRoot checks, without creating or changing anything, that root can be opened: it is
// a directory or can be created as one, and no other process holds it. own tells that
// this store already holds root.
func checkRoot(root string, own bool) error {
	fi, err := os.Stat(root)
	if errors.Is(err, fs.ErrNotExist) {
		return fsutil.CheckCreatable(root)
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s exists and is not a directory", root)
	}
	if err := syscall.Access(root, 0x2|0x1); err != nil {
		return fmt.Errorf("no permission to write in %s", root)
	}
	if own {
		return nil
	}
	return probeLock(root)
}

// open creates and locks root, replays a leftover journal and clears tmp/. Called with
// s.mu held.
func (s *store) open(root string, noSync bool) error {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", root, err)
	}
	lock, err := acquireLock(root)
	if err != nil {
		return err
	}
	s.root, s.noSync = root, noSync
	fail := func(err error) error {
		releaseLock(lock)
		s.root = ""
		return err
	}
	for _, d := range []string{tmpDirName, nsDirName} {
		if err := os.Mkdir(filepath.Join(root, d), 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fail(s.ioErr("create "+d+" directory", err))
		}
	}
	if err := s.recoverJournal(); err != nil {
		return fail(err)
	}
	if err := s.clearTmp(); err != nil {
		return fail(err)
	}
	// The root and its subdirectories may be new: make their entries durable.
	for _, d := range []string{filepath.Dir(root), root} {
		if err := s.syncDir(d); err != nil {
			return fail(err)
		}
	}
	s.lockFile = lock
	s.logger.Debug("opened root", "root", root, "no_sync", noSync)
	if noSync {
		s.logger.Warn(noSyncWarning, "root", root)
	}
	return nil
}

// clearTmp removes what a previous process left in tmp/: values of writes that never
// completed and uncommitted journals.
func (s *store) clearTmp() error {
	dir := filepath.Join(s.root, tmpDirName)
	names, err := readNames(dir)
	if err != nil {
		return fmt.Errorf("list %s: %w", dir, err)
	}
	for _, n := range names {
		if err := os.RemoveAll(filepath.Join(dir, n)); err != nil {
			return fmt.Errorf("remove leftover temporary file: %w", err)
		}
	}
	if len(names) > 0 {
		s.logger.Info("removed leftover temporary files of unfinished writes", "count", len(names))
		return s.syncDir(dir)
	}
	return nil
}

// Close implements storage.Storage: it waits for calls in flight and releases the root.
func (s *store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.lockFile == nil {
		return nil
	}
	err := releaseLock(s.lockFile)
	s.lockFile = nil
	return err
}

// usable tells why the store cannot serve a call, or nil. Called with s.mu held.
func (s *store) usable() error {
	switch {
	case s.closed:
		return fmt.Errorf("%w: file storage is closed", storage.ErrUnavailable)
	case s.root == "":
		return fmt.Errorf("%w: file storage is not configured (the host must call Configure first)", storage.ErrUnavailable)
	case s.broken != nil:
		return fmt.Errorf("%w: %v", storage.ErrUnavailable, s.broken)
	}
	return nil
}

// rlock takes s.mu shared if the store can serve; on success the caller must RUnlock.
func (s *store) rlock() error {
	s.mu.RLock()
	if err := s.usable(); err != nil {
		s.mu.RUnlock()
		return err
	}
	return nil
}

// holdWrite takes s.writes shared for a write, waiting while a snapshot runs, and returns
// the function that releases it.
func (s *store) holdWrite() func() {
	if !s.writes.TryRLock() {
		if s.faults != nil && s.faults.writeWaits != nil {
			s.faults.writeWaits()
		}
		s.writes.RLock()
	}
	return s.writes.RUnlock
}

// stripe returns the mutex serializing writes to key (FNV-1a of namespace and key).
func (s *store) stripe(ns string, key []byte) *sync.Mutex {
	const offset, prime = 2166136261, 16777619
	h := uint32(offset)
	for i := 0; i < len(ns); i++ {
		h = (h ^ uint32(ns[i])) * prime
	}
	h = (h ^ 0xff) * prime // keeps ("ab", "c") and ("a", "bc") apart
	for _, c := range key {
		h = (h ^ uint32(c)) * prime
	}
	return &s.stripes[h%numStripes]
}

// nsPath returns the absolute directory of a namespace.
func (s *store) nsPath(ns string) string {
	return filepath.Join(s.root, nsRel(ns))
}

var _ storage.Storage = (*store)(nil)
